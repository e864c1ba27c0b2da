"""Typed access to one TOML table, with errors that name `table.key` and the file.

Every key a parser asks for is remembered, so once the whole file is read `unknown_keys` can
name what nobody asked for: `prot = 2525` or `[smpt]` must be an error, not a send that goes
to the default port.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from newsletter.errors import ConfigError

T = TypeVar("T")
_KIND_NAMES: dict[type, str] = {int: "an integer", float: "a number", str: "a string"}


class Reader:
    """One table of the config file; `table` gives a child reader for a sub-table."""

    def __init__(self, data: Mapping[str, Any], path: Path, prefix: str = "") -> None:
        self.data = data
        self.path = path
        self.prefix = prefix
        self.asked: set[str] = set()
        self.children: dict[str, Reader] = {}

    def fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(self.prefix + key, str(self.path), expected)

    def table(self, key: str) -> Reader:
        self.asked.add(key)
        value = self.data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(key, "expected a table")
        child = Reader(value, self.path, f"{self.prefix}{key}.")
        self.children[key] = child
        return child

    def tables(self, key: str) -> list[Reader]:
        """An array of tables (`[[feeds]]`); each element is read like a table."""
        self.asked.add(key)
        raw = self.data.get(key, [])
        if not isinstance(raw, list):
            raise self.fail(key, "expected an array of tables")
        readers = []
        for index, item in enumerate(raw):
            if not isinstance(item, Mapping):
                raise self.fail(f"{key}[{index}]", "expected a table")
            child = Reader(item, self.path, f"{self.prefix}{key}[{index}].")
            self.children[f"{key}[{index}]"] = child
            readers.append(child)
        return readers

    def get(self, key: str, kind: type[T], default: T | None = None) -> T:
        self.asked.add(key)
        if key not in self.data:
            if default is None:
                raise self.fail(key, f"missing; expected {_KIND_NAMES.get(kind, kind.__name__)}")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"expected {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.get(key, str, default)
        if not value.strip() and default is None:
            raise self.fail(key, "must not be empty")
        if "\r" in value or "\n" in value:
            raise self.fail(key, "must be a single line")
        return value.strip()

    def positive(self, key: str, kind: type[T], default: T | None = None) -> T:
        value = self.get(key, kind, default)
        if value <= 0:  # type: ignore[operator]
            raise self.fail(key, f"expected a positive number, got {value!r}")
        return value

    def refuse_unknown(self) -> None:
        """Raise ConfigError for the first key no parser asked for, naming the nearest known one."""
        for reader, key in self._unknown():
            known = sorted(reader.asked)
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean {reader.prefix}{near[0]}?" if near else ""
            choices = f" (known here: {', '.join(known)})" if known and not near else ""
            raise reader.fail(key, f"unknown key{hint}{choices}")

    def _unknown(self) -> Iterator[tuple[Reader, str]]:
        for key in self.data:
            if key not in self.asked:
                yield self, key
        for child in self.children.values():
            yield from child._unknown()
