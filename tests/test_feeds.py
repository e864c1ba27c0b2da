"""Fetching and parsing feeds against a real HTTP server on 127.0.0.1 (tests/feedserver.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.clean import READ_MORE
from newsletter.config import FeedConfig, FetchConfig
from newsletter.feeds import collect
from newsletter.models import Article, FeedBatch, FeedReport, FeedState
from tests.feedserver import FeedServer

DATA = Path(__file__).parent / "data" / "feeds"
SAMPLE = Path(__file__).parent.parent / "feeds" / "sample-ree-news.xml"
NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
FETCH = FetchConfig(timeout=5.0, max_bytes=1_000_000, user_agent="ree-test/1.0 (+tests)")
LAST_MODIFIED = "Fri, 27 Nov 2026 20:00:00 GMT"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


def run(
    feeds: Sequence[FeedConfig],
    states: Mapping[str, FeedState] | None = None,
    fetch: FetchConfig = FETCH,
) -> FeedBatch:
    return asyncio.run(collect(feeds, fetch, states or {}, NOW))


def feed(name: str, url: str) -> FeedConfig:
    return FeedConfig(name=name, url=url)


def report(batch: FeedBatch, name: str) -> FeedReport:
    return next(r for r in batch.reports if r.name == name)


def by_title(batch: FeedBatch, fragment: str) -> Article:
    return next(a for a in batch.articles if fragment in a.title)


def states_of(batch: FeedBatch) -> dict[str, FeedState]:
    return {state.url: state for state in batch.states}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_rss_and_atom_feeds_become_clean_articles(server: FeedServer) -> None:
    rss = server.add_file("/rss.xml", DATA / "good-rss.xml")
    atom = server.add_file("/atom.xml", DATA / "good-atom.xml", content_type="application/atom+xml")
    batch = run([feed("Magnets", rss), feed("Letters", atom)])

    assert [r.ok for r in batch.reports] == [True, True]
    assert [r.articles for r in batch.reports] == [3, 2]
    assert len(batch.articles) == 5
    dates = [a.published for a in batch.articles]
    assert dates == sorted(dates, reverse=True)
    assert all(d.tzinfo is not None and d.utcoffset() == UTC.utcoffset(None) for d in dates)

    gadolinium = by_title(batch, "Gadolinium")
    assert gadolinium.id == "magnets-102"
    assert gadolinium.source == "Magnets"
    assert gadolinium.author == "Ben Carter"
    assert gadolinium.published == datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    assert gadolinium.summary_html == "<p>Hospitals keep buying.</p>"
    assert "<ul>" in gadolinium.content_html
    assert gadolinium.highlights == ("Orders steady", "Prices firm")
    assert gadolinium.dated_by_feed

    samarium = by_title(batch, "Samarium")
    assert "wp:" not in samarium.content_html
    assert samarium.content_html == "<p>Samarium oxide was unchanged for a fourth week.</p>"

    cerium = by_title(batch, "Cerium")
    assert cerium.title == "Cerium surplus grows"
    assert cerium.author == "Li Wei"
    assert cerium.link == "https://lanthanides.example.net/cerium-surplus"
    assert cerium.published == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert cerium.content_html.startswith("<p>Cerium stocks keep rising at separators.</p>")
    assert cerium.summary_text == "Cerium stocks keep rising."

    lanthanum = by_title(batch, "Lanthanum")
    plain = "<p>Refiners ordered lanthanum early. Fluid catalytic cracking uses it &amp; more.</p>"
    assert (lanthanum.content_html, lanthanum.summary_html) == (plain, plain)
    assert lanthanum.published == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_request_carries_user_agent_and_feeds_are_fetched_concurrently(
    server: FeedServer,
) -> None:
    body = (DATA / "good-rss.xml").read_bytes()
    urls = [server.add(f"/slow{n}.xml", body, delay=0.6) for n in range(3)]
    batch = run([feed(f"Slow {n}", url) for n, url in enumerate(urls)])
    assert all(r.ok for r in batch.reports)
    arrivals = [request.at for request in server.requests]
    assert max(arrivals) - min(arrivals) < 0.6  # one after another would take 0.6 s each
    assert server.hits("/slow0.xml")[0].headers["user-agent"] == FETCH.user_agent


def test_conditional_get_round_trip(server: FeedServer) -> None:
    url = server.add(
        "/feed.xml",
        (DATA / "good-rss.xml").read_bytes(),
        etag='"v1"',
        last_modified=LAST_MODIFIED,
    )
    first = run([feed("Magnets", url)])
    state = states_of(first)[url]
    assert (state.etag, state.last_modified) == ('"v1"', LAST_MODIFIED)
    assert len(first.articles) == 3

    second = run([feed("Magnets", url)], states_of(first))
    assert second.articles == ()
    assert report(second, "Magnets") == FeedReport(
        "Magnets", url, ok=True, articles=0, not_modified=True
    )
    assert states_of(second)[url] == state
    sent = server.hits("/feed.xml")[1].headers
    assert sent["if-none-match"] == '"v1"'
    assert sent["if-modified-since"] == LAST_MODIFIED


def test_last_modified_alone_also_gives_304(server: FeedServer) -> None:
    url = server.add("/lm.xml", (DATA / "good-rss.xml").read_bytes(), last_modified=LAST_MODIFIED)
    first = run([feed("Magnets", url)])
    assert states_of(first)[url].etag is None
    second = run([feed("Magnets", url)], states_of(first))
    assert report(second, "Magnets").not_modified
    assert second.articles == ()


def test_malformed_xml_is_reported_and_good_feed_still_counts(server: FeedServer) -> None:
    bad = server.add_file("/bad.xml", DATA / "malformed.xml")
    good = server.add_file("/good.xml", DATA / "good-rss.xml")
    batch = run([feed("Bad", bad), feed("Good", good)])
    failed = report(batch, "Bad")
    assert not failed.ok
    assert failed.error is not None and failed.error.startswith("not a valid feed")
    assert report(batch, "Good").ok
    assert len(batch.articles) == 3
    assert bad not in states_of(batch)


def test_html_page_is_not_a_feed(server: FeedServer) -> None:
    page = server.add_file(
        "/page", DATA / "not-a-feed.html", content_type="text/html; charset=utf-8"
    )
    failed = report(run([feed("Page", page)]), "Page")
    assert (failed.ok, failed.error) == (False, "not an RSS or Atom feed")


def test_unreachable_feed_next_to_good_one(server: FeedServer) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/feed.xml"
    good = server.add_file("/good.xml", DATA / "good-rss.xml")
    batch = run([feed("Dead", dead), feed("Good", good)])
    failed = report(batch, "Dead")
    assert not failed.ok
    assert failed.error is not None and failed.error.startswith("cannot connect")
    assert len(batch.articles) == 3
    assert list(states_of(batch)) == [good]


def test_http_500_is_reported(server: FeedServer) -> None:
    url = server.add("/500.xml", b"oops", status=500, content_type="text/plain")
    failed = report(run([feed("Broken", url)]), "Broken")
    assert (failed.ok, failed.error) == (False, "HTTP 500 Internal Server Error")


def test_slow_feed_times_out(server: FeedServer) -> None:
    url = server.add("/slow.xml", (DATA / "good-rss.xml").read_bytes(), delay=5)
    fetch = FetchConfig(timeout=0.5, max_bytes=FETCH.max_bytes, user_agent="t")
    started = time.monotonic()
    failed = report(run([feed("Slow", url)], fetch=fetch), "Slow")
    assert time.monotonic() - started < 3
    assert (failed.ok, failed.error) == (False, "timed out after 0.5 s")


@pytest.mark.parametrize("send_length", [True, False])
def test_oversized_feed_is_refused(server: FeedServer, send_length: bool) -> None:
    url = server.add("/big.xml", b"<rss>" + b" " * 50_000, send_length=send_length)
    fetch = FetchConfig(timeout=5, max_bytes=10_000, user_agent="t")
    failed = report(run([feed("Big", url)], fetch=fetch), "Big")
    assert (failed.ok, failed.error) == (False, "larger than 10000 bytes")


@pytest.mark.parametrize("status", [301, 308])
def test_permanent_redirect_is_remembered(server: FeedServer, status: int) -> None:
    new = server.add_file("/new.xml", DATA / "good-rss.xml")
    old = server.redirect("/old.xml", "/new.xml", status=status)
    first = run([feed("Moved", old)])
    state = states_of(first)[old]
    assert state.permanent_url == new
    moved = report(first, "Moved")
    assert moved.ok and moved.note is not None and new in moved.note
    assert len(first.articles) == 3

    second = run([feed("Moved", old)], states_of(first))
    assert len(server.hits("/old.xml")) == 1
    assert len(server.hits("/new.xml")) == 2
    assert states_of(second)[old].permanent_url == new


def test_temporary_redirect_is_followed_but_not_remembered(server: FeedServer) -> None:
    server.add_file("/today.xml", DATA / "good-rss.xml")
    url = server.redirect("/latest.xml", "/today.xml", status=302)
    batch = run([feed("Temp", url)])
    assert len(batch.articles) == 3
    assert states_of(batch)[url].permanent_url is None
    assert report(batch, "Temp").error is None


def test_gone_feed_is_marked_and_never_fetched_again(server: FeedServer) -> None:
    url = server.add("/gone.xml", b"", status=410)
    first = run([feed("Gone", url)])
    assert report(first, "Gone") == FeedReport("Gone", url, ok=False, error="gone (410)")
    assert states_of(first)[url].gone

    second = run([feed("Gone", url)], states_of(first))
    skipped = report(second, "Gone")
    assert not skipped.ok and skipped.error is not None and skipped.error.startswith("skipped")
    assert len(server.hits("/gone.xml")) == 1


@pytest.mark.parametrize(
    "content_type", ["application/rss+xml", "text/xml", "application/xml; charset=windows-1251"]
)
def test_windows_1251_feed_decodes(server: FeedServer, content_type: str) -> None:
    url = server.add_file("/ru.xml", DATA / "windows-1251.xml", content_type=content_type)
    article = run([feed("RU", url)]).articles[0]
    assert article.title == "Цены на оксид неодима-празеодима выросли на 2%"
    assert article.author == "Мария Иванова"
    assert (
        article.summary_text
        == "Производители магнитов пополняют запасы — спрос «неожиданно» высок."
    )


def test_iso_8859_1_feed_decodes(server: FeedServer) -> None:
    xml = (
        '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel><title>FR</title>'
        "<item><title>Éléments légers : déjà vu à Zürich</title><guid>fr-1</guid>"
        "<description>Prix stables.</description></item></channel></rss>"
    )
    url = server.add("/fr.xml", xml.encode("iso-8859-1"), content_type="application/rss+xml")
    assert run([feed("FR", url)]).articles[0].title == "Éléments légers : déjà vu à Zürich"


def test_hostile_feed_comes_out_clean(server: FeedServer) -> None:
    url = server.add_file("/hostile.xml", DATA / "hostile.xml")
    article = run([feed("Hostile", url)]).articles[0]
    assert article.title == "Prices up Bcc: victim@example.com X-Evil: 1"
    assert article.link == ""
    for html in (article.content_html, article.summary_html):
        lowered = html.lower()
        for bad in (
            "<script",
            "onerror",
            "onclick",
            "onmouseover",
            "javascript:",
            "style",
            "data:",
        ):
            assert bad not in lowered, (bad, html)
        for bad in ("<iframe", "<form", "<input", "<link", "evil.example", "tracker.example"):
            assert bad not in lowered, (bad, html)
    assert '<img alt="chart" src="https://img.example/x.png">' in article.content_html
    assert "frame text" not in article.content_html
    assert '<a href="https://good.example/report" rel="noopener">good link</a>' in (
        article.content_html
    )


def test_id_fallback_and_undated_entry(server: FeedServer) -> None:
    url = server.add_file("/ids.xml", DATA / "ids.xml")
    batch = run([feed("Ids", url)])
    assert by_title(batch, "guid").id == "https://ids.example.com/?p=1"
    assert by_title(batch, "only a link").id == "link:https://ids.example.com/link-only"
    neither = by_title(batch, "neither")
    assert neither.id.startswith("sha256:") and len(neither.id) == len("sha256:") + 64
    assert neither.link == ""
    assert run([feed("Ids", url)]).articles == batch.articles  # stable across runs

    undated = by_title(batch, "no date")
    assert (undated.published, undated.dated_by_feed) == (NOW, False)
    assert by_title(batch, "guid").dated_by_feed


def test_duplicates_across_feeds_are_merged(server: FeedServer) -> None:
    first = server.add_file("/a.xml", DATA / "good-rss.xml")
    second = server.add_file("/b.xml", DATA / "other-rss.xml")
    batch = run([feed("A", first), feed("B", second)])
    assert [r.articles for r in batch.reports] == [3, 3]
    assert len(batch.articles) == 4
    assert by_title(batch, "Samarium").source == "A"
    assert by_title(batch, "Gadolinium").source == "A"
    assert by_title(batch, "Holmium").source == "B"
    assert len({a.id for a in batch.articles}) == 4


def test_local_file_feed_and_missing_file() -> None:
    batch = run([feed("Local", str(DATA / "good-rss.xml")), feed("Missing", "/nonexistent.xml")])
    assert report(batch, "Local").ok
    assert len(batch.articles) == 3
    missing = report(batch, "Missing")
    assert not missing.ok and missing.error is not None and "cannot read" in missing.error
    assert batch.states == ()


def test_bundled_sample_feed_has_a_full_issue() -> None:
    batch = run([feed("REE News (sample)", str(SAMPLE))])
    assert report(batch, "REE News (sample)").ok
    london = ZoneInfo("Europe/London")
    start = datetime(2026, 11, 27, 7, 0, tzinfo=london)
    end = datetime(2026, 11, 28, 7, 0, tzinfo=london)
    issue = [a for a in batch.articles if start <= a.published < end]
    assert 10 <= len(issue) <= 14
    assert all(a.link.startswith("https://ree-news.example.com/") for a in batch.articles)
    assert all("<!--" not in a.content_html and "wp:" not in a.content_html for a in issue)
    assert any(f">{READ_MORE}</a>" in a.summary_html for a in batch.articles)
    assert any(len(a.highlights) == 4 for a in issue)
    assert SAMPLE.stat().st_size < 60_000
