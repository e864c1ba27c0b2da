"""What both templates show of one article, prepared once so the HTML and text parts agree.

Every field is one line, bounded and inert (`slots`): feed text is data, never a slot. Pictures
get the size they are shown at, in whole pixels, with the shape the feed declared (or the
configured one), so every client reserves the right room before the picture arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, tzinfo

from newsletter.clean import clean_link, shorten
from newsletter.config.render import RenderConfig
from newsletter.models import LINK_MAX, Article, Image
from newsletter.render.lines import headline, reading_minutes, short_date
from newsletter.slots import inert, inert_url
from newsletter.templating import clean

SUMMARY_MAX = 320
HIGHLIGHTS_MAX, HIGHLIGHT_MAX = 4, 200
SOURCE_MAX = 100
LEAD_WIDTH, LEAD_MAX_HEIGHT = 536, 400  # the 600 px column less its 32 px padding each side
THUMB_WIDTH, THUMB_MAX_HEIGHT = 96, 96
LONG_READ_MINUTES = 2


@dataclass(frozen=True)
class ImageView:
    url: str
    width: int  # as shown, in CSS pixels
    height: int
    alt: str


@dataclass(frozen=True)
class ArticleView:
    title: str
    url: str  # empty when the feed gave no usable http(s) link: the title is shown unlinked
    meta: str  # "27 Nov 2026, 14:05 GMT · 3 min read · Reuters"; no time if the feed had none
    summary: str
    highlights: tuple[str, ...]
    image: ImageView | None  # the lead picture (top story) or a thumbnail; None: no picture
    words: int  # what this story adds to the reading time


def article_view(
    article: Article,
    zone: tzinfo,
    config: RenderConfig,
    *,
    lead: bool,
    with_source: bool,
) -> ArticleView:
    """The view of one article: the top story (`lead`) gets a wide picture, others a thumbnail
    when `config.thumbnails`. The source is named only when the issue has several."""
    source = shorten(clean(article.source), SOURCE_MAX) if with_source else ""
    minutes = reading_minutes(article.words)
    # Only a long read is worth a warning; "1 min read" on every brief item is noise.
    long_read = f"{minutes} min read" if minutes >= LONG_READ_MINUTES else ""
    link = clean_link(article.link)
    highlights = tuple(
        inert(h) for h in (shorten(clean(h), HIGHLIGHT_MAX) for h in article.highlights) if h
    )[:HIGHLIGHTS_MAX]
    summary = inert(shorten(clean(article.summary_text), SUMMARY_MAX))
    title = inert(headline(article.title))
    image = None
    if article.image is not None and (lead or config.thumbnails):
        box = (LEAD_WIDTH, LEAD_MAX_HEIGHT) if lead else (THUMB_WIDTH, THUMB_MAX_HEIGHT)
        image = image_view(article.image, config, *box)
    shown = " ".join((title, *highlights)) if highlights else f"{title} {summary}"
    return ArticleView(
        title=title,
        url=inert_url(link) if len(link) <= LINK_MAX else "",
        meta=inert(" · ".join(p for p in (when(article, zone), long_read, source) if p)),
        summary=summary,
        highlights=highlights,
        image=image,
        words=len(shown.split()),
    )


def when(article: Article, zone: tzinfo) -> str:
    """'27 Nov 2026, 21:40 GMT' in the issue's zone, named, so nobody guesses whose 21:40.

    An entry the feed did not date gets nothing: the time we fetched it is not news.
    """
    if not article.dated_by_feed:
        return ""
    published = article.published
    if published.tzinfo is None:  # feeds without an offset are read as UTC upstream
        published = published.replace(tzinfo=UTC)
    local = published.astimezone(zone)
    name = local.tzname() or ""
    return f"{short_date(local)}, {local:%H:%M}{' ' + name if name else ''}"


def image_view(image: Image, config: RenderConfig, box_width: int, box_height: int) -> ImageView:
    """The picture scaled to fit the box, its shape kept; a feed without a size gets the
    configured shape. Alt text is one inert line."""
    width, height = image.width, image.height
    if not (width and height):
        width, height = config.image_width, config.image_height
    scale = min(box_width / width, box_height / height)
    shown_width = max(1, round(width * scale))
    shown_height = max(1, round(height * scale))
    return ImageView(inert_url(image.url), shown_width, shown_height, inert(clean(image.alt)))
