"""DKIM: signatures verify with dkimpy against the published key (an offline DNS function),
cover what receivers need (RFC 6376, RFC 8301, RFC 8463), break when a signed part changes, and
are made on the exact bytes a run hands to the relay."""

from __future__ import annotations

import asyncio
import base64
import email
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dkim
import dkim.util
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from newsletter.cli.checks import sample_message
from newsletter.cli.main import main
from newsletter.cli.run import IssueSender
from newsletter.config import DkimConfig, load_settings
from newsletter.mail.dkim import (
    ED25519,
    RSA,
    DkimError,
    DkimKey,
    DkimSigner,
    generate_key,
    load_key,
    rsa_public_der,
)
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import SubscriberStatus
from newsletter.scheduler import run_once
from newsletter.store import open_store
from tests.support.clock import FakeClock
from tests.support.config import ROOT, SAMPLE, make_config
from tests.support.smtp_server import SmtpServer
from tests.support.world import SECRET

DOMAIN = "ree-news.example.com"
FEEDBACK_ID = b"Feedback-ID: 20261128:daily:ree:REEDaily01\r\n"
REQUIRED = {
    "from", "to", "subject", "date", "message-id", "mime-version", "content-type", "list-id",
    "list-unsubscribe", "list-unsubscribe-post", "feedback-id",
}  # fmt: skip
DnsFunc = Callable[..., bytes | None]

CLOCK = FakeClock()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[DkimKey, DkimKey]:
    folder = tmp_path_factory.mktemp("keys")
    rsa_key = generate_key("ree2026", RSA, folder / "ree2026.rsa.pem")
    return rsa_key, generate_key("ree2026e", ED25519, folder / "ree2026e.ed25519.key")


@pytest.fixture(scope="module")
def message() -> bytes:
    """One reader's message as compose builds it, plus a Feedback-ID as a relay may want."""
    return FEEDBACK_ID + sample_message(load_settings(ROOT / "config.toml"))


def published(*keys: DkimKey) -> DnsFunc:
    records = {
        f"{key.selector}._domainkey.{DOMAIN}.".encode(): key.txt_record().encode() for key in keys
    }

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def verifies(raw: bytes, *keys: DkimKey, index: int = 0) -> bool:
    try:
        return bool(dkim.DKIM(raw).verify(idx=index, dnsfunc=published(*keys)))
    except dkim.DKIMException:  # dkimpy raises for some mismatches instead of answering False
        return False


def signature_tags(raw: bytes, index: int = 0) -> dict[str, str]:
    fields = email.message_from_bytes(raw).get_all("DKIM-Signature") or []
    unfolded = re.sub(r"\s+", "", str(fields[index]))
    parsed = dkim.util.parse_tag_value(unfolded.encode("ascii"))
    return {key.decode(): value.decode() for key, value in parsed.items()}


def test_signature_verifies_and_covers_the_fields_receivers_rely_on(
    keys: tuple[DkimKey, DkimKey], message: bytes
) -> None:
    rsa_key, _ = keys
    signed = DkimSigner(DOMAIN, [rsa_key], CLOCK).sign(message)
    assert signed.startswith(b"DKIM-Signature: ") and signed.endswith(message)
    assert verifies(signed, rsa_key)
    tags = signature_tags(signed)
    assert (tags["a"], tags["c"], tags["d"], tags["s"]) == (
        "rsa-sha256", "relaxed/relaxed", DOMAIN, "ree2026",
    )  # fmt: skip
    assert "l" not in tags
    signed_fields = tags["h"].split(":")
    assert set(signed_fields) >= REQUIRED
    assert signed_fields.count("from") == 2  # over-signed: a second From breaks it


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"List-Unsubscribe=One-Click", b"List-Unsubscribe=One-Click-Off"),
        (b"12 Foundry Lane", b"12 Foundry Lone"),  # the postal address, in the body
        (FEEDBACK_ID, FEEDBACK_ID.replace(b"REEDaily01", b"REEDaily02")),
        (b"\r\nSubject: ", b"\r\nSubject: Re: "),
    ],
)
def test_changing_a_signed_part_breaks_the_signature(
    keys: tuple[DkimKey, DkimKey], message: bytes, old: bytes, new: bytes
) -> None:
    signed = DkimSigner(DOMAIN, list(keys), CLOCK).sign(message)
    assert old in signed
    tampered = signed.replace(old, new, 1)
    assert not verifies(tampered, *keys, index=0)
    assert not verifies(tampered, *keys, index=1)


@pytest.mark.parametrize(
    "extra",
    [
        b"From: Someone Else <boss@ree-news.example.com>\r\n",
        b"List-Unsubscribe: <https://evil.example/unsubscribe>\r\n",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
    ],
)
def test_an_added_copy_of_an_oversigned_field_breaks_the_signature(
    keys: tuple[DkimKey, DkimKey], message: bytes, extra: bytes
) -> None:
    signed = DkimSigner(DOMAIN, [keys[0]], CLOCK).sign(message)
    assert verifies(signed, keys[0])
    # On top, where a verifier that signs each field once would never look (it reads bottom-up).
    assert not verifies(extra + signed, keys[0])


