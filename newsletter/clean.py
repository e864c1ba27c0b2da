"""Text and HTML clean-up for feed content on its way into an email.

Feed HTML is written for a browser by someone else; an email client is a stricter and older
audience, and a hostile feed must not get script, tracking CSS or phishing links into a digest.
Everything here is a pure function of its input, so the feed step and the tests can share it.
"""

from __future__ import annotations

import functools
import html as htmllib
import itertools
import re
import unicodedata
from html.parser import HTMLParser
from urllib.parse import urlsplit

import ftfy
import nh3

READ_MORE = "Read more"

# Tags an email client renders predictably; everything else is unwrapped to its text.
ALLOWED_TAGS = frozenset(
    {"p", "br", "a", "strong", "b", "em", "i", "ul", "ol", "li", "blockquote", "h2", "h3", "h4"}
    | {"img", "figure", "figcaption", "table", "caption", "thead", "tbody", "tr", "th", "td"}
)
# Tags dropped with everything inside: their content is code, a widget or a form, never prose.
DROPPED_TAGS = frozenset(
    {"script", "style", "iframe", "object", "embed", "form", "noscript", "template", "svg"}
    | {"math", "textarea", "select", "button"}
)
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})

# Code pages whose mis-decoding of UTF-8 we undo when ftfy leaves the text alone.
CODE_PAGES = ("cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1257")
_FTFY = ftfy.TextFixerConfig(unescape_html=False, uncurl_quotes=False, explain=False)

_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_EMPTY_P = re.compile(r"<p>(?:\s|&nbsp;|<br>)*</p>\s*")
_IMG_WITHOUT_SRC = re.compile(r"<img(?![^>]*\ssrc=)[^>]*>")
_A_WITHOUT_HREF = re.compile(r"<a(?![^>]*\shref=)[^>]*>(.*?)</a>", re.DOTALL)
_TAIL = re.compile(r"\s*\[\s*(?:…|\.\.\.)\s*\]((?:\s*</(?:p|div|li|blockquote)>)*\s*)$")
_READ_MORE_TEXT = re.compile(r"\s*…\s*" + READ_MORE + r"\s*$")
_BETWEEN_TAGS = re.compile(r">\s{2,}<")
_PARAGRAPH = re.compile(r"<p>.*?</p>", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^\sa-z])")
_BLOCKS = frozenset(
    {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "table", "tr"}
    | {"figure", "figcaption", "pre", "hr", "caption"}
)


def safe_url(url: str) -> str:
    """The URL if it is absolute http(s), else "": only those are safe to put in a mail link."""
    url = url.strip()
    parts = urlsplit(url)
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    """Image sizes must be plain numbers; anything else could smuggle CSS-like values."""
    if name in ("width", "height", "colspan", "rowspan"):
        return value if value.isdigit() else None
    return value


def sanitize_html(html: str, base_url: str | None = None) -> str:
    """Reduce HTML to the email-safe allow-list above.

    Links get rel="noopener"; relative URLs are resolved against `base_url` (an email has no
    base of its own) or dropped when there is none. No style attribute survives, so no remote
    CSS or hidden text either.
    """
    relative: nh3.UrlRelative = ("rewrite_with_base", base_url) if base_url else "deny"
    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROPPED_TAGS),
        attributes=ATTRIBUTES,
        attribute_filter=_keep_attribute,
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener",
        url_relative=relative,
    )
    cleaned = _IMG_WITHOUT_SRC.sub("", cleaned)
    return _A_WITHOUT_HREF.sub(r"\1", cleaned)


@functools.cache
def _code_page(name: str) -> tuple[dict[str, int], re.Pattern[str]]:
    """Byte table of a code page, plus a pattern for UTF-8 sequences as it renders them.

    Undefined bytes map to the C1 control of the same number, as browsers and ftfy do.
    """
    table: dict[str, int] = {}
    for byte in range(0x80, 0x100):
        try:
            table[bytes([byte]).decode(name)] = byte
        except UnicodeDecodeError:
            table[chr(byte)] = byte
    lead = "".join(re.escape(c) for c, b in table.items() if 0xC2 <= b <= 0xF4)
    follow = "".join(re.escape(c) for c, b in table.items() if 0x80 <= b <= 0xBF)
    return table, re.compile(f"[{lead}][{follow}]+")


def _undo_code_page(text: str, name: str) -> str | None:
    """Re-encode with one code page and decode as UTF-8; keep it only if strictly better."""
    table, marker = _code_page(name)
    before = _markers(text, marker)
    if not before:
        return None
    raw = bytearray()
    for char in text:
        byte = ord(char) if char < "\x80" else table.get(char)
        if byte is None:
            return None
        raw.append(byte)
    try:
        fixed = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return fixed if _markers(fixed, marker) < before else None


def _markers(text: str, marker: re.Pattern[str]) -> int:
    """Count UTF-8-as-code-page sequences that also look wrong.

    A sequence looks wrong when it holds a symbol or punctuation between letters, or switches
    from lower to upper case inside a word; genuine words such as Russian "Её" do neither.
    """
    count = 0
    for match in marker.finditer(text):
        chunk = text[max(match.start() - 1, 0) : match.end()]
        switch = any(a.islower() and b.isupper() for a, b in itertools.pairwise(chunk))
        count += switch or not match.group().isalpha()
    return count


