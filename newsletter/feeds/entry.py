"""One feed entry, from whichever format, made into an Article with every field bounded.

The parsers (`parse` for RSS and Atom, `jsonfeed`) agree on `RawEntry`; everything a reader
will see is cleaned and capped here, once, so one absurd entry (a 120 KB title, a 110 KB link)
cannot push the digest over the size limit for everyone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from newsletter import clean
from newsletter.feeds.images import RawImage, choose
from newsletter.models import LINK_MAX, TITLE_MAX, Article, storable

AUTHOR_MAX = 120
ID_MAX = 500  # a longer guid is kept as its hash: ids are database keys
# Characters of a body read (the digest shows a summary of its start), and of all bodies of
# one feed: cleaning garbled text costs ~20 ms per KB, so a hostile feed must not set the pace.
HTML_MAX = 50_000
FEED_TEXT_BUDGET = 1_000_000
HTML_MIN = 2_000  # what every entry gets even when the feed's budget is spent
TEXT_MAX = 4 * TITLE_MAX  # characters of a title or author read before cleaning
UNTITLED = "(untitled)"
CATEGORIES_MAX, CATEGORY_MAX = 10, 60  # WordPress sends categories and tags; the first matter
WORDS_PER_MINUTE = 230


@dataclass(frozen=True)
class RawEntry:
    """An entry as its feed gave it, before any cleaning. Bodies are HTML."""

    guid: str
    title: str
    title_is_html: bool
    link: str
    author: str
    published: datetime | None
    content: str
    summary: str  # "" when the feed has none of its own (an excerpt is made from content)
    images: tuple[RawImage, ...] = ()  # the feed's own pictures, best first (the body aside)
    categories: tuple[str, ...] = ()

    def usable(self) -> bool:
        """An entry with no title, link or body is debris of broken input, not an article."""
        return any((self.title, self.link, self.summary, self.content))


@dataclass
class Notes:
    """What the operator should hear about a feed that still worked."""

    long_links: int = 0
    extra_entries: int = 0
    short_bodies: int = 0

    def lines(self) -> list[str]:
        notes = []
        if self.long_links:
            notes.append(
                f"{self.long_links} link(s) over {LINK_MAX:,} characters dropped "
                "(the article is shown unlinked)"
            )
        if self.short_bodies:
            notes.append(f"{self.short_bodies} long article bodies read only in part")
        if self.extra_entries:
            notes.append(f"{self.extra_entries} entries beyond the first ones ignored")
        return notes


def to_article(
    entry: RawEntry, source: str, base: str, now: datetime, notes: Notes, budget: int = HTML_MAX
) -> Article:
    """The Article of an entry; `base` resolves relative links, `now` stands in for no date.

    At most `budget` characters of its bodies are read (see FEED_TEXT_BUDGET).
    """
    link = clean.clean_link(entry.link, base)
    if len(link) > LINK_MAX:
        notes.long_links += 1
        link = ""
    room = max(min(budget, HTML_MAX), HTML_MIN)
    content_raw = entry.content[:room]
    summary_raw = entry.summary[: max(room - len(content_raw), HTML_MIN)]
    content_html = clean.clean_html(content_raw or summary_raw, link)
    if summary_raw:
        summary_html = clean.clean_html(summary_raw, link)
    else:
        summary_html = clean.excerpt_html(content_html)
    title = _title(entry)
    return Article(
        id=entry_id(entry.guid, link, title, content_raw or summary_raw),
        title=title,
        link=link,
        author=clean.shorten(clean.fix_text(entry.author[:TEXT_MAX]), AUTHOR_MAX),
        published=entry.published or now,
        summary_html=summary_html,
        summary_text=clean.summarize(summary_html),
        content_html=content_html,
        source=source,
        highlights=clean.extract_highlights(content_html),
        dated_by_feed=entry.published is not None,
        image=choose(entry.images, content_html, title, link),
        categories=categories(entry.categories),
        words=len(clean.html_to_words(content_html).split()),
    )


def categories(raw: tuple[str, ...]) -> tuple[str, ...]:
    """One-line, bounded, each once (case aside), in the feed's order: the first is the main one."""
    kept: dict[str, str] = {}
    for name in raw[: 4 * CATEGORIES_MAX]:
        text = clean.shorten(clean.fix_text(name[:TEXT_MAX]), CATEGORY_MAX)
        if text and text.casefold() not in kept:
            kept[text.casefold()] = text
    return tuple(kept.values())[:CATEGORIES_MAX]


def _title(entry: RawEntry) -> str:
    """One line of text, entities decoded exactly once (by the parser, or here for HTML)."""
    raw = entry.title[:TEXT_MAX]
    text = clean.html_to_words(clean.sanitize_html(raw)) if entry.title_is_html else raw
    return clean.shorten(clean.fix_text(text), TITLE_MAX) or UNTITLED


def entry_id(guid: str, link: str, title: str, body: str) -> str:
    """The guid exactly as given, else the link, else a content hash; prefixes keep kinds apart.

    A guid is an opaque string: it is never resolved against the feed's address, so an
    article keeps its identity when the feed moves. It is a database key, so a NUL in it (a
    JSON Feed may spell one; PostgreSQL refuses it, and the whole run with it) is kept as
    U+FFFD: the same guid gives the same id on every run.
    """
    guid = storable(guid.strip())
    if len(guid) > ID_MAX:
        return f"guid-sha256:{hashlib.sha256(guid.encode()).hexdigest()}"
    if guid:
        return guid
    if link:
        return f"link:{clean.link_identity(link)}"
    digest = hashlib.sha256(f"{title}\x00{body}".encode()).hexdigest()
    return f"sha256:{digest}"
