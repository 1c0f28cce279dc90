"""The Realm Attestation Key (RAK) in realm claim 44237, and the key it comes from.

TF-RMM receives the RAK from EL3 as a 48-byte P-384 private scalar (rsi-attest.md 4.6). The
RMM 1.0 realm profile puts its public half in claim 44237 as a COSE_Key (RFC 9053)
{1: 2 (EC2), -1: 2 (P-384), -2: x, -3: y}, exactly 107 bytes in that key order; legacy tokens
(no profile claim) put the raw uncompressed point 04 || X || Y, 97 bytes (rsi-attest.md 4.3).
The platform token's challenge is a hash of these exact bytes (4.5), so `encode_cose_key`
must reproduce TF-RMM's bytes, and verifiers must hash the claim as received.

`raw_point_problem` and `cose_key_problems` say what keeps a claim from being a P-384 public
key in its form, curve membership included (the realm claims check); `rak_public_key` returns
the key (the realm signature check). A point that is not on P-384 is a malformed claim, as veraison's validator
(ccatoken realm ValidateRealmPubKey) treats a raw one: no signature can make it good.
"""

from __future__ import annotations

from typing import Final

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rmm_mp.abi.cca_token import (COSE_CRV_P384, COSE_KEY_CRV, COSE_KEY_KTY, COSE_KEY_X, COSE_KEY_Y,
                                  COSE_KTY_EC2)
from rmm_mp.attest._cbor import is_map, loads_exact
from rmm_mp.attest._claim_rules import describe, label_problems, shown
from rmm_mp.attest.errors import TokenFormatError

P384_COORDINATE_SIZE: Final = 48
COSE_KEY_SIZE: Final = 107
RAW_POINT_SIZE: Final = 1 + 2 * P384_COORDINATE_SIZE
P384_ORDER: Final = 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973
"""n, the order of P-384's base point (SEC 2 2.5.1; FIPS 186-4 D.1.2.4)."""
P384_PRIME: Final = 2**384 - 2**128 - 2**96 + 2**32 - 1
"""p, the prime of P-384's field (SEC 2 2.5.1): a coordinate must be below it."""
P384_B: Final = 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef
"""b of P-384's curve y^2 = x^3 - 3x + b (SEC 2 2.5.1)."""
COSE_KEY_D: Final = -4
"""COSE_Key label of an EC2 private key; it must never appear in a token."""


def private_key_from_scalar(scalar: bytes) -> ec.EllipticCurvePrivateKey:
    """The P-384 private key of a 48-byte big-endian scalar (how EL3 hands the RAK to the RMM).

    Raises:
        ValueError: not 48 bytes, or not a valid P-384 scalar (0 or >= the group order).
    """
    if len(scalar) != P384_COORDINATE_SIZE:
        raise ValueError(f"RAK private scalar must be {P384_COORDINATE_SIZE} bytes (P-384), got {len(scalar)}")
    value = int.from_bytes(scalar, "big")
    if not 0 < value < P384_ORDER:
        # cryptography's own words ("key out of range, infinity, etc.") name neither value nor range.
        raise ValueError(f"RAK private scalar {scalar.hex()} is not a P-384 private key; expected "
                         f"1 <= scalar < the group order n = {P384_ORDER:#x}")
    return ec.derive_private_key(value, ec.SECP384R1())


