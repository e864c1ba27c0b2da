"""The digest and the confirmation mail as a reader's phone and desktop show them.

Headless Chromium (Debian's, no download) renders the day's digest of the sample feed with an
editor's note, and the confirmation mail: light and dark colour schemes, 375 and 600 px wide,
and with every <style> element removed (as Gmail does for some accounts and many webmail
clients do), and asserts layout facts: no horizontal scrolling on a phone, every picture sized
before it loads, the headings there, dark backgrounds in dark mode. Pictures are answered by
the test with generated PNGs of the declared size; any other request fails the test, so the
digest can reach nothing but the site's own https pictures. Screenshots go to
`tests/test-artifacts/` (gitignored) for a person to look at.
"""

from __future__ import annotations

import asyncio
import re
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route

from newsletter.compose import personalize
from newsletter.config import Settings, load_settings
from newsletter.confirm_mail import ConfirmationMailer
from newsletter.feeds import collect
from newsletter.models import Recipient
from newsletter.render import DigestRenderer
from tests.support.browser import chromium
from tests.support.config import ROOT

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
DAY = date(2026, 11, 28)
SITE = "https://ree-news.example.com/"
READER = Recipient(
    subscriber_id=7,
    email="reader@example.org",
    unsubscribe_url="https://ree-news.example.com/newsletter/u/TOKEN.signature",
    preferences_url="https://ree-news.example.com/newsletter/preferences/TOKEN.signature",
)
NOTE = """Good morning. **Two things** to watch today: the December licence round in China,
and whether NdPr holds its gains into the new year.

Write to us at [the newsroom](https://ree-news.example.com/contact/) with tips.
"""

pytestmark = pytest.mark.slow  # a browser: `make test-fast` skips it


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium()


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    notes = tmp_path_factory.mktemp("notes")
    (notes / f"{DAY.isoformat()}.md").write_text(NOTE, encoding="utf-8")
    loaded = load_settings(ROOT / "config.toml", environ={})
    return replace(loaded, render=replace(loaded.render, notes_dir=notes))


@pytest.fixture(scope="module")
def digest_html(settings: Settings) -> str:
    now = datetime(2026, 11, 28, 7, 5, tzinfo=UTC)
    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API owns this thread's loop
        batch = thread.submit(asyncio.run, collect(settings.feeds, settings.fetch, {}, now))
        articles = batch.result().articles
    digest = DigestRenderer(settings).render(articles, DAY, number=128)
    return personalize(digest.html, READER, escape=True)


@pytest.fixture(scope="module")
def confirm_html(settings: Settings) -> str:
    link = "https://ree-news.example.com/newsletter/confirm/" + "eyJzIjoxMjM0NX0." * 5 + "sig"
    now = datetime(2026, 11, 28, tzinfo=UTC)
    mail = ConfirmationMailer(settings).build(READER.email, link, now)
    body = message_from_bytes(mail.data, policy=policy.default).get_body(("html",))
    assert body is not None
    return str(body.get_content())


def png(width: int, height: int, seed: int) -> bytes:
    """A PNG of that size in one colour, made here: the test never fetches a picture."""
    colour = bytes(((seed * 53) % 160 + 60, (seed * 97) % 120 + 80, (seed * 29) % 100 + 110))
    row = b"\x00" + colour * width

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(row * height, 1)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


class Pictures:
    """Answers the site's https pictures with PNGs of the size in their file name; refuses the
    rest and remembers it, so a request anywhere else fails the test."""

    def __init__(self) -> None:
        self.served: list[str] = []
        self.refused: list[str] = []

    def __call__(self, route: Route) -> None:
        url = route.request.url
        if url.startswith("data:") or url == "about:blank":
            route.continue_()
            return
        size = re.search(r"-(\d+)x(\d+)\.(?:jpe?g|png)$", url)
        if not url.startswith(SITE) or route.request.resource_type != "image":
            self.refused.append(url)
            route.abort()
            return
        width, height = (int(size[1]), int(size[2])) if size else (1200, 675)
        self.served.append(url)
        route.fulfill(status=200, content_type="image/png", body=png(width, height, len(url)))


