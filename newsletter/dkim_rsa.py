"""RSA for dkimpy from the `cryptography` package: the same signature, ~30x less CPU.

dkimpy canonicalizes and hashes the message, then signs the digest with its own pure-Python
RSA, which costs ~6 ms per message (bench/dkim_cost.py): at one signature per recipient that
caps a send near 110 msg/s. RSASSA-PKCS1-v1_5 is deterministic, so the OpenSSL-backed
operation gives byte-for-byte the signature dkimpy would compute (tests/test_dkim.py checks
that), and dkimpy stays in charge of everything DKIM-specific. The swap is one module
attribute dkimpy looks up at call time; if a dkimpy release renames it, `install` leaves
dkimpy's own function in place and signing is merely slow again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha1": hashes.SHA1,
}
_PURE_PYTHON: Any = getattr(dkim, "RSASSA_PKCS1_v1_5_sign", None)


@functools.lru_cache(maxsize=8)
def _key(numbers: tuple[int, ...]) -> rsa.RSAPrivateKey:
    n, e, d, p, q, dmp1, dmq1, iqmp = numbers
    public = rsa.RSAPublicNumbers(e, n)
    return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, public).private_key()


def rsa_sign(hash_object: Any, private_key: dict[str, int]) -> bytes:
    """dkimpy's `RSASSA_PKCS1_v1_5_sign(hash, private_key)`, computed by OpenSSL."""
    algorithm = _HASHES[hash_object.name]()
    key = _key(
        tuple(
            private_key[name]
            for name in (
                "modulus", "publicExponent", "privateExponent", "prime1", "prime2",
                "exponent1", "exponent2", "coefficient",
            )
        )
    )  # fmt: skip
    return key.sign(hash_object.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))


def install() -> bool:
    """Route dkimpy's RSA signing through `rsa_sign`; False if dkimpy changed shape."""
    if _PURE_PYTHON is None:
        return False
    dkim.RSASSA_PKCS1_v1_5_sign = rsa_sign
    return True


def pure_python_sign(hash_object: Any, private_key: dict[str, int]) -> bytes:
    """dkimpy's original function, for the equivalence test and the benchmark."""
    result: bytes = _PURE_PYTHON(hash_object, private_key)
    return result
