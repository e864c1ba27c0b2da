"""The rendered digest against the checklist in email-standards.md (A.10, B.19, G.38, J)."""

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

from newsletter import render
from newsletter.config import Settings, load_settings
from newsletter.errors import RenderError
from newsletter.models import EMAIL_PLACEHOLDER, UNSUBSCRIBE_URL_PLACEHOLDER, Article, Digest
from newsletter.render import DigestRenderer

REPO = Path(__file__).resolve().parent.parent
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


def test_layout_is_email_safe(digest: Digest) -> None:
    doc = parse(digest)
    assert doc.get("lang") == "en"
    assert doc.findtext(".//title")
    container = doc.xpath("//table[@width='600']")[0]
    assert container.get("role") == "presentation"
    assert all(t.get("role") == "presentation" for t in doc.iter("table"))
    assert not doc.xpath("//script | //form | //iframe | //object | //embed | //link")
    assert not [a for el in doc.iter() for a in el.attrib if a.lower().startswith("on")]
    assert not doc.xpath("//@href[starts-with(normalize-space(.), 'javascript:')]")
    assert all(img.get("alt") is not None for img in doc.iter("img"))


def test_css_is_inlined_and_only_media_rules_stay_in_head(digest: Digest) -> None:
    doc = parse(digest)
    assert all(td.get("style") for td in doc.iter("td"))
    assert doc.xpath("//table[@width='600']")[0].get("style")
    styles = [s.text_content() for s in doc.iter("style")]
    assert len(styles) == 1 and styles[0].lstrip().startswith("@media")
    assert ".story {" not in digest.html  # the inlined rules are not repeated


def test_preheader_is_the_first_body_text_and_the_only_hidden_element(digest: Digest) -> None:
    body = parse(digest).find("body")
    assert body is not None
    first = body.xpath(".//text()[normalize-space()]")[0]
    assert first.strip(" \u00a0\u200c") == digest.preheader
    assert 40 <= len(digest.preheader) <= 130
    assert digest.preheader.startswith("Today: Lynas lifts NdPr output")
    assert "and 39 more rare-earth stories" in digest.preheader
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


def test_footer_says_why_where_and_how_to_leave(digest: Digest, settings: Settings) -> None:
    why = f"subscribed to REE Daily at {settings.base_url} with {EMAIL_PLACEHOLDER}"
    assert why in parse(digest).text_content()
    assert why in " ".join(digest.text.split())
    assert settings.postal_address in digest.html
    assert settings.postal_address in digest.text
    unsubscribe_line = digest.text.splitlines().index(UNSUBSCRIBE_URL_PLACEHOLDER)
    assert "Unsubscribe" in digest.text.splitlines()[unsubscribe_line - 1]


def test_view_in_browser_points_at_the_public_archive(digest: Digest, settings: Settings) -> None:
    url = f"{settings.base_url}/archive/2026-11-28"
    assert parse(digest).xpath("//a[@href=$u]/text()", u=url) == ["View in your browser"]
    assert url in digest.text.splitlines()


def test_featured_and_other_articles(digest: Digest) -> None:
    doc = parse(digest)
    first, second = busy_day(2)
    assert doc.xpath("//h1//text()") == [first.title]
    assert len(doc.xpath("//ul/li")) == 3
    assert doc.xpath("//a[@href=$u]/text()", u=first.link) == [first.title, "Read the full story →"]
    assert doc.xpath("//a[@href=$u]/text()", u=second.link) == [second.title, "Read more →"]
    assert len(doc.xpath("//h3")) == 39
    meta = doc.xpath("//p[@class='meta']/text()")
    assert meta[:2] == ["27 Nov 2026, 21:40 · Reuters", "27 Nov 2026, 21:03 · Mining Weekly"]


def test_dates_use_the_configured_timezone(renderer: DigestRenderer) -> None:
    summer = datetime(2026, 7, 1, 12, 5, tzinfo=UTC)  # London is on BST, UTC+1
    digest = renderer.render([article(0, published=summer)], ISSUE)
    assert "1 Jul 2026, 13:05" in digest.text
    assert "1 Jul 2026, 13:05" in digest.html
    undated = renderer.render([article(0, published=summer, dated_by_feed=False)], ISSUE)
    assert "13:05" not in undated.text  # a fetch time is not a publication time
    assert "\nReuters\n" in undated.text


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


def test_short_single_article_preheader_is_padded(renderer: DigestRenderer) -> None:
    digest = renderer.render([article(0, title="Lynas up")], ISSUE)
    assert 40 <= len(digest.preheader) <= 130
    assert digest.preheader.startswith("Today: Lynas up")


def test_text_part_is_wrapped_without_breaking_urls(digest: Digest) -> None:
    for line in digest.text.splitlines():
        assert len(line) <= 78 or re.fullmatch(r"https?://\S+", line), line
    assert "MORE RARE-EARTH NEWS (39)" in digest.text
    assert "<" not in digest.text.replace("<script>", "")  # no markup leaks into text
    for item in busy_day()[1:]:
        assert item.link in digest.text.splitlines()


def test_fill_keeps_room_for_the_personal_values() -> None:
    text = f"You receive this because you subscribed with {EMAIL_PLACEHOLDER}."
    longest = max(len(line) for line in render.fill(text).splitlines())
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


def test_oversized_html_is_refused(
    renderer: DigestRenderer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "MAX_HTML_BYTES", 10_000)
    with pytest.raises(RenderError, match="bytes"):
        renderer.render(busy_day(), ISSUE)


def test_no_articles_is_refused(renderer: DigestRenderer) -> None:
    with pytest.raises(RenderError):
        renderer.render([], ISSUE)
