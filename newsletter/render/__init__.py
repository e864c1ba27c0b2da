"""Turn the day's articles into one digest: inlined HTML, a plain-text twin, subject, preheader.

The digest is rendered once per issue and is the same for every reader; the personal pieces
(`models.PERSONAL_FIELDS`) stay as placeholders that compose substitutes per recipient, and
`slots` makes sure nothing from a feed can become one. Both parts are checked here for what the
law and the mailbox providers insist on (unsubscribe link, postal address), so a broken
template fails the run before anything is sent instead of reaching thousands of inboxes.

Gmail clips a message at about 102 KB, footer and unsubscribe link included. A day whose
digest would be larger is never refused: articles are left out from the end (they are not
marked sent, so the next issue offers them again) and a last line points to the site.

The rooms: `views` (one article as both parts show it), `sections` (grouping, contents),
`lines` (subject, preheader, dates), `notes` (the editor's note), `inline` (CSS for mail).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from markupsafe import Markup

from newsletter.compose import qp_encode_line
from newsletter.config.settings import Settings
from newsletter.errors import RenderError
from newsletter.models import (
    EMAIL_PLACEHOLDER,
    UNSUBSCRIBE_URL_PLACEHOLDER,
    Article,
    Digest,
    Frequency,
)
from newsletter.render.inline import inline_css, read_stylesheet
from newsletter.render.lines import (
    headline,
    long_date,
    preheader,
    reading_minutes,
    short_date,
    subject_line,
)
from newsletter.render.notes import Note, load_note
from newsletter.render.sections import contents, group
from newsletter.render.views import article_view
from newsletter.slots import Slots
from newsletter.templating import render, template

__all__ = [
    "MAX_HTML_BYTES",
    "MAX_SENT_BYTES",
    "DigestRenderer",
    "fits",
    "headline",
    "long_date",
    "preheader",
    "short_date",
    "subject_line",
]

HTML_TEMPLATE = "digest.html"
TEXT_TEMPLATE = "digest.txt"
SHARED_TEMPLATE = "_shared.j2"
CSS_FILE = "digest.css"
MAX_HTML_BYTES = 100_000  # Gmail clips the message (and its footer) at roughly 102 KB
MAX_SENT_BYTES = 102_000  # the same part quoted-printable, as it travels: non-ASCII counts 3x
PLAIN_SECTION = "More rare-earth news (%d)"  # the one list when no sections are configured


@dataclass(frozen=True)
class MoreOnSite:
    """The last line of a digest that had to leave articles out: how many, and where."""

    count: int
    url: str
    label: str  # the site's host name, as a reader would type it


@dataclass(frozen=True)
class _Stream:
    """What differs between the daily issue and the weekly round-up in the same templates."""

    name: str  # the masthead and the subject
    archive_url: str  # "View in your browser": the issue's own page in the web archive
    period: str  # "day's" or "week's", as in "brings you the day's rare-earth news"


class DigestRenderer:
    """Renders digests with templates compiled once per process and CSS read once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._html = template(settings.templates_dir, HTML_TEMPLATE)
        self._text = template(settings.templates_dir, TEXT_TEMPLATE)
        template(settings.templates_dir, SHARED_TEMPLATE)  # compiled now: a typo fails at start
        self._css = read_stylesheet(settings.templates_dir, CSS_FILE)

    def render(
        self,
        articles: Sequence[Article],
        issue_date: date,
        number: int | None = None,
        name: str | None = None,
        kind: Frequency = Frequency.DAILY,
    ) -> Digest:
        """Render one issue; articles appear in the order given (the pipeline sorts them).

        `number` is the issue's number (issues sent before it, plus one), shown in the
        masthead when given. `Digest.article_ids` names the articles the digest shows: all of
        them, or the first ones that fit under the size limit.
        """
        if not articles:
            raise RenderError("a digest needs at least one article")
        note = load_note(self._settings.render.notes_dir, issue_date)
        weekly = kind is Frequency.WEEKLY
        stream = _Stream(
            name=name or self._settings.name,  # the weekly round-up has a name of its own
            archive_url=f"{self._settings.base_url}/archive/{'weekly/' if weekly else ''}"
            f"{issue_date.isoformat()}",
            period="week's" if weekly else "day's",
        )
        shown, (html, text) = self._fit(articles, issue_date, number, note, stream)
        return Digest(
            subject=subject_line(stream.name, issue_date, articles[0].title),
            preheader=preheader(articles[:shown], stream.period),
            html=html,
            text=text,
            article_ids=tuple(article.id for article in articles[:shown]),
        )

    def _fit(
        self,
        articles: Sequence[Article],
        day: date,
        number: int | None,
        note: Note | None,
        stream: _Stream,
    ) -> tuple[int, tuple[str, str]]:
        """The most articles (from the start) whose digest stays under MAX_HTML_BYTES.

        Size grows with the count, so a binary search needs about log2(n) renders, and only
        on a day that does not fit at once.
        """
        count = len(articles)
        whole = self._attempt(articles, count, day, number, note, stream)
        if whole is not None:
            return count, whole
        best: tuple[int, tuple[str, str]] | None = None
        low, high = 1, count - 1
        while low <= high:
            middle = (low + high) // 2
            parts = self._attempt(articles, middle, day, number, note, stream)
            if parts is None:
                high = middle - 1
            else:
                best, low = (middle, parts), middle + 1
        if best is None:
            raise RenderError(f"even one article makes the HTML {MAX_HTML_BYTES:,} bytes or more")
        return best

    def _attempt(
        self,
        articles: Sequence[Article],
        shown: int,
        day: date,
        number: int | None,
        note: Note | None,
        stream: _Stream,
    ) -> tuple[str, str] | None:
        """Both parts with the first `shown` articles, or None if the HTML is too big."""
        more = None
        if shown < len(articles):
            site = self._settings.site_url
            more = MoreOnSite(len(articles) - shown, site, _host(site))
        slots = Slots()
        context = self._context(articles[:shown], day, number, note, more, slots, stream)
        html = slots.seal(inline_css(render(self._html, context), self._css.inline))
        if not fits(html):
            return None
        text = slots.seal(render(self._text, context))
        self._check(html, text)
        return html, text

    def _context(
        self,
        articles: Sequence[Article],
        issue_date: date,
        number: int | None,
        note: Note | None,
        more: MoreOnSite | None,
        slots: Slots,
        stream: _Stream,
    ) -> dict[str, object]:
        """`stream`: daily or weekly, which the issue belongs to."""
        s, r = self._settings, self._settings.render
        several = len({article.source for article in articles}) > 1
        views = [
            article_view(a, s.timezone, r, lead=n == 0, with_source=several)
            for n, a in enumerate(articles)
        ]
        sections = group(articles[1:], views[1:], r.sections, r.other_title, PLAIN_SECTION)
        words = sum(view.words for view in views) + (note.words if note else 0)
        return {
            "name": stream.name,
            "period": stream.period,
            "long_date": long_date(issue_date),
            "number": number,
            "minutes": reading_minutes(words),
            "preheader": preheader(articles, stream.period),
            "head_css": Markup(self._css.head),
            "archive_url": stream.archive_url,
            "subscribe_url": f"{s.base_url}/subscribe",
            "site_url": s.site_url,
            "site_label": _host(s.site_url),
            "postal_address": s.postal_address,
            "privacy_url": r.privacy_url,
            "contact": r.contact,
            "reply_to": s.reply_to or "",
            "logo": r.logo,
            "email": slots.email,
            "unsubscribe_url": slots.unsubscribe_url,
            # With [weekly] off the preferences page has no choice to offer: no link to it.
            "preferences_url": slots.preferences_url if s.weekly.enabled else "",
            "note_html": Markup(note.html) if note else "",
            "note_text": note.text if note else "",
            "contents": contents(views[0], sections),
            "featured": views[0],
            "sections": sections,
            "more": more,
        }

    def _check(self, html: str, text: str) -> None:
        """Refuse a digest that lacks what every message must carry."""
        address = self._settings.postal_address
        # lxml writes text with only &, < and > escaped, whatever autoescape did before
        escaped = address.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        _require("HTML", html, escaped)
        _require("text", text, address)


def fits(html: str) -> bool:
    """Under Gmail's clipping limit, both as HTML and as the encoded part that is sent."""
    if len(html.encode("utf-8")) >= MAX_HTML_BYTES:
        return False
    return sum(len(qp_encode_line(line)) for line in html.splitlines()) < MAX_SENT_BYTES


def _require(part: str, body: str, postal_address: str) -> None:
    if UNSUBSCRIBE_URL_PLACEHOLDER not in body:
        raise RenderError(f"{part} part lacks the unsubscribe link placeholder")
    if EMAIL_PLACEHOLDER not in body:
        raise RenderError(f"{part} part lacks the reader's address placeholder")
    if postal_address not in body:
        raise RenderError(f"{part} part lacks the postal address")


def _host(url: str) -> str:
    """The address as a reader would type it: host and path, without scheme or end slash."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}{parts.path}".rstrip("/") or url