def encode_cose_key(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The 107-byte COSE_Key {1: 2, -1: 2, -2: x, -3: y} of a P-384 public key, byte-identical
    to TF-RMM's realm claim 44237 (rsi-attest.md 4.3, 7.4).

    Raises:
        ValueError: the key is not on P-384.
    """
    if not isinstance(public_key.curve, ec.SECP384R1):
        raise ValueError(f"the RAK must be a P-384 key, got one on {public_key.curve.name}")
    numbers = public_key.public_numbers()
    size = P384_COORDINATE_SIZE
    return cbor2.dumps({COSE_KEY_KTY: COSE_KTY_EC2, COSE_KEY_CRV: COSE_CRV_P384,
                           COSE_KEY_X: numbers.x.to_bytes(size, "big"), COSE_KEY_Y: numbers.y.to_bytes(size, "big")})


def raw_point(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed point 04 || X || Y: legacy tokens' claim 44237 (97 bytes on P-384)."""
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def raw_point_problem(data: bytes) -> str | None:
    """Why the 97 bytes `data` are no uncompressed P-384 point 04 || X || Y (SEC 1 2.3.3), or
    None: a first byte other than 0x04, a coordinate not below p, or X, Y not on P-384."""
    if data[:1] != b"\x04":
        found = f"{data[0]:#04x}" if data else "nothing"
        return f"its first byte is {found}; expected 0x04 (an uncompressed point, SEC 1 2.3.3)"
    size = P384_COORDINATE_SIZE
    x, y = int.from_bytes(data[1:1 + size], "big"), int.from_bytes(data[1 + size:], "big")
    return point_problem(x, y)


def point_problem(x: int, y: int) -> str | None:
    """Why (x, y) is no P-384 public key (a coordinate >= p, or off the curve), or None."""
    for name, value in (("x", x), ("y", y)):
        # 48 bytes hold values up to p + 2^128 + 2^96 - 2^32: such a coordinate is no field
        # element (SEC 1 2.3.4 refuses it, as Go's elliptic.Unmarshal does), and cryptography
        # would reduce it mod p and take another encoding of a point as the key.
        if not 0 <= value < P384_PRIME:
            return (f"its {name} coordinate {value:#x} is not below the field prime p = {P384_PRIME:#x}; "
                    "expected a P-384 public key, whose coordinates are field elements (SEC 1 2.3.4)")
    # The curve equation y^2 = x^3 - 3x + b (mod p) is all that is left to test: P-384's
    # cofactor is 1, so every such point is in the group of order n (SEC 1 3.2.2.1), and the
    # point at infinity has no affine coordinates. Integer arithmetic takes ~1.5 us where
    # building the key with cryptography took ~20 us, paid by every token the RMM encodes
    # (encode_realm_claims checks its claims).
    if (y * y - (x * x * x - 3 * x + P384_B)) % P384_PRIME:
        return f"its point (x={x:#x}, y={y:#x}) is not on P-384; expected a P-384 public key"
    return None


def cose_key_problems(data: bytes) -> list[str]:
    """What keeps `data` from being an RMM 1.0 RAK COSE_Key (EC2, P-384, 48-byte x and y that
    are a point on P-384, no private part); empty when it is one."""
    try:
        key = loads_exact(data, "realm claim 44237 (RAK COSE_Key)")
    except TokenFormatError as exc:
        return [str(exc)]
    if not is_map(key):
        return [f"realm claim 44237 (RAK) must encode a COSE_Key map, found {describe(key)}"]
    problems = label_problems(key, "RAK COSE_Key", "label")
    for label, expected, what in ((COSE_KEY_KTY, COSE_KTY_EC2, "kty (1)"), (COSE_KEY_CRV, COSE_CRV_P384, "crv (-1)")):
        # type(), not ==: 2.0 and True compare equal to integers but are no COSE values.
        if type(key.get(label)) is not int or key.get(label) != expected:
            found = f"is {shown(key[label])}" if label in key else "is missing"
            problems.append(f"RAK COSE_Key {what} {found}, expected {expected} "
                            f"({'EC2' if label == COSE_KEY_KTY else 'P-384'})")
    for label, what in ((COSE_KEY_X, "x (-2)"), (COSE_KEY_Y, "y (-3)")):
        value = key.get(label)
        if not isinstance(value, bytes) or len(value) != P384_COORDINATE_SIZE:
            found = "it is missing" if label not in key else f"found {describe(value)}"
            problems.append(f"RAK COSE_Key {what} must be a {P384_COORDINATE_SIZE}-byte string, {found}")
    if COSE_KEY_D in key:
        problems.append("RAK COSE_Key carries a private key d (-4); a token must hold the public key only")
    if not problems:
        # Only a well-formed key has coordinates to test.
        problem = point_problem(*(int.from_bytes(key[label], "big") for label in (COSE_KEY_X, COSE_KEY_Y)))
        if problem:
            problems.append(f"RAK COSE_Key: {problem}")
    return problems


def rak_public_key(claim: bytes) -> ec.EllipticCurvePublicKey:
    """The P-384 public key in claim 44237, in either form (97-byte point or COSE_Key).

    Raises:
        ValueError: neither form, or the point is not on P-384.
    """
    if len(claim) == RAW_POINT_SIZE:
        # No COSE_Key of P-384 is 97 bytes long: this can only be meant as a raw point.
        problem = raw_point_problem(claim)
        if problem:
            raise ValueError(f"RAK claim 44237 is {RAW_POINT_SIZE} bytes, the size of a raw P-384 point, but {problem}")
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), claim)
    problems = cose_key_problems(claim)
    if problems:
        raise ValueError("RAK claim 44237 is neither a 97-byte P-384 point nor a valid COSE_Key: "
                         + "; ".join(problems))
    key = cbor2.loads(claim)
    x, y = (int.from_bytes(key[label], "big") for label in (COSE_KEY_X, COSE_KEY_Y))
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