def repair_mojibake(text: str) -> str:
    """Undo UTF-8 read as a legacy code page. Leaves entities and markup alone.

    ftfy knows cp1252 and latin-1 well but declines e.g. Polish or Czech text read as cp1251,
    because the result looks like plausible Cyrillic; the explicit code-page pass catches those.
    """
    text = ftfy.fix_text(text, _FTFY)
    for _ in range(2):  # twice for text that was mis-decoded twice
        fixed = next(filter(None, (_undo_code_page(text, cp) for cp in CODE_PAGES)), None)
        if fixed is None:
            break
        text = fixed
    return text


def fix_text(text: str) -> str:
    """Plain single-line text: entities decoded, mojibake repaired, controls gone, NFC.

    Titles and authors end up in mail headers, so no CR/LF or other control may survive.
    """
    text = repair_mojibake(htmllib.unescape(text))
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    return unicodedata.normalize("NFC", " ".join(text.split()))


def clean_html(html: str, link: str = "") -> str:
    """Feed HTML (WordPress or not) made ready for a digest: the one call the feed step uses."""
    link = safe_url(link)
    html = repair_mojibake(_COMMENT.sub("", html))
    html = _EMPTY_P.sub("", sanitize_html(html, base_url=link or None))
    html = _BETWEEN_TAGS.sub(">\n<", html).strip()  # blank runs left where comments were
    return link_read_more(html, link)


def link_read_more(html: str, link: str) -> str:
    """Turn WordPress's excerpt tail "[…]" into a link, since the excerpt is all a reader gets."""
    link = safe_url(link)
    anchor = f' <a href="{htmllib.escape(link)}" rel="noopener">{READ_MORE}</a>' if link else ""
    return _TAIL.sub(lambda m: "…" + anchor + "".join(m.group(1).split()), html)


class _TextParser(HTMLParser):
    """Collects the text of sanitized HTML with the line structure a reader expects."""

    def __init__(self, links: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.links = links
        self.parts: list[str] = []
        self._href = ""
        self._anchor_start = 0
        self._items = 0
        self._cells = 0
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED_TAGS:  # in case the HTML was not sanitized after all
            self._hidden += 1
        elif tag == "li":
            self._items += 1
            self.parts.append("\n- ")
        elif tag in _BLOCKS:
            self._cells = 0
            self._block_break()
        elif tag == "br":
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" | " if self._cells else "")
            self._cells += 1
        elif tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._anchor_start = len(self.parts)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROPPED_TAGS:
            self._hidden = max(self._hidden - 1, 0)
        elif tag == "li":
            self._items = max(self._items - 1, 0)
        elif tag in _BLOCKS:
            self._block_break()
        elif tag == "a" and self._href:
            label = "".join(self.parts[self._anchor_start :]).strip()
            if self.links and label not in (self._href, self._href.removeprefix("mailto:")):
                self.parts.append(f" ({self._href})")
            self._href = ""

    def _block_break(self) -> None:
        """A blank line between blocks, but a list item stays on one line whatever it holds."""
        if not self._items:
            self.parts.append("\n\n")
        elif self.parts and self.parts[-1] != "\n- ":
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).split("\n"))
        joined = "\n".join(line for line in lines if line != "-")
        return re.sub(r"\n{3,}", "\n\n", joined).strip()


def _to_text(html: str, links: bool) -> str:
    parser = _TextParser(links)
    parser.feed(html)
    parser.close()
    return parser.text()


def html_to_text(html: str) -> str:
    """Readable plain text for the text/plain twin: paragraphs, "- " items, "label (url)"."""
    return _to_text(html, links=True)


def shorten(text: str, limit: int) -> str:
    """Collapse whitespace and cut at a word boundary with "…" so no word is cut in half."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    head, space, _ = cut.rpartition(" ")
    if space and len(head) >= limit // 2:
        cut = head
    return cut.rstrip(" ,;:.-\u2013\u2014") + "…"


def _prose(html: str) -> str:
    """Text without link targets or our own "Read more" tail: the words of the article."""
    return _READ_MORE_TEXT.sub("…", _to_text(html, links=False))


def summarize(html: str, limit: int = 300) -> str:
    """A short one-paragraph plain summary for teasers and the preheader."""
    return shorten(re.sub(r"(?m)^- ", "", _prose(html)), limit)


def extract_highlights(html: str, limit: int = 4, width: int = 160) -> tuple[str, ...]:
    """Up to `limit` bullet points for a featured article: its list items, else its sentences."""
    text = _prose(html)
    items = [line[2:] for line in text.splitlines() if line.startswith("- ")]
    if not items:  # sentences of the running text, not of tables or captions
        text = _prose("".join(_PARAGRAPH.findall(html))) or text
        items = _SENTENCE_END.split(" ".join(text.split()))
    return tuple(shorten(item, width) for item in items if item.strip())[:limit]


def excerpt_html(html: str, limit: int = 600) -> str:
    """The first paragraphs of sanitized HTML, about `limit` characters of text in all."""
    taken: list[str] = []
    length = 0
    for paragraph in _PARAGRAPH.findall(html):
        if length >= limit:
            break
        taken.append(paragraph)
        length += len(_to_text(paragraph, links=False))
    if taken:
        return "\n".join(taken)
    summary = summarize(html, limit)
    return f"<p>{htmllib.escape(summary, quote=False)}</p>" if summary else ""
