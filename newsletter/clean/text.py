"""Plain text from feed content: the text part, summaries, highlights and one-line fields.

The input HTML is already sanitized; these functions only decide how its words are laid out
for a reader of the text/plain part, a teaser or a mail header.
"""

from __future__ import annotations

import html as htmllib
import re
import unicodedata
from html.parser import HTMLParser

from newsletter.clean.html import DROPPED_TAGS, READ_MORE
from newsletter.clean.mojibake import repair_mojibake

_READ_MORE_TEXT = re.compile(r"\s*…\s*" + READ_MORE + r"\s*$")
_PUNCTUATED_ELLIPSIS = re.compile(r"\s*[.,;:]\s*…$")
_PARAGRAPH = re.compile(r"<p>.*?</p>", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^\sa-z])")
_BLOCKS = frozenset(
    {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "table", "tr"}
    | {"figure", "figcaption", "pre", "hr", "caption"}
)
# Format characters that change how text is drawn beyond their own place: embeddings,
# overrides and isolates of the bidi algorithm (a reversed subject line), and the BOM.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff")
_WHITESPACE = re.compile(r"\s+")


def one_line(text: str) -> str:
    """Printable single-line text; nothing a reader could see is changed.

    Line breaks and runs of white space become one space, but a single space character of
    another kind stays as written ("45\u00a0€", French "Prix\u202f:", the ideographic space
    of Japanese). Control, surrogate, private-use and unassigned characters and bidi overrides
    go: a mail header must not break, a subject must not be reversed. Joiners stay (ZWNJ in
    Persian "نامه‌ها", ZWJ in emoji).
    """
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        elif category not in ("Cs", "Co", "Cn") and char not in _BIDI_CONTROLS:
            kept.append(char)
    return _squeeze("".join(kept))


def fix_text(text: str) -> str:
    """A plain-text field (title, author) as one clean line: mojibake repaired, NFC.

    The text is taken as already decoded: an entity in it ("&lt;" in an Atom text title) is
    what the author wrote and stays, since decoding it again would change the words.
    """
    return unicodedata.normalize("NFC", one_line(repair_mojibake(text)))


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
            self.parts.append(_WHITESPACE.sub(_space, data))

    def text(self) -> str:
        lines = (_squeeze(line) for line in "".join(self.parts).split("\n"))
        joined = "\n".join(line for line in lines if line != "-")
        return re.sub(r"\n{3,}", "\n\n", joined).strip()


def _space(match: re.Match[str]) -> str:
    """One space of a special kind (no-break, thin, ideographic) is meant; a run is layout."""
    run = match.group()
    return run if len(run) == 1 and unicodedata.category(run) == "Zs" else " "


def _squeeze(line: str) -> str:
    """White space collapsed as `one_line` says, none at either end."""
    return _WHITESPACE.sub(_space, line).strip()


def _to_text(html: str, links: bool) -> str:
    parser = _TextParser(links)
    parser.feed(html)
    parser.close()
    return parser.text()


def html_to_text(html: str) -> str:
    """Readable plain text for the text/plain twin: paragraphs, "- " items, "label (url)"."""
    return _to_text(html, links=True)


def html_to_words(html: str) -> str:
    """The words of sanitized HTML without link targets: for a title given as HTML."""
    return _to_text(html, links=False)


def shorten(text: str, limit: int) -> str:
    """Collapse whitespace and cut at a word boundary with "…" so no word is cut in half."""
    text = _squeeze(text)
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
    summary = shorten(re.sub(r"(?m)^- ", "", _prose(html)), limit)
    return _PUNCTUATED_ELLIPSIS.sub("…", summary)


def extract_highlights(html: str, limit: int = 4, width: int = 160) -> tuple[str, ...]:
    """Up to `limit` bullet points for a featured article: its list items, else its sentences."""
    text = _prose(html)
    items = [line[2:] for line in text.splitlines() if line.startswith("- ")]
    if not items:  # sentences of the running text, not of tables or captions
        text = _prose("".join(_PARAGRAPH.findall(html))) or text
        items = _SENTENCE_END.split(_squeeze(text.replace("\n", " ")))
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
