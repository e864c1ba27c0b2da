"""Clean-up of feed text and HTML: what reaches a reader's inbox must be safe and readable."""

from __future__ import annotations

import pytest

from newsletter.clean import (
    READ_MORE,
    clean_html,
    excerpt_html,
    extract_highlights,
    fix_text,
    html_to_text,
    one_line,
    repair_mojibake,
    safe_url,
    sanitize_html,
    shorten,
    summarize,
)

LINK = "https://ree-news.example.com/2026/11/27/story/"


def mojibake(text: str, code_page: str) -> str:
    """UTF-8 read as `code_page` the way browsers do: an undefined byte becomes its C1 control."""
    return "".join(
        bytes([b]).decode(code_page, errors="ignore") or chr(b) for b in text.encode("utf-8")
    )


# sanitizer


def test_script_and_style_are_dropped_with_their_content() -> None:
    html = (
        "<p>Safe</p><script>alert('x')</script>"
        "<style>@import url(https://evil.example/a.css); p { color: red }</style>"
    )
    assert sanitize_html(html) == "<p>Safe</p>"


def test_event_handlers_and_style_attributes_are_removed() -> None:
    html = '<p onclick="steal()" style="background:url(https://t.example/px)">Hi</p>'
    html += '<img src="https://img.example/a.png" onerror="alert(1)" alt="A" width="40">'
    cleaned = sanitize_html(html)
    assert cleaned == '<p>Hi</p><img src="https://img.example/a.png" alt="A" width="40">'


