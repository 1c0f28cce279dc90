"""COSE_Sign1 (RFC 9052 section 4.2) as CCA tokens use it: decode, verify, sign.

Both CCA tokens are tagged COSE_Sign1 messages (tag 18) with the algorithm in the protected
header and an attached payload (rsi-attest.md 4.2). Verification hashes the Sig_structure
["Signature1", protected, h'', payload] built from the protected header bytes *as received*:
re-encoding a decoded header could change the bytes and so the signed message. COSE carries
ECDSA signatures as r || s (each the curve's coordinate size, big-endian); `cryptography`
speaks DER, so the two are converted here.

Signing produces what TF-RMM's t_cose produces: protected header {1: alg} (`a1 01 38 22` for
ES384), an empty unprotected map, no kid. With deterministic=True the nonce follows RFC 6979,
so the same key and payload give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import cbor2
import cryptography
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from rmm_mp.abi.cca_token import COSE_ALG_ES256, COSE_ALG_ES384, COSE_ALG_ES512, TAG_COSE_SIGN1
from rmm_mp.attest._cbor import is_array, is_map, loads_exact
from rmm_mp.attest._claim_rules import describe, is_integer_lookalike, shown
from rmm_mp.attest.errors import SignatureError, TokenFormatError, UnsupportedCryptoError

HEADER_ALG: Final = 1
HEADER_CRIT: Final = 2


@dataclass(frozen=True)
class CoseAlgorithm:
    """An ECDSA algorithm of RFC 9053 section 2.1: its curve, hash and coordinate size."""

    name: str
    curve: ec.EllipticCurve
    hash: hashes.HashAlgorithm
    coordinate_size: int


ALGORITHMS: Final = {
    COSE_ALG_ES256: CoseAlgorithm("ES256", ec.SECP256R1(), hashes.SHA256(), 32),
    COSE_ALG_ES384: CoseAlgorithm("ES384", ec.SECP384R1(), hashes.SHA384(), 48),
    COSE_ALG_ES512: CoseAlgorithm("ES512", ec.SECP521R1(), hashes.SHA512(), 66),
}
"""COSE algorithm id -> parameters, for the algorithms CCA tokens use."""


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1. `protected` is the protected header's bstr content exactly as
    received; `alg` was read from it."""

    protected: bytes
    alg: int
    unprotected: Any
    payload: bytes
    signature: bytes

    @property
    def algorithm(self) -> CoseAlgorithm:
        return ALGORITHMS[self.alg]

    def to_be_signed(self) -> bytes:
        """The Sig_structure bytes (RFC 9052 section 4.4), external AAD empty."""
        return sig_structure(self.protected, self.payload)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """CBOR ["Signature1", protected, h'', payload]: what a COSE_Sign1 signature covers."""
    return cbor2.dumps(["Signature1", protected, b"", payload])


def decode_sign1(data: bytes, what: str) -> Sign1:
    """Decode a tagged COSE_Sign1 with an ES256/ES384/ES512 protected header.

    Raises:
        TokenFormatError: not CBOR, not tag 18, not a 4-array of (bstr, map, bstr, bstr), or a
            protected header without a supported alg, or with a crit parameter.
    """
    item = loads_exact(data, what)
    if not isinstance(item, cbor2.CBORTag) or item.tag != TAG_COSE_SIGN1:
        found = f"tag {item.tag}" if isinstance(item, cbor2.CBORTag) else describe(item)
        raise TokenFormatError(f"{what}: expected a COSE_Sign1 with tag {TAG_COSE_SIGN1}, found {found}")
    parts = item.value
    if not is_array(parts) or len(parts) != 4:
        raise TokenFormatError(f"{what}: COSE_Sign1 (tag {TAG_COSE_SIGN1}) must hold an array of 4 "
                               f"[protected, unprotected, payload, signature], found {describe(parts)}")
    protected, unprotected, payload, signature = parts
    for name, value in (("protected header", protected), ("payload", payload), ("signature", signature)):
        if not isinstance(value, bytes):
            detached = " (a detached payload, nil, is not supported)" if name == "payload" and value is None else ""
            raise TokenFormatError(f"{what}: COSE_Sign1 {name} must be a byte string, found "
                                   f"{describe(value)}{detached}")
    if not is_map(unprotected):
        raise TokenFormatError(f"{what}: COSE_Sign1 unprotected header must be a map, "
                               f"found {describe(unprotected)}")
    alg = _protected_alg(protected, what)
    if HEADER_ALG in unprotected:
        raise TokenFormatError(f"{what}: alg (1) must be in the protected header only, "
                               "but the unprotected header has it too")
    return Sign1(protected, alg, unprotected, payload, signature)


