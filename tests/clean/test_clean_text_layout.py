"""Plain text from sanitized HTML, pinned at its edges: cut lengths, spaces, lists, links.

Known answers worked out by hand; each names the rule of `newsletter.clean.text` it holds.
"""

from __future__ import annotations

import pytest

from newsletter.clean import (
    excerpt_html,
    extract_highlights,
    fix_text,
    html_to_text,
    html_to_words,
    one_line,
    shorten,
    summarize,
)

# shorten


def test_a_text_exactly_at_the_limit_is_kept_whole() -> None:
    assert shorten("alpha beta", 10) == "alpha beta"
    assert shorten("alpha beta!", 10) == "alpha…"


def test_the_cut_falls_at_the_last_space_if_that_keeps_half_the_limit() -> None:
    # limit 12: the first 11 characters are "abcde fghij"; the head "abcde" is 5 < 6: cut hard
    assert shorten("abcde fghijklmnop", 12) == "abcde fghij…"
    # limit 10: "abcde fghi", head "abcde" is 5 >= 5: cut at the space
    assert shorten("abcde fghijklmnop", 10) == "abcde…"
    assert shorten("abcdefghijklmnop", 6) == "abcde…"  # no space at all


@pytest.mark.parametrize("mark", [" ", ",", ";", ":", ".", "-", "\u2013", "\u2014"])
def test_punctuation_before_the_ellipsis_goes(mark: str) -> None:
    assert shorten(f"alpha beta{mark}{mark} gamma delta", 14) == "alpha beta…"


def test_shorten_collapses_white_space_first() -> None:
    assert shorten("  alpha \n\n beta  ", 10) == "alpha beta"


# one-line fields


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a\nb\r\nc\td", "a b c d"),  # Cc: a space
        ("a\u2028b\u2029c", "a b c"),  # line and paragraph separators
        ("a\ud800b", "ab"),  # a lone surrogate
        ("a\ue000b", "ab"),  # private use
        ("a\U000e0080b", "ab"),  # unassigned
        ("\u202eevil\u202c \u2066x\u2069\ufeff", "evil x"),  # bidi overrides, isolates, BOM
        ("45\u00a0€ Prix\u202f: 東京\u3000駅", "45\u00a0€ Prix\u202f: 東京\u3000駅"),
        ("a\u00a0\u00a0b", "a b"),  # a run of special spaces is layout
        ("نامه\u200cها 👩\u200d💻", "نامه\u200cها 👩\u200d💻"),  # joiners stay
        ("  a  ", "a"),
    ],
)
def test_one_line_keeps_what_a_reader_sees_and_drops_what_breaks_a_header(
    raw: str, clean: str
) -> None:
    assert one_line(raw) == clean


def test_fix_text_repairs_normalizes_and_keeps_entities() -> None:
    assert fix_text("Cafe\u0301 &lt;b&gt; ZÃ¼rich\n") == "Café &lt;b&gt; Zürich"


# HTML to text


def test_a_list_item_stays_on_one_line_whatever_blocks_it_holds() -> None:
    html = "<ul><li><p>One</p><p>two</p></li><li><h3>Three</h3></li></ul><p>After</p>"
    assert html_to_text(html) == "- One two\n- Three\n\nAfter"


def test_nested_lists_and_an_empty_item() -> None:
    html = "<ul><li>a<ul><li>b</li></ul></li><li></li><li>c</li></ul>"
    assert html_to_text(html) == "- a\n- b\n- c"


