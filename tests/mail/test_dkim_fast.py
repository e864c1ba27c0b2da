"""dkim_fast against dkimpy, the reference: the same bytes for the same inputs, and signatures
dkimpy verifies and refuses once a signed byte changes.

dkimpy's DKIM.sign has no timestamp argument; it reads `time.time()` through its module's
`time` name, so `frozen` swaps that name for a clock that returns the given second.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import os
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from unittest import mock

import dkim
import dkim.canonicalization
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.cli.checks import SAMPLE_DAY, sample_articles, sample_message
from newsletter.compose import MessageTemplate
from newsletter.config import load_settings
from newsletter.mail import dkim_fast
from newsletter.mail.dkim import DkimSigner, load_key, signed_field_names
from newsletter.models import Recipient
from newsletter.render import DigestRenderer
from tests.support.clock import FakeClock
from tests.support.config import ROOT

DOMAIN = b"example.com"
T = 1764489600
Raw = serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
SCALE = int(os.environ.get("DKIM_FAST_SCALE", "1"))  # e.g. 20 for a long search


@contextlib.contextmanager
def frozen(now: int) -> Iterator[None]:
    with mock.patch.object(dkim, "time", types.SimpleNamespace(time=lambda: float(now))):
        yield


class Keys:
    """One RSA-2048 and one Ed25519 key, in dkimpy's formats and as `cryptography` objects."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.rsa_pem = self.rsa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        self.ed_seed = base64.b64encode(self.ed.private_bytes(*Raw))
        spki = self.rsa.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        ed_raw = self.ed.public_key().public_bytes(Raw[0], serialization.PublicFormat.Raw)
        self.records = {
            b"rsa._domainkey.example.com.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(spki),
            b"ed._domainkey.example.com.": b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_raw),
        }

    def dns(self, name: bytes, timeout: int = 5) -> bytes | None:
        return self.records.get(name)

    def signer(self) -> dkim_fast.FastSigner:
        keys: list[tuple[str, dkim_fast.PrivateKey]] = [("rsa", self.rsa), ("ed", self.ed)]
        return dkim_fast.FastSigner(DOMAIN.decode(), keys, fields=signed_field_names)


KEYS = Keys()  # RSA key generation is slow; Hypothesis examples share one pair


def dkimpy_sign(message: bytes, include: list[bytes], algorithm: bytes, **kw: bytes) -> bytes:
    """What the engine does today, per key (DkimSigner.sign)."""
    private = KEYS.rsa_pem if algorithm == b"rsa-sha256" else KEYS.ed_seed
    selector = b"rsa" if algorithm == b"rsa-sha256" else b"ed"
    result: bytes = dkim.sign(
        message, selector, DOMAIN, private, signature_algorithm=algorithm,
        canonicalize=(b"relaxed", b"relaxed"), include_headers=include, **kw,
    )  # fmt: skip
    return result


def verifies(message: bytes, index: int = 0) -> bool:
    try:
        return bool(dkim.DKIM(message).verify(idx=index, dnsfunc=KEYS.dns))
    except dkim.DKIMException:
        return False


# --- message generation -------------------------------------------------------------------

