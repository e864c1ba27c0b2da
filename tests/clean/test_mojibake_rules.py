"""Mojibake: the rules that decide a repair, each on the smallest text where it decides.

`tests/clean/test_mojibake.py` checks whole corpus sentences, where a garbled sentence holds so many
proven repairs that a slip in one rule is covered by the others. Here each text is short, or
mixes correct and garbled parts, so that one rule alone decides what comes back: a garbled word
on its own, a neutral span that needs proof from elsewhere, a correct word next to proven repairs,
a span that would decode to a control character.
"""

from __future__ import annotations

import unicodedata
from unittest.mock import patch

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from newsletter.clean import mojibake, repair_mojibake
from tests.clean.test_mojibake import CORPUS, ISO, OTHER, WINDOWS, ambiguity, garblings

WORDS = sorted({word for sentence in CORPUS for word in sentence.split()})


def garble(text: str, page: str) -> str:
    """UTF-8 read through `page`, undefined bytes kept as C1 controls (as browsers do)."""
    return text.encode("utf-8").decode(page, "test-keep-c1")


@settings(deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6))
def test_correct_words_in_any_order_and_mix_of_scripts_are_left_alone(words: list[str]) -> None:
    text = " ".join(words)
    assert repair_mojibake(text) == text


@settings(deadline=None)
@given(st.sampled_from(CORPUS), st.sampled_from(WINDOWS + ISO + OTHER), st.data())
def test_a_sentence_in_any_word_order_garbled_through_any_page_comes_back(
    sentence: str, page: str, data: st.DataObject
) -> None:
    assume(ambiguity(page, sentence) is None)
    shuffled = " ".join(data.draw(st.permutations(sentence.split())))
    for garbled in garblings(shuffled, page):
        assert repair_mojibake(garbled) == shuffled


@pytest.mark.parametrize(
    ("text", "page"),
    [
        ("« Bonjour »", "cp1252"),  # "Â«": an accented capital before punctuation
        ("רשת", "cp874"),  # "ืจืฉืช": a word alone that starts with a Thai mark
        ("él dijo", "cp874"),  # "รฉl": a Thai-looking span with an ASCII letter after it
        ("có", "cp874"),  # "cรณ": after one ASCII letter, at the start of the text
        ("شد", "iso8859-15"),  # "ØŽØ¯": a symbol between two letters
        ("Tokyo, 3 May (土)", "cp1256"),  # "هœں": Arabic and Latin letters in one span
    ],
)
def test_a_garbled_word_on_its_own_is_repaired(text: str, page: str) -> None:
    """No other repair in the text vouches for these: each must prove itself."""
    garbled = garble(text, page)
    assert garbled != text
    assert repair_mojibake(garbled) == text


def test_a_neutral_span_is_repaired_only_once_the_page_has_proven_itself() -> None:
    """ "Â\\xa0" (a no-break space through cp1252) is no stranger than what it stands for."""
    assert repair_mojibake("5Â\xa0km") == "5Â\xa0km"
    assert repair_mojibake(f"{garble('été', 'cp1252')} 5Â\xa0km") == "été 5\xa0km"


@pytest.mark.parametrize(
    ("correct", "page"),
    [
        ("Рік: ", "cp1251"),  # "Рі" is "г" in cp1251, but "Рік" goes on after it
        ("«ВСЁ» ", "cp1251"),  # "СЁ" is "Ѩ", but "В" comes before it
        ("Всё: ", "koi8-r"),  # "сё" is "ӣ" in KOI8-R, "В" before it, at the text's start
    ],
)
def test_a_correct_word_among_proven_repairs_is_left_alone(correct: str, page: str) -> None:
    """A span inside a longer word is never repaired on another span's proof."""
    garbled = garble("выручка выросла", page)
    assert repair_mojibake(correct + garbled) == f"{correct}выручка выросла"


def test_a_symbol_after_a_letter_counts_once() -> None:
    """Through KOI8-R, "м²" re-encodes to U+035D, a combining mark on "к": no better, since
    "²" next to one letter is one sign of garbling, not two."""
    assert repair_mojibake("Город занимает 5 км².") == "Город занимает 5 км²."


