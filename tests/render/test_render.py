"""The rendered digest: a real text twin, a visible unsubscribe link, the postal address (CAN-SPAM
15 U.S.C. 7704(a)(5)), and an email-safe table layout."""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from lxml import html as lxml_html

from newsletter import render, templating
from newsletter.compose import qp_encode_line
from newsletter.config import Settings, load_settings
from newsletter.errors import RenderError
from newsletter.models import (
    EMAIL_PLACEHOLDER,
    PREFERENCES_URL_PLACEHOLDER,
    UNSUBSCRIBE_URL_PLACEHOLDER,
    Article,
    Digest,
)
from newsletter.render import DigestRenderer

REPO = Path(__file__).resolve().parents[2]
ISSUE = date(2026, 11, 28)
SOURCES = ("Reuters", "Mining Weekly", "Argus Metals", "Fastmarkets", "Nikkei Asia", "REE News")
STORIES = (
    (
        "Lynas lifts NdPr output 18% as Kalgoorlie cracking plant ramps up",
        "Australian producer Lynas Rare Earths said quarterly neodymium-praseodymium output rose "
        "18 percent, helped by its Kalgoorlie cracking and leaching plant; unit costs fell.",
    ),
    (
        "China tightens export licences for dysprosium and terbium compounds",
        "Beijing's commerce ministry added oxide and metal forms of the heavy rare earths to its "
        "licence list; traders expect shipments to Japan and Europe to slow into the new year.",
    ),
    (
        "MP Materials signs magnet supply deal with a second US carmaker",
        "The Mountain Pass operator will supply sintered NdFeB magnets from its Fort Worth plant "
        "starting in 2027, with volumes rising as the facility reaches its planned capacity.",
    ),
    (
        "NdPr oxide price slips 2% in Shanghai on thin downstream demand",
        "Spot neodymium-praseodymium oxide fell to its lowest level in six weeks as magnet makers "
        "drew down inventories ahead of the year-end holidays, according to price reporters.",
    ),
    (
        "EU Critical Raw Materials Act: first strategic projects pass review",
        "Brussels named refining and recycling projects in Estonia, France and Sweden among the "
        "first to get faster permits and easier access to financing under the new regulation.",
    ),
    (
        "Iluka's Eneabba refinery reaches 60% of construction milestones",
        "The mineral sands producer kept its cost estimate for the government-backed refinery "
        "unchanged and said first production of separated oxides remains on track for 2027.",
    ),
)


def article(index: int, **changes: object) -> Article:
    """A realistic article; `index` varies the headline, time and source."""
    title, summary = STORIES[index % len(STORIES)]
    published = datetime(2026, 11, 27, 21, 40, tzinfo=UTC) - timedelta(minutes=37 * index)
    values: dict[str, object] = {
        "id": f"https://ree-news.example.com/?p={1000 + index}",
        "title": f"{title} ({index})" if index >= len(STORIES) else title,
        "link": f"https://ree-news.example.com/2026/11/27/{index}-rare-earth-market-update-"
        "with-a-fairly-long-slug-as-wordpress-makes-them/",
        "author": "REE News desk",
        "published": published,
        "summary_html": f"<p>{summary}</p>",
        "summary_text": f"{summary} {summary}",
        "content_html": f"<p>{summary}</p>" * 5,
        "source": SOURCES[index % len(SOURCES)],
        "highlights": (),
    }
    values.update(changes)
    return Article(**values)  # type: ignore[arg-type]


def busy_day(count: int = 40) -> list[Article]:
    highlights = ("Output of 2,180 t NdPr, up 18% on the quarter",
                  "Kalgoorlie plant now at 80% of nameplate",
                  "Heavy rare earths circuit in Malaysia commissioned")  # fmt: skip
    return [article(0, highlights=highlights), *(article(i) for i in range(1, count))]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(REPO / "config.toml", environ={})


@pytest.fixture(scope="module")
def renderer(settings: Settings) -> DigestRenderer:
    return DigestRenderer(settings)


@pytest.fixture(scope="module")
def digest(renderer: DigestRenderer) -> Digest:
    return renderer.render(busy_day(), ISSUE)


def parse(digest: Digest) -> lxml_html.HtmlElement:
    return lxml_html.document_fromstring(digest.html)


def test_forty_articles_stay_under_gmail_clipping(digest: Digest) -> None:
    assert len(digest.html.encode("utf-8")) < 100_000
    assert digest.article_ids == tuple(a.id for a in busy_day())