header_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=160)
body_line = st.text(st.sampled_from("ab xy\t=.é€ -"), max_size=90)
NAMES = [b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe",
         b"list-unsubscribe-post", b"reply-to", b"cc", b"x-extra", b"content-type"]  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """Messages the email package writes: encoded and folded headers, optional fields,
    repeated fields, plain or multipart QP bodies, or raw bodies with odd whitespace."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "Sender Näme <sender@example.com>"
    msg["To"] = ", ".join(f"r{i}@example.org" for i in range(draw(st.integers(1, 12))))
    msg["Subject"] = draw(header_text)
    msg["Date"] = "Sat, 28 Nov 2026 06:00:00 +0000"
    for name in ("List-Unsubscribe", "List-Unsubscribe-Post", "Reply-To", "Cc"):
        if draw(st.booleans()):
            msg[name] = f"<https://example.com/u/{draw(st.text('abc123', max_size=90))}>"
    for _ in range(draw(st.integers(0, 2))):
        msg["X-Extra"] = draw(header_text)
    lines = draw(st.lists(body_line, max_size=30))
    trailer = "\n" * draw(st.integers(0, 3))
    kind = draw(st.sampled_from(["plain", "alternative", "raw"]))
    if kind == "plain":
        msg.set_content("\n".join(lines) + trailer, cte="quoted-printable")
    elif kind == "alternative":
        msg.set_content("\n".join(lines) + trailer, cte="quoted-printable")
        msg.add_alternative("<p>" + "<br>\n".join(lines) + "</p>", subtype="html")
        msg.set_boundary("==b0undary==")  # the email package would draw one with `random`
    try:
        data = msg.as_bytes(policy=policy.SMTP)
    except (ValueError, TypeError):  # header text the email package refuses to write
        data = b""
    if not data:
        msg.replace_header("Subject", "fallback")
        data = msg.as_bytes(policy=policy.SMTP)
    if kind == "raw":  # whitespace runs, trailing tabs and spaces, blank lines at the end
        raw = "\r\n".join(lines) + trailer.replace("\n", "\r\n")
        data = data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" + raw.encode()
    return data


# --- byte identity with dkimpy --------------------------------------------------------------


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages(),
    st.lists(st.sampled_from(NAMES), max_size=14),
    st.sampled_from([b"rsa-sha256", b"ed25519-sha256"]),
    st.sampled_from([b"\r\n", b"\n"]),
    st.integers(0, 2**33),
    st.booleans(),
)
def test_sign_is_dkimpy_sign(
    message: bytes, names: list[bytes], algorithm: bytes, linesep: bytes, now: int, lf: bool
) -> None:
    include = [b"from", *names]
    if lf:  # dkimpy reads bare-LF messages as CRLF; so must we
        message = message.replace(b"\r\n", b"\n")
    key = KEYS.rsa if algorithm == b"rsa-sha256" else KEYS.ed
    selector = b"rsa" if algorithm == b"rsa-sha256" else b"ed"
    with frozen(now):
        expected = dkimpy_sign(message, include, algorithm, linesep=linesep)
    assert dkim_fast.sign(message, selector, DOMAIN, key, include, timestamp=now,
                          linesep=linesep) == expected  # fmt: skip


@settings(max_examples=60 * SCALE, deadline=None)
@given(messages())
def test_signer_is_the_engine_signer(message: bytes) -> None:
    """FastSigner.sign == DkimSigner.sign: the engine's field list, RSA on top, then Ed25519."""
    signed_as_dkimpy_signs(message)


@settings(max_examples=25 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=2, max_size=5))
def test_one_signer_for_many_messages_signs_each_as_dkimpy_does(batch: list[bytes]) -> None:
    """A run's one signer remembers header values and field lists between messages: nothing
    of one message may reach another's signature."""
    signer = KEYS.signer()
    for message in batch:
        fields, _ = dkim_fast.split_message(message)
        include = signed_field_names([name for name, _ in fields])
        with frozen(T):
            expected = b"".join(dkimpy_sign(message, include, alg) for alg in
                                (b"rsa-sha256", b"ed25519-sha256")) + message  # fmt: skip
        assert signer.sign(message, timestamp=T) == expected


def test_a_long_send_signs_every_copy_as_a_new_signer_would() -> None:
    """Past the memo's size (each copy brings three values of its own) it starts again, and
    a copy with a field more gets its own h= list."""
    template = engine_message(0)
    signer = KEYS.signer()
    for n in range(400):
        message = template.replace(b"reader0@example.com", f"r{n}@example.com".encode())
        if n % 97 == 0:
            message = b"Cc: editors@example.org\r\n" + message
        assert signer.sign(message, timestamp=T) == KEYS.signer().sign(message, timestamp=T)
    assert len(signer._relaxed) <= 4 * dkim_fast._SHARED_KEPT
    assert len(signer._include) == 2


