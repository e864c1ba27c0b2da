"""An article's picture, as WordPress and other feeds carry it, chosen once when the feed is read.

Feeds name a featured image in several ways; we look in this order and take the first that is
usable: `media:content` (largest declared width first), `media:thumbnail`, an image enclosure
(RSS `<enclosure>`, Atom `rel="enclosure"`), JSON Feed's `image`, and last the first `<img>` of
the article's body. Usable means an https URL of an image format every mail client shows
(no SVG, no video, no PDF), not an icon, spacer or tracking pixel by its declared size. The
digest points at the URL as the feed gave it: the picture is never fetched, proxied or counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from newsletter import clean
from newsletter.models import LINK_MAX, Image

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})
# Declared types mail clients show; SVG is an image type that Gmail and Outlook do not.
IMAGE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/gif"})
IMAGE_TYPES |= {"image/webp"}
MIN_SIDE = 48  # a declared side shorter than this is an icon, a spacer or a tracking pixel
MAX_SIDE = 10_000  # a declared side longer than this is a typo or a hostile value
ALT_MAX = 200
CANDIDATES_MAX = 20  # a feed listing hundreds of media elements gets its first ones looked at


@dataclass(frozen=True)
class RawImage:
    """A picture as a feed named it, before any check."""

    url: str
    width: str = ""  # as written in the feed: numbers, or anything else, which counts as unknown
    height: str = ""
    alt: str = ""
    kind: str = ""  # a MIME type, or "image" for a media element marked medium="image"


def from_feedparser(entry: Mapping[str, Any]) -> tuple[RawImage, ...]:
    """The pictures feedparser found in an RSS or Atom entry, best first (the body aside)."""
    found: list[RawImage] = []
    media = [m for m in _dicts(entry.get("media_content")) if _text(m.get("url"))]
    media.sort(key=lambda m: -_number(_text(m.get("width"))))
    for item in media:
        kind = _text(item.get("type")) or ("image" if item.get("medium") == "image" else "")
        if item.get("medium") not in (None, "", "image"):
            kind = _text(item.get("medium"))  # "video", "audio", "document": not a picture
        found.append(_raw(item.get("url"), item.get("width"), item.get("height"), kind))
    for item in _dicts(entry.get("media_thumbnail")):
        found.append(_raw(item.get("url"), item.get("width"), item.get("height"), "image"))
    for item in _dicts(entry.get("enclosures")):
        found.append(_raw(item.get("href"), "", "", _text(item.get("type")) or "enclosure"))
    return tuple(found[:CANDIDATES_MAX])


def choose(candidates: Iterable[RawImage], body_html: str, title: str, base: str) -> Image | None:
    """The first usable picture of the feed's, else of the (sanitized) body; None without one.

    `base` (the article's link) resolves a relative URL. The alt text is the feed's, else that
    of the same picture in the body, else the article's title.
    """
    in_body = _body_images(body_html)
    alts = {clean.clean_link(image.url, base): image.alt for image in in_body if image.alt}
    for candidate in (*candidates, *in_body):
        image = _usable(candidate, base)
        if image is not None:
            alt = candidate.alt or alts.get(image.url, "") or title
            return Image(image.url, image.width, image.height, _alt(alt))
    return None


def _usable(raw: RawImage, base: str) -> Image | None:
    url = clean.clean_link(raw.url, base)
    if not url.startswith("https://") or len(url) > LINK_MAX:
        return None
    if not _image_kind(raw.kind, urlsplit(url).path):
        return None
    width, height = _side(raw.width), _side(raw.height)
    if (0 < width < MIN_SIDE) or (0 < height < MIN_SIDE):
        return None
    if not (width and height):
        width = height = 0  # one side alone gives no shape: the renderer assumes one
    return Image(url, width, height, "")


def _image_kind(kind: str, path: str) -> bool:
    """A declared image type; else a URL whose name says image, or none for a typed element."""
    kind = kind.lower().partition(";")[0].strip()
    dot = path.rfind(".")
    extension = path[dot:].lower() if dot > path.rfind("/") else ""
    if kind.startswith("image/"):
        return kind in IMAGE_TYPES and extension != ".svg"
    if kind not in ("", "image", "enclosure"):
        return False  # video/mp4, audio/mpeg, application/pdf, medium="video"
    if extension:
        return extension in IMAGE_EXTENSIONS
    return kind == "image"  # an <img> or medium="image" without a file name: trust the tag


def _side(value: str) -> int:
    number = _number(value)
    return number if number <= MAX_SIDE else 0


def _number(value: str) -> int:
    value = value.strip().removesuffix("px")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 7 else 0


def _alt(text: str) -> str:
    return clean.shorten(clean.fix_text(text[: 4 * ALT_MAX]), ALT_MAX)


def _raw(url: object, width: object, height: object, kind: str) -> RawImage:
    return RawImage(_text(url), _text(width), _text(height), "", kind)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


class _ImgCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[RawImage] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img" or len(self.found) >= CANDIDATES_MAX:
            return
        values = {name: value or "" for name, value in attrs}
        self.found.append(
            RawImage(values.get("src", ""), values.get("width", ""), values.get("height", ""),
                     values.get("alt", ""), "image")
        )  # fmt: skip


def _body_images(body_html: str) -> list[RawImage]:
    """The <img> elements of the body in document order (it is sanitized: src is absolute)."""
    if "<img" not in body_html:
        return []
    collector = _ImgCollector()
    collector.feed(body_html)
    collector.close()
    return collector.found