def outside_outlook_comments(html: str) -> str:
    """The HTML every client but Outlook's Word engine reads: conditional comments removed."""
    return re.sub(r"<!--\[if mso\]>.*?<!\[endif\]-->", "", html, flags=re.DOTALL)


def test_layout_is_email_safe_and_fluid(digest: Digest) -> None:
    doc = parse(digest)
    assert doc.get("lang") == "en"
    assert doc.findtext(".//title")
    container = doc.xpath("//div[@class='container']")[0]
    assert "max-width:600px" in container.get("style").replace(" ", "")
    assert all(t.get("role") == "presentation" for t in doc.iter("table"))
    assert all(t.get("width") == "100%" for t in container.iter("table") if t.get("width"))
    # Only Outlook's Word engine, which ignores max-width, gets a fixed 600 px table.
    assert '<table role="presentation" align="center" width="600"' in digest.html
    fluid = outside_outlook_comments(digest.html)
    assert 'width="600"' not in fluid
    assert not re.search(r"(?<!max-)width:\s*600px", fluid)
    assert not doc.xpath("//script | //form | //iframe | //object | //embed | //link")
    assert not [a for el in doc.iter() for a in el.attrib if a.lower().startswith("on")]
    assert not doc.xpath("//@href[starts-with(normalize-space(.), 'javascript:')]")
    assert all(img.get("alt") is not None for img in doc.iter("img"))


def test_css_is_inlined_and_the_rest_stays_in_one_style_element(digest: Digest) -> None:
    doc = parse(digest)
    assert all(td.get("style") for td in doc.iter("td"))
    assert doc.xpath("//div[@class='container']")[0].get("style")
    styles = [s.text_content() for s in doc.iter("style")]
    assert len(styles) == 1
    head = styles[0]
    assert "@media screen and (max-width: 620px)" in head
    assert "@media (prefers-color-scheme: dark)" in head
    assert "[data-ogsc] .story-title a" in head and "[data-ogsb] .card" in head
    assert doc.xpath("//meta[@name='color-scheme']/@content") == ["light dark"]
    assert "color: #a35d22" not in digest.html  # the inlined rules are not repeated
    assert "data-premailer" not in digest.html


def test_preheader_is_the_first_body_text_and_the_only_hidden_element(digest: Digest) -> None:
    body = parse(digest).find("body")
    assert body is not None
    first = body.xpath(".//text()[normalize-space()]")[0]
    assert first.strip(" \u00a0\u200c") == digest.preheader
    assert 40 <= len(digest.preheader) <= 130
    second, third = STORIES[1][0], STORIES[2][0]
    assert digest.preheader.startswith(f"Also: {second[:50]}")
    assert f"… · {third[:50]}" in digest.preheader  # both cut to fit, "37 more" left out
    assert STORIES[0][0] not in digest.preheader  # the subject's story is not repeated
    hidden = body.xpath(".//*[contains(@style, 'display:none')]")
    assert [el.get("class") for el in hidden] == ["preheader"]


def test_placeholders_survive_inlining_and_escaping(digest: Digest) -> None:
    for part in (digest.html, digest.text):
        assert EMAIL_PLACEHOLDER in part
        assert UNSUBSCRIBE_URL_PLACEHOLDER in part
    doc = parse(digest)
    links = doc.xpath("//a[@href=$u]", u=UNSUBSCRIBE_URL_PLACEHOLDER)
    assert len(links) == 1
    assert re.search("unsubscribe", links[0].text_content(), re.I)
    hidden = [el for el in links[0].iterancestors() if "display:none" in el.get("style", "")]
    assert not hidden
    # the unsubscribe link stands on a short line of its own
    line = next(ln for ln in digest.html.splitlines() if UNSUBSCRIBE_URL_PLACEHOLDER in ln)
    assert line.startswith("<a ") and len(line) < 200


