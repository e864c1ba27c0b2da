"""The one-line texts of an issue: headline, subject, preheader, dates, reading time.

The subject and the inbox preview line are what a reader sees before opening; they must say
different things (a preview that repeats the subject wastes the second line of the inbox), so
the subject names the top story and the preview names the next ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

from newsletter.clean import shorten
from newsletter.models import TITLE_MAX, Article
from newsletter.slots import inert
from newsletter.templating import clean

SUBJECT_MAX = 118
PREHEADER_MIN, PREHEADER_MAX = 40, 130
WORDS_PER_MINUTE = 230  # a common silent-reading rate for non-fiction
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_PADDING = " | the %s rare-earth market news"  # the day's, or the week's in a round-up


def headline(title: str) -> str:
    """A title as every part shows it: one line, at most TITLE_MAX characters."""
    return shorten(clean(title), TITLE_MAX)


def subject_line(name: str, issue_date: date, title: str) -> str:
    """'REE Daily, 28 Nov 2026: <headline>', one line and short enough for inbox lists.

    The subject shows the title literally ("History of the <blink> tag"): a header is text.
    """
    prefix = f"{clean(name)}, {short_date(issue_date)}"
    head = shorten(headline(title), SUBJECT_MAX - len(prefix) - 2)
    return f"{prefix}: {head}" if head else prefix


def preheader(articles: Sequence[Article], period: str = "day's") -> str:
    """The inbox preview line, 40-130 characters, never the subject's headline again.

    With more stories it names the next two headlines and how many follow; a one-story issue
    shows the start of that story's summary instead.
    """
    if len(articles) == 1:
        text = inert(shorten(clean(articles[0].summary_text), PREHEADER_MAX))
    else:
        rest = len(articles) - 3
        heads = [headline(article.title) for article in articles[1:3]]
        room = PREHEADER_MAX - len("Also: ") - 3 * (len(heads) - 1)
        tail = f" and {rest} more" if rest > 0 else ""
        if sum(map(len, heads)) + len(tail) > room:
            tail = ""  # two whole headlines say more than a count
        text = inert(f"Also: {' · '.join(_share(heads, room - len(tail)))}{tail}")
    if len(text) < PREHEADER_MIN:
        text += _PADDING % period
    return text[:PREHEADER_MAX]


def _share(heads: list[str], room: int) -> list[str]:
    """One or two headlines in `room` characters: a short one stays whole, a long one is cut."""
    if sum(map(len, heads)) <= room:
        return heads
    if len(heads) == 1:
        return [shorten(heads[0], room)]
    first, second = heads
    half = room // 2
    if len(first) <= half:
        return [first, shorten(second, room - len(first))]
    if len(second) <= half:
        return [shorten(first, room - len(second)), second]
    return [shorten(first, half), shorten(second, room - half)]


def reading_minutes(words: int) -> int:
    """Whole minutes at WORDS_PER_MINUTE, at least one."""
    return max(1, math.ceil(words / WORDS_PER_MINUTE))


def short_date(day: date) -> str:
    """'28 Nov 2026' without strftime, whose month names follow the process locale."""
    return f"{day.day} {_MONTHS[day.month - 1][:3]} {day.year}"


def long_date(day: date) -> str:
    """'Saturday, 28 November 2026' for the masthead."""
    return f"{_WEEKDAYS[day.weekday()]}, {day.day} {_MONTHS[day.month - 1]} {day.year}"
