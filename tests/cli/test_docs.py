"""Every command, option and positional has help and a place in the README; the README's two
commands and its exit statuses stay true (after sqlite-utils' tests/test_docs.py)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter import __version__
from newsletter.cli.main import build_parser, main
from newsletter.cli.report import EXIT_STATUSES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
GLOBAL_OPTIONS = {"--config", "--version", "--help"}


def commands(
    parser: argparse.ArgumentParser, prefix: str = "newsletter"
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """Yield (full command, help text, parser) for every command, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", helps.get(name, ""), sub
                yield from commands(sub, f"{prefix} {name}")


def leaf_commands() -> list[tuple[str, argparse.ArgumentParser]]:
    """Commands that run something (not only a group of subcommands)."""
    found = []
    for name, _, parser in commands(build_parser()):
        if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            found.append((name, parser))
    return found


def readme_entry(command: str) -> str:
    """The README's bullet for a command: from "- `command" to the next bullet or blank line."""
    found = re.search(rf"^- `{re.escape(command)}\b.*?(?=^- `|^\s*$)", README, re.M | re.S)
    assert found, f"{command} has no entry in the README's Commands list"
    return found.group(0)


def test_every_command_has_help_and_is_documented() -> None:
    found = list(commands(build_parser()))
    assert len(found) >= 12
    for command, help_text, parser in found:
        assert help_text.strip(), f"{command} has no help text"
        assert (parser.description or "").strip(), f"{command} has no description"
        assert f"`{command}" in README, f"{command} is not documented in README.md"


@pytest.mark.parametrize(("command", "parser"), leaf_commands(), ids=lambda v: str(v))
def test_every_option_and_positional_has_help_and_a_readme_mention(
    command: str, parser: argparse.ArgumentParser
) -> None:
    entry = readme_entry(command)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
        if action.option_strings:
            long = max(action.option_strings, key=len)
            if long not in GLOBAL_OPTIONS:
                mentioned = re.search(rf"[`\[ ]{re.escape(long)}\b", entry)
                assert mentioned, f"{command}: {long} not in its README entry"
        else:
            assert str(action.metavar or action.dest.upper()) in entry, (
                f"{command}: positional {action.dest} not in README"
            )


def test_the_global_options_are_documented() -> None:
    for option in ("--config FILE", "NEWSLETTER_CONFIG", "newsletter --version"):
        assert option in README, option


def test_exit_statuses_are_the_same_in_help_and_readme(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for code, meaning in EXIT_STATUSES.items():
        assert f"{code} {meaning}" in shown
        assert f"| {code} | {meaning} |" in README


def test_a_usage_error_exits_2_as_documented(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["no-such-command"], ["send", "--no-such-option"], ["send", "--date", "28/11"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2 and EXIT_STATUSES[2].startswith("usage error")
        assert "usage: newsletter" in capsys.readouterr().err


@pytest.mark.slow
def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "newsletter", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == f"newsletter {__version__}"


def test_config_may_come_before_or_after_the_command_or_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.toml"
    for argv, environ in (
        (["--config", str(missing), "status"], {}),
        (["status", "--config", str(missing)], {}),
        (["subscribers", "counts", "--config", str(missing)], {}),
        (["status"], {"NEWSLETTER_CONFIG": str(missing)}),
    ):
        assert main(argv, environ=environ) == 1
        assert f"{missing}: (file): file not found" in capsys.readouterr().err


def test_readme_names_exactly_two_setup_commands_that_match_the_makefile_and_ci() -> None:
    blocks = re.findall(r"^    (make \w+)$", README, re.M)
    assert blocks[:2] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
    assert "\nmake test\n" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_layout_table_names_every_module() -> None:
    """The README's Layout table is the tree: every module of the package appears in it."""
    section = README[README.index("## Layout") :]
    table = section[: section.find("\n## ", 5) if "\n## " in section[5:] else len(section)]
    package = ROOT / "newsletter"
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if path.name in ("__init__.py", "__main__.py") or "migrations" in relative.parts:
            continue
        folder = f"`newsletter/{relative.parts[0]}/`" if len(relative.parts) > 1 else None
        if folder:
            rows = [row for row in table.splitlines() if row.startswith(f"| {folder}")]
            assert any(f"`{path.name}`" in row for row in rows), f"{relative} missing"
        else:
            assert f"`{path.name}`" in table or f"`newsletter/{path.name}`" in table, relative


def test_every_module_the_layout_table_names_exists() -> None:
    """The other way round: a row names no module its folder does not hold."""
    section = README[README.index("## Layout") :]
    package = ROOT / "newsletter"
    for row in section.splitlines():
        if not row.startswith("| `newsletter/"):
            continue
        first = row.split(" | ")[0]
        folder = re.match(r"\| `newsletter/([a-z_]+)/`", first)
        home = package / folder.group(1) if folder else package / "-"
        for name in re.findall(r"`(?:newsletter/)?([a-z_]+\.py)`", first):
            found = [*home.rglob(name), package / name]  # a row may add a top-level module
            assert any(path.exists() for path in found), f"{name} in the row {first!r}"
