"""Fetching and parsing feeds against a real HTTP server on 127.0.0.1 (tests/feedserver.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter import feeds as feeds_package
from newsletter.clean import READ_MORE
from newsletter.config import FeedConfig, FetchConfig
from newsletter.feeds import collect
from newsletter.models import Article, FeedBatch, FeedReport, FeedState
from tests.support.feedserver import FeedServer

DATA = Path(__file__).parents[1] / "data" / "feeds"
SAMPLE = Path(__file__).parents[2] / "feeds" / "sample-ree-news.xml"
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
    assert all(r.ok for r in batch.reports), batch.reports
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
    assert (failed.ok, failed.error) == (False, "not an RSS, Atom or JSON feed")


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


# Identity, links and bounds (issue 10)


def rss(items: str, extra_ns: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"{extra_ns}><channel>'
        f"<title>T</title><link>https://ree-news.example.com/</link>{items}</channel></rss>"
    ).encode()


def test_guids_are_kept_as_given_and_links_resolved_against_the_feed(server: FeedServer) -> None:
    body = rss(
        "<item><title>Relative</title><guid>mw-1001</guid><link>/2026/11/27/a/</link>"
        "<pubDate>Fri, 27 Nov 2026 08:00:00 GMT</pubDate></item>"
        '<item><title>Permalink guid only</title><guid isPermaLink="true">mw-1002</guid>'
        "<pubDate>Fri, 27 Nov 2026 09:00:00 GMT</pubDate></item>"
    )
    url = server.add("/feeds/news.xml", body)
    batch = run([feed("News", url)])
    relative = by_title(batch, "Relative")
    assert relative.id == "mw-1001"  # not http://127.0.0.1:port/feeds/mw-1001
    assert relative.link == server.url("/2026/11/27/a/")
    only_guid = by_title(batch, "Permalink guid only")
    assert only_guid.id == "mw-1002"
    assert only_guid.link == server.url("/feeds/mw-1002")  # a permalink is a link: resolved
    moved = server.add("/elsewhere/news.xml", body)
    assert {a.id for a in run([feed("News", moved)]).articles} == {"mw-1001", "mw-1002"}


def test_fetches_are_bounded_by_the_configured_concurrency(server: FeedServer) -> None:
    body = (DATA / "good-rss.xml").read_bytes()
    urls = [server.add(f"/slow{n}.xml", body, delay=0.4) for n in range(6)]
    fetch = FetchConfig(timeout=10, max_bytes=1_000_000, user_agent="t", concurrency=2)
    batch = run([feed(f"Slow {n}", url) for n, url in enumerate(urls)], fetch=fetch)
    assert all(r.ok for r in batch.reports), batch.reports
    arrivals = sorted(request.at for request in server.requests)
    # at most two requests at a time: the third starts only when the first has answered
    assert all(later - earlier >= 0.35 for earlier, later in itertools.pairwise(arrivals[::2]))
    assert arrivals[1] - arrivals[0] < 0.3  # but two do run together


def test_long_titles_and_links_are_capped_with_a_note(server: FeedServer) -> None:
    huge_title = "Neodymium " * 12_000  # 120 KB
    huge_link = "https://evil.example/?" + "a" * 110_000
    body = rss(
        f"<item><title>{huge_title}</title><guid>t-1</guid><link>https://ok.example/t</link>"
        "<description>Fine.</description></item>"
        f"<item><title>Long link</title><guid>t-2</guid><link>{huge_link}</link>"
        "<description>Fine too.</description></item>"
    )
    url = server.add("/caps.xml", body)
    batch = run([feed("Caps", url)])
    titled = next(a for a in batch.articles if a.id == "t-1")
    assert len(titled.title) <= 300 and titled.title.endswith("…")
    linked = next(a for a in batch.articles if a.id == "t-2")
    assert (linked.title, linked.link) == ("Long link", "")
    note = report(batch, "Caps").note
    assert note is not None and "1 link(s) over 2,000 characters dropped" in note


def test_a_feed_with_thousands_of_entries_gives_the_first_500(server: FeedServer) -> None:
    items = "".join(f"<item><title>N{n}</title><guid>n-{n}</guid></item>" for n in range(700))
    url = server.add("/dump.xml", rss(items))
    batch = run([feed("Dump", url)])
    assert len(batch.articles) == 500
    note = report(batch, "Dump").note
    assert note is not None and "200 entries beyond the first ones ignored" in note


def test_tracking_parameters_go_and_the_clean_link_recognises_the_story(
    server: FeedServer,
) -> None:
    story = "https://ree-news.example.com/2026/11/27/lynas/"
    first = server.add(
        "/a.xml",
        rss(
            f"<item><title>Lynas up</title><guid>a-1</guid>"
            f"<link>{story}?utm_source=rss&amp;utm_medium=rss&amp;utm_campaign=lynas</link>"
            "<pubDate>Fri, 27 Nov 2026 08:00:00 GMT</pubDate></item>"
        ),
    )
    second = server.add(
        "/b.xml",
        rss(
            f"<item><title>Lynas up (syndicated)</title><guid>partner-9</guid>"
            f"<link>{story}?fbclid=abc&amp;utm_source=partner#top</link>"
            "<pubDate>Fri, 27 Nov 2026 09:00:00 GMT</pubDate></item>"
        ),
    )
    batch = run([feed("A", first), feed("B", second)])
    assert [(a.id, a.link) for a in batch.articles] == [("a-1", story)]


def test_titles_are_decoded_exactly_once(server: FeedServer) -> None:
    atom = (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>'
        '<entry><title type="text">Escaping: &amp;lt;b&amp;gt; &amp;amp; more</title>'
        "<id>urn:x:1</id><updated>2026-11-27T08:00:00Z</updated><summary>s</summary></entry>"
        '<entry><title type="html">History of the &amp;lt;blink&amp;gt; tag</title>'
        "<id>urn:x:2</id><updated>2026-11-27T09:00:00Z</updated><summary>s</summary></entry>"
        "</feed>"
    )
    url = server.add("/atom.xml", atom.encode(), content_type="application/atom+xml")
    words = run([feed("A", url)])
    assert by_title(words, "Escaping").title == "Escaping: &lt;b&gt; &amp; more"
    assert by_title(words, "History").title == "History of the <blink> tag"
    plain = server.add(
        "/rss.xml",
        rss("<item><title>History of the &lt;blink&gt; tag</title><guid>b</guid></item>"),
    )
    assert run([feed("R", plain)]).articles[0].title == "History of the <blink> tag"


# JSON Feed 1.1


def json_feed(items: list[object], version: str = "1.1") -> bytes:
    return json.dumps(
        {"version": f"https://jsonfeed.org/version/{version}", "title": "J", "items": items}
    ).encode()


JSON_ITEMS: list[object] = [
    {
        "id": "https://ree-news.example.com/?p=501",
        "url": "/2026/11/27/json-story/?utm_source=jsonfeed",
        "title": "JSON &amp; <b>plain</b> title",
        "content_html": '<p onclick="x()">Dysprosium rose.</p><script>alert(1)</script>'
        "<ul><li>Point one</li><li>Point two</li></ul>",
        "summary": "A plain summary <not a tag>.",
        "date_published": "2026-11-27T08:30:00+01:00",
        "authors": [{"name": "Ann Author", "url": "mailto:ann@example.com"}, {"name": "Bo"}],
    },
    {
        "id": 502,  # version 1.0 feeds send numbers
        "external_url": "https://elsewhere.example/story",
        "content_text": "First paragraph.\n\nSecond <para>.",
        "date_modified": "2026-11-27T10:00:00Z",
        "author": {"name": "Old Style"},
    },
    {"id": "undated", "title": "No date", "content_text": "Text.", "date_published": "soon"},
    {"id": "empty"},  # nothing to show: debris
    "not an object",
]


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/feed.json", "application/feed+json"),
        ("/feed-json", "application/json; charset=utf-8"),
        ("/sniffed", "text/plain"),
    ],
)
def test_json_feed_becomes_clean_articles(server: FeedServer, path: str, content_type: str) -> None:
    url = server.add(path, json_feed(JSON_ITEMS), content_type=content_type)
    batch = run([feed("JSON", url)])
    assert report(batch, "JSON").articles == 3
    first = by_title(batch, "JSON")
    assert first.id == "https://ree-news.example.com/?p=501"
    assert first.title == "JSON &amp; <b>plain</b> title"  # plain text: shown as written
    assert first.link == server.url("/2026/11/27/json-story/")
    assert first.published == datetime(2026, 11, 27, 7, 30, tzinfo=UTC)
    assert first.author == "Ann Author, Bo"
    assert "script" not in first.content_html and "onclick" not in first.content_html
    assert first.highlights == ("Point one", "Point two")
    assert first.summary_text == "A plain summary <not a tag>."
    second = next(a for a in batch.articles if a.id == "502")
    assert (second.link, second.author) == ("https://elsewhere.example/story", "Old Style")
    assert second.summary_html == "<p>First paragraph.</p>\n<p>Second &lt;para&gt;.</p>"
    assert second.title == "(untitled)"
    undated = by_title(batch, "No date")
    assert (undated.published, undated.dated_by_feed) == (NOW, False)


def test_a_local_json_feed_file_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_bytes(b"\xef\xbb\xbf" + json_feed(JSON_ITEMS[:1], version="1"))
    assert run([feed("Local", str(path))]).articles[0].id == "https://ree-news.example.com/?p=501"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "not a valid JSON Feed"),
        (b'{"version": "1.1", "items": []}', "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {}}', "not a valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not a valid JSON Feed"),
    ],
)
def test_broken_json_feeds_are_reported(server: FeedServer, body: bytes, error: str) -> None:
    url = server.add("/bad.json", body, content_type="application/feed+json")
    failed = report(run([feed("Bad", url)]), "Bad")
    assert not failed.ok and failed.error is not None and failed.error.startswith(error)


def test_bodies_are_read_within_a_budget_per_feed(
    server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cleaning garbled text is slow: a feed gets so many characters of bodies, then less."""
    monkeypatch.setattr(feeds_package, "FEED_TEXT_BUDGET", 10_000)
    body = "<p>" + "Neodymium oxide prices rose again. " * 230 + "</p>"  # ~8,000 characters
    items = "".join(
        f"<item><title>B{n}</title><guid>b-{n}</guid><description><![CDATA[{body}]]>"
        "</description></item>"
        for n in range(5)
    )
    batch = run([feed("Budget", server.add("/budget.xml", rss(items)))])
    lengths = [len(a.content_html) for a in sorted(batch.articles, key=lambda a: a.id)]
    assert lengths[0] > 7_000 and all(length < 2_100 for length in lengths[1:])
    assert all(a.summary_text for a in batch.articles)  # every entry still has its summary
    note = report(batch, "Budget").note
    assert note is not None and "4 long article bodies read only in part" in note