def test_footer_says_who_why_where_and_how_to_leave(digest: Digest, settings: Settings) -> None:
    doc = parse(digest)
    why = f"You receive this because you subscribed to REE Daily with {EMAIL_PLACEHOLDER}."
    assert why in doc.text_content()
    assert why in " ".join(digest.text.split())
    assert settings.postal_address in digest.html
    assert settings.postal_address in digest.text
    lines = digest.text.splitlines()
    assert "Unsubscribe" in lines[lines.index(UNSUBSCRIBE_URL_PLACEHOLDER) - 1]
    # the site's address is a link, not raw text that wraps mid-word
    site = doc.xpath("//a[@href=$u]", u=settings.site_url)
    assert [a.text_content() for a in site] == ["ree-news.example.com"]
    assert "white-space:nowrap" in site[0].get("style").replace(" ", "")
    subscribe = f"{settings.base_url}/subscribe"
    forwarded = doc.xpath("//a[@href=$u]/parent::p", u=subscribe)[0].text_content()
    assert forwarded == "Was this forwarded to you? Subscribe"
    assert f"Was this forwarded to you? Subscribe:\n{subscribe}\n" in digest.text
    privacy = settings.render.privacy_url
    assert doc.xpath("//a[@href=$u]/text()", u=privacy) == ["Privacy policy"]
    assert f"Privacy policy:\n{privacy}" in digest.text
    assert settings.render.contact in doc.text_content() and settings.render.contact in digest.text


def test_the_preferences_link_is_there_only_when_there_is_a_choice(
    digest: Digest, settings: Settings
) -> None:
    """With [weekly] off the preferences page has nothing to offer, so no issue links to it."""
    assert not settings.weekly.enabled
    for part in (digest.html, digest.text):
        assert PREFERENCES_URL_PLACEHOLDER not in part and "Preferences" not in part
    privacy = "\n\nPrivacy policy:"  # the shipped config has a privacy page
    assert f"{UNSUBSCRIBE_URL_PLACEHOLDER}{privacy}" in digest.text  # one blank line between
    weekly = replace(settings, weekly=replace(settings.weekly, enabled=True))
    offered = DigestRenderer(weekly).render(busy_day(), ISSUE)
    for part in (offered.html, offered.text):
        assert part.count(PREFERENCES_URL_PLACEHOLDER) == 1
    assert parse(offered).xpath("//a[@href=$u]/text()", u=PREFERENCES_URL_PLACEHOLDER) == [
        "Preferences"
    ]
    lines = offered.text.splitlines()
    assert lines[lines.index(PREFERENCES_URL_PLACEHOLDER) - 1] == "Preferences:"
    assert f"{UNSUBSCRIBE_URL_PLACEHOLDER}\n\nPreferences:" in offered.text
    assert f"{PREFERENCES_URL_PLACEHOLDER}{privacy}" in offered.text


def test_view_in_browser_points_at_the_public_archive(digest: Digest, settings: Settings) -> None:
    url = f"{settings.base_url}/archive/2026-11-28"
    assert parse(digest).xpath("//a[@href=$u]/text()", u=url) == ["View in your browser"]
    assert url in digest.text.splitlines()


def test_featured_and_other_articles(digest: Digest) -> None:
    doc = parse(digest)
    first, second = busy_day(2)
    assert doc.xpath("//h1//text()") == [first.title]
    assert len(doc.xpath("//ul[@class='highlights']/li")) == 3
    assert doc.xpath("//a[@href=$u]/text()", u=first.link) == [first.title, "Read the top story →"]
    assert doc.xpath("//a[@href=$u]/text()", u=second.link) == [second.title]
    assert len(doc.xpath("//h3")) == 39
    meta = doc.xpath("//p[@class='meta']/text()")
    assert meta[:2] == [
        "27 Nov 2026, 21:40 GMT · Reuters",
        "27 Nov 2026, 21:03 GMT · Mining Weekly",
    ]


def test_each_story_links_once_from_its_headline(digest: Digest) -> None:
    """No "Read more" after every story: the headline is the link, once per part."""
    doc = parse(digest)
    day = busy_day()
    for article in day[1:]:
        links = doc.xpath("//a[@href=$u]", u=article.link)
        assert len(links) == 1 and links[0].getparent().tag == "h3"
        assert digest.text.splitlines().count(article.link) == 1
    assert digest.text.splitlines().count(day[0].link) == 1
    texts = [a.text_content().strip() for a in doc.iter("a")]
    assert not [t for t in texts if t.lower().startswith(("read more", "more", "click"))]


