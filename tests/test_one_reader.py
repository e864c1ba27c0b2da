"""One reader can never stop the list, and faults end cleanly.

A list with an internationalised address, an address the relay cannot take and a reader whose
copy cannot be signed, each in the middle of it; a stalled relay; every feed failing.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import pytest

from newsletter.cli.main import main
from newsletter.cli.progress import SendProgress
from newsletter.compose import envelope_address
from newsletter.config import load_settings
from newsletter.errors import AddressError
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import IssueStatus, SubscriberStatus
from newsletter.pipeline import Run, run_issue
from tests.support.config import closed_port
from tests.support.smtp_server import STALL, SmtpServer
from tests.support.world import ISSUE_DATE, SECRET, deployment

IDN = "reader@bücher.example"  # how the previous main stored reader@xn--bcher-kva.example
UNICODE_LOCAL = "josé@example.org"  # needs SMTPUTF8, which the test relay does not offer
UNSIGNABLE = "unsignable@example.org"
CROWD = [f"reader{n:03d}@example.org" for n in range(40)]
DAY = date.fromisoformat(ISSUE_DATE)


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)


def test_envelope_address_uses_a_labels_and_refuses_what_needs_smtputf8() -> None:
    assert envelope_address("ann@example.org") == "ann@example.org"
    assert envelope_address(IDN) == "reader@xn--bcher-kva.example"
    assert envelope_address("a@ÉXAMPLE.ORG") == "a@xn--xample-9ua.org"
    with pytest.raises(AddressError, match="SMTPUTF8"):
        envelope_address(UNICODE_LOCAL)
    with pytest.raises(AddressError, match="IDNA"):
        envelope_address("a@bü-.example")


def test_poison_readers_in_the_middle_become_their_own_outcomes(tmp_path: Path) -> None:
    with SmtpServer() as smtp, deployment(tmp_path, smtp, CROWD[:20]) as world:
        for address in (IDN, UNICODE_LOCAL, UNSIGNABLE):
            world.store.add_subscriber(
                address, status=SubscriberStatus.ACTIVE, source="old", now=world.clock()
            )
        for address in CROWD[20:]:
            world.add(address)
        settings = load_settings(world.config)

        def sign(data: bytes, body_pieces: Sequence[bytes] = ()) -> bytes:
            if b"To: unsignable@" in data:
                raise ValueError("the key refused this message")
            return data

        run = Run(settings, world.store, SmtpTransport(settings.smtp), world.clock, sign=sign)
        summary, _ = asyncio.run(run_issue(run, DAY))
        received = Counter(message.rcpt_tos[0] for message in smtp.messages)
        assert received == Counter([*CROWD, "reader@xn--bcher-kva.example"])
        idn = next(m for m in world.received() if "xn--bcher" in str(m["To"]))
        assert str(idn["To"]) == "reader@xn--bcher-kva.example"
        ledger = world.ledger()
        assert ledger[IDN] == "sent" and all(ledger[reader] == "sent" for reader in CROWD)
        assert ledger[UNICODE_LOCAL] == ledger[UNSIGNABLE] == "failed"
        refused = world.store.export_subscriber(UNICODE_LOCAL)
        assert refused is not None and "SMTPUTF8" in str(refused["deliveries"])
        assert summary.counts == {"sent": len(CROWD) + 1, "failed": 2}
        assert summary.status is IssueStatus.SENT  # refused readers have a final outcome


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "command by command"])
def test_a_stalled_relay_costs_one_timeout_per_try(tmp_path: Path, pipelining: bool) -> None:
    victim = CROWD[3]
    swaps = {"timeout = 30 ": "timeout = 1 ", "connections = 4 ": "connections = 1 "}
    with SmtpServer() as smtp, deployment(tmp_path, smtp, CROWD[:6], replace=swaps) as world:
        smtp.handler.pipelining = pipelining
        smtp.handler.behaviour = lambda at, rcpt: STALL if at == "data" and rcpt == victim else None
        settings = load_settings(world.config)
        run = Run(settings, world.store, SmtpTransport(settings.smtp), world.clock)
        started = time.monotonic()
        asyncio.run(run_issue(run, DAY))
        took = time.monotonic() - started
    assert world.ledger()[victim] == "deferred"
    # 3 tries of 1 s and 0.5 + 1 s of backoff; a second timeout per try (QUIT) would add 3 s.
    assert took < 6.0, took


def test_progress_lines_keep_coming_while_no_reply_arrives() -> None:
    stream = io.StringIO()  # not a terminal: plain lines
    with SendProgress(total=10, stream=stream, every=0.05):
        time.sleep(0.4)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("progress: 0/10") for line in lines)


def test_every_feed_failing_is_not_a_quiet_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f'url = "http://127.0.0.1:{closed_port()}/feed"'
    with SmtpServer() as smtp, deployment(tmp_path, smtp, CROWD[:2]) as world:
        text = world.config.read_text(encoding="utf-8")
        world.config.write_text(text.replace(f'url = "{world.feeds.url("/feed/")}"', dead))
        assert world.send("--date", ISSUE_DATE) == 4
        out = capsys.readouterr().out
        assert "feed FAILED" in out and "every feed failed" in out
        assert smtp.messages == [] and world.store.get_issue(world.settings_name, DAY) is None


def test_an_unresolvable_relay_is_nothing_went_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with SmtpServer() as smtp, deployment(tmp_path, smtp, CROWD[:2]) as world:
        text = world.config.read_text(encoding="utf-8")
        world.config.write_text(text.replace('host = "127.0.0.1"', 'host = "relay.invalid"'))
        assert world.send("--date", ISSUE_DATE) == 4
        assert "Traceback" not in capsys.readouterr().err


def test_a_rerun_of_a_sent_issue_exits_0(tmp_path: Path, world_clock_after: timedelta) -> None:
    with SmtpServer() as smtp, deployment(tmp_path, smtp, CROWD[:2]) as world:
        assert world.send("--date", ISSUE_DATE) == 0
        world.clock.advance(world_clock_after)
        command = ["--config", str(world.config), "send", "--date", ISSUE_DATE]
        assert main(command, clock=world.clock) == 0


@pytest.fixture(params=[timedelta(minutes=1), timedelta(days=3)], ids=["soon", "days later"])
def world_clock_after(request: pytest.FixtureRequest) -> timedelta:
    value: timedelta = request.param
    return value