def _protected_alg(protected: bytes, what: str) -> int:
    header = loads_exact(protected, f"{what} protected header") if protected else {}
    if not is_map(header):
        raise TokenFormatError(f"{what}: protected header must encode a map, found {describe(header)}")
    if HEADER_CRIT in header:
        raise TokenFormatError(f"{what}: protected header has crit (2) = {shown(header[HEADER_CRIT])}; "
                               "no critical header parameter is supported")
    if any(is_integer_lookalike(label) for label in header):
        # 1.0 or a rational 30([1, 1]) equals 1 in Python, so header.get(1) would find it as alg.
        raise TokenFormatError(f"{what}: protected header labels must be integers or text, found "
                               f"{', '.join(describe(label) for label in header if is_integer_lookalike(label))}")
    alg = header.get(HEADER_ALG)
    if type(alg) is not int or alg not in ALGORITHMS:      # -35.0 == -35, but is no COSE alg
        names = ", ".join(f"{a.name} ({i})" for i, a in ALGORITHMS.items())
        found = shown(alg) if HEADER_ALG in header else "missing"
        raise TokenFormatError(f"{what}: protected header alg (1) is {found}; expected one of {names}")
    return alg


def verify_sign1(message: Sign1, key: ec.EllipticCurvePublicKey) -> None:
    """Check `message`'s signature with `key`.

    Raises:
        SignatureError: the key's curve is not the algorithm's, the signature is not
            2 x coordinate size bytes, or the signature does not verify.
    """
    algorithm = message.algorithm
    if key.curve.name != algorithm.curve.name:
        raise SignatureError(f"{algorithm.name} needs a {algorithm.curve.name} key, "
                             f"but the key is on {key.curve.name}")
    size = algorithm.coordinate_size
    if len(message.signature) != 2 * size:
        raise SignatureError(f"{algorithm.name} signature must be {2 * size} bytes (r || s), "
                             f"got {len(message.signature)}")
    r = int.from_bytes(message.signature[:size], "big")
    s = int.from_bytes(message.signature[size:], "big")
    try:
        key.verify(encode_dss_signature(r, s), message.to_be_signed(), ec.ECDSA(algorithm.hash))
    except InvalidSignature:
        raise SignatureError(f"{algorithm.name} signature does not verify with the "
                             f"{key.curve.name} key") from None


def sign_cose_sign1(payload: bytes, private_key: ec.EllipticCurvePrivateKey, alg: int = COSE_ALG_ES384,
                    deterministic: bool = True) -> bytes:
    """A tagged COSE_Sign1 over `payload`, byte-compatible with TF-RMM's realm token.

    The protected header is {1: alg} (`a1 01 38 22` for ES384), the unprotected header an
    empty map (rsi-attest.md 4.2, 7.3).

    Args:
        payload: the claims map, already CBOR-encoded.
        private_key: a key on the algorithm's curve (P-384 for ES384).
        alg: COSE_ALG_ES256, COSE_ALG_ES384 or COSE_ALG_ES512.
        deterministic: sign with RFC 6979 nonces, so the output is reproducible.

    Raises:
        ValueError: unknown alg, or a key on another curve.
        UnsupportedCryptoError: deterministic signing asked for but unavailable.
    """
    algorithm = ALGORITHMS.get(alg)
    if algorithm is None:
        raise ValueError(f"alg {alg!r} is not one of {sorted(ALGORITHMS)} (ES256, ES384, ES512)")
    if private_key.curve.name != algorithm.curve.name:
        raise ValueError(f"{algorithm.name} needs a {algorithm.curve.name} key, got one on {private_key.curve.name}")
    protected = cbor2.dumps({HEADER_ALG: alg})
    der = private_key.sign(sig_structure(protected, payload), _ecdsa(algorithm, deterministic))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(algorithm.coordinate_size, "big") + s.to_bytes(algorithm.coordinate_size, "big")
    return cbor2.dumps(cbor2.CBORTag(TAG_COSE_SIGN1, [protected, {}, payload, signature]))


def _ecdsa(algorithm: CoseAlgorithm, deterministic: bool) -> ec.ECDSA:
    if not deterministic:
        return ec.ECDSA(algorithm.hash)
    try:
        return ec.ECDSA(algorithm.hash, deterministic_signing=True)
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise UnsupportedCryptoError(
            f"deterministic ECDSA (RFC 6979) is not available in cryptography {cryptography.__version__} "
            f"({exc}); it needs cryptography >= 43 built with OpenSSL >= 3.2. Pass deterministic=False "
            "to sign with random nonces") from None
