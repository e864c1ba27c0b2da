"""The stories after the top one, grouped the way the site files them, and the list of contents.

A story belongs to the configured section of its first category that any section claims
(WordPress lists an entry's categories before its tags, the main category first); stories that
no section claims come last, under `other_title`. Sections keep the configured order, stories
keep the issue's order within a section, and empty sections are left out. With no sections
configured the stories stay one list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.config.render import SectionConfig
from newsletter.models import Article
from newsletter.render.views import ArticleView

CONTENTS_MAX = 6  # headlines in "In this issue"; the rest are counted


@dataclass(frozen=True)
class Section:
    title: str
    stories: tuple[ArticleView, ...]


@dataclass(frozen=True)
class Contents:
    """ "In this issue": the first headlines in reading order, and how many more follow."""

    headlines: tuple[str, ...]
    more: int


def group(
    articles: Sequence[Article],
    views: Sequence[ArticleView],
    configured: Sequence[SectionConfig],
    other_title: str,
    plain_title: str,
) -> list[Section]:
    """The sections of the stories `views` shows for `articles` (same order, same length)."""
    if not views:
        return []
    if not configured:
        return [Section(plain_title % len(views), tuple(views))]
    owner = {
        name.casefold(): index for index, section in enumerate(configured)
        for name in section.categories
    }  # fmt: skip
    buckets: list[list[ArticleView]] = [[] for _ in range(len(configured) + 1)]
    for article, view in zip(articles, views, strict=True):
        found = (owner.get(c.casefold()) for c in article.categories)
        index = next((i for i in found if i is not None), len(configured))
        buckets[index].append(view)
    titles = [section.title for section in configured] + [other_title]
    return [Section(t, tuple(b)) for t, b in zip(titles, buckets, strict=True) if b]


def contents(featured: ArticleView, sections: Sequence[Section]) -> Contents:
    """The top headline, then each section's in order, at most CONTENTS_MAX of them."""
    everything = [featured.title, *(story.title for s in sections for story in s.stories)]
    return Contents(tuple(everything[:CONTENTS_MAX]), max(len(everything) - CONTENTS_MAX, 0))