def test_dates_use_the_configured_timezone(renderer: DigestRenderer) -> None:
    summer = datetime(2026, 7, 1, 12, 5, tzinfo=UTC)  # London is on BST, UTC+1
    digest = renderer.render([article(0, published=summer)], ISSUE)
    assert "1 Jul 2026, 13:05 BST" in digest.text
    assert "1 Jul 2026, 13:05 BST" in digest.html
    undated = renderer.render([article(0, published=summer, dated_by_feed=False)], ISSUE)
    assert "13:05" not in undated.text  # a fetch time is not a publication time
    assert "13:05" not in undated.html


def test_hostile_titles_are_escaped(renderer: DigestRenderer) -> None:
    title = 'Prices <script>alert("x")</script> & "quotes" <b>bold</b>'
    evil = article(1, title=title, link="javascript:alert(1)", source="A&B <i>")
    digest = renderer.render([article(0, title=title), evil], ISSUE)
    doc = parse(digest)
    assert not doc.xpath("//script | //b | //i")
    assert doc.xpath("//h1")[0].text_content() == title
    assert doc.xpath("//h3")[0].text_content() == title
    assert "&lt;script&gt;" in digest.html and "&amp; " in digest.html
    assert "javascript:" not in digest.html
    assert title in digest.text


def test_subject_is_one_short_line(renderer: DigestRenderer) -> None:
    subject = renderer.render(busy_day(3), ISSUE).subject
    assert subject == f"REE Daily, 28 Nov 2026: {STORIES[0][0]}"
    long_title = "Rare earths\r\nBcc: victim@example.com\x00 " + "magnet supply chain " * 20
    subject = renderer.render([article(0, title=long_title)], ISSUE).subject
    assert not set(subject) & {"\r", "\n", "\x00"}
    assert len(subject) <= 120 and subject.endswith("…")
    assert subject.startswith("REE Daily, 28 Nov 2026: Rare earths Bcc: victim@")


def test_a_one_story_preheader_tells_the_story_not_the_headline(
    renderer: DigestRenderer,
) -> None:
    digest = renderer.render([article(0, title="Lynas up")], ISSUE)
    assert digest.preheader.startswith(STORIES[0][1][:60])
    assert 120 <= len(digest.preheader) <= 130 and digest.preheader.endswith("…")
    short = renderer.render([article(0, summary_text="Up 18%.")], ISSUE)
    assert short.preheader == "Up 18%. | the day's rare-earth market news"


def test_text_part_is_wrapped_without_breaking_urls(digest: Digest) -> None:
    for line in digest.text.splitlines():
        assert len(line) <= 78 or re.fullmatch(r"https?://\S+", line), line
    assert "\nOTHER NEWS\n" in digest.text  # no story carries a configured category
    assert "<" not in digest.text.replace("<script>", "")  # no markup leaks into text
    for item in busy_day()[1:]:
        assert item.link in digest.text.splitlines()


