"""A scannable issue: pictures, sections, contents, issue number, reading time, the editor's
note, sources only when there are several, and the 100 KB bound on a busy day with pictures."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from lxml import html as lxml_html

from newsletter.config import LogoConfig, SectionConfig, Settings, load_settings
from newsletter.errors import RenderError
from newsletter.models import EMAIL_PLACEHOLDER, Article, Digest, Image
from newsletter.render import DigestRenderer, preheader, subject_line
from newsletter.render.notes import NOTE_MAX_BYTES
from tests.render.test_render import ISSUE, REPO, article, busy_day, parse

PICTURE = "https://ree-news.example.com/wp-content/uploads/2026/11/{n}-1200x675.jpg"


@pytest.fixture(scope="module")
def shipped() -> Settings:
    return load_settings(REPO / "config.toml", environ={})


def with_render(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, render=replace(settings.render, **changes))


def pictured(n: int, **changes: object) -> Article:
    image = Image(PICTURE.format(n=n), 1200, 675, f"Picture {n}")
    return article(n, image=image, **changes)


def render(settings: Settings, articles: list[Article], number: int | None = None) -> Digest:
    return DigestRenderer(settings).render(articles, ISSUE, number)


def test_the_top_story_gets_a_wide_picture_the_others_thumbnails(shipped: Settings) -> None:
    digest = render(shipped, [pictured(0), pictured(1), article(2)])
    images = parse(digest).xpath("//img")
    assert [(i.get("class"), i.get("width"), i.get("height")) for i in images] == [
        ("lead-image", "536", "302"),
        ("thumb", "96", "54"),
    ]
    assert [i.get("src") for i in images] == [PICTURE.format(n=0), PICTURE.format(n=1)]
    assert [i.get("alt") for i in images] == ["Picture 0", "Picture 1"]
    lead = images[0].get("style").replace(" ", "")
    assert "width:100%" in lead and "max-width:536px" in lead and "height:auto" in lead
    # a story without a picture has no empty cell where one would be
    story = parse(digest).xpath("//h3")[1].getparent()
    assert story.get("class") == "story" and not story.xpath(".//td")


def test_thumbnails_are_a_switch_and_the_lead_picture_stays(shipped: Settings) -> None:
    digest = render(with_render(shipped, thumbnails=False), [pictured(0), pictured(1)])
    assert [i.get("class") for i in parse(digest).xpath("//img")] == ["lead-image"]
    assert not parse(digest).xpath("//*[@class='thumb' or @class='thumb-cell']")


def test_a_picture_without_size_gets_the_configured_shape(shipped: Settings) -> None:
    square = with_render(shipped, image_width=800, image_height=800)
    unsized = Image("https://ree-news.example.com/a.png", 0, 0, "A chart")
    digest = render(square, [article(0, image=unsized)])
    [lead] = parse(digest).xpath("//img")
    assert (lead.get("width"), lead.get("height")) == ("400", "400")  # 536 would be too tall


def test_no_picture_anywhere_leaves_no_image_markup(shipped: Settings) -> None:
    digest = render(shipped, busy_day(5))
    doc = parse(digest)
    assert not doc.xpath("//img") and "lead-image" not in digest.html
    assert doc.xpath("//td[@class='featured']/p[@class='kicker']/text()") == ["Top story"]


def test_a_logo_replaces_the_name_in_the_masthead(shipped: Settings) -> None:
    logo = LogoConfig("https://ree-news.example.com/logo.png", 180, 40)
    digest = render(with_render(shipped, logo=logo), busy_day(2))
    [image] = parse(digest).xpath("//td[@class='masthead']/img")
    assert (image.get("src"), image.get("width"), image.get("height")) == (logo.url, "180", "40")
    assert image.get("alt") == "REE Daily"
    assert not parse(digest).xpath("//p[@class='brand']")


def test_sections_follow_the_configured_order_and_names(shipped: Settings) -> None:
    sections = (
        SectionConfig("Prices", ("Prices",)),
        SectionConfig("Policy and trade", ("Policy", "trade")),
        SectionConfig("Nobody files here", ("Nothing",)),
    )
    day = [
        article(0, categories=("Prices",)),  # the top story stays on top, in no section
        article(1, categories=("Mining", "Australia")),
        article(2, categories=("Trade", "Prices")),  # its first claimed category decides
        article(3, categories=("prices",)),
        article(4, categories=()),
    ]
    doc = parse(render(with_render(shipped, sections=sections, other_title="Elsewhere"), day))
    titles = [h.text_content() for h in doc.xpath("//h2[@class='section-title']")]
    assert titles == ["Prices", "Policy and trade", "Elsewhere"]
    rows = doc.xpath("//h2[@class='section-title'] | //h3")
    order = [row.text_content() for row in rows]
    assert order == ["Prices", day[3].title, "Policy and trade", day[2].title,
                     "Elsewhere", day[1].title, day[4].title]  # fmt: skip


def test_without_sections_the_stories_are_one_list(shipped: Settings) -> None:
    digest = render(with_render(shipped, sections=()), busy_day(4))
    titles = parse(digest).xpath("//h2[@class='section-title']/text()")
    assert titles == ["More rare-earth news (3)"]


def test_in_this_issue_lists_the_first_headlines_in_reading_order(shipped: Settings) -> None:
    day = busy_day(10)
    digest = render(with_render(shipped, sections=()), day)
    doc = parse(digest)
    assert doc.xpath("//h2[@class='contents-title']/text()") == ["In this issue"]
    assert doc.xpath("//ul[@class='contents-list']/li/text()") == [a.title for a in day[:6]]
    assert doc.xpath("//p[@class='contents-more']/text()") == ["and 4 more below"]
    assert "IN THIS ISSUE\n\n- " + day[0].title in digest.text
    assert not doc.xpath("//ul[@class='contents-list']//a")  # the headline links are below
    few = render(shipped, busy_day(3))
    assert not parse(few).xpath("//td[@class='contents']") and "IN THIS ISSUE" not in few.text


def test_the_issue_number_and_reading_time_are_in_the_masthead(shipped: Settings) -> None:
    numbered = render(shipped, busy_day(3), number=128)
    tagline = parse(numbered).xpath("//p[@class='tagline']")[0].text_content()
    assert tagline == "Saturday, 28 November 2026 · No. 128 · 1 min read"
    assert "Saturday, 28 November 2026 · No. 128 · 1 min read\n" in numbered.text
    unnumbered = render(shipped, busy_day(3))
    assert "No." not in parse(unnumbered).xpath("//p[@class='tagline']")[0].text_content()
    long = render(shipped, busy_day(40))
    minutes = int(parse(long).xpath("//p[@class='tagline']")[0].text_content().split()[-3])
    words = len(parse(long).xpath("//td[@class='featured']")[0].text_content().split())
    assert minutes >= 5 and words < minutes * 230


def test_a_long_story_says_how_long_it_takes(shipped: Settings) -> None:
    digest = render(shipped, [article(0, words=1_000), article(1, words=100)])
    meta = parse(digest).xpath("//p[@class='meta']/text()")
    assert meta == ["27 Nov 2026, 21:40 GMT · 5 min read · Reuters",
                    "27 Nov 2026, 21:03 GMT · Mining Weekly"]  # fmt: skip


def test_the_source_is_named_only_when_the_issue_has_several(shipped: Settings) -> None:
    one_feed = [article(n, source="REE News") for n in range(3)]
    digest = render(shipped, one_feed)
    meta = parse(digest).xpath("//p[@class='meta']/text()")
    assert meta[0] == "27 Nov 2026, 21:40 GMT" and not [m for m in meta if "REE News" in m]
    assert "REE News" not in digest.text.split("-- ")[0]


def test_the_editors_note_sits_under_the_masthead_sanitized(
    shipped: Settings, tmp_path: Path
) -> None:
    note = (
        "Good morning. **Prices** are [up](https://ree-news.example.com/prices/).\n\n"
        "<script>alert(1)</script> <b onclick=x>raw html</b>\n\n"
        "[bad](javascript:alert(1)) ![pixel](https://tracker.example/p.gif) `__READER_EMAIL__`\n"
    )
    (tmp_path / "2026-11-28.md").write_text(note, encoding="utf-8")
    digest = render(with_render(shipped, notes_dir=tmp_path), busy_day(4))
    doc = parse(digest)
    cell = doc.xpath("//td[@class='note']")[0]
    above = cell.getparent().getprevious()  # the row right under the masthead's accent bar
    assert cell.getprevious() is None and above.xpath("td[@class='accent-bar']")
    assert doc.xpath("//td[@class='note']//strong/text()") == ["Prices"]
    assert doc.xpath("//td[@class='note']//a/@href") == ["https://ree-news.example.com/prices/"]
    assert not doc.xpath("//script | //b | //img")
    assert not doc.xpath("//@href[contains(., 'javascript')]")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in digest.html  # shown as text, inert
    assert "tracker.example" not in digest.html
    assert digest.html.count(EMAIL_PLACEHOLDER) == 1  # only the footer's slot
    assert "_\u2060_READER_EMAIL__" in cell.text_content()  # shown, but never filled
    assert "FROM THE EDITOR\n\nGood morning. Prices are up" in digest.text


def test_no_note_file_no_note(shipped: Settings, tmp_path: Path) -> None:
    (tmp_path / "2026-11-27.md").write_text("Yesterday's note.", encoding="utf-8")
    digest = render(with_render(shipped, notes_dir=tmp_path), busy_day(2))
    assert "Yesterday" not in digest.html and "FROM THE EDITOR" not in digest.text


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"x" * (NOTE_MAX_BYTES + 1), "8,001 bytes, at most 8,000"),
        (b"Caf\xe9 prices", "not UTF-8"),
    ],
)
def test_a_bad_note_stops_the_render_naming_the_file(
    shipped: Settings, tmp_path: Path, content: bytes, error: str
) -> None:
    (tmp_path / "2026-11-28.md").write_bytes(content)
    with pytest.raises(RenderError, match=rf"2026-11-28\.md.*{error}"):
        render(with_render(shipped, notes_dir=tmp_path), busy_day(2))


def test_forty_stories_with_pictures_and_thumbnails_stay_under_100_kb(
    shipped: Settings, tmp_path: Path
) -> None:
    """The busy day of issue 11: every story pictured, thumbnails on, a note and a logo."""
    (tmp_path / "2026-11-28.md").write_text("A short note from the editor. " * 20, "utf-8")
    logo = LogoConfig("https://ree-news.example.com/logo.png", 180, 40)
    full = with_render(shipped, notes_dir=tmp_path, logo=logo, thumbnails=True)
    highlights = busy_day(1)[0].highlights
    categories = ("Prices", "Policy", "Magnets", "Mining", "Recycling", "Explainers")
    day = [pictured(n, categories=(categories[n % 6],), words=400 + n * 40,
                    highlights=highlights if n == 0 else ()) for n in range(40)]  # fmt: skip
    digest = render(full, day, number=999)
    assert digest.article_ids == tuple(a.id for a in day)  # nothing left out
    size = len(digest.html.encode("utf-8"))
    assert size < 100_000, size
    assert len(parse(digest).xpath("//img[@class='thumb']")) == 39


def test_hostile_picture_and_alt_values_are_escaped(shipped: Settings) -> None:
    image = Image('https://ree-news.example.com/a.jpg?x="><script>', 1200, 675, '"><b>alt</b>')
    digest = render(shipped, [article(0, image=image)])
    [lead] = parse(digest).xpath("//img")
    assert lead.get("alt") == '"><b>alt</b>' and not parse(digest).xpath("//script | //b")


@hypothesis_settings(max_examples=60, deadline=None)
@given(titles=st.lists(st.text(min_size=0, max_size=400), min_size=1, max_size=5))
def test_the_preheader_never_repeats_the_subject(titles: list[str]) -> None:
    day = [article(n, title=title) for n, title in enumerate(titles)]
    text = preheader(day)
    assert 40 <= len(text) <= 130
    assert "\n" not in text and "\r" not in text
    assert text != subject_line("REE Daily", ISSUE, day[0].title)
    if len(day) > 1:
        assert text.startswith("Also: ")


def test_the_preheader_names_the_next_two_headlines() -> None:
    day = [article(0, title="Top"), article(1, title="Second story"),
           article(2, title="Third story"), article(3), article(4)]  # fmt: skip
    assert preheader(day) == "Also: Second story · Third story and 2 more"
    assert preheader(day[:2]) == "Also: Second story | the day's rare-earth market news"
    assert preheader(day[:2], "week's") == "Also: Second story | the week's rare-earth market news"


def test_sections_need_their_categories_to_be_read(shipped: Settings) -> None:
    """A document view that shows the one-link rule holds with sections too."""
    day = [article(n, categories=("Prices",)) for n in range(4)]
    doc = lxml_html.document_fromstring(render(shipped, day).html)
    for item in day[1:]:
        assert len(doc.xpath("//a[@href=$u]", u=item.link)) == 1
    assert doc.xpath("//h2[@class='section-title']/text()") == ["Prices and trade"]


def test_issue_dates_are_shown_in_the_issue_zone(shipped: Settings) -> None:
    tokyo = replace(shipped, timezone=__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    digest = render(tokyo, [article(0)])
    assert "28 Nov 2026, 06:40 JST" in digest.text
    assert date(2026, 11, 28) == ISSUE


def test_the_contact_line_falls_back_to_reply_to(shipped: Settings) -> None:
    reply = "Questions or tips? Reply to this email."
    only_reply_to = replace(with_render(shipped, contact=""), reply_to="editors@example.com")
    digest = render(only_reply_to, busy_day(2))
    assert reply in parse(digest).text_content() and reply in digest.text
    neither = render(replace(with_render(shipped, contact=""), reply_to=None), busy_day(2))
    assert reply not in neither.text and "Tips, questions" not in neither.text
    assert "Tips, questions" not in parse(neither).text_content()