@pytest.mark.parametrize(
    "href",
    ["javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "data:text/html,x"],
)
def test_only_web_and_mail_urls_survive(href: str) -> None:
    cleaned = sanitize_html(f'<a href="{href}">click</a>')
    assert "href" not in cleaned
    assert "click" in cleaned
    assert "javascript" not in cleaned.lower()


def test_links_get_noopener_and_keep_title() -> None:
    cleaned = sanitize_html('<a href="https://x.example/" title="T" target="_blank">x</a>')
    assert cleaned == '<a href="https://x.example/" title="T" rel="noopener">x</a>'
    mail = sanitize_html('<a href="mailto:desk@ree-news.example.com">mail us</a>')
    assert 'href="mailto:desk@ree-news.example.com"' in mail


def test_data_images_remote_css_and_embeds_are_gone() -> None:
    html = (
        '<img src="data:image/png;base64,AAAA" alt="x">'
        '<link rel="stylesheet" href="https://evil.example/a.css">'
        '<iframe src="https://evil.example/">frame</iframe>'
        '<object data="x.swf">object</object>'
        '<form action="https://evil.example/"><input name="pw">form</form><p>kept</p>'
    )
    assert sanitize_html(html) == "<p>kept</p>"


def test_relative_urls_resolve_against_the_article_or_go() -> None:
    html = '<a href="/prices/">prices</a>'
    resolved = sanitize_html(html, base_url=LINK)
    assert 'href="https://ree-news.example.com/prices/"' in resolved
    assert sanitize_html(html) == "prices"


def test_allowed_structure_is_kept_and_unknown_tags_unwrapped() -> None:
    html = "<h2>Head</h2><div><span>in div</span></div><ul><li><strong>a</strong></li></ul>"
    assert sanitize_html(html) == "<h2>Head</h2>in div<ul><li><strong>a</strong></li></ul>"


# mojibake and plain text


@pytest.mark.parametrize(
    ("text", "code_page"),
    [
        ("Zürich – café “quoted” naïve", "cp1252"),
        ("Kraków – Brno, Škoda, Žilina", "cp1250"),
        ("Zürich – Łódź", "cp1250"),  # 0x81 is undefined in cp1250: the sloppy path
        ("Zürich – Łódź", "cp1251"),
        ("Zażółć gęślą jaźń", "cp1251"),  # ftfy alone leaves this one
        ("Příliš žluťoučký kůň", "cp1251"),
        ("Редкоземельные металлы дорожают", "cp1251"),
        ("Редкоземельные металлы дорожают", "cp1250"),
        ("Κρήτη: σπάνιες γαίες", "cp1253"),
        ("İstanbul şehir ğ", "cp1254"),
        ("Klaipėda, Šiauliai, Liepāja", "cp1257"),
    ],
)
def test_mojibake_from_windows_code_pages_is_repaired(text: str, code_page: str) -> None:
    broken = mojibake(text, code_page)
    assert broken != text
    assert fix_text(broken) == text


def test_mojibake_made_with_strict_decoding_is_repaired() -> None:
    for text, code_page in [("Kraków – Škoda", "cp1250"), ("Zürich – Łódź", "cp1251")]:
        broken = text.encode("utf-8").decode(code_page, errors="strict")
        assert fix_text(broken) == text


@pytest.mark.parametrize(
    "text",
    [
        "Zürich – Łódź",
        "Её дом",
        "Её",
        "Київ, ґанок",
        "Κρήτη ελληνικά",
        "Straße ÄÖÜ äöü",
        "Ça va? À bientôt",
        "日本語のテキスト",
        "“Curly” ‘quotes’ … — €5 ±2 °C",
        "Dysprosium oxide, 1,905 yuan/kg",
    ],
)
def test_correct_text_is_left_alone(text: str) -> None:
    assert fix_text(text) == text
    assert repair_mojibake(text) == text


def test_fix_text_makes_one_line_and_decodes_nothing_again() -> None:
    # a plain-text field is already decoded: "&amp;" in it is what the author wrote
    assert fix_text("Lynas&#8217; plant &amp; more") == "Lynas&#8217; plant &amp; more"
    assert fix_text("History of the &lt;blink&gt; tag") == "History of the &lt;blink&gt; tag"
    assert fix_text("Prices up\r\nBcc: x@example.com\x00\x1b") == "Prices up Bcc: x@example.com"
    assert fix_text("  a\u2028b\tc\xa0 ") == "a b c"
    assert fix_text("cafe\u0301") == "café"  # NFC


@pytest.mark.parametrize(
    "text",
    [
        "系列：专业稀土分离",  # fullwidth colon in Chinese
        "ＮｄＰｒ　価格",  # fullwidth Latin and the ideographic space
        "نامه‌ها و گزارش‌ها",  # Persian: zero-width non-joiner inside words
        "traders 👩‍💻 cheer 👨‍👩‍👧",  # emoji joined by ZWJ
        "The ﬁnal oﬃcial ﬁgures",  # ligatures
        "Prix\u202f: 45\u00a0€",  # French narrow no-break space, no-break space
        "क्षेत्र में",  # Devanagari conjunct (virama)
    ],
)
def test_legitimate_text_is_kept_as_written(text: str) -> None:
    assert fix_text(text) == text
    assert one_line(text) == text
    assert summarize(f"<p>{text}</p>") == text


def test_one_line_drops_what_breaks_a_header_or_reverses_a_line() -> None:
    assert one_line("Prices\r\nBcc: x\u2028y\u2029z") == "Prices Bcc: x y z"
    assert one_line("evil\u202etxt.exe\u202c and \u2066isolate\u2069") == "eviltxt.exe and isolate"
    assert one_line("\ufeffBOM\ue000private\x00x") == "BOMprivate x"
    assert one_line("a \u00a0 b\u00a0c") == "a b\u00a0c"


def test_mojibake_in_html_is_repaired_without_touching_markup() -> None:
    broken = mojibake("<p>Zażółć &amp; gęślą</p>", "cp1251")
    assert clean_html(broken) == "<p>Zażółć &amp; gęślą</p>"


# WordPress clean-up


def test_wordpress_comments_and_empty_paragraphs_are_dropped() -> None:
    html = (
        "<!-- wp:paragraph -->\n<p>One</p>\n<!-- /wp:paragraph -->\n\n"
        "<!-- wp:paragraph --><p>&nbsp;</p><!-- /wp:paragraph -->"
        "<p> </p><p></p><p>\xa0<br></p><!-- a plain comment --><p>Two</p>"
    )
    assert clean_html(html) == "<p>One</p>\n<p>Two</p>"


@pytest.mark.parametrize("tail", ["[...]", "[…]", "[&hellip;]", "[&#8230;]", " [ &#8230; ] "])
def test_excerpt_tail_becomes_read_more_link(tail: str) -> None:
    html = clean_html(f"<p>The plant will restart {tail}</p>", LINK)
    expected = f'… <a href="{LINK}" rel="noopener">{READ_MORE}</a></p>'
    assert html == f"<p>The plant will restart{expected}"


@pytest.mark.parametrize(
    "ending",
    ["restart. [&hellip;]", "restart.[…]", "restart, [...]", "restart… […]", "restart […]"],
)
def test_excerpt_ending_is_one_ellipsis(ending: str) -> None:
    html = clean_html(f"<p>The plant will {ending}</p>", LINK)
    assert html.startswith("<p>The plant will restart… <a ")
    assert summarize(html) == "The plant will restart…"
    assert summarize("<p>The plant will restart. …</p>") == "The plant will restart…"


def test_excerpt_tail_without_a_link_is_just_an_ellipsis() -> None:
    assert clean_html("Plain excerpt [&#8230;]", "javascript:alert(1)") == "Plain excerpt…"


def test_ellipsis_inside_text_is_not_a_tail() -> None:
    html = "<p>Prices […] rose</p>"
    assert clean_html(html, LINK) == html


# text views


def test_html_to_text_keeps_structure() -> None:
    html = (
        '<h2>Prices</h2><p>NdPr <a href="https://x.example/ndpr">rose</a> again.<br>Second'
        ' line.</p><ul><li><p>Dy up</p></li><li>Tb <a href="https://x.example/">'
        "https://x.example/</a></li></ul><blockquote><p>Quote</p></blockquote>"
    )
    assert html_to_text(html) == (
        "Prices\n\nNdPr rose (https://x.example/ndpr) again.\nSecond line.\n\n"
        "- Dy up\n- Tb https://x.example/\n\nQuote"
    )


def test_html_to_text_table_rows_are_lines() -> None:
    html = "<table><tr><th>Oxide</th><th>Price</th></tr><tr><td>NdPr</td><td>612</td></tr></table>"
    assert html_to_text(html) == "Oxide | Price\n\nNdPr | 612"


def test_html_to_text_never_shows_script_or_style() -> None:
    assert html_to_text("<p>a<script>var x = 1;</script><style>p {}</style>b</p>") == "ab"


def test_html_to_text_decodes_entities() -> None:
    assert html_to_text("<p>AT&amp;T &lt;3 &nbsp;caf&eacute;</p>") == "AT&T <3 café"


def test_highlights_prefer_list_items() -> None:
    items = "".join(f"<li>Point {n}</li>" for n in range(1, 7))
    html = f"<p>Intro sentence. Another one.</p><ul>{items}</ul>"
    assert extract_highlights(html) == ("Point 1", "Point 2", "Point 3", "Point 4")


def test_highlights_fall_back_to_sentences_trimmed() -> None:
    long = "Separation " + "really " * 40 + "matters."
    html = f"<p>First sentence here. Second one! {long} Fourth? Fifth.</p>"
    highlights = extract_highlights(html)
    assert highlights[:2] == ("First sentence here.", "Second one!")
    assert len(highlights) == 4
    assert len(highlights[2]) <= 160
    assert highlights[2].endswith("…")


def test_highlights_skip_tables_and_captions() -> None:
    html = (
        "<p>Prices were flat.</p><figure><table><tr><td>NdPr</td><td>612</td></tr></table>"
        "<figcaption>Source: test.</figcaption></figure><p>Traders wait.</p>"
    )
    assert extract_highlights(html) == ("Prices were flat.", "Traders wait.")


def test_summary_is_short_and_cut_at_a_word() -> None:
    html = "<p>" + "Neodymium magnets power motors. " * 30 + "</p>"
    summary = summarize(html)
    assert len(summary) <= 300
    assert summary.endswith("…")
    assert summary[:-1].split()[-1] in ("Neodymium", "magnets", "power", "motors")
    assert summarize("<p>Short.</p>") == "Short."


def test_summary_drops_read_more_but_keeps_the_ellipsis() -> None:
    html = clean_html("<p>The plant will restart [&#8230;]</p>", LINK)
    assert summarize(html) == "The plant will restart…"


def test_shorten_never_cuts_a_word() -> None:
    assert shorten("alpha beta gamma", 12) == "alpha beta…"
    assert shorten("alpha beta", 20) == "alpha beta"
    assert len(shorten("x" * 50, 10)) == 10


def test_excerpt_html_takes_first_paragraphs() -> None:
    paragraphs = "".join(f"<p>{'word ' * 50}{n}</p>" for n in range(5))
    excerpt = excerpt_html(paragraphs, limit=400)
    assert excerpt.count("<p>") == 2
    assert (
        excerpt_html("<ul><li>Only a list</li><li>of two</li></ul>") == "<p>Only a list of two</p>"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://ree-news.example.com/a", "https://ree-news.example.com/a"),
        (" http://x.example/ ", "http://x.example/"),
        ("javascript:alert(1)", ""),
        ("/relative/path", ""),
        ("mailto:a@example.com", ""),
        ("https:///no-host", ""),
    ],
)
def test_safe_url(url: str, expected: str) -> None:
    assert safe_url(url) == expected