def signed_as_dkimpy_signs(message: bytes) -> bytes:
    """The engine's signatures on `message`, checked equal to dkimpy's and verified by it."""
    fields, _ = dkim_fast.split_message(message)
    include = signed_field_names([name for name, _ in fields])
    with frozen(T):
        expected = b"".join(dkimpy_sign(message, include, alg) for alg in
                            (b"rsa-sha256", b"ed25519-sha256")) + message  # fmt: skip
    signed = KEYS.signer().sign(message, timestamp=T)
    assert signed == expected
    assert verifies(signed, 0) and verifies(signed, 1)
    return signed


@pytest.mark.parametrize(
    "body",
    [b"", b"\r\n", b"\r\n\r\n\r\n", b"x", b"x  \t ", b"a\t\r\n\r\n \r\n", b" \r\n\t\r\n",
     b"a\nb\n\n", b"a\r\rb\r\n", b"tail \r", b"  lead\r\n\r\n\r\nx\r\n\r\n"],
)  # fmt: skip
def test_edge_bodies(body: bytes) -> None:
    message = b"From: a@example.com\r\nSubject: s  \t x \r\n\r\n" + body
    with frozen(T):
        expected = dkimpy_sign(message, [b"from", b"subject"], b"rsa-sha256")
    assert dkim_fast.sign(message, b"rsa", DOMAIN, KEYS.rsa, [b"from", b"subject"],
                          timestamp=T) == expected  # fmt: skip


@pytest.mark.parametrize(
    "message",
    [b"From: a\r\n", b"From: a", b"From: a\r\nTo: b\n\nx\n", b"\r\nFrom: not a header\r\n",
     b"FROM:a\r\n\tcontinued \r\n  more\t\r\nTo:\r\nTO:  b \t\r\n\r\nx",
     b"From: a\r\nTo: b\r\nx-odd_name!: c\r\nTo: d\r\n\r\n\r\n"],
)  # fmt: skip
def test_messages_without_body_or_crlf(message: bytes) -> None:
    """Odd header blocks: none at all, no final CRLF, LF only, tab folds, empty values."""
    with frozen(T):
        expected = dkimpy_sign(message, [b"from", b"to"], b"ed25519-sha256")
    assert dkim_fast.sign(message, b"ed", DOMAIN, KEYS.ed, [b"from", b"to"],
                          timestamp=T) == expected  # fmt: skip


def test_fold_is_dkimpy_fold() -> None:
    for text in (b"foo", b"foo  " + b"foo" * 24, b"foo" * 25, b"x", b"xyz" * 24, b"xyz" * 48,
                 b"a; " * 40 + b"\r\n", b"b=" + b"A" * 300 + b"\r\n", b"x\r\n y" * 30):  # fmt: skip
        for namelen in (0, 14):
            for linesep in (b"\r\n", b"\n"):
                assert dkim_fast.fold(text, namelen, linesep) == dkim.fold(text, namelen, linesep)


# --- the incremental body hash --------------------------------------------------------------


def dkimpy_body_hash(body: bytes) -> bytes:
    """bh= as dkimpy computes it: its parser's line handling, then Relaxed."""
    _, parsed = dkim.rfc822_parse(b"From: a\r\n\r\n" + body)
    canonical = dkim.canonicalization.Relaxed.canonicalize_body(parsed)
    return base64.b64encode(hashlib.sha256(canonical).digest())


chunk = st.lists(
    st.sampled_from([b"a", b"b ", b" ", b"\t", b"\r", b"\n", b"\r\n"]), max_size=24
).map(b"".join)


@settings(max_examples=400 * SCALE, deadline=None)
@given(st.lists(chunk, max_size=12))
def test_the_body_hash_is_dkimpys(pieces: list[bytes]) -> None:
    """Any body: whitespace runs, bare CR and LF, trailing empty lines, nothing at all."""
    body = b"".join(pieces)
    assert dkim_fast.hash_body(body) == dkimpy_body_hash(body)


