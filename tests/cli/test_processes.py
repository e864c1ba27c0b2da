"""`send --processes N`: how the copies are started, stopped and counted.

The copies' shared work on one issue (exactly one copy per reader, a killed copy's batch taken
over) is tested end to end in tests/test_crash.py and tests/test_weekly.py, through the forked
copies the command uses by default. Here: each way of starting a copy, what a copy's exit means,
and that a signal reaches every copy.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

from newsletter import __version__
from newsletter.cli import main as main_module
from newsletter.cli.processes import Child, _child_main, worst

pytestmark = pytest.mark.slow  # each test starts processes


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "new interpreter"])
def test_a_copy_runs_the_command_and_its_status_is_the_commands(
    fork: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    assert Child(["--version"], dict(os.environ), fork).wait() == 0
    assert capfd.readouterr().out.strip() == f"newsletter {__version__}"
    assert Child(["no-such-command"], dict(os.environ), fork).wait() == 2
    assert "invalid choice" in capfd.readouterr().err


def test_a_forked_copy_never_returns_into_the_parents_code(
    capfd: pytest.CaptureFixture[str],
) -> None:
    marker = "parent code ran twice"
    child = Child(["--version"], dict(os.environ), fork=True)
    print(marker, flush=True)  # only this process may get here
    assert child.wait() == 0
    assert capfd.readouterr().out.count(marker) == 1


def test_an_error_in_a_forked_copy_is_one_line_and_status_1(
    tmp_path: os.PathLike[str], capfd: pytest.CaptureFixture[str]
) -> None:
    missing = os.path.join(tmp_path, "nowhere.toml")
    child = Child(["--config", missing, "status"], dict(os.environ), fork=True)
    assert child.wait() == 1
    err = capfd.readouterr().err
    assert f"{missing}: (file): file not found" in err and "Traceback" not in err


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "new interpreter"])
def test_a_signal_reaches_a_running_copy_and_a_killed_copy_counts_as_stopped(
    fork: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `admin hash-password` waits on its stdin: a copy that is busy until it is told to stop
    read, write = os.pipe()
    saved = os.dup(0)
    os.dup2(read, 0)  # a new interpreter's stdin
    with os.fdopen(read, "r") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)  # a forked copy's (pytest replaced sys.stdin)
        try:
            child = Child(["admin", "hash-password"], dict(os.environ), fork)
        finally:
            os.dup2(saved, 0)
            os.close(saved)
    try:
        waited: list[int] = []
        waiter = threading.Thread(target=lambda: waited.append(child.wait()))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and child.running()  # still reading its stdin
        child.signal(signal.SIGKILL)
        waiter.join(30)
        assert waited == [-signal.SIGKILL] and not child.running()
        assert worst(waited) == 3  # killed by a signal: "stopped"
        child.signal(signal.SIGTERM)  # a finished copy is left alone, no error
    finally:
        os.close(write)


@pytest.mark.parametrize(
    ("exit_code", "status", "said"),
    [(None, 0, ""), (0, 0, ""), (4, 4, ""), ("stopped: no lease", 1, "stopped: no lease\n")],
)
def test_a_forked_copy_ends_with_the_status_the_interpreter_would_give_a_system_exit(
    exit_code: int | str | None,
    status: int,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    def exits(argv: list[str], environ: object) -> int:
        raise SystemExit(exit_code)

    monkeypatch.setattr(main_module, "main", exits)
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:  # a forked copy's own handlers, set here in pytest's process
        assert _child_main(["status"], dict(os.environ)) == status
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert capfd.readouterr().err == said
