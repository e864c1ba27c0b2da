"""`newsletter admin hash-password` and `--log-format json`."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.cli.logs import JsonFormatter
from newsletter.cli.main import main
from newsletter.config.operator import PASSWORD_HASH
from newsletter.web.admin.passwords import verify_password
from tests.support.config import ROOT, sample_config


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.slow
def test_hash_password_reads_stdin_and_prints_a_hash_that_verifies(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "admin", "hash-password"],
        input="correct horse battery staple\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert PASSWORD_HASH.fullmatch(printed) and printed.startswith("$scrypt$ln=17,r=8,p=1$")
    assert verify_password("correct horse battery staple", printed)
    assert not verify_password("correct horse battery stapl", printed)
    config = sample_config(tmp_path, 25)
    config.write_text(
        config.read_text().replace('password_hash = ""', f'password_hash = "{printed}"')
    )
    assert main(["--config", str(config), "status"]) == 0  # the config takes it


def test_a_short_password_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["admin", "hash-password"]) == 1
    assert "at least 12 characters" in capsys.readouterr().err


def test_log_format_json_makes_every_log_line_one_json_object(
    tmp_path: Path, root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = sample_config(tmp_path, 25)
    assert main(["--log-format", "json", "--config", str(config), "status"]) == 0
    [handler] = logging.getLogger().handlers
    assert isinstance(handler.formatter, JsonFormatter)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("newsletter.webhooks").exception('refused "quoted"\nline')
    lines = capsys.readouterr().err.strip().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)  # the migration's too
    parsed = json.loads(lines[-1])
    assert parsed["level"] == "error" and parsed["logger"] == "newsletter.webhooks"
    assert (
        parsed["message"] == 'refused "quoted"\nline' and "ValueError: boom" in parsed["exception"]
    )
    assert parsed["time"].endswith("+00:00")


def test_plain_stays_the_default(tmp_path: Path, root_logging: None) -> None:
    before = logging.getLogger().handlers[:]
    assert main(["--config", str(sample_config(tmp_path, 25)), "status"]) == 0
    assert logging.getLogger().handlers == before
    with pytest.raises(SystemExit):
        main(["--log-format", "xml", "status"])


def test_a_send_records_feed_health_and_a_store_fault_there_changes_no_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from newsletter.errors import StoreError
    from newsletter.store import SqlStore
    from tests.support.smtp_server import SmtpServer
    from tests.support.world import ISSUE_DATE, SECRET, deployment

    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with SmtpServer() as smtp, deployment(tmp_path / "a", smtp, ["ann@example.org"]) as world:
        assert world.send("--date", ISSUE_DATE) == 0
        [feed] = world.store.feed_health(world.clock() - timedelta(days=1))
        assert feed["name"] == "REE News" and feed["last"]["ok"] and feed["last"]["articles"] > 0

    def broken(*args: object) -> None:
        raise StoreError("the database went away")

    monkeypatch.setattr(SqlStore, "record_feed_reports", broken)
    with SmtpServer() as smtp, deployment(tmp_path / "b", smtp, ["ann@example.org"]) as world:
        capsys.readouterr()
        assert world.send("--date", ISSUE_DATE) == 0
        assert "warning: feed health not recorded: the database went away" in (
            capsys.readouterr().err
        )
        assert world.ledger() == {"ann@example.org": "sent"}