def test_table_cells_are_joined_per_row_and_a_new_row_starts_its_count() -> None:
    html = (
        "<table><caption>Prices</caption><tr><th>Oxide</th><th>USD</th><th>Week</th></tr>"
        "<tr><td>NdPr</td><td>612</td><td>+2%</td></tr></table><p>End</p>"
    )
    assert html_to_text(html) == "Prices\n\nOxide | USD | Week\n\nNdPr | 612 | +2%\n\nEnd"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ('<a href="https://x.example/a">Story</a>', "Story (https://x.example/a)"),
        ('<a href="https://x.example/a">https://x.example/a</a>', "https://x.example/a"),
        ('<a href="mailto:desk@x.example">desk@x.example</a>', "desk@x.example"),
        ('<a href="mailto:desk@x.example">Write</a>', "Write (mailto:desk@x.example)"),
        ("<a>No target</a>", "No target"),
        ('<a href="">Empty</a>', "Empty"),
        (
            '<p>See <a href="https://x.example/">it</a> and <a>this</a>.</p>',
            "See it (https://x.example/) and this.",
        ),
    ],
)
def test_a_link_shows_its_target_unless_its_label_is_the_target(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_words_leave_link_targets_out() -> None:
    assert html_to_words('<p>See <a href="https://x.example/">it</a></p>') == "See it"


def test_a_line_break_and_blank_lines() -> None:
    html = "<p>a<br>b<br><br><br><br>c</p><div></div><div></div><p>d</p>"
    assert html_to_text(html) == "a\nb\n\nc\n\nd"


def test_a_stray_closing_tag_changes_nothing() -> None:
    html = "</li></script></ul><p>a</p></noscript><ul><li>b</li></ul>"
    assert html_to_text(html) == "a\n\n- b"


def test_a_widget_inside_a_widget_hides_until_the_outer_one_closes() -> None:
    html = "<p>a<noscript><noscript>x</noscript>y</noscript>b</p>"
    assert html_to_text(html) == "ab"


def test_one_special_space_is_kept_and_a_run_of_spaces_becomes_one() -> None:
    assert (
        html_to_text("<p>45\u00a0€ and  \n  more\u3000text</p>") == "45\u00a0€ and more\u3000text"
    )


# summaries, highlights, excerpts


def test_a_summary_is_at_most_300_characters_by_default() -> None:
    words = " ".join(f"w{n:03d}" for n in range(100))  # 499 characters
    summary = summarize(f"<p>{words}</p>")
    assert summary == words[:294] + "…" and len(summary) == 295
    exactly = words[:299] + "x"  # 300 characters
    assert summarize(f"<p>{exactly}</p>") == exactly


def test_a_summary_joins_list_items_and_drops_their_dashes() -> None:
    assert summarize("<p>Intro:</p><ul><li>one</li><li>two</li></ul>") == "Intro: one two"


def test_a_summary_ending_in_punctuation_and_ellipsis_reads_one_ellipsis() -> None:
    assert summarize("<p>Prices rise, …</p>") == "Prices rise…"
    assert summarize("<p>Prices rise …</p>") == "Prices rise …"


def test_highlights_are_four_items_of_at_most_160_characters_by_default() -> None:
    items = "".join(f"<li>{n}{'x' * 200}</li>" for n in range(6))  # one long word each
    highlights = extract_highlights(f"<ul>{items}</ul>")
    assert highlights == tuple(f"{n}{'x' * 158}…" for n in range(4))


def test_sentence_highlights_split_only_before_a_capital_or_a_digit() -> None:
    html = "<p>Prices rose 5 p.c. in May. 2027 looks better! is it? Yes.</p>"
    assert extract_highlights(html) == (
        "Prices rose 5 p.c. in May.",
        "2027 looks better! is it?",
        "Yes.",
    )


def test_highlights_skip_blank_items() -> None:
    assert extract_highlights("<ul><li> </li><li>one</li></ul>") == ("one",)


def test_an_excerpt_takes_paragraphs_until_600_characters_by_default() -> None:
    paragraph = "<p>" + "x" * 299 + "</p>"
    assert excerpt_html(paragraph * 3).count("<p>") == 3  # 299 + 299 < 600: a third one
    paragraph = "<p>" + "x" * 300 + "</p>"
    assert excerpt_html(paragraph * 3).count("<p>") == 2  # 600 reached after two
    assert excerpt_html(paragraph * 3, limit=301).count("<p>") == 2
    assert excerpt_html(paragraph * 3, limit=300).count("<p>") == 1


def test_an_excerpt_without_paragraphs_is_the_summary_escaped() -> None:
    assert excerpt_html("<ul><li>a &lt;b&gt; &amp; c</li></ul>") == "<p>a &lt;b&gt; &amp; c</p>"
    assert excerpt_html("<ul><li> </li></ul>") == ""


def test_a_link_around_other_markup_shows_its_target_once_at_its_end() -> None:
    html = '<p><a href="https://x.example/">the <b>new</b> plant</a> opens</p>'
    assert html_to_text(html) == "the new plant (https://x.example/) opens"


def test_a_stray_closing_link_tag_adds_no_target() -> None:
    assert html_to_text("Lynas</a> rises") == "Lynas rises"


def test_cells_outside_a_table_row_are_still_separated_only_between_them() -> None:
    assert html_to_text("<td>a</td><td>b</td>") == "a | b"


def test_an_excerpt_from_a_summary_keeps_quotes_as_written() -> None:
    assert excerpt_html("<ul><li>Lynas said \"yes\" and 'no'</li></ul>") == (
        "<p>Lynas said \"yes\" and 'no'</p>"
    )


def test_text_before_a_block_in_a_list_item_is_kept_apart_from_it() -> None:
    assert html_to_text("<ul><li>One<p>two</p></li></ul>") == "- One two"


def test_an_excerpt_from_a_summary_is_as_long_as_the_excerpt_limit() -> None:
    words = " ".join(f"w{n:03d}" for n in range(100))  # 499 characters
    assert excerpt_html(f"<ul><li>{words}</li></ul>") == f"<p>{words}</p>"
    assert excerpt_html(f"<ul><li>{words}</li></ul>", limit=300) == f"<p>{words[:294]}…</p>"


def test_a_link_whose_label_is_its_target_split_by_markup_shows_it_once() -> None:
    html = '<a href="https://x.example/a">https://<b>x.example</b>/a</a>'
    assert html_to_text(html) == "https://x.example/a"


def test_a_second_closing_link_tag_adds_no_second_target() -> None:
    html = '<a href="https://x.example/">a</a> b</a> c'
    assert html_to_text(html) == "a (https://x.example/) b c"


def test_half_the_limit_rounds_down_for_an_odd_limit() -> None:
    # limit 11: the first 10 characters are "abcde fghi"; the head "abcde" is 5 >= 11 // 2
    assert shorten("abcde fghijklmnop", 11) == "abcde…"


def test_only_punctuation_is_trimmed_before_the_ellipsis_not_letters() -> None:
    assert shorten("alpha betaX gamma", 12) == "alpha betaX…"
