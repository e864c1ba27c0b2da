"""Undo UTF-8 text that was decoded with a single-byte code page ("mojibake").

Feeds sometimes send "refiningâ€”the" (cp1252) or "refiningโ€”the" (cp874, the Thai Windows
page) where the author wrote "refining—the". Such garbling keeps the original bytes: each
character of the mis-decoded text stands for one byte, so re-encoding with the same page and
decoding as UTF-8 restores the text exactly. The hard part is deciding *when* to do that,
because plenty of correct text (Ukrainian "Рік", Thai "เธอ", Russian "Её") also re-encodes
to valid UTF-8 by accident.

So a span is only repaired where that makes the text strictly less strange by a few
script-independent signs of garbling (`_badness`); correct text scores zero almost everywhere,
which is what keeps it untouched. Nothing is normalised: characters outside a repaired span are
returned exactly as given, including NFD forms, ZWNJ/ZWJ, fullwidth forms and ligatures.

Every Windows page (cp874, cp1250-cp1258), every ISO-8859 page, Mac Roman and KOI8 are tried.
Measured on `tests/data/mojibake/corpus.txt` (57 news sentences: Latin scripts of 20 languages,
Greek, Cyrillic, Hebrew, Arabic, Persian, Thai, Chinese, Japanese, Korean): no sentence is
altered, and of its 1,233 garblings through a Windows or ISO-8859 page that cannot spell the
sentence, 1,213 are repaired exactly. The other 20 are ambiguous (listed in the test): cp1250
and ISO-8859-2 put "ą" at different bytes, so "Ăą" may be "ñ" or "ù"; Chinese read as Thai
reads as Thai. A page that can spell the sentence itself (Greek through cp1253) garbles
nothing. Cost: up to ~3 ms per KB of correct non-ASCII text, 10-40 ms per KB of garbled text
(so `feeds.entry` bounds what it reads); ASCII returns at once.

Written first as a prototype outside the repository (with its harnesses: the corpus, every
gettext catalogue on the machine, timing), then taken over here with its tests.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata
from typing import Any, NamedTuple

CODE_PAGES = (
    *("cp1252", "iso8859-1", "cp1250", "cp1251", "iso8859-15", "iso8859-2", "cp1253", "cp1254"),
    *("cp1255", "cp1256", "cp1257", "cp1258", "cp874", "mac_roman", "koi8-r", "koi8-u"),
    *("iso8859-3", "iso8859-4", "iso8859-5", "iso8859-6", "iso8859-7", "iso8859-8"),
    *("iso8859-9", "iso8859-10", "iso8859-11", "iso8859-13", "iso8859-14", "iso8859-16"),
)
# Runs of well-formed multi-byte UTF-8 sequences (no overlongs, surrogates or > U+10FFFF).
_SEQUENCES = re.compile(
    rb"(?:[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2})+"
)
# Punctuation that legitimately sits inside a word ("refining—the", "it’s", "l·l", "ב־15").
_IN_WORD = frozenset("\u2010\u2011\u2012\u2013\u2014\u2019\u00b7\u02bc\u05be\u05f3\u05f4")
# Characters that real text hardly ever uses but code pages put where UTF-8 bytes land.
_ODD = frozenset("¤¦¨¬¯¸ˆˇ˘˙˛˜˝†‡‰‹›ƒ¹¼¾◊√∂∆∏∑∫Ω≈≠\uf8ff")
# Letters and marks that two-byte sequences decode to but hardly any living language uses:
# most of Latin Extended-B and IPA (not Vietnamese ơ ư, Pinyin ǎ, Romanian ș ț, Azeri ə, ʻ ʼ),
# unusual combining marks, archaic Greek and Cyrillic, Coptic, Syriac, Thaana and N'Ko.
_RARE = re.compile(
    "(?![ƠơƯưǎǐǒǔǖǘǚǜȘșȚțƏəʻʼ\u0300-\u0304\u0306-\u030c\u031b\u0323\u0326-\u0328])"
    "[\u0180-\u036f\u0370-\u0385\u03e2-\u03ff\u0460-\u0489\u0700-\u07ff]"
)
# Name prefixes of letters that belong together although Unicode names them differently.
_CJK = ("CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH", "FULLWIDTH", "IDEOGRAPHIC", "HANGUL")
_ALIASES: dict[str, str | None] = {"COMBINING": None, "MICRO": None, "FEMININE": None}
_ALIASES |= {"MASCULINE": None, "MODIFIER": "LATIN", "ARABIC-INDIC": "ARABIC", "EXTENDED": "ARABIC"}


class _Page(NamedTuple):
    encoding: Any  # codecs.charmap_build() result: character -> byte, "?" where there is none
    leads: frozenset[str]  # characters standing for bytes that start a multi-byte sequence
    tails: frozenset[str]  # characters standing for continuation bytes


class _Char(NamedTuple):
    script: str | None  # letters, marks, digits: roughly the first word of the Unicode name
    word: bool  # letter or combining mark
    glue: bool  # non-ASCII punctuation or symbol, the stuff of "â€”" and "Ã©"
    symbol: bool  # glue that is a symbol or a number rather than punctuation
    case: int  # 1 lowercase letter, 2 uppercase, 3 accented uppercase
    mark: bool
    odd: bool  # C1 control, private use, unassigned, `_ODD` or `_RARE`


@functools.cache
def _page(name: str) -> _Page:
    """Byte table of a page for `codecs.charmap_encode`.

    Bytes the page leaves undefined also count as the character with the same number (C1
    controls, or Latin-1 in ISO pages), which is how Windows, browsers and many feed parsers
    keep them, unless that character already stands for another byte (iso8859-8 "×").
    """
    table = [chr(b) for b in range(128)]
    for byte in range(128, 256):
        try:
            table.append(bytes([byte]).decode(name))
        except UnicodeDecodeError:
            table.append("\ufffe")
    for byte, char in enumerate(table):
        if char == "\ufffe" and chr(byte) not in table:
            table[byte] = chr(byte)
    leads = frozenset(c for c in table[0xC2:0xF5] if c != "\ufffe")
    return _Page(codecs.charmap_build("".join(table)), leads, frozenset(table[0x80:0xC0]))


@functools.cache
def _char(c: str) -> _Char:
    """What `_badness` needs to know about one character."""
    category = unicodedata.category(c)
    script = None
    if category[0] in "LM" or (category == "Nd" and not c.isascii()):
        word = unicodedata.name(c, "").partition(" ")[0]
        script = "CJK" if word.startswith(_CJK) else _ALIASES.get(word, word)
    case = {"Ll": 1, "Lu": 2, "Lt": 2}.get(category, 0)
    case += case == 2 and bool(unicodedata.decomposition(c))
    glue = not c.isascii() and (category[0] in "PS" or category == "No") and c not in _IN_WORD
    odd = c in _ODD or "\x80" <= c <= "\x9f" or category in ("Co", "Cn") or bool(_RARE.match(c))
    mark = category[0] == "M" and not ("\u20d0" <= c <= "\u20ff" or "\ufe00" <= c <= "\ufe0f")
    return _Char(script, category[0] in "LM", glue, glue and category[0] != "P", case, mark, odd)


_SPACE = _char(" ")


def _badness(text: str) -> int:
    """Count signs of garbling that correct text of any script practically never shows.

    Odd characters; a combining mark with no letter to sit on; a lowercase letter followed by
    an accented capital ("fÃ") and an accented capital followed by punctuation ("Â«"); letters
    of two scripts in one word; a symbol next to a non-ASCII letter ("Ã©"); punctuation or a
    symbol glued between letters or other such marks ("á»‡t", "–†–"). Pairs of ASCII
    characters never count, so "iPhone" or "NdFeB" cost nothing.
    """
    info = [_char(c) for c in text] + [_SPACE]
    score, script = 0, None  # script: that of the last letter in the current word
    for i in range(len(text)):  # the first character's "before" is info[-1], the space
        now, before, after = info[i], info[i - 1], info[i + 1]
        score += now.odd + (now.mark and not before.word)
        if now.script:
            score += bool(script and script != now.script)
            script = now.script
        elif not now.word:
            script = None
        score += before.case == 1 and now.case == 3
        if now.glue:
            score += before.case == 3 or (
                (before.word or before.glue) and (after.word or after.glue)
            )
            if now.symbol:
                near = text[i - 1 : i] + text[i + 1 : i + 2]
                score += sum(_char(n).word for n in near if not n.isascii())
    return score


def _fixes(text: str, name: str) -> tuple[int, list[tuple[int, int, str]]]:
    """Repairs one page would make, with the total change in badness (negative is better).

    Adjacent UTF-8 sequences are judged together, since a garbled word is only recognisable
    as a whole; each verdict looks two characters beyond the span, as far as `_badness` sees.
    A span that neither helps nor hurts ("Ð²" for "в", "Ã\\xa0" for "à") is repaired only
    once this page has shown real garbling in the text, when it is a word of its own (the
    correct "Рі" inside "Рік" is not), and when its letters come out in a script that the
    proven repairs also produced.
    """
    raw = codecs.charmap_encode(text, "replace", _page(name).encoding)[0]
    gain, fixes, maybe = 0, [], []
    scripts: set[str | None] = {None}
    for match in _SEQUENCES.finditer(raw):
        start, end = match.span()
        fixed = match.group().decode()
        if any(unicodedata.category(c) in ("Cc", "Cn", "Co") for c in fixed):
            continue
        head, tail = text[max(start - 2, 0) : start], text[end : end + 2]
        if not _calm(text, start, end):
            delta = _badness(head + fixed + tail) - _badness(head + text[start:end] + tail)
            if delta < 0:
                gain += delta
                fixes.append((start, end, fixed))
                base = head[-1:] if _char(fixed[0]).mark else ""
                scripts.update(_char(c).script for c in base + fixed)
            if delta:
                continue
        if not (_in_word(head[-1:]) or _in_word(tail[:1])):
            maybe.append((start, end, fixed))
    for start, end, fixed in maybe if fixes else ():
        head, tail = text[max(start - 2, 0) : start], text[end : end + 2]
        same = _badness(head + fixed + tail) <= _badness(head + text[start:end] + tail)
        if same and scripts.issuperset(_char(c).script for c in fixed):
            fixes.append((start, end, fixed))
    return gain, sorted(fixes)


def _calm(text: str, start: int, end: int) -> bool:
    """Quick proof that `_badness` sees nothing wrong around a span, as in most correct text.

    True when the span holds lowercase or caseless letters and marks of one script, not odd,
    and its neighbours are letters of that script or ASCII spaces, digits and punctuation.
    """
    span = text[start:end]
    scripts = {_CALM.get(c) for c in span}
    if len(scripts) > 1 or None in scripts:
        return False
    before = text[start - 1] if start else " "
    for c in before, text[end : end + 1] or " ":
        if _CALM.get(c) not in scripts and not ((c.isascii() and not c.isalpha()) or c.isspace()):
            return False
    return not _char(span[0]).mark or before in _CALM


def _in_word(c: str) -> bool:
    """A non-ASCII letter or mark next to a span makes the span part of a longer word."""
    return bool(c) and not c.isascii() and _char(c).word


_ALL = frozenset().union(*(_page(n).leads | _page(n).tails for n in CODE_PAGES))
_CALM = {
    c: i.script
    for c, i in ((c, _char(c)) for c in _ALL)
    if i.script and i.word and i.case < 2 and not (i.odd or i.glue or (i.mark and i.script is None))
}


def repair_mojibake(text: str) -> str:
    """Text with UTF-8-read-as-a-legacy-page spans restored; correct text comes back as is.

    Each round applies the page whose repairs help most (ties: the one repairing more text,
    then the more common page); rounds continue until none helps, which also undoes double
    encoding and makes the function idempotent. Every round replaces spans of two or more
    non-ASCII characters with what their bytes spell in UTF-8, at most half as many, so it
    removes at least one non-ASCII character: there are never more rounds than the text has
    non-ASCII characters, and the loop is bounded by that count (whatever the input).
    """
    if text.isascii():
        return text
    for _ in range(sum(not c.isascii() for c in text)):
        chars = set(text)
        if chars.isdisjoint(_ALL):
            break
        best: tuple[int, int, list[tuple[int, int, str]]] = (0, 0, [])
        for name in CODE_PAGES:
            page = _page(name)
            if page.leads.isdisjoint(chars) or page.tails.isdisjoint(chars):
                continue
            gain, fixes = _fixes(text, name)
            covered = sum(end - start for start, end, _ in fixes)
            if fixes and (gain, -covered) < best[:2]:
                best = (gain, -covered, fixes)
        if not best[2]:
            break
        text = _apply(text, best[2])
    return text


def _apply(text: str, fixes: list[tuple[int, int, str]]) -> str:
    """The text with each (start, end) span replaced; spans are sorted and never overlap.

    Joined once: replacing span by span copies the whole text each time, which made a 50 KB
    garbled body take seconds.
    """
    pieces: list[str] = []
    last = 0
    for start, end, fixed in fixes:
        pieces += (text[last:start], fixed)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)
