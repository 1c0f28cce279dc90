"""The exceptions of rmm_mp.attest.

A verifier has two kinds of bad news. Input that is not a CCA token at all (not CBOR, wrong
tag, wrong shape) raises `TokenFormatError`, which the CLI reports as a usage error. A token
that is well formed but does not check out (bad signature, broken binding, invalid claims)
is not an exception: `verify_token` records it as a failed `Check`. The other classes here
are raised by the helpers that load keys and sign, and are turned into failed checks where a
verification needs them.
"""

from __future__ import annotations


class AttestError(Exception):
    """Base class of every error rmm_mp.attest raises on purpose."""


class TokenFormatError(AttestError, ValueError):
    """The bytes are not the CBOR/COSE structure that was expected; the message names the
    part (outer token, platform token, protected header, ...), what was found and what the
    CCA token format (DEN0137 A7.2) requires there."""


class PlatformKeyError(AttestError, ValueError):
    """A platform key (trust anchor) cannot be loaded: unknown file format, not an EC key,
    unsupported curve, or a point that is not on its curve. Messages start with
    "platform key invalid:"."""


class SignatureError(AttestError):
    """A COSE_Sign1 signature does not verify with the given key, or cannot be checked with
    it (the key's curve does not match the algorithm, the signature has the wrong length)."""


class UnsupportedCryptoError(AttestError, RuntimeError):
    """The installed `cryptography` cannot do what was asked (deterministic ECDSA)."""