line_piece = st.lists(chunk, min_size=0, max_size=4).map(lambda parts: b"".join(parts) + b"\r\n")


@settings(max_examples=400 * SCALE, deadline=None)
@given(st.lists(line_piece, max_size=10), st.data())
def test_a_body_in_pieces_of_whole_lines_hashes_as_dkimpy_hashes_it(
    pieces: list[bytes], data: st.DataObject
) -> None:
    """Canonical pieces joined are the canonical body, the end rule reaching back over pieces
    of empty lines; a piece seen before comes from the signer's memory and hashes the same."""
    body = b"".join(pieces)
    signer = KEYS.signer()
    assert signer.body_hash(body, pieces) == dkimpy_body_hash(body)
    again = data.draw(st.permutations(pieces))  # the same objects, met again in any order
    assert signer.body_hash(b"".join(again), again) == dkimpy_body_hash(b"".join(again))


@pytest.mark.parametrize(
    ("body", "pieces"),
    [
        (b"a\r\n", [b"a\r\n", b"b\r\n"]),  # more than the body
        (b"a\r\nb\r\nc\r\n", [b"a\r\nb", b"\r\nc\r\n"]),  # the body, but not in whole lines
    ],
)
def test_pieces_that_do_not_make_up_the_body_are_not_trusted(
    body: bytes, pieces: list[bytes]
) -> None:
    assert KEYS.signer().body_hash(body, pieces) == dkimpy_body_hash(body)


def test_composed_copies_sign_the_same_with_or_without_their_pieces() -> None:
    """Every reader's copy of an issue, signed with its body pieces (the template's shared
    lines canonicalized once), has the same signature bytes as signed whole, which dkimpy's
    bytes are (above); and it verifies."""
    config = load_settings(ROOT / "config.toml")
    config = dataclasses.replace(config, smtp=dataclasses.replace(config.smtp, smtputf8=True))
    digest = DigestRenderer(config).render(sample_articles(3), SAMPLE_DAY)
    template = MessageTemplate.build(digest, config, SAMPLE_DAY, datetime(2026, 11, 28, tzinfo=UTC))
    signer = KEYS.signer()
    kept: list[bytes] = []
    for n, address in enumerate(["ann@example.org", "josé@example.org", "b" * 60 + "@x.example"]):
        link = f"https://ree-news.example.com/u/{'t' * (20 + 40 * n)}.sig"
        message = template.render(Recipient(n, address, link, preferences_url=link + "/p"))
        assert message.data.endswith(b"\r\n\r\n" + b"".join(message.body))
        pieced = signer.sign(message.data, timestamp=T, body_pieces=message.body)
        assert pieced == signer.sign(message.data, timestamp=T)
        assert verifies(pieced, 0) and verifies(pieced, 1)
        kept = [piece for piece, _ in signer._lines.known.values()]
    assert len(kept) >= 2  # the template's long runs were kept, and only those
    assert all(any(piece is own for own in message.body) for piece in kept)


def engine_message(reader: int = 1) -> bytes:
    """One reader's digest as compose builds it for the sample day."""
    data = sample_message(load_settings(ROOT / "config.toml"))
    return data.replace(b"reader@example.com", f"reader{reader}@example.com".encode())


# --- verification --------------------------------------------------------------------------