def test_fill_keeps_room_for_the_personal_values() -> None:
    text = f"You receive this because you subscribed with {EMAIL_PLACEHOLDER}."
    longest = max(len(line) for line in templating.fill(text).splitlines())
    assert longest + 40 - len(EMAIL_PLACEHOLDER) <= 78


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("rendering must not touch the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.mark.usefixtures("no_network")
def test_inlining_never_touches_the_network(settings: Settings) -> None:
    digest = DigestRenderer(settings).render(busy_day(5), ISSUE)
    assert "style=" in digest.html


def broken_copy(settings: Settings, tmp_path: Path, name: str, old: str, new: str) -> Settings:
    folder = tmp_path / "templates"
    shutil.copytree(settings.templates_dir, folder)
    path = folder / name
    source = path.read_text(encoding="utf-8")
    assert old in source
    path.write_text(source.replace(old, new, 1), encoding="utf-8")
    return replace(settings, templates_dir=folder)


def test_an_unknown_variable_is_a_render_error(settings: Settings, tmp_path: Path) -> None:
    broken = broken_copy(settings, tmp_path, "digest.html", "{{ name }}", "{{ no_such_thing }}")
    with pytest.raises(RenderError, match=r"digest\.html.*no_such_thing"):
        DigestRenderer(broken).render(busy_day(2), ISSUE)


def test_a_syntax_error_fails_at_construction(settings: Settings, tmp_path: Path) -> None:
    broken = broken_copy(settings, tmp_path, "digest.txt", "{% endfor %}", "{% endfour %}")
    with pytest.raises(RenderError, match=r"digest\.txt"):
        DigestRenderer(broken)


def test_a_footer_without_unsubscribe_is_refused(settings: Settings, tmp_path: Path) -> None:
    broken = broken_copy(settings, tmp_path, "digest.txt", "{{ unsubscribe_url }}", "")
    with pytest.raises(RenderError, match="unsubscribe"):
        DigestRenderer(broken).render(busy_day(2), ISSUE)


def test_missing_postal_address_is_refused(settings: Settings, tmp_path: Path) -> None:
    broken = broken_copy(settings, tmp_path, "digest.html", "{{ postal_address }}", "")
    with pytest.raises(RenderError, match="postal address"):
        DigestRenderer(broken).render(busy_day(2), ISSUE)


def test_a_day_too_big_for_one_mail_ends_with_more_on_the_site(
    renderer: DigestRenderer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "MAX_HTML_BYTES", 20_000)
    day = busy_day()
    digest = renderer.render(day, ISSUE)
    shown = len(digest.article_ids)
    assert 1 < shown < 40
    assert digest.article_ids == tuple(a.id for a in day[:shown])  # the tail is left out
    assert len(digest.html.encode()) < 20_000
    more = f"{40 - shown} more stories on ree-news.example.com"
    assert parse(digest).xpath("//p[@class='more']/a[@href=$u]/text()", u=settings.site_url) == [
        f"{more} →"
    ]
    assert f"{more}:\n{settings.site_url}\n" in digest.text
    assert len(parse(digest).xpath("//h3")) == shown - 1
    # one more article would not have fitted: the most that fit are shown
    monkeypatch.setattr(render, "MAX_HTML_BYTES", len(digest.html.encode()) + 400)
    assert len(renderer.render(day, ISSUE).article_ids) == shown


def test_forty_long_articles_are_never_refused(renderer: DigestRenderer) -> None:
    """40 articles at the caps: a day like that loses its tail, never the whole issue."""
    day = [
        article(n, title=f"{n} " + "Dysprosium supply chain " * 30, summary_text="word " * 2000,
                highlights=tuple("Terbium magnet grade oxide " * 20 for _ in range(10)),
                link=f"https://ree-news.example.com/{n}/" + "long-slug-" * 190)
        for n in range(40)
    ]  # fmt: skip
    digest = renderer.render(day, ISSUE)
    assert len(digest.html.encode()) < render.MAX_HTML_BYTES
    assert 5 < len(digest.article_ids) < 40
    assert f"{40 - len(digest.article_ids)} more stories on" in digest.text


def test_one_huge_title_or_link_cannot_sink_the_day(renderer: DigestRenderer) -> None:
    huge_title = "Neodymium " * 12_000  # 120 KB
    huge_link = "https://evil.example/?" + "a" * 110_000
    day = [article(0, title=huge_title), article(1, link=huge_link), *busy_day(40)[2:]]
    digest = renderer.render(day, ISSUE)
    assert len(digest.html.encode()) < render.MAX_HTML_BYTES
    assert digest.article_ids == tuple(a.id for a in day)  # everything fits after the caps
    h1 = parse(digest).xpath("//h1")[0].text_content()
    assert len(h1) <= 300 and h1.endswith("…")
    assert "evil.example" not in digest.html and "evil.example" not in digest.text
    assert STORIES[1][0] in parse(digest).xpath("//h3/text()")  # shown, unlinked
    assert len(digest.subject) <= 120


def test_the_size_that_counts_is_the_encoded_one(renderer: DigestRenderer) -> None:
    """Quoted-printable writes each non-ASCII byte as three: Chinese text triples in transit."""
    day = [
        article(n, title=f"{n} 稀土出口管制再度收紧，镝和铽化合物许可证清单扩大" * 3,
                summary_text="中国商务部将重稀土的氧化物和金属形态列入许可证清单。" * 12)
        for n in range(40)
    ]  # fmt: skip
    digest = renderer.render(day, ISSUE)
    sent = sum(len(qp_encode_line(line)) for line in digest.html.splitlines())
    assert sent < 102_000
    assert len(digest.article_ids) < 40


def test_a_digest_that_cannot_hold_one_article_is_an_error(
    renderer: DigestRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "MAX_HTML_BYTES", 2_000)
    with pytest.raises(RenderError, match="even one article"):
        renderer.render(busy_day(3), ISSUE)


def test_no_articles_is_refused(renderer: DigestRenderer) -> None:
    with pytest.raises(RenderError):
        renderer.render([], ISSUE)
