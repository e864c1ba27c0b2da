"""Turn the day's articles into one digest: inlined HTML, a plain-text twin, subject, preheader.

The digest is rendered once per issue and is the same for every reader; the personal pieces
(`models.PERSONAL_FIELDS`) stay as placeholders that compose substitutes per recipient. Both
parts are checked here for what the law and the mailbox providers insist on (unsubscribe link,
postal address, Gmail's ~102 KB clipping limit), so a broken template fails the run before
anything is sent instead of reaching thousands of inboxes.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path

import jinja2
import premailer

from .clean import shorten
from .config import Settings
from .errors import RenderError
from .models import EMAIL_PLACEHOLDER, UNSUBSCRIBE_URL_PLACEHOLDER, Article, Digest

HTML_TEMPLATE = "digest.html"
TEXT_TEMPLATE = "digest.txt"
SHARED_TEMPLATE = "_shared.j2"
CSS_FILE = "digest.css"
MAX_HTML_BYTES = 100_000  # Gmail clips the message (and its footer) at roughly 102 KB
SUBJECT_MAX = 118
PREHEADER_MIN, PREHEADER_MAX = 40, 130
SUMMARY_MAX = 320
TEXT_WIDTH = 78
# When wrapping text, count each placeholder as wide as the value that will replace it, so the
# lines stay within TEXT_WIDTH after substitution too (an over-long one goes on its own line).
_RESERVED_WIDTH = {EMAIL_PLACEHOLDER: 40, UNSUBSCRIBE_URL_PLACEHOLDER: 90}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class ArticleView:
    """The fields both templates show for an article, prepared once so HTML and text agree."""

    title: str
    url: str  # empty when the feed gave no http(s) link: the title is then shown unlinked
    meta: str  # "27 Nov 2026, 14:05 · Reuters", local time; no time if the feed had no date
    summary: str
    highlights: tuple[str, ...]


class DigestRenderer:
    """Renders digests with templates compiled once per process and CSS read once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        loader = jinja2.FileSystemLoader(settings.templates_dir)
        self._env = jinja2.Environment(
            loader=loader,
            autoescape=jinja2.select_autoescape(["html", "htm", "xml"], default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._env.filters["fill"] = fill
        self._html = self._template(HTML_TEMPLATE)
        self._text = self._template(TEXT_TEMPLATE)
        self._template(SHARED_TEMPLATE)  # compiled and cached now, so a typo fails at start-up
        try:
            self._css = (Path(settings.templates_dir) / CSS_FILE).read_text(encoding="utf-8")
        except OSError as exc:
            raise RenderError(f"cannot read {CSS_FILE} in {settings.templates_dir}: {exc}") from exc

    def render(self, articles: Sequence[Article], issue_date: date) -> Digest:
        """Render one issue; articles appear in the order given (the pipeline sorts them)."""
        if not articles:
            raise RenderError("a digest needs at least one article")
        lead = preheader(articles)
        context = self._context(articles, issue_date, lead)
        html = self._inline(self._render(self._html, context))
        text = self._render(self._text, context)
        self._check(html, text)
        return Digest(
            subject=subject_line(self._settings.name, issue_date, articles[0].title),
            preheader=lead,
            html=html,
            text=text,
            article_ids=tuple(article.id for article in articles),
        )

    def _template(self, name: str) -> jinja2.Template:
        try:
            return self._env.get_template(name)
        except jinja2.TemplateError as exc:
            raise RenderError(_describe(name, exc)) from exc

    def _render(self, template: jinja2.Template, context: dict[str, object]) -> str:
        try:
            return template.render(context)
        except jinja2.TemplateError as exc:
            raise RenderError(_describe(template.name or "?", exc)) from exc

    def _context(
        self, articles: Sequence[Article], issue_date: date, lead: str
    ) -> dict[str, object]:
        s = self._settings
        views = [self._view(article) for article in articles]
        return {
            "name": s.name,
            "long_date": long_date(issue_date),
            "preheader": lead,
            "archive_url": f"{s.base_url}/archive/{issue_date.isoformat()}",
            "base_url": s.base_url,
            "postal_address": s.postal_address,
            "email": EMAIL_PLACEHOLDER,
            "unsubscribe_url": UNSUBSCRIBE_URL_PLACEHOLDER,
            "featured": views[0],
            "others": views[1:],
        }

    def _view(self, article: Article) -> ArticleView:
        published = article.published
        if published.tzinfo is None:  # feeds without an offset are read as UTC upstream
            published = published.replace(tzinfo=UTC)
        local = published.astimezone(self._settings.timezone)
        when = f"{short_date(local)}, {local:%H:%M}" if article.dated_by_feed else ""
        return ArticleView(
            title=clean(article.title),
            url=article.link if article.link.startswith(("https://", "http://")) else "",
            meta=" · ".join(part for part in (when, clean(article.source)) if part),
            summary=shorten(clean(article.summary_text), SUMMARY_MAX),
            highlights=tuple(clean(h) for h in article.highlights if clean(h)),
        )

    def _inline(self, html: str) -> str:
        """Move the CSS into style attributes, once per issue; never touches the network.

        Rules that cannot be inlined (the @media block) stay in a <style> element in <head>;
        the rest of the stylesheet is not repeated there, which keeps the message small.
        """
        inliner = premailer.Premailer(
            base_url=None,
            allow_network=False,
            allow_loading_external_files=False,
            css_text=self._css,
            disable_validation=True,
            keep_style_tags=False,
            strip_important=False,
            cssutils_logging_level=logging.CRITICAL,
        )
        try:
            return str(inliner.transform(html, pretty_print=False))
        except Exception as exc:  # premailer, cssutils and lxml raise unrelated types
            raise RenderError(f"inlining CSS failed: {exc}") from exc

    def _check(self, html: str, text: str) -> None:
        """Refuse a digest that would be clipped or that lacks what every message must carry."""
        size = len(html.encode("utf-8"))
        if size >= MAX_HTML_BYTES:
            raise RenderError(f"HTML is {size} bytes; Gmail clips at about 102 KB")
        address = self._settings.postal_address
        # lxml writes text with only &, < and > escaped, whatever autoescape did before
        escaped = address.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        _require("HTML", html, escaped)
        _require("text", text, address)


def _require(part: str, body: str, postal_address: str) -> None:
    if UNSUBSCRIBE_URL_PLACEHOLDER not in body:
        raise RenderError(f"{part} part lacks the unsubscribe link placeholder")
    if EMAIL_PLACEHOLDER not in body:
        raise RenderError(f"{part} part lacks the reader's address placeholder")
    if postal_address not in body:
        raise RenderError(f"{part} part lacks the postal address")


def _describe(name: str, exc: jinja2.TemplateError) -> str:
    where = getattr(exc, "name", None) or name
    line = getattr(exc, "lineno", None)
    return f"template {where}{f' line {line}' if line else ''}: {exc.message or exc}"


def clean(value: str) -> str:
    """One line of printable text: feed titles may carry CR/LF, tabs or control characters."""
    printable = "".join(ch for ch in value if ch.isprintable() or ch.isspace())
    return " ".join(printable.split())


def subject_line(name: str, issue_date: date, headline: str) -> str:
    """'REE Daily, 28 Nov 2026: <headline>', one line and short enough for inbox lists."""
    prefix = f"{clean(name)}, {short_date(issue_date)}"
    head = shorten(clean(headline), SUBJECT_MAX - len(prefix) - 2)
    return f"{prefix}: {head}" if head else prefix


def preheader(articles: Sequence[Article]) -> str:
    """The inbox preview line: the lead headline and how much more there is, 40-130 chars."""
    rest = len(articles) - 1
    tail = f" and {rest} more rare-earth {'story' if rest == 1 else 'stories'}" if rest else ""
    budget = PREHEADER_MAX - len("Today: ") - len(tail)
    text = f"Today: {shorten(clean(articles[0].title), budget)}{tail}"
    if len(text) < PREHEADER_MIN:
        text += " | the day's rare-earth market news"
    return text


def short_date(day: date) -> str:
    """'28 Nov 2026' without strftime, whose month names follow the process locale."""
    return f"{day.day} {_MONTHS[day.month - 1][:3]} {day.year}"


def long_date(day: date) -> str:
    """'Saturday, 28 November 2026' for the masthead."""
    return f"{_WEEKDAYS[day.weekday()]}, {day.day} {_MONTHS[day.month - 1]} {day.year}"


def fill(value: object, first: str = "", rest: str | None = None, width: int = TEXT_WIDTH) -> str:
    """Wrap a paragraph for the text part without ever breaking a URL or a placeholder."""
    text = clean(str(value))
    for placeholder, reserved in _RESERVED_WIDTH.items():
        text = text.replace(placeholder, placeholder + "\0" * (reserved - len(placeholder)))
    wrapped = textwrap.fill(
        text,
        width=width,
        initial_indent=first,
        subsequent_indent=" " * len(first) if rest is None else rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return wrapped.replace("\0", "")
