"""Operators' subscriber commands against a real SQLite store in a temporary folder.

Confirmation mails go to a real aiosmtpd server (`add` without `--active` is a sign-up).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter.cli.main import main
from newsletter.config import load_settings
from newsletter.models import SubscriberStatus
from newsletter.store import open_store
from tests.support.config import sample_config
from tests.support.smtp_server import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "cli-test-key")
    return sample_config(tmp_path, smtp.port)


def cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), "subscribers", *args])


def status_of(config: Path, email: str) -> SubscriberStatus | None:
    store = open_store(load_settings(config).database_url)
    try:
        found = store.get_subscriber(email)
        return found.status if found else None
    finally:
        store.close()


def test_add_normalizes_signs_up_and_sends_one_confirmation(
    config: Path, smtp: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(config, "add", "  Reader@EXAMPLE.org ") == 0
    assert status_of(config, "reader@example.org") is SubscriberStatus.PENDING
    assert "reader@example.org: pending; confirmation sent" in capsys.readouterr().out
    [mail] = smtp.messages
    assert mail.rcpt_tos == ("reader@example.org",) and b"/confirm/" in mail.data
    assert cli(config, "add", "reader@example.org") == 1  # asked again at once: nothing sent
    assert "a confirmation went out minutes ago; nothing sent" in capsys.readouterr().out
    assert len(smtp.messages) == 1
    assert cli(config, "add", "--active", "READER@example.org") == 0
    assert status_of(config, "reader@example.org") is SubscriberStatus.ACTIVE
    assert "reader@example.org: active" in capsys.readouterr().out


def test_commands_that_touch_the_erased_list_need_the_secret_key(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    for args in (("add", "a@example.org"), ("erase", "a@example.org"), ("export", "a@example.org")):
        assert cli(config, *args) == 1
        assert "NEWSLETTER_SECRET_KEY" in capsys.readouterr().err


def test_export_then_erase_and_the_address_stays_refused(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(config, "add", "ann@example.org") == 0
    capsys.readouterr()
    assert cli(config, "export", "ANN@example.org") == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["address"] == "ann@example.org"
    assert exported["subscriber"]["status"] == "pending"
    [consent] = exported["consents"]
    assert consent["source"] == "cli" and consent["request_user_agent"] == "newsletter-cli"
    assert len(consent["mail_sha256"]) == 64 and exported["on_erased_list"] is False
    assert cli(config, "erase", "ann@example.org") == 0
    out = capsys.readouterr().out
    assert "ann@example.org: erased (consent records: 1, delivery records: 0)" in out
    assert status_of(config, "ann@example.org") is None
    source = tmp_path / "again.txt"
    source.write_text("ann@example.org\n", encoding="utf-8")
    assert cli(config, "import", "--active", str(source)) == 0
    captured = capsys.readouterr()
    assert "suppressed=1" in captured.out and "erased on request" in captured.err
    assert status_of(config, "ann@example.org") is None
    assert cli(config, "export", "ann@example.org") == 0
    after = json.loads(capsys.readouterr().out)
    assert after["subscriber"] is None and after["on_erased_list"] is True


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("no-at-sign", "An email address must have an @-sign."),
        ("two@@example.org", "contains invalid characters: '@'"),
        ("bob@localhost", "The part after the @-sign is not valid"),
    ],
)
def test_add_refuses_invalid_address_with_the_validators_reason(
    config: Path, capsys: pytest.CaptureFixture[str], address: str, reason: str
) -> None:
    assert cli(config, "add", address) == 1
    assert reason in capsys.readouterr().err
    assert status_of(config, address) is None


def test_import_reports_each_line_and_never_revives_the_unsubscribed(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(load_settings(config).database_url)
    now = datetime.now(UTC)
    gone = store.add_subscriber(
        "gone@example.org", status=SubscriberStatus.ACTIVE, source="t", now=now
    )
    store.set_status(gone.id, SubscriberStatus.UNSUBSCRIBED, now)
    store.close()
    source = tmp_path / "list.csv"
    source.write_text(
        "name,Email\nAnn,ann@example.org\nBad,not-an-address\nGone,gone@example.org\n"
        "Ann again,ANN@example.org\n",
        encoding="utf-8",
    )
    assert cli(config, "import", "--active", str(source)) == 0
    captured = capsys.readouterr()
    assert "added=1, updated=0, unchanged=1, refused=1, suppressed=1" in captured.out
    assert f"{source}:3: refused 'not-an-address'" in captured.err
    assert f"{source}:4: kept suppressed" in captured.err
    assert status_of(config, "gone@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert status_of(config, "ann@example.org") is SubscriberStatus.ACTIVE


def test_import_plain_list_then_list_and_counts(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "list.txt"
    source.write_text("# exported\none@example.org\n\ntwo@example.org\n", encoding="utf-8")
    assert cli(config, "import", str(source)) == 0
    capsys.readouterr()
    assert cli(config, "list", "--status", "pending") == 0
    listed = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["one@example.org", "two@example.org"]
    assert cli(config, "counts") == 0
    counts = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert counts == {"pending": "2", "active": "0", "unsubscribed": "0", "bounced": "0"}


def test_prune_removes_stale_pending_sign_ups(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import timedelta

    store = open_store(load_settings(config).database_url)
    long_ago = datetime.now(UTC) - timedelta(days=45)
    store.add_subscriber(
        "stale@example.org", status=SubscriberStatus.PENDING, source="t", now=long_ago
    )
    store.add_subscriber(
        "new@example.org", status=SubscriberStatus.PENDING, source="t", now=datetime.now(UTC)
    )
    store.close()
    assert cli(config, "prune", "--days", "30") == 0
    assert "deleted 1 sign-up(s)" in capsys.readouterr().out
    assert status_of(config, "stale@example.org") is None
    assert status_of(config, "new@example.org") is SubscriberStatus.PENDING
