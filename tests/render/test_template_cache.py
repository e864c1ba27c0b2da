"""Compiled templates kept between processes (`templating.QuietCache`, Jinja2's bytecode cache):
a new process loads what an earlier one compiled, an edited template is compiled again, and a
cache that is damaged, unwritable or missing never fails a render."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from newsletter import templating


@pytest.fixture(autouse=True)
def fresh_environments() -> Iterator[None]:
    templating.environment.cache_clear()  # each call below is a new process's environment
    yield
    templating.environment.cache_clear()


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the templates Jinja2 compiles from source."""
    names: list[str] = []
    real = jinja2.Environment.compile

    def counting(self: jinja2.Environment, source: str, name: str | None = None,
                 filename: str | None = None, raw: bool = False, defer_init: bool = False,
                 ) -> object:  # fmt: skip
        names.append(name or "?")
        return real(self, source, name, filename, raw, defer_init)  # type: ignore[call-overload]

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    return names


def render(folder: Path, cache: Path, name: str = "t.txt") -> str:
    templating.environment.cache_clear()
    env = templating.environment(folder, str(cache))
    return env.get_template(name).render(who="reader")


def test_a_second_process_loads_the_compiled_template_and_renders_the_same(
    tmp_path: Path, compiles: list[str]
) -> None:
    (tmp_path / "t.txt").write_text("Hello {{ who | upper }}\n", encoding="utf-8")
    cache = tmp_path / "cache"
    cache.mkdir()
    assert render(tmp_path, cache) == "Hello READER\n"
    assert compiles == ["t.txt"] and len(list(cache.iterdir())) == 1
    assert render(tmp_path, cache) == "Hello READER\n"
    assert compiles == ["t.txt"]  # loaded, not compiled again


def test_an_edited_template_is_compiled_again(tmp_path: Path, compiles: list[str]) -> None:
    source = tmp_path / "t.txt"
    source.write_text("Hello {{ who }}\n", encoding="utf-8")
    cache = tmp_path / "cache"
    cache.mkdir()
    assert render(tmp_path, cache) == "Hello reader\n"
    source.write_text("Goodbye {{ who }}\n", encoding="utf-8")
    assert render(tmp_path, cache) == "Goodbye reader\n"
    assert compiles == ["t.txt", "t.txt"]


@pytest.mark.parametrize(
    "damage", [b"", b"j2", b"garbage" * 10], ids=["empty", "cut short", "not Jinja2's"]
)
def test_a_damaged_entry_is_compiled_instead(
    tmp_path: Path, compiles: list[str], damage: bytes
) -> None:
    (tmp_path / "t.txt").write_text("Hello {{ who }}\n", encoding="utf-8")
    cache = tmp_path / "cache"
    cache.mkdir()
    render(tmp_path, cache)
    (entry,) = cache.iterdir()
    whole = entry.read_bytes()
    entry.write_bytes(whole[:20] if damage == b"j2" else damage)
    assert render(tmp_path, cache) == "Hello reader\n"
    assert compiles == ["t.txt", "t.txt"]
    assert entry.read_bytes() == whole  # and written again


def test_a_cache_that_cannot_be_written_only_costs_the_compile(
    tmp_path: Path, compiles: list[str]
) -> None:
    (tmp_path / "t.txt").write_text("Hello {{ who }}\n", encoding="utf-8")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("", encoding="utf-8")
    assert render(tmp_path, not_a_folder) == "Hello reader\n"
    assert render(tmp_path, not_a_folder) == "Hello reader\n"
    assert compiles == ["t.txt", "t.txt"]


def test_without_a_safe_default_folder_there_is_no_cache_and_renders_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiles: list[str]
) -> None:
    """Jinja2 refuses a default folder that is not a directory of this user's alone."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    (tmp_path / f"_jinja2-cache-{os.getuid()}").write_text("", encoding="utf-8")  # a file
    assert templating.bytecode_cache() is None
    (tmp_path / "t.txt").write_text("Hello {{ who }}\n", encoding="utf-8")
    templating.environment.cache_clear()
    env = templating.environment(tmp_path)
    assert env.bytecode_cache is None
    assert env.get_template("t.txt").render(who="reader") == "Hello reader\n"


def test_the_default_folder_is_this_users_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    cache = templating.bytecode_cache()
    assert cache is not None
    folder = Path(cache.directory)
    assert folder.parent == tmp_path and folder.stat().st_mode & 0o777 == 0o700
