"""Every command has help and a place in the README; the README's two commands stay true."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from newsletter.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def commands(
    parser: argparse.ArgumentParser, prefix: str = "newsletter"
) -> Iterator[tuple[str, str]]:
    """Yield (full command, help text) for every sub-command, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", helps.get(name, "")
                yield from commands(sub, f"{prefix} {name}")


def test_every_command_has_help_and_is_documented() -> None:
    found = list(commands(build_parser()))
    assert len(found) >= 5
    for command, help_text in found:
        assert help_text.strip(), f"{command} has no help text"
        assert f"`{command}" in README, f"{command} is not documented in README.md"


def test_every_option_has_help() -> None:
    def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)
            elif action.option_strings and action.dest != "help":
                yield action

    for action in walk(build_parser()):
        assert action.help, f"{action.option_strings} has no help"


def test_readme_names_exactly_two_setup_commands_that_match_the_makefile_and_ci() -> None:
    blocks = re.findall(r"^    (make \w+)$", README, re.M)
    assert blocks[:2] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
    assert "\nmake test\n" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
