"""The DER structure of a key file, read by its shape alone to say why cryptography refused it.

`der_structure` tells an SPKI, an ECPrivateKey and a PrivateKeyInfo apart and picks out their
algorithm, named curve, point and private scalar, without checking any value; keys.py turns
what it finds into a message (a mislabelled PEM block, a point off its curve, a scalar out of
range). It reads hostile input: every length is bounded by the data, nesting is one level
(a PrivateKeyInfo's ECPrivateKey), and an OID arc is at most MAX_OID_ARC_BITS wide, so it
returns None rather than raising.

This module owns the tables of key structures and OIDs. It must not load keys (cryptography's
job, in keys.py) nor decide what a message says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PEM_STRUCTURES: Final = {"PUBLIC KEY": "SubjectPublicKeyInfo (RFC 5280 4.1.2.7)",
                         "EC PRIVATE KEY": "ECPrivateKey (SEC 1 C.4, RFC 5915)",
                         "PRIVATE KEY": "PrivateKeyInfo (PKCS #8, RFC 5208 5)"}
"""The DER structure each key block label holds (RFC 7468 13, 11; RFC 5915 4)."""

CURVE_OIDS: Final = {"1.2.840.10045.3.1.7": "P-256", "1.3.132.0.34": "P-384", "1.3.132.0.35": "P-521"}
"""Named-curve OID (RFC 5480 2.1.1.1) -> the curve name keys.JWK_CURVES uses."""
KEY_ALGORITHM_OIDS: Final = {"1.2.840.10045.2.1": "EC", "1.2.840.113549.1.1.1": "RSA",
                             "1.2.840.113549.1.1.10": "RSA-PSS", "1.2.840.10040.4.1": "DSA", "1.2.840.10046.2.1": "DH",
                             "1.3.101.110": "X25519", "1.3.101.111": "X448", "1.3.101.112": "Ed25519",
                             "1.3.101.113": "Ed448"}
"""AlgorithmIdentifier OID of a key (RFC 5480 2.1.1, RFC 8017 A.1, RFC 3279 2.3, RFC 8410 3) -> its name."""
ID_EC_PUBLIC_KEY: Final = "1.2.840.10045.2.1"


@dataclass(frozen=True)
class DerKey:
    """The parts of a key's DER structure a diagnosis needs (`der_structure`)."""

    label: str                  # the PEM label of the structure (a PEM_STRUCTURES key)
    algorithm: str | None       # the key's algorithm OID (None: ECPrivateKey, EC implied)
    curve: str | None           # a named curve's OID, from the parameters
    point: bytes | None         # an EC public key's encoded point
    scalar: bytes | None        # an EC private key's private scalar


def der_tlvs(data: bytes) -> list[tuple[int, bytes]] | None:
    """The DER (tag, contents) items that `data` is made of, all of it, or None when it is not
    a sequence of DER items with single-byte tags and definite lengths (X.690 8.1, 10.1)."""
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data) or data[pos] & 0x1F == 0x1F:
            return None
        tag, size, pos = data[pos], data[pos + 1], pos + 2
        if size & 0x80:
            octets = size & 0x7F
            if not 1 <= octets <= 4 or pos + octets > len(data):
                return None
            size, pos = int.from_bytes(data[pos:pos + octets], "big"), pos + octets
        if pos + size > len(data):
            return None
        items.append((tag, data[pos:pos + size]))
        pos += size
    return items


MAX_OID_ARC_BITS: Final = 128
"""Widest OBJECT IDENTIFIER arc `der_oid` reads: a UUID arc (2.25.N, ITU-T X.667) is 128 bits
and the algorithm and curve OIDs of keys far narrower. A wider arc is no OID of a key, and
Python refuses to write one of more than 4,300 decimal digits (about 14,300 bits) in decimal
(ValueError, sys.get_int_max_str_digits)."""


class _NotDer(Exception):
    """A key structure's item that `der_structure` cannot read (an OID arc too wide)."""


def der_oid(contents: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's contents (X.690 8.19).

    Raises:
        _NotDer: an arc wider than MAX_OID_ARC_BITS.
    """
    arcs, value = [], 0
    for byte in contents:
        value = (value << 7) | (byte & 0x7F)
        if value.bit_length() > MAX_OID_ARC_BITS:
            raise _NotDer(f"OID arc wider than {MAX_OID_ARC_BITS} bits")
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return ""
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


def _der_algorithm(contents: bytes) -> tuple[str | None, str | None]:
    """(algorithm OID, named-curve OID or None) of an AlgorithmIdentifier's contents."""
    parts = der_tlvs(contents) or []
    algorithm = der_oid(parts[0][1]) if parts and parts[0][0] == 0x06 else None
    curve = der_oid(parts[1][1]) if len(parts) > 1 and parts[1][0] == 0x06 else None
    return algorithm, curve


def der_structure(der: bytes, in_pkcs8: bool = False) -> DerKey | None:
    """Which key structure `der` is, by its shape alone (no value is checked): an SPKI
    SEQUENCE {AlgorithmIdentifier, BIT STRING}, an ECPrivateKey SEQUENCE {1, OCTET STRING,
    [0] curve, [1] public key}, a PrivateKeyInfo SEQUENCE {0 or 1, AlgorithmIdentifier, OCTET
    STRING, ...}; None for anything else, an OID it cannot read among it. `in_pkcs8`: `der` is
    a PrivateKeyInfo's privateKey, which holds an ECPrivateKey (RFC 5915 3) and is not read as
    another PrivateKeyInfo: following one into the next would recurse as deep as a hostile
    file nests them (RecursionError)."""
    try:
        return _der_shape(der, in_pkcs8)
    except _NotDer:
        return None


def _der_shape(der: bytes, in_pkcs8: bool) -> DerKey | None:
    """`der_structure` without its catch of _NotDer."""
    top = der_tlvs(der)
    if not top or len(top) != 1 or top[0][0] != 0x30:
        return None
    parts = der_tlvs(top[0][1])
    if not parts:
        return None
    tags = [tag for tag, _ in parts]
    if tags == [0x30, 0x03] and parts[1][1][:1] == b"\0":
        algorithm, curve = _der_algorithm(parts[0][1])
        return DerKey("PUBLIC KEY", algorithm, curve, parts[1][1][1:], None)
    if tags[:2] == [0x02, 0x04] and parts[0][1] == b"\x01":
        curve = point = None
        for tag, contents in parts[2:]:
            inner = der_tlvs(contents) or []
            if tag == 0xA0 and inner and inner[0][0] == 0x06:
                curve = der_oid(inner[0][1])
            elif tag == 0xA1 and inner and inner[0][0] == 0x03 and inner[0][1][:1] == b"\0":
                point = inner[0][1][1:]
        return DerKey("EC PRIVATE KEY", None, curve, point, parts[1][1])
    if not in_pkcs8 and tags[:3] == [0x02, 0x30, 0x04] and parts[0][1] in (b"\0", b"\x01"):
        algorithm, curve = _der_algorithm(parts[1][1])
        nested = _der_shape(parts[2][1], True) if algorithm == ID_EC_PUBLIC_KEY else None
        if nested is not None and nested.label == "EC PRIVATE KEY":
            return DerKey("PRIVATE KEY", algorithm, nested.curve or curve, nested.point, nested.scalar)
        return DerKey("PRIVATE KEY", algorithm, curve, None, None)
    return None