def test_a_feed_url_whose_scheme_is_in_capitals_is_fetched_over_http(server: FeedServer) -> None:
    """The config takes "HTTP://..." (schemes are case-insensitive); collecting read it as a
    file path of that name and reported the feed missing."""
    url = server.add_file("/rss.xml", DATA / "good-rss.xml")
    shouting = url.replace("http://", "HTTP://", 1)
    batch = run([feed("Magnets", shouting)])
    assert [r.ok for r in batch.reports] == [True] and len(batch.articles) == 3
    assert server.requests and server.requests[-1].path == "/rss.xml"


ODD_REFERENCES = ["&#xD800;", "&#56575;", "&#x110000;", "&#99999999999;"]


@pytest.mark.parametrize(
    "reference", [*ODD_REFERENCES, "&#x" + "0" * 5000 + "41;", "&#" + "0" * 5000 + "65;"]
)
def test_a_character_reference_to_no_character_costs_the_feed_nothing(
    server: FeedServer, reference: str
) -> None:
    """A surrogate's or an out-of-range code point's reference is not XML: feedparser's
    fallback parser failed on it (encoding it, or in chr()) and the feed's good items went
    with it. It reads as U+FFFD, as in a browser; a NUL's reference (&#0;) as text."""
    items = (
        f"<item><title>Odd {reference} one &#0; here</title><guid>odd{reference}&#0;</guid>"
        f"<link>https://ree-news.example.com/odd?q={reference}</link>"
        f"<description>Body {reference} text.</description></item>"
        "<item><title>Good one</title><guid>good</guid><description>Fine.</description></item>"
    )
    batch = run([feed("Refs", server.add("/refs.xml", rss(items)))])
    assert report(batch, "Refs").ok and len(batch.articles) == 2
    odd = by_title(batch, "Odd")
    expected = "A" if reference.endswith(("41;", "65;")) else "\ufffd"  # long, valid: kept
    assert odd.title == f"Odd {expected} one here"
    assert odd.id == f"odd{expected}\ufffd"  # the NUL kept storable
    assert odd.summary_text == f"Body {expected} text."
    assert by_title(batch, "Good").summary_text == "Fine."