def test_changes_break_the_signature() -> None:
    signed = KEYS.signer().sign(engine_message(1), timestamp=T)
    assert verifies(signed, 0) and verifies(signed, 1)
    body_at = signed.rindex(b"Sample headline")
    tampered = {
        "body byte": signed[:body_at] + b"X" + signed[body_at + 1 :],
        "signed header": signed.replace(b"To: reader1@", b"To: reader2@"),
        "subject": signed.replace(b"Subject: REE Daily", b"Subject: REE Dai1y"),
        "added From": signed.replace(b"\r\nTo: ", b"\r\nFrom: evil@example.net\r\nTo: ", 1),
        "added List-Unsubscribe-Post": signed.replace(
            b"\r\nTo: ", b"\r\nList-Unsubscribe-Post: x\r\nTo: ", 1
        ),
    }
    for change, data in tampered.items():
        assert data != signed, change
        assert not verifies(data, 0), change
        assert not verifies(data, 1), change
    refolded = signed.replace(b"Precedence: bulk", b"Precedence:    bulk  ")
    assert verifies(refolded, 0) and verifies(refolded, 1)  # relaxed tolerates whitespace


@pytest.mark.parametrize(
    "address", ["josé@example.org", "用户@xn--fsqu00a.xn--4rr70v", "zoë@xn--bcher-kva.example"]
)
def test_a_utf8_to_field_signs_as_dkimpy_signs_and_verifies(address: str) -> None:
    """An RFC 6532 message (an SMTPUTF8 reader): To is raw UTF-8, and the signature covers
    those bytes as dkimpy does; changing one of them breaks it."""
    to_line = f"To: {address}\r\n".encode()
    message = engine_message(5).replace(b"To: reader5@example.com\r\n", to_line)
    assert to_line in message and not message.isascii()
    signed = signed_as_dkimpy_signs(message)
    local = address.partition("@")[0].encode()
    tampered = signed.replace(to_line, to_line.replace(local, local[:-1] + b"x"))
    assert not verifies(tampered, 0) and not verifies(tampered, 1)


def test_keys_in_the_engine_formats() -> None:
    rsa_key = "rsa", dkim_fast.load_key(KEYS.rsa_pem)
    ed_key = "ed", dkim_fast.load_key(KEYS.ed_seed + b"\n")
    signer = dkim_fast.FastSigner(DOMAIN.decode(), [rsa_key, ed_key], fields=signed_field_names)
    message = engine_message(3)
    assert signer.sign(message, timestamp=T) == KEYS.signer().sign(message, timestamp=T)


def test_the_engines_signer_writes_dkimpys_bytes_at_the_clocks_second(tmp_path: Path) -> None:
    """DkimSigner (keys from files, t= from the run's clock) == dkimpy's dkim.sign per key."""
    (tmp_path / "rsa.pem").write_bytes(KEYS.rsa_pem)
    (tmp_path / "ed.key").write_bytes(KEYS.ed_seed + b"\n")
    keys = [load_key("rsa", "rsa-sha256", tmp_path / "rsa.pem")]
    keys.append(load_key("ed", "ed25519-sha256", tmp_path / "ed.key"))
    clock = FakeClock(datetime.fromtimestamp(T, UTC))
    message = engine_message(4)
    fields, _ = dkim_fast.split_message(message)
    include = signed_field_names([name for name, _ in fields])
    with frozen(T):
        expected = b"".join(dkimpy_sign(message, include, alg) for alg in
                            (b"rsa-sha256", b"ed25519-sha256")) + message  # fmt: skip
    assert DkimSigner(DOMAIN.decode(), keys, clock).sign(message) == expected


def test_refusals_match_dkimpy() -> None:
    """dkimpy refuses to sign without From and cannot parse a stray header line; so do we."""
    no_from = b"To: b@example.org\r\nSubject: s\r\n\r\nbody\r\n"
    with pytest.raises(dkim.ParameterError):
        dkimpy_sign(no_from, signed_field_names([b"to", b"subject"]), b"rsa-sha256")
    with pytest.raises(ValueError, match="From"):
        KEYS.signer().sign(no_from, timestamp=T)
    broken = b"From: a@example.com\r\nnot a header\r\n\r\nbody\r\n"
    with pytest.raises(dkim.MessageFormatError):
        dkimpy_sign(broken, [b"from"], b"rsa-sha256")
    with pytest.raises(ValueError, match="unparsable"):
        KEYS.signer().sign(broken, timestamp=T)
