"""Feed HTML reduced to what an email client renders safely, and WordPress's leftovers removed.

The allow-list is applied by nh3 (ammonia, a real HTML5 parser): no scripts, event handlers,
`javascript:` URLs, forms, iframes or style attributes survive, whatever the nesting.
"""

from __future__ import annotations

import html as htmllib
import re

import nh3

from newsletter.clean.links import clean_link
from newsletter.clean.mojibake import repair_mojibake

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
    "*": set(),  # none on every tag: nh3 would otherwise keep `title` and `lang` anywhere
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
_SETTLE_ROUNDS = 4  # nh3 output re-cleaned until stable; one more round has always sufficed

_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_EMPTY_P = re.compile(r"<p>(?:\s|&nbsp;|<br>)*</p>\s*")
_IMG_WITHOUT_SRC = re.compile(r"<img(?![^>]*\ssrc=)[^>]*>")
_A_WITHOUT_HREF = re.compile(r"<a(?![^>]*\shref=)[^>]*>(.*?)</a>", re.DOTALL)
# WordPress ends an excerpt with "[…]"; a full stop or ellipsis before it would read ".…".
# A ";" that ends an entity ("&nbsp;[…]", "&amp;") is no punctuation and stays.
_TAIL = re.compile(
    r"(?:\s*(?:\.\.\.|[.,:…]|(?<!&[a-z]{2})(?<!&[a-z]{3})(?<!&[a-z]{4});))?"
    r"\s*\[\s*(?:…|\.\.\.)\s*\]"
    r"((?:\s*</(?:p|div|li|blockquote)>)*\s*)$"
)
_BETWEEN_TAGS = re.compile(r">\s{2,}<")


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
    cleaned = _sanitize_once(html, base_url)
    # Tags unwrapped here, or by nh3 itself, can leave markup that parses differently next
    # time ("<h2><a><h3>" becomes "<h2><h3>", which closes the h2): clean until it is stable,
    # so that cleaning stored HTML again never changes it.
    for _ in range(_SETTLE_ROUNDS):
        again = _sanitize_once(cleaned, base_url)
        if again == cleaned:
            break
        cleaned = again
    return cleaned


def _sanitize_once(html: str, base_url: str | None) -> str:
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
    return _A_WITHOUT_HREF.sub(r"\1", _IMG_WITHOUT_SRC.sub("", cleaned))


def clean_html(html: str, link: str = "") -> str:
    """Feed HTML (WordPress or not) made ready for a digest: the one call the feed step uses."""
    link = clean_link(link)
    html = repair_mojibake(_COMMENT.sub("", html))
    html = _EMPTY_P.sub("", sanitize_html(html, base_url=link or None))
    html = _BETWEEN_TAGS.sub(">\n<", html).strip()  # blank runs left where comments were
    return link_read_more(html, link)


def link_read_more(html: str, link: str) -> str:
    """Turn WordPress's excerpt tail "[…]" into a link, since the excerpt is all a reader gets."""
    link = clean_link(link)
    anchor = f' <a href="{htmllib.escape(link)}" rel="noopener">{READ_MORE}</a>' if link else ""
    return _TAIL.sub(lambda m: "…" + anchor + "".join(m.group(1).split()), html)
