"""Per-module mutation scores from a `mutmut run` (what `make mutation` prints at the end).

mutmut keeps each source file's results in `mutants/<path>.meta` (JSON: the test run's exit code
by mutant). A mutant is caught when a test failed on it (or it hung past mutmut's timeout); it
survived when every test passed, or when no test reaches its function at all. Mutants shown to be
equivalent (no input can tell them from the original) are listed with the reason in
`tools/equivalent_mutants.toml` and left out of the score; the survivors are printed by name so
that `mutmut show NAME` gives the diff. A listed mutant that a test caught after all, or that no
longer exists (code changes renumber mutants), is named in a warning: its entry needs fixing.

    .venv/bin/python tools/mutation_score.py [MODULE_PREFIX ...]
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SURVIVED = {0, 33}  # every test passed; no test reaches the mutated function
NOT_RUN = {None, 34}  # not tried yet; skipped


def results() -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        found.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    return found


def main(prefixes: list[str]) -> int:
    equivalent = tomllib.loads((ROOT / "tools" / "equivalent_mutants.toml").read_text("utf-8"))
    by_module: dict[str, Counter[str]] = {}
    survivors: list[str] = []
    wrong: list[str] = []  # listed as equivalent, yet caught
    found = results()
    for name, code in found.items():
        module = name.split(".x_")[0].split(".xǁ")[0]
        if prefixes and not any(module.startswith(f"newsletter.{p}") for p in prefixes):
            continue
        tally = by_module.setdefault(module, Counter())
        if code in NOT_RUN:
            tally["not run"] += 1
        elif name in equivalent and code in SURVIVED:
            tally["equivalent"] += 1
        elif name in equivalent:  # a test tells it apart: the entry is wrong or renumbered
            tally["caught"] += 1
            wrong.append(name)
        elif code in SURVIVED:
            tally["survived"] += 1
            survivors.append(name)
        else:
            tally["caught"] += 1
    if not by_module:
        print("no mutation results: run `make mutation MODULE=...` first")
        return 1
    print(f"{'module':<34}{'caught':>8}{'survived':>10}{'equiv.':>8}{'score':>8}")
    for module, tally in sorted(by_module.items()):
        judged = tally["caught"] + tally["survived"]
        score = f"{100 * tally['caught'] / judged:.1f}%" if judged else "-"
        row = f"{module:<34}{tally['caught']:>8}{tally['survived']:>10}{tally['equivalent']:>8}"
        print(f"{row}{score:>8}" + (f"  ({tally['not run']} not run)" if tally["not run"] else ""))
    for name in survivors:
        print(f"survived: {name}")
    for name in wrong:
        print(f"warning: {name} is listed as equivalent but a test caught it (counted as caught)")
    for name in sorted(set(equivalent) - set(found)):
        module = name.split(".x_")[0].split(".xǁ")[0]
        if not prefixes or any(module.startswith(f"newsletter.{p}") for p in prefixes):
            print(f"warning: {name} is listed as equivalent but there is no such mutant")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
