"""Mojibake: UTF-8 read through a single-byte code page is put back; correct text never changes.

The corpus (`tests/data/mojibake/corpus.txt`) is news-like text in the scripts feeds send: each
sentence must come through untouched, and each garbling of it through a Windows, ISO-8859, Mac
Roman or KOI8 page that cannot spell it must be repaired exactly. `AMBIGUOUS` lists the few
garblings that two pages explain equally well, each with what the repair gives instead.
"""

from __future__ import annotations

import codecs
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.clean import clean_html, fix_text, html_to_text, repair_mojibake

CORPUS = [
    line
    for line in (Path(__file__).parents[1] / "data" / "mojibake" / "corpus.txt")
    .read_text(encoding="utf-8")
    .split("\n")
    if line and not line.startswith("#")
]
WINDOWS = ["cp874", *(f"cp125{n}" for n in range(9))]
ISO = [f"iso8859-{n}" for n in range(1, 17) if n != 12]
OTHER = ["mac_roman", "koi8-r", "koi8-u"]  # also tried, though feeds rarely declare them


def _keep_c1(error: UnicodeError) -> tuple[str, int]:
    """Decode an undefined byte as the C1 control of its number, as browsers and feeds do."""
    assert isinstance(error, UnicodeDecodeError)
    return "".join(chr(b) for b in error.object[error.start : error.end]), error.end


codecs.register_error("test-keep-c1", _keep_c1)


def garblings(text: str, page: str) -> set[str]:
    """`text` as UTF-8 read through `page`, strictly and the forgiving way; none if it fits."""
    try:
        text.encode(page)
        return set()  # the page spells the text itself: nothing is garbled
    except UnicodeEncodeError:
        pass
    found = set()
    for errors in ("strict", "test-keep-c1"):
        try:
            found.add(text.encode("utf-8").decode(page, errors))
        except UnicodeDecodeError:
            continue
    return found


MIXED = "Lynas (澳洲) и «Норникель» agreed — הסכם נחתם — ตกลง, ông nói."
# (page, start of the sentence): what is left, and why no repair can know better
AMBIGUOUS = {
    # CJK read as Thai, Cyrillic or Nordic letters looks like words of those scripts
    ("cp874", MIXED[:12]): "Lynas (ๆพณๆดฒ) и",
    ("cp1251", MIXED[:12]): "Lynas (жѕіжґІ) и",
    ("iso8859-5", MIXED[:12]): "Lynas (цОГцДВ) и",
    ("iso8859-10", MIXED[:12]): "Lynas (æūģæīē) и",
    ("iso8859-11", MIXED[:12]): "Lynas (ๆพณๆดฒ) и",
    # the same letters stand for other bytes in cp1250 (ą, Ą) or in Latin-1/-4/-10 (þ, æ, û)
    ("iso8859-2", "La producción"): "aùo; ¿serå",
    ("iso8859-2", "A mineração"): "Araxå",
    ("iso8859-2", "Narva tehas"): "pßsimagneteid",
    ("iso8859-4", "The naïve"): "cafæ-owner",
    ("iso8859-4", "“Ça suffit”"): "dæclaræ",
    ("iso8859-7", "Narva tehas"): "Páhjamaadest",
    ("iso8859-10", "La producción"): "producciûn",
    ("iso8859-10", "A mineração"): "mineraçëo",
    ("iso8859-10", "România"): "Romênia",
    ("iso8859-10", "Türkiye"): "Tþrkiye",
    ("iso8859-10", "İhracat"): "þreticileri",
    ("iso8859-16", "La producción"): "¿serå",
    ("iso8859-16", "A mineração"): "Araxå",
    # Hebrew points read as Latin-1 with C1 controls kept: "×" is two bytes in ISO-8859-8
    ("iso8859-8", "המחיר של"): "××ָה",
    ("iso8859-8", MIXED[:12]): "×\xa0×",
}


