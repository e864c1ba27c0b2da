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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter import __version__
from newsletter.cli import main as main_module
from newsletter.cli.processes import Child, _child_main, worst
from tests.support.config import closed_port
from tests.support.smtp_server import SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, deployment

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


def test_an_empty_day_starts_no_copy_and_says_why_once(tmp_path: Path) -> None:
    """The parent collects the issue before any copy starts: 12 articles, 13 needed."""
    with (
        SmtpServer() as smtp,
        deployment(tmp_path, smtp, ["reader@example.org"], replace={
            "min_articles = 1": "min_articles = 13"}) as world,
    ):  # fmt: skip
        process = world.spawn("--force", "--date", ISSUE_DATE, "--processes", "2")
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, (out, err)
        assert out.count(b"empty day: 12 new article(s), at least 13 needed") == 1
        assert b"their exit statuses" not in out and b"recipients: 0" in out
        assert len(world.feeds.hits("/feed/")) == 1 and smtp.messages == []
        world.stop_spawned()


def test_a_stale_day_without_force_starts_no_copy_and_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    with SmtpServer() as smtp, deployment(tmp_path, smtp, ["reader@example.org"]) as world:
        world.clock.now += timedelta(days=2)
        process = world.spawn("--date", ISSUE_DATE, "--processes", "2")
        out, err = process.communicate(timeout=60)
        assert process.returncode == 4, (out, err)
        assert err.count(b"stale_after_hours") == 1 and b"Traceback" not in err
        assert b"their exit statuses" not in out
        assert world.feeds.hits("/feed/") == [] and smtp.messages == []
        world.stop_spawned()


def test_an_earlier_issue_that_reached_nobody_is_carried_over_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent settles and abandons the earlier issue as a single send would, and says so."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    since = datetime(2026, 11, 20, tzinfo=UTC)  # a reader of both days
    longer = {"retry_deadline_hours = 24": "retry_deadline_hours = 48"}  # not closed by then
    with (
        SmtpServer() as smtp,
        deployment(tmp_path, smtp, ["reader@example.org"], since=since, replace=longer) as world,
    ):
        text = world.config.read_text(encoding="utf-8")
        relay = f"port = {smtp.port}\n"
        world.config.write_text(text.replace(relay, f"port = {closed_port()}\n"))
        now = world.clock.now
        world.clock.now = now - timedelta(days=1)
        assert world.send("--date", "2026-11-27") == 3  # the relay is down: it reached nobody
        world.config.write_text(text)
        world.clock.now = now
        process = world.spawn("--force", "--date", ISSUE_DATE, "--processes", "2")
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, (out, err)
        said = b"the issue of 2026-11-27 reached nobody and was abandoned; this one covers it"
        assert out.count(said) == 1
        assert [message.rcpt_tos for message in smtp.messages] == [("reader@example.org",)]
        world.stop_spawned()
