"""What DKIM signing adds per message: RSA-2048 alone, Ed25519 alone, and both.

Every reader's body differs (the unsubscribe link and address are in it), so neither the body
hash nor the signature can be shared across recipients: each message pays the full cost. This
measures it on a ~30 KB message built exactly as a send builds it (the shipped config, a digest
of long sample articles, `MessageTemplate.render` per reader), next to the cost of composing.

    .venv/bin/python bench/dkim_cost.py [MESSAGES]

The split of the RSA figure shows where the time goes. dkimpy's own RSA private-key operation
is pure Python (two 1024-bit modular exponentiations); `newsletter.dkim_rsa` routes it to
OpenSSL through `cryptography`, which computes the identical signature far faster. What is
left is dkimpy parsing, canonicalizing and hashing the message in Python.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dkim.crypto

from newsletter import dkim_rsa
from newsletter.check import SAMPLE_DAY, sample_articles
from newsletter.compose import MessageTemplate
from newsletter.config import load_settings
from newsletter.dkim_sign import ED25519, RSA, DkimKey, DkimSigner, generate_key
from newsletter.models import Recipient
from newsletter.render import DigestRenderer

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = 11  # long sample articles: a ~30 KB message, like a 14-article real digest


def per_call_us(work: Callable[[int], object], count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        work(index)
    return (time.perf_counter() - started) / count * 1e6


def main(count: int) -> None:
    settings = load_settings(ROOT / "config.toml")
    digest = DigestRenderer(settings).render(sample_articles(ARTICLES), SAMPLE_DAY)
    template = MessageTemplate.build(digest, settings, SAMPLE_DAY, datetime.now(UTC))

    def compose(index: int) -> bytes:
        url = f"https://ree-news.example.com/newsletter/u/token{index:012d}"
        return template.render(Recipient(index, f"reader{index}@example.org", url)).data

    size = len(compose(0))
    with tempfile.TemporaryDirectory() as folder:
        rsa = generate_key("bench", RSA, Path(folder) / "rsa.pem")
        ed = generate_key("bench-ed", ED25519, Path(folder) / "ed.key")
        report(count, size, compose, rsa, ed)


def signing(keys: list[DkimKey], compose: Callable[[int], bytes]) -> Callable[[int], bytes]:
    signer = DkimSigner("ree-news.example.com", keys)

    def work(index: int) -> bytes:
        return signer.sign(compose(index))

    return work


def report(
    count: int, size: int, compose: Callable[[int], bytes], rsa: DkimKey, ed: DkimKey
) -> None:
    base = per_call_us(compose, count)
    print(f"message: {size:,} bytes; {count} messages per figure; microseconds per message")
    print(f"  compose only                          {base:8.0f}")
    costs = {}
    for label, keys in (("RSA-2048", [rsa]), ("Ed25519", [ed]), ("RSA-2048 + Ed25519", [rsa, ed])):
        costs[label] = per_call_us(signing(keys, compose), count) - base
        print(f"  signing, {label:<28} {costs[label]:8.0f}")
    numbers = dkim.crypto.parse_pem_private_key(rsa.private)
    digest = hashlib.sha256(b"headers")
    pure = per_call_us(lambda _: dkim_rsa.pure_python_sign(digest, numbers), count)
    fast = per_call_us(lambda _: dkim_rsa.rsa_sign(digest, numbers), count)
    parse = per_call_us(lambda _: dkim.crypto.parse_pem_private_key(rsa.private), count)
    print("where RSA-2048 signing goes:")
    print(f"  RSA operation, dkimpy's pure Python     {pure:6.0f}  (not used)")
    print(f"  RSA operation, OpenSSL (dkim_rsa)       {fast:6.0f}")
    print(f"  PEM key parse (dkimpy, every call)      {parse:6.0f}")
    print(f"  the rest: parse, canonicalize, hash     {costs['RSA-2048'] - fast - parse:6.0f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
