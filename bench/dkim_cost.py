"""What DKIM signing adds per message: RSA-2048 alone, Ed25519 alone, and both; dkimpy (the
reference) next to the engine's signer (`newsletter.mail.dkim_fast`, dkimpy's exact bytes).

Every reader's body differs (the unsubscribe link and address are in it), so neither the body
hash nor the signature can be shared across recipients: each message pays the full cost. This
measures it on a ~30 KB message built exactly as a send builds it (the shipped config, a digest
of long sample articles, `MessageTemplate.render` per reader), next to the cost of composing.

    .venv/bin/python bench/dkim_cost.py [MESSAGES]

The RSA-2048 private-key operation itself (OpenSSL through `cryptography`) is the floor: it is
printed on its own. The fastest of five rounds is reported, since the machine is shared.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.cli.checks import SAMPLE_DAY, sample_articles
from newsletter.compose import MessageTemplate
from newsletter.config import load_settings
from newsletter.mail import dkim_fast
from newsletter.mail.dkim import ED25519, RSA, DkimKey, DkimSigner, generate_key, signed_fields
from newsletter.models import Recipient
from newsletter.render import DigestRenderer

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = 11  # long sample articles: a ~30 KB message, like a 14-article real digest
NOW = datetime(2026, 11, 28, 7, 5, tzinfo=UTC)


def per_call_us(work: Callable[[int], object], count: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for index in range(count):
            work(index)
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


def main(count: int) -> None:
    settings = load_settings(ROOT / "config.toml")
    digest = DigestRenderer(settings).render(sample_articles(ARTICLES), SAMPLE_DAY)
    template = MessageTemplate.build(digest, settings, SAMPLE_DAY, NOW)

    def compose(index: int) -> bytes:
        url = f"https://ree-news.example.com/newsletter/u/token{index:012d}"
        return template.render(Recipient(index, f"reader{index}@example.org", url)).data

    size = len(compose(0))
    with tempfile.TemporaryDirectory() as folder:
        rsa_key = generate_key("bench", RSA, Path(folder) / "rsa.pem")
        ed_key = generate_key("bench-ed", ED25519, Path(folder) / "ed.key")
        report(count, size, compose, rsa_key, ed_key)


def engine(keys: list[DkimKey], compose: Callable[[int], bytes]) -> Callable[[int], bytes]:
    signer = DkimSigner("ree-news.example.com", keys, lambda: NOW)
    return lambda index: signer.sign(compose(index))


def dkimpy(keys: list[DkimKey], compose: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """What the engine did before dkim_fast: dkimpy's DKIM.sign, once per key."""

    def work(index: int) -> bytes:
        message = compose(index)
        parsed = dkim.DKIM(message, linesep=b"\r\n")
        fields = signed_fields(name.decode() for name, _ in parsed.headers)
        include = [name.encode() for name in fields]
        return b"".join(
            parsed.sign(key.selector.encode(), b"ree-news.example.com", key.private,
                        signature_algorithm=key.algorithm.encode(),
                        canonicalize=(b"relaxed", b"relaxed"), include_headers=include)
            for key in keys
        ) + message  # fmt: skip

    return work


def report(
    count: int, size: int, compose: Callable[[int], bytes], rsa_key: DkimKey, ed_key: DkimKey
) -> None:
    base = per_call_us(compose, count)
    print(f"message: {size:,} bytes; {count} messages per figure; microseconds per message")
    print(f"  compose only                          {base:8.0f}")
    print("  signing (on top of composing)           dkimpy   engine")
    both = [rsa_key, ed_key]
    for label, keys in (("RSA-2048", [rsa_key]), ("Ed25519", [ed_key]), ("RSA + Ed25519", both)):
        reference = per_call_us(dkimpy(keys, compose), max(count // 4, 20)) - base
        ours = per_call_us(engine(keys, compose), count) - base
        print(f"  {label:<36} {reference:8.0f} {ours:8.0f}")
    private = dkim_fast.load_key(rsa_key.private)
    assert isinstance(private, rsa.RSAPrivateKey)
    data = b"headers to sign" * 40
    floor = per_call_us(lambda _: private.sign(data, padding.PKCS1v15(), hashes.SHA256()), count)
    print(f"  of which the RSA-2048 operation itself (OpenSSL)  {floor:8.0f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