@pytest.mark.parametrize(
    ("correct", "garbled_part", "page", "fixed"),
    [
        # the ellipsis is proven; "Ті" (cp1251 for "ҳ") is Cyrillic, which no repair produced
        ("Ті слова", "…", "cp1251", "Ті слова…"),
        # the Russian is proven; "ФК" (ISO-8859-5 for "ĺ") would come out Latin
        ("ФК «Зенит»: ", "обыграл", "iso8859-5", "ФК «Зенит»: обыграл"),
    ],
)
def test_a_neutral_span_needs_a_script_the_proven_repairs_produced(
    correct: str, garbled_part: str, page: str, fixed: str
) -> None:
    assert repair_mojibake(correct + garble(garbled_part, page)) == fixed


def test_a_repaired_accent_vouches_for_the_letter_it_sits_on() -> None:
    """Decomposed (NFD) "é" garbled: the combining accent alone is repaired, and the "e" it
    sits on counts as Latin produced, so the neutral "Ã\\xa0" ("à") is repaired too."""
    text = garble(unicodedata.normalize("NFD", "écoute"), "cp1252") + " Ã\xa0 Paris"
    assert repair_mojibake(text) == unicodedata.normalize("NFD", "écoute") + " à Paris"


@pytest.mark.parametrize("page", ["cp1252", "cp1251"])
@pytest.mark.parametrize(
    "char",
    [
        "\x85",  # a C1 control (Cc)
        "\u0378",  # unassigned (Cn)
        "\ue000",  # private use (Co)
    ],
)
def test_a_span_that_would_decode_to_a_control_or_unassigned_character_is_left(
    char: str, page: str
) -> None:
    """The span stays as it is, and the repairs after it are still made."""
    text = garble(f"{char} Zoë", page)
    assert repair_mojibake(text) == garble(char, page) + " Zoë"


_LEGACY = sorted(mojibake._ALL)  # every character a legacy page decodes a high byte to


_PIECE = st.one_of(
    st.sampled_from([*_LEGACY, " ", "7", ".", "a"]),  # correct text around the garbling
    st.tuples(
        st.characters(min_codepoint=0x80, max_codepoint=0xFFFF, categories=("L", "M", "N", "P")),
        st.sampled_from(WINDOWS + ISO + OTHER),
    ).map(lambda pair: garble(*pair)),
)


@settings(deadline=None, max_examples=1000)
@given(st.lists(_PIECE, min_size=1, max_size=5).map("".join))
def test_the_calm_shortcut_changes_no_repair(text: str) -> None:
    """`_calm` lets a span skip `_badness`; it must only skip spans the full check would leave."""
    with patch.object(mojibake, "_calm", lambda text, start, end: False):
        full = repair_mojibake(text)
    assert repair_mojibake(text) == full


def test_a_thai_digit_is_no_letter_the_shortcut_may_vouch_for() -> None:
    """Thai "๓ูฌ" is the UTF-8 of the Arabic thousands separator read as cp874: a digit with a
    vowel sign on it, which `_badness` counts, so the span is repaired."""
    assert repair_mojibake(" ๓ูฌ ") == " ๓٬ "


def test_text_garbled_twice_takes_two_rounds_within_the_bound() -> None:
    """Each round undoes one layer, and the rounds are bounded by the non-ASCII characters:
    "ÃƒÂ±" (four, none ASCII) is "ñ" garbled twice through cp1252 and needs two; correct text
    that no round changes comes back as it is once a round finds nothing to repair."""
    twice = garble(garble("ñ", "cp1252"), "cp1252")
    assert twice == "ÃƒÂ±"
    assert repair_mojibake(twice) == "ñ"
    assert repair_mojibake("ÃƒÂ± " * 50) == "ñ " * 50
    assert repair_mojibake("เธอ Рік Её " * 50) == "เธอ Рік Её " * 50