def test_relaxed_canonicalization_survives_refolding_on_the_way(
    keys: tuple[DkimKey, DkimKey], message: bytes
) -> None:
    signed = DkimSigner(DOMAIN, [keys[0]], CLOCK).sign(message)
    assert verifies(signed.replace(b"\r\nSubject: ", b"\r\nSubject:   \t", 1), keys[0])


def test_ed25519_signs_in_addition_to_rsa(keys: tuple[DkimKey, DkimKey], message: bytes) -> None:
    signed = DkimSigner(DOMAIN, list(keys), CLOCK).sign(message)
    assert [signature_tags(signed, i)["a"] for i in (0, 1)] == ["rsa-sha256", "ed25519-sha256"]
    assert verifies(signed, *keys, index=0) and verifies(signed, *keys, index=1)
    assert signed.endswith(message)


def dkim_config(tmp_path: Path, rsa_key: Path, ed_key: Path | None = None) -> DkimConfig:
    return DkimConfig(DOMAIN, "ree2026", rsa_key, "ree2026e" if ed_key else "", ed_key)


def test_from_config_loads_keys_once_and_refuses_what_would_sign_badly(
    tmp_path: Path, keys: tuple[DkimKey, DkimKey]
) -> None:
    rsa_path, ed_path = tmp_path / "rsa.pem", tmp_path / "ed.key"
    rsa_path.write_bytes(keys[0].private)
    ed_path.write_bytes(keys[1].private)
    assert DkimSigner.from_config(DkimConfig(DOMAIN, "", Path(), "", None), CLOCK) is None
    signer = DkimSigner.from_config(dkim_config(tmp_path, rsa_path, ed_path), CLOCK)
    assert signer is not None and [k.algorithm for k in signer.keys] == [RSA, ED25519]
    with pytest.raises(DkimError, match="only in addition"):
        DkimSigner.from_config(DkimConfig(DOMAIN, "", Path(), "ree2026e", ed_path), CLOCK)
    with pytest.raises(DkimError, match=r"missing\.pem"):
        DkimSigner.from_config(dkim_config(tmp_path, tmp_path / "missing.pem"), CLOCK)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "weak.pem").write_bytes(pem(weak, serialization.PrivateFormat.TraditionalOpenSSL))
    with pytest.raises(DkimError, match="1024-bit"):
        DkimSigner.from_config(dkim_config(tmp_path, tmp_path / "weak.pem"), CLOCK)


def test_a_damaged_rsa_key_is_refused_as_it_loads(tmp_path: Path) -> None:
    """OpenSSL's own key check (its primes tested) is skipped at load: ~37 ms of a signed
    send's start. OpenSSL already re-checks each CRT signature and falls back to the plain
    exponent, so a key with one wrong CRT part still signs well; a key with no right exponent
    left would sign every message with a signature no receiver can verify, and is refused as
    it loads."""
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    parts = {name: getattr(numbers, name) for name in ("p", "q", "d", "dmp1", "dmq1", "iqmp")}
    public = numbers.public_numbers
    for name in ("d", "dmp1", "dmq1"):
        parts[name] += 2
    damaged = rsa.RSAPrivateNumbers(**parts, public_numbers=public)
    key = damaged.private_key(unsafe_skip_rsa_key_validation=True)
    path = tmp_path / "damaged.pem"
    path.write_bytes(pem(key, serialization.PrivateFormat.TraditionalOpenSSL))
    with pytest.raises(DkimError, match="selector 'ree2026' cannot sign: its parts do not agree"):
        DkimSigner.from_config(dkim_config(tmp_path, path), CLOCK)


def pem(
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, form: serialization.PrivateFormat
) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def test_keys_made_by_openssl_tools_load_and_publish_the_same_public_key(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pem").write_bytes(pem(rsa_key, serialization.PrivateFormat.PKCS8))
    spki = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert load_key("s", RSA, tmp_path / "rsa.pem").public == spki
    numbers = rsa_key.public_key().public_numbers()
    assert rsa_public_der(numbers.n, numbers.e) == spki
    ed_key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "ed.pem").write_bytes(pem(ed_key, serialization.PrivateFormat.PKCS8))
    raw = ed_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert load_key("s", ED25519, tmp_path / "ed.pem").public == raw


def test_keygen_writes_a_private_key_and_prints_the_record_to_publish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], message: bytes
) -> None:
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.toml").read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["--config", str(config), "dkim", "keygen", "--selector", "ree2027"]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "keys" / "ree2027.rsa.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    assert 'private_key = "keys/ree2027.rsa.pem"' in out
    zone = re.search(r"^ree2027\._domainkey\.ree-news\.example\.com\. IN TXT \((.*)\)$", out, re.M)
    assert zone is not None
    record = "".join(re.findall(r'"([^"]*)"', zone.group(1)))
    key = load_key("ree2027", RSA, path)
    assert key.bits == 2048 and key.matches(record.encode()) and record == key.txt_record()
    signed = DkimSigner(DOMAIN, [key], CLOCK).sign(message)
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record.encode())
    assert main(["--config", str(config), "dkim", "keygen", "--selector", "ree2027"]) == 1
    assert "exists" in capsys.readouterr().err
    assert path.read_bytes() == key.private  # the existing key was not touched


