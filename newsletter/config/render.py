"""The `[render]` table: templates, pictures, the masthead logo, sections, footer links, notes.

Everything here is optional and off or plain by default, so a config without `[render]` renders
the digest as before: no logo, no privacy link, one list after the top story. Pictures from the
feed are shown by default (the top story's wide; thumbnails for the others when `thumbnails`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.config.reader import Reader

TITLE_MAX = 60


@dataclass(frozen=True)
class SectionConfig:
    title: str  # the heading readers see
    categories: tuple[str, ...]  # feed categories that belong here, compared without case


@dataclass(frozen=True)
class LogoConfig:
    url: str  # https, on the site's own server; shown on the dark masthead in both colour modes
    width: int
    height: int


@dataclass(frozen=True)
class RenderConfig:
    templates_dir: Path
    # Small pictures beside the stories after the top one (the top story's is always shown).
    thumbnails: bool
    # The size assumed for a feed picture whose width and height the feed did not give.
    image_width: int
    image_height: int
    logo: LogoConfig | None
    # Stories after the top one, grouped in this order; the rest under `other_title`. None
    # configured: one list.
    sections: tuple[SectionConfig, ...]
    other_title: str
    privacy_url: str  # "" = no privacy-policy link in the footer
    contact: str  # one footer line, e.g. where to send tips; "" = none
    notes_dir: Path  # an editor's note for a date is <notes_dir>/<YYYY-MM-DD>.md


def parse_render(reader: Reader, base: Path) -> RenderConfig:
    width = reader.positive("image_width", int, 1200)
    height = reader.positive("image_height", int, 675)
    return RenderConfig(
        templates_dir=base / reader.text("templates_dir", "templates"),
        thumbnails=reader.get("thumbnails", bool, False),
        image_width=width,
        image_height=height,
        logo=_logo(reader),
        sections=_sections(reader),
        other_title=_title(reader, "other_title", "Other news"),
        privacy_url=_https(reader, "privacy_url"),
        contact=reader.text("contact", ""),
        notes_dir=base / reader.text("notes_dir", "notes"),
    )


def _https(reader: Reader, key: str) -> str:
    value = reader.text(key, "")
    parts = urlsplit(value)
    if value and (parts.scheme != "https" or not parts.netloc or " " in value):
        raise reader.fail(key, f"expected an https:// URL, got {value!r}")
    return value


def _logo(reader: Reader) -> LogoConfig | None:
    url = _https(reader, "logo_url")
    width = reader.get("logo_width", int, 0)
    height = reader.get("logo_height", int, 0)
    if not url:
        return None
    for key, value, most in (("logo_width", width, 600), ("logo_height", height, 200)):
        if not 0 < value <= most:
            raise reader.fail(key, f"expected the logo's size in pixels, 1 to {most}")
    return LogoConfig(url, width, height)


def _title(reader: Reader, key: str, default: str | None = None) -> str:
    value = reader.text(key, default)
    if len(value) > TITLE_MAX:
        raise reader.fail(key, f"expected at most {TITLE_MAX} characters")
    return value


def _sections(reader: Reader) -> tuple[SectionConfig, ...]:
    sections = []
    claimed: dict[str, str] = {}
    for child in reader.tables("sections"):
        title = _title(child, "title")
        raw = child.get("categories", list)
        if not raw or not all(isinstance(c, str) and c.strip() for c in raw):
            raise child.fail("categories", 'expected a list of category names, like ["Prices"]')
        for name in raw:
            if name.strip().casefold() in claimed:
                first = claimed[name.strip().casefold()]
                raise child.fail("categories", f"{name!r} already belongs to section {first!r}")
            claimed[name.strip().casefold()] = title
        sections.append(SectionConfig(title, tuple(name.strip() for name in raw)))
    return tuple(sections)
