"""The hash algorithms CCA tokens name, by their IANA "Named Information" strings.

Claims 44236 (realm hash algorithm), 44240 (RAK hash algorithm) and 2402 (platform hash
algorithm) carry names such as "sha-256" (rsi-attest.md 4.3, 4.4); hashlib spells them
"sha256". RMM 1.0 realms use sha-256 or sha-512; sha-384 is accepted because TF-RMM's later
releases and the platform profile allow it.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Final

HASH_ALGORITHMS: Final[dict[str, Callable[[bytes], "hashlib._Hash"]]] = {
    "sha-256": hashlib.sha256,
    "sha-384": hashlib.sha384,
    "sha-512": hashlib.sha512,
}
"""IANA name -> hashlib constructor, for every algorithm this package accepts."""

DIGEST_SIZES: Final = {name: ctor(b"").digest_size for name, ctor in HASH_ALGORITHMS.items()}
"""IANA name -> digest length in bytes (32, 48, 64)."""


def digest(name: str, data: bytes) -> bytes:
    """Hash `data` with the algorithm a claim names ("sha-256", "sha-384" or "sha-512").

    Raises:
        ValueError: `name` is not one of HASH_ALGORITHMS.
    """
    ctor = HASH_ALGORITHMS.get(name) if isinstance(name, str) else None
    if ctor is None:
        raise ValueError(f"hash algorithm {name!r} is not one of {', '.join(HASH_ALGORITHMS)}")
    return ctor(bytes(data)).digest()