def test_keygen_ed25519_prints_its_own_selector_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.toml").read_text(encoding="utf-8"), encoding="utf-8")
    args = ["--config", str(config), "dkim", "keygen", "--type", "ed25519", "--selector", "e1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert 'ed25519_selector = "e1"' in out and "k=ed25519; p=" in out
    seed = base64.b64decode((tmp_path / "keys" / "e1.ed25519.key").read_bytes())
    assert len(seed) == 32


def test_keygen_writes_where_dkim_config_already_points(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text = text.replace('\nselector = ""', '\nselector = "ree2030"')
    text = text.replace('\nprivate_key = ""', '\nprivate_key = "secrets/dkim.pem"')
    config.write_text(text, encoding="utf-8")
    assert main(["--config", str(config), "dkim", "keygen"]) == 0
    signer = DkimSigner.from_config(load_settings(config).dkim, CLOCK)
    assert signer is not None and signer.keys[0].selector == "ree2030"


def test_a_run_signs_the_exact_bytes_the_relay_receives(
    tmp_path: Path, keys: tuple[DkimKey, DkimKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    rsa_path, ed_path = tmp_path / "rsa.pem", tmp_path / "ed.key"
    rsa_path.write_bytes(keys[0].private)
    ed_path.write_bytes(keys[1].private)
    dkim_lines = {
        '\nselector = ""': '\nselector = "ree2026"',
        '\nprivate_key = ""': f'\nprivate_key = "{rsa_path}"',
        '\ned25519_selector = ""': '\ned25519_selector = "ree2026e"',
        '\ned25519_private_key = ""': f'\ned25519_private_key = "{ed_path}"',
    }
    with SmtpServer() as smtp:
        config = make_config(tmp_path, [("REE News", str(SAMPLE))], smtp.port, replace=dkim_lines)
        settings = load_settings(config)
        store = open_store(settings.database_url)
        now = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)  # an hour after the 07:00 send time
        for reader in ("ana@example.org", "ben@example.net"):
            store.add_subscriber(reader, status=SubscriberStatus.ACTIVE, source="t", now=now)
        clock = FakeClock(now)
        signer = DkimSigner.from_config(settings.dkim, clock)
        assert signer is not None
        transport = SmtpTransport(settings.smtp)
        sender = IssueSender(settings, store, transport, clock, asyncio.Event(), signer.sign)
        try:
            done, summaries = asyncio.run(run_once(settings, store, sender, clock, sender.stop))
        finally:
            store.close()
    assert done.alerts == [] and summaries is not None
    assert [summary.counts for summary in summaries] == [{"sent": 2}]
    assert len(smtp.messages) == 2
    for received in smtp.messages:
        assert verifies(received.data, *keys, index=0)
        assert verifies(received.data, *keys, index=1)


def test_a_dry_run_leaves_the_signed_message_a_reader_would_get(
    tmp_path: Path, keys: tuple[DkimKey, DkimKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`send --dry-run` with [dkim] set: out/<date>/digest.eml is signed with both keys, the
    signatures verify, and they cover the body and the fields a reader relies on."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    rsa_path, ed_path = tmp_path / "rsa.pem", tmp_path / "ed.key"
    rsa_path.write_bytes(keys[0].private)
    ed_path.write_bytes(keys[1].private)
    dkim_lines = {
        '\nselector = ""': '\nselector = "ree2026"',
        '\nprivate_key = ""': f'\nprivate_key = "{rsa_path}"',
        '\ned25519_selector = ""': '\ned25519_selector = "ree2026e"',
        '\ned25519_private_key = ""': f'\ned25519_private_key = "{ed_path}"',
    }
    config = make_config(tmp_path, [("REE News", str(SAMPLE))], 25, replace=dkim_lines)
    clock = FakeClock(datetime(2026, 11, 28, 8, 0, tzinfo=UTC))
    argv = ["--config", str(config), "send", "--dry-run", "--date", "2026-11-28"]
    assert main(argv, clock=clock) == 0
    eml = (load_settings(config).output_dir / "2026-11-28" / "digest.eml").read_bytes()
    assert eml.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert verifies(eml, *keys, index=0) and verifies(eml, *keys, index=1)
    tags = dkim.util.parse_tag_value(eml.split(b"\r\n\r\n")[0].split(b"DKIM-Signature: ")[1])
    signed = set(re.sub(rb"\s+", b"", tags[b"h"]).split(b":"))
    assert {b"from", b"to", b"subject", b"list-unsubscribe", b"message-id"} <= signed
    body_at = eml.index(b"\r\n\r\n") + 200
    changed = (
        eml[:body_at] + (b"X" if eml[body_at : body_at + 1] != b"X" else b"Y") + eml[body_at + 1 :]
    )
    assert not verifies(changed, *keys, index=0)