def ambiguity(page: str, sentence: str) -> str | None:
    return next(
        (v for (p, s), v in AMBIGUOUS.items() if p == page and sentence.startswith(s)), None
    )


def test_the_corpus_is_left_exactly_as_written() -> None:
    assert len(CORPUS) >= 50
    for sentence in CORPUS:
        assert repair_mojibake(sentence) == sentence
        assert fix_text(sentence) == unicodedata.normalize("NFC", sentence)
        html = clean_html(f"<p>{sentence.replace('&', '&amp;').replace('<', '&lt;')}</p>")
        assert html_to_text(html) == sentence


@pytest.mark.parametrize("page", WINDOWS + ISO + OTHER)
def test_every_garbling_through_a_code_page_is_repaired(page: str) -> None:
    left = {}
    for sentence in CORPUS:
        for garbled in garblings(sentence, page):
            repaired = repair_mojibake(garbled)
            if repaired != sentence:
                left[sentence[:30]] = repaired
    for start, repaired in left.items():
        expected = ambiguity(page, start)
        assert expected is not None, f"{page}: {start!r} came out as {repaired!r}"
        assert expected in repaired  # the known leftover, nothing else
        assert repair_mojibake(repaired) == repaired
    for (known_page, start), _ in AMBIGUOUS.items():
        if known_page == page:  # an entry the repair has outgrown must go from the list
            assert any(s.startswith(start) for s in left), (page, start)


@pytest.mark.parametrize(
    ("garbled", "fixed"),
    [
        ("refiningโ€”the", "refining—the"),  # cp874, the site's own articles
        ("refiningâ€”the", "refining—the"),  # cp1252
        ("Zoรซ Mรผller", "Zoë Müller"),  # cp874 looks like Thai letters
        ("cafר", None),  # cp1255: nothing to undo ("ר" is a letter, not a garbling)
        ("Kraków â€“ ×¨×ž×ª ×’×Ÿ", "Kraków – רמת גן"),  # Hebrew through cp1252
        ("Ù…Ø¹Ø§Ø¯Ù† Ù†Ø§Ø¯Ø±Ø©", "معادن نادرة"),  # Arabic through cp1252
        ("ظ…ط¹ط§ط¯ظ† ظ†ط§ط¯ط±ط©", "معادن نادرة"),  # Arabic through cp1256
        ("׳׳¢׳'׳ ׳™׳", None),  # cp1255 of Hebrew, lossy: left alone
        ("Viá»‡t Nam", "Việt Nam"),  # Vietnamese through cp1252
        ("ViÓ»t Nam", None),  # not mojibake of anything sensible
        ("Ã¢â‚¬â€œ double", "– double"),  # UTF-8 garbled twice
    ],
)
def test_known_garblings(garbled: str, fixed: str | None) -> None:
    assert repair_mojibake(garbled) == (garbled if fixed is None else fixed)


@pytest.mark.parametrize("page", ["cp1255", "cp1256", "cp1258"])
def test_the_pages_main_missed(page: str) -> None:
    """cp1255, cp1256 and cp1258 were missed or half fixed: Latin text through each of them."""
    for sentence in CORPUS[:14]:  # English and Western European sentences
        for garbled in garblings(sentence, page):
            assert repair_mojibake(garbled) == sentence, (page, garbled)


@settings(deadline=None)  # a repair takes milliseconds, more on a busy machine
@given(st.sampled_from(CORPUS), st.sampled_from(WINDOWS + ISO))
def test_repair_is_idempotent(sentence: str, page: str) -> None:
    for garbled in garblings(sentence, page) | {sentence}:
        once = repair_mojibake(garbled)
        assert repair_mojibake(once) == once


@settings(deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=40))
def test_arbitrary_text_never_grows_or_breaks(text: str) -> None:
    repaired = repair_mojibake(text)
    assert len(repaired) <= len(text)
    repaired.encode("utf-8")  # raises on a lone surrogate
