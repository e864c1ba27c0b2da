"""`newsletter check`: each problem an operator can have before the first send fails its own
check (or is skipped with a note when it cannot be checked here), and only then the command.

SMTP is a real aiosmtpd server with AUTH; DNS is an injected lookup, never the network.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter.cli.checks import Check, DnsUnavailable, Status, TxtResolver, run_checks
from newsletter.cli.main import main
from newsletter.config import Settings, load_settings
from newsletter.mail.dkim import ED25519, RSA, DkimKey, generate_key
from tests.support.clock import FakeClock
from tests.support.config import ROOT, SAMPLE, closed_port, make_config
from tests.support.smtp_server import RecordingHandler, SmtpServer
from tests.support.world import SECRET

DOMAIN = "ree-news.example.com"
NAMES = [
    "smtp", "token key", "base url", "postal address", "dkim", "dkim dns rsa",
    "dkim dns ed25519", "templates", "digest size",
]  # fmt: skip

CLOCK = FakeClock()


def accept_ops(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"ops", b"s3cret")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer(authenticator=accept_ops, auth_require_tls=False) as server:
        yield server


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[DkimKey, DkimKey]:
    folder = tmp_path_factory.mktemp("keys")
    rsa_key = generate_key("ree2026", RSA, folder / "ree2026.rsa.pem")
    return rsa_key, generate_key("ree2026e", ED25519, folder / "ree2026e.ed25519.key")


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "s3cret")


def configure(
    tmp_path: Path,
    port: int,
    keys: tuple[DkimKey, DkimKey] | None = None,
    swaps: dict[str, str] | None = None,
) -> Settings:
    replace = {'username = ""': 'username = "ops"', **(swaps or {})}
    if keys is not None:
        for key in keys:
            (tmp_path / f"{key.selector}.key").write_bytes(key.private)
        replace |= {
            '\nselector = ""': '\nselector = "ree2026"',
            '\nprivate_key = ""': f'\nprivate_key = "{tmp_path / "ree2026.key"}"',
            '\ned25519_selector = ""': '\ned25519_selector = "ree2026e"',
            '\ned25519_private_key = ""': f'\ned25519_private_key = "{tmp_path / "ree2026e.key"}"',
        }
    return load_settings(make_config(tmp_path, [("Sample", str(SAMPLE))], port, replace=replace))


def dns(records: dict[str, bytes]) -> TxtResolver:
    def lookup(name: str) -> list[bytes]:
        return [records[name]] if name in records else []

    return lookup


def publishing(*keys: DkimKey) -> TxtResolver:
    return dns({f"{k.selector}._domainkey.{DOMAIN}": k.txt_record().encode() for k in keys})


def offline(name: str) -> list[bytes]:
    raise DnsUnavailable("no nameservers answered")


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_a_ready_configuration_passes_every_check(
    tmp_path: Path, smtp: SmtpServer, keys: tuple[DkimKey, DkimKey]
) -> None:
    checks = run_checks(configure(tmp_path, smtp.port, keys), CLOCK, publishing(*keys))
    assert [check.name for check in checks] == NAMES
    assert all(check.status is Status.OK for check in checks), [c.line() for c in checks]
    assert "login as ops accepted" in by_name(checks)["smtp"].detail


@pytest.mark.parametrize(
    ("password", "expected"),
    [("wrong", "login refused"), ("", "NEWSLETTER_SMTP_PASSWORD is not")],
)
def test_smtp_login_problems_fail_the_smtp_check(
    tmp_path: Path,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    password: str,
    expected: str,
) -> None:
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", password)
    check = by_name(run_checks(configure(tmp_path, smtp.port), CLOCK, offline))["smtp"]
    assert check.status is Status.FAIL and expected in check.detail


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
@pytest.mark.parametrize(
    ("configured", "offered", "passes"),
    [(True, False, False), (True, True, True), (False, False, True), (False, True, True)],
)
def test_smtputf8_on_a_relay_that_does_not_offer_it_fails_the_smtp_check(
    tmp_path: Path, pipelining: bool, configured: bool, offered: bool, passes: bool
) -> None:
    """Sending would fail every reader with a non-ASCII address: say so before the send."""
    handler = RecordingHandler()
    handler.pipelining = pipelining
    swaps = {"smtputf8 = false": f"smtputf8 = {str(configured).lower()}"}
    with SmtpServer(
        handler, enable_SMTPUTF8=offered, authenticator=accept_ops, auth_require_tls=False
    ) as relay:
        settings = configure(tmp_path, relay.port, swaps=swaps)
        check = by_name(run_checks(settings, CLOCK, offline))["smtp"]
    assert (check.status is Status.OK) == passes, check.line()
    assert ("does not offer SMTPUTF8" in check.detail) != passes, check.line()


def test_an_unreachable_relay_fails_the_smtp_check(tmp_path: Path) -> None:
    check = by_name(run_checks(configure(tmp_path, closed_port()), CLOCK, offline))["smtp"]
    assert check.status is Status.FAIL and "connect" in check.detail.lower()


def test_link_settings_fail_their_checks(
    tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    http = {'base_url = "https://': 'base_url = "http://'}
    checks = by_name(run_checks(configure(tmp_path, smtp.port, swaps=http), CLOCK, offline))
    assert checks["token key"].status is Status.FAIL
    assert checks["base url"].status is Status.FAIL and "https" in checks["base url"].detail
    assert checks["postal address"].status is Status.OK
    assert "12 Foundry Lane" in checks["postal address"].detail


def test_dkim_compares_the_key_with_what_dns_publishes(
    tmp_path: Path, smtp: SmtpServer, keys: tuple[DkimKey, DkimKey]
) -> None:
    settings = configure(tmp_path, smtp.port, keys)
    rotated = generate_key("ree2026", RSA, tmp_path / "rotated.pem")  # not the configured key
    other = dns({f"ree2026._domainkey.{DOMAIN}": rotated.txt_record().encode()})
    cases: list[tuple[TxtResolver, Status, str]] = [
        (other, Status.FAIL, "publishes another key; publish: v=DKIM1; k=rsa; p="),
        (dns({}), Status.FAIL, "has no TXT record; publish: v=DKIM1; k=rsa; p="),
        (offline, Status.SKIP, "DNS not reachable"),
    ]
    for resolver, status, detail in cases:
        checks = by_name(run_checks(settings, CLOCK, resolver))
        assert checks["dkim"].status is Status.OK  # the key itself signs and verifies
        assert checks["dkim dns rsa"].status is status and detail in checks["dkim dns rsa"].detail


def test_dkim_not_configured_is_skipped_and_a_missing_key_fails(
    tmp_path: Path, smtp: SmtpServer, keys: tuple[DkimKey, DkimKey]
) -> None:
    unsigned = by_name(run_checks(configure(tmp_path, smtp.port), CLOCK, offline))
    assert unsigned["dkim"].status is Status.SKIP and "dkim dns rsa" not in unsigned
    settings = configure(tmp_path, smtp.port, keys)
    (tmp_path / "ree2026.key").unlink()
    broken = by_name(run_checks(settings, CLOCK, offline))
    assert broken["dkim"].status is Status.FAIL and "ree2026.key" in broken["dkim"].detail


def test_broken_templates_fail_and_the_size_check_is_skipped(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "digest.html").write_text("{% for x in %}", encoding="utf-8")
    swap = {'templates_dir = "templates"': f'templates_dir = "{templates}"'}
    checks = by_name(run_checks(configure(tmp_path, smtp.port, swaps=swap), CLOCK, offline))
    assert checks["templates"].status is Status.FAIL and "digest.html" in checks["templates"].detail
    assert checks["digest size"].status is Status.SKIP


def test_a_busiest_day_over_the_clipping_limit_fails_the_size_check(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    settings = configure(tmp_path, smtp.port, swaps={"max_articles = 40": "max_articles = 120"})
    check = by_name(run_checks(settings, CLOCK, offline))["digest size"]
    assert check.status is Status.FAIL and "120 long sample articles" in check.detail
    assert "fit, lower max_articles" in check.detail


def test_the_command_prints_one_line_per_check_and_its_exit_status_tells(
    tmp_path: Path,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_config(
        tmp_path,
        [("Sample", str(SAMPLE))],
        smtp.port,
        replace={'username = ""': 'username = "ops"'},
    )
    assert main(["--config", str(config), "check"]) == 0  # DKIM not configured: no DNS asked
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["ok"] * 4 + ["skip"] + ["ok"] * 2
    assert lines[-1].startswith("ready")
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  token key" in out and "1 of 7 checks failed" in out
