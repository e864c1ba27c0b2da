"""Reading the file `newsletter subscribers import` is given: whatever an operator exports.

Mailchimp exports a CSV headed "Email Address", Substack "email", other tools one address per
line. The file is read as a stream (a million lines take constant memory) and nothing about it
ends in a traceback: a file that cannot be read at all is one InputError naming the file and
the reason; a line that cannot be read is one refused line, and the import goes on.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from newsletter.errors import InputError

# Headers an email column goes by in the exports operators bring (compared lower-cased).
EMAIL_HEADERS = ("email", "e-mail", "email address", "e-mail address", "mail", "email_address")
DELIMITERS = ",;\t"
FIELD_LIMIT = 64 * 1024  # an address is at most 254 octets; anything near this is not one
SHOWN = 80  # characters of a refused line echoed back


@dataclass(frozen=True)
class Line:
    number: int
    raw: str  # the address as written, or "" when the line itself could not be read
    problem: str = ""  # why the line could not be read (then `raw` is a shortened echo)


def shorten(text: str, limit: int = SHOWN) -> str:
    """A refused value as the operator sees it: never a megabyte on the terminal."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text):,} characters)"


def read_addresses(path: Path) -> Iterator[Line]:
    """Yield every line's address, from a CSV with an email column or a plain list."""
    lines = _text_lines(path)
    first = next(lines, (1, ""))[1]
    header = _header(first)
    if header is None:
        yield from _plain(itertools.chain([(1, first)], lines))
    else:
        yield from _csv(path, first, header, lines)


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text): UTF-16 when the file starts with its byte-order mark, else UTF-8,
    decoded line by line so that a bad byte is reported on its own line."""
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise InputError(str(path), "no such file") from None
    except IsADirectoryError:
        raise InputError(str(path), "is a folder; give the file to import") from None
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror or exc}") from None
    with raw:
        if raw.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            text = io.TextIOWrapper(raw, encoding="utf-16", newline="")
            try:
                yield from enumerate(text, start=1)
            except UnicodeDecodeError as exc:
                raise InputError(str(path), f"not UTF-16 text ({exc.reason})") from None
            return
        for number, line in enumerate(raw, start=1):
            try:
                yield number, line.removeprefix(codecs.BOM_UTF8 if number == 1 else b"").decode()
            except UnicodeDecodeError as exc:
                raise InputError(
                    str(path), f"line {number} is not UTF-8 text ({exc.reason}); save it as UTF-8"
                ) from None


def _header(first: str) -> list[str] | None:
    """The columns of a CSV header line, or None for a plain list of addresses."""
    text = first.strip()
    if not text or "@" in text:
        return None
    delimiter = next((d for d in DELIMITERS if d in text), None)
    if delimiter is None:
        return [text] if text.strip('"').lower() in EMAIL_HEADERS else None
    return [cell.strip().strip('"') for cell in next(csv.reader([text], delimiter=delimiter))]


def _plain(lines: Iterator[tuple[int, str]]) -> Iterator[Line]:
    for number, text in lines:
        address = text.strip()
        if not address or address.startswith("#"):
            continue
        if len(address) > FIELD_LIMIT:
            yield Line(number, shorten(address), "a line longer than any address")
            continue
        yield Line(number, address)


def _csv(
    path: Path, first: str, header: list[str], rest: Iterator[tuple[int, str]]
) -> Iterator[Line]:
    lowered = [name.lower() for name in header]
    column = next((lowered.index(name) for name in EMAIL_HEADERS if name in lowered), None)
    if column is None:
        found = ", ".join(repr(name) for name in header)
        raise InputError(
            str(path), f"no email column (looked for 'Email Address', 'email'); found {found}"
        )
    delimiter = next((d for d in DELIMITERS if d in first), ",")
    numbers: deque[int] = deque(maxlen=1)  # the line the reader consumed last: constant memory

    def counted() -> Iterator[str]:
        for number, text in rest:
            numbers.append(number)
            yield text

    csv.field_size_limit(FIELD_LIMIT)
    reader = csv.reader(counted(), delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Line(numbers[-1] if numbers else 2, "", f"not a readable CSV row: {exc}")
            continue
        number = numbers[-1] if numbers else 2
        if not any(cell.strip() for cell in row):
            continue
        yield Line(number, row[column].strip() if column < len(row) else "")