def show(browser: Browser, html: str, width: int, *, dark: bool = False, bare: bool = False
         ) -> tuple[Page, Pictures]:  # fmt: skip
    """The message in a page of that width; `bare` removes every <style> element first."""
    page = browser.new_page(
        viewport={"width": width, "height": 900}, color_scheme="dark" if dark else "light"
    )
    pictures = Pictures()
    page.route("**/*", pictures)
    page.set_content(html, wait_until="load")
    if bare:
        page.evaluate("document.querySelectorAll('style').forEach(s => s.remove())")
        assert page.evaluate("document.querySelectorAll('style').length") == 0
    return page, pictures


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def scroll_width(page: Page) -> int:
    return int(page.evaluate("document.scrollingElement.scrollWidth"))


def luminance(page: Page, selector: str, prop: str) -> float:
    """Relative luminance (0 black .. 1 white) of a computed colour of the first match."""
    value = page.evaluate(f"getComputedStyle(document.querySelector({selector!r})).{prop}")
    red, green, blue = (int(n) for n in re.findall(r"\d+", value)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def check_pictures(page: Page, width: int) -> int:
    """Every picture has width and height attributes, loaded, and fits the page."""
    facts = page.evaluate(
        """[...document.images].map(i => ({src: i.src, w: i.getAttribute('width'),
             h: i.getAttribute('height'), alt: i.getAttribute('alt'), loaded: i.naturalWidth,
             right: i.getBoundingClientRect().right}))"""
    )
    for image in facts:
        assert image["w"] and image["w"].isdigit(), image
        assert image["h"] and image["h"].isdigit(), image
        assert image["alt"], image
        assert image["src"].startswith(SITE), image
        assert image["loaded"] > 0, image
        assert image["right"] <= width, image
    return len(facts)


@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize("mode", ["light", "dark", "bare"])
def test_digest_layout(browser: Browser, digest_html: str, width: int, mode: str) -> None:
    page, pictures = show(browser, digest_html, width, dark=mode == "dark", bare=mode == "bare")
    try:
        assert scroll_width(page) <= width  # no sideways scrolling, with or without <style>
        assert check_pictures(page, width) == 8  # a lead picture and seven thumbnails
        assert not pictures.refused
        top = "Korean carmaker signs five-year offtake for magnet-grade NdPr"
        assert page.inner_text("h1") == top
        sections = page.eval_on_selector_all("h2", "els => els.map(e => e.innerText.trim())")
        assert [s.upper() for s in sections] == [
            "IN THIS ISSUE", "PRICES AND TRADE", "POLICY", "MAGNETS AND SUPPLY CHAIN",
            "MINING AND PROCESSING",
        ]  # fmt: skip
        assert page.locator("h3").count() == 17
        assert "No. 128" in (page.text_content(".tagline") or "")
        assert "Two things" in page.inner_text("body")
        card = luminance(page, ".card", "backgroundColor")
        title = luminance(page, ".story-title a", "color")
        if mode == "dark":
            assert card < 0.2 and title > 0.8
        else:
            assert card > 0.95 and title < 0.2
        lead = page.eval_on_selector(".lead-image", "i => i.getBoundingClientRect().width")
        assert lead <= width - 16  # fluid: narrower than the page on a phone
        shot(page, f"digest-{mode}-{width}")
    finally:
        page.close()


@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize("mode", ["light", "dark", "bare"])
def test_confirmation_mail_layout(
    browser: Browser, confirm_html: str, width: int, mode: str
) -> None:
    page, pictures = show(browser, confirm_html, width, dark=mode == "dark", bare=mode == "bare")
    try:
        assert scroll_width(page) <= width
        assert page.inner_text("h1") == "Please confirm your subscription"
        assert page.locator("a.confirm-link").count() == 1
        button = page.eval_on_selector("td.button a", "a => a.getBoundingClientRect().right")
        assert button <= width
        card = luminance(page, ".card", "backgroundColor")
        assert (card < 0.2) if mode == "dark" else (card > 0.95)
        assert not pictures.refused and not pictures.served
        shot(page, f"confirm-{mode}-{width}")
    finally:
        page.close()
