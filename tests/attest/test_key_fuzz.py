"""The platform key reader (rmm_mp/attest/keys.py) on hostile DER, with hypothesis.

Properties:

1. `der_structure`, the shape reader that tells a corrupt key file from a mislabelled or an
   invalid one, and `_der_problem`, which names what is wrong with a structure it found, never
   raise, whatever the bytes: random bytes, and random trees of DER items whose lengths are in
   short form, long form with leading zero octets, indefinite form, or wrong (truncated or past
   the end), with the OIDs and integers of key structures among random ones; skeletons of the
   three key structures with random OIDs (arcs of thousands of bits among them), points and
   scalars; and both in PrivateKeyInfos nested 3,000 deep.
2. `read_trust_anchors` on the same bytes, as DER and in a PEM block of each key label, gives
   trust anchors or raises PlatformKeyError, never anything else (the CLI would show a traceback).
3. Real keys made by cryptography, on each supported curve, as SPKI, SEC 1 and PKCS #8 in DER
   and PEM, load as the key they are, and `der_structure` reads their structure, curve, point
   and private scalar; the same keys with one byte changed or cut short load or raise
   PlatformKeyError.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmm_mp.attest import PlatformKeyError
from rmm_mp.attest.keyder import CURVE_OIDS, der_structure
from rmm_mp.attest.keys import _der_problem, read_trust_anchors

FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
"""Derandomized (the same examples every run, so the suite stays fast and repeatable)."""

LABELS = ("PUBLIC KEY", "EC PRIVATE KEY", "PRIVATE KEY")
OIDS = [bytes.fromhex(h) for h in ("2a8648ce3d0201", "2a8648ce3d030107", "2b81040022", "2b81040023",
                                   "2a864886f70d010101", "2b6570", "2a8648ce3d030101")]
"""id-ecPublicKey, P-256, P-384, P-521, rsaEncryption, Ed25519, P-192: the OIDs of key structures."""


def _length(draw: st.DrawFn, size: int, right: bool = False) -> bytes:
    """A length field for `size` contents: short form, long form (with leading zero octets or
    not), or, unless `right`, indefinite form or a wrong value."""
    form = draw(st.sampled_from(["short", "long", "zeros"] + ([] if right else ["indefinite", "wrong"])))
    if form == "short" and size < 0x80:
        return bytes([size])
    if form == "indefinite":
        return b"\x80"
    if form == "wrong":
        wrong = draw(st.integers(0, 0xFFFF_FFFF))
        return bytes([0x84]) + wrong.to_bytes(4, "big")
    octets = size.to_bytes(max(1, (size.bit_length() + 7) // 8), "big")
    if form == "zeros":
        octets = bytes(draw(st.integers(1, 3))) + octets
    return bytes([0x80 | len(octets)]) + octets


# An arc of up to 14,700 bits: a key OID's are far narrower, and Python writes no integer of
# more than 4,300 digits (about 14,300 bits) in decimal.
OID_CONTENTS = (st.sampled_from(OIDS) | st.binary(max_size=24)
                | st.sampled_from([1, 20, 2100]).map(lambda n: b"\x2a" + b"\xff" * n + b"\x01"))
POINTS = st.sampled_from([b"", b"\x04" + bytes(96), b"\x04" + b"\x01" * 96]) | st.binary(max_size=140)
SCALARS = st.sampled_from([bytes(48), b"\xff" * 48, b"\x01"]) | st.binary(max_size=70)


def _item(draw: st.DrawFn, tag: int, contents: bytes, right: bool = False) -> bytes:
    return bytes([tag]) + _length(draw, len(contents), right) + contents


@st.composite
def _leaf(draw: st.DrawFn) -> bytes:
    tag = draw(st.sampled_from([0x02, 0x03, 0x04, 0x05, 0x06, 0x1F]) | st.integers(0, 255))
    if tag == 0x06:
        contents = draw(OID_CONTENTS)
    elif tag == 0x02:
        contents = draw(st.sampled_from([b"\x00", b"\x01", b"\x02"]) | st.binary(max_size=70))
    elif tag == 0x03:
        contents = b"\x00" + draw(POINTS)
    else:
        contents = draw(st.binary(max_size=70))
    return _item(draw, tag, contents)


@st.composite
def _key_skeleton(draw: st.DrawFn) -> bytes:
    """The shape of an SPKI, an ECPrivateKey or a PrivateKeyInfo, with random OIDs (arcs of
    thousands of bits among them), points, scalars and length forms: random trees seldom
    take a key's shape, and these reach every branch of `der_structure` and `_der_problem`."""
    right = draw(st.booleans())     # lengths all right, so that the shape is found

    def item(tag: int, contents: bytes) -> bytes:
        return _item(draw, tag, contents, right)

    def oids(algorithm: bool) -> bytes:
        """An AlgorithmIdentifier's OIDs (id-ecPublicKey, then a supported curve, half the
        time each) or, not `algorithm`, an ECPrivateKey's [0] curve OID."""
        found = [draw(st.just(OIDS[0]) | OID_CONTENTS)] if algorithm else []
        found += [draw(st.sampled_from(OIDS[1:4]) | OID_CONTENTS)]
        return b"".join(item(0x06, oid) for oid in found[:draw(st.integers(0, len(found)))])

    def sec1() -> bytes:
        parts = item(0x02, b"\x01") + item(0x04, draw(SCALARS))
        if draw(st.booleans()):
            parts += item(0xA0, oids(False))
        if draw(st.booleans()):
            parts += item(0xA1, item(0x03, b"\x00" + draw(POINTS)))
        return item(0x30, parts)

    kind = draw(st.sampled_from(["spki", "sec1", "pkcs8"]))
    if kind == "spki":
        return item(0x30, item(0x30, oids(True)) + item(0x03, b"\x00" + draw(POINTS)))
    if kind == "sec1":
        return sec1()
    inner = sec1() if draw(st.booleans()) else draw(st.binary(max_size=40))
    return item(0x30, item(0x02, draw(st.sampled_from([b"\x00", b"\x01"])))
                + item(0x30, oids(True)) + item(0x04, inner))


def _tree(children: st.SearchStrategy[list[bytes]]) -> st.SearchStrategy[bytes]:
    @st.composite
    def node(draw: st.DrawFn) -> bytes:
        contents = b"".join(draw(children))
        tag = draw(st.sampled_from([0x30, 0x30, 0xA0, 0xA1, 0x04, 0x03]))
        if tag == 0x03:
            contents = b"\x00" + contents
        return bytes([tag]) + _length(draw, len(contents)) + contents
    return node()


def _in_private_key_infos(der: bytes, depth: int) -> bytes:
    """`der` as the privateKey of a PrivateKeyInfo of an EC key, that one as the privateKey of
    another, `depth` deep (each privateKey is its PrivateKeyInfo's last item, so the headers
    are all in front)."""
    headers, size = [], len(der)
    for _ in range(depth):
        body = bytes.fromhex("020100300906072a8648ce3d0201") + b"\x04\x84" + size.to_bytes(4, "big")
        headers.append(b"\x30\x84" + (len(body) + size).to_bytes(4, "big") + body)
        size += len(headers[-1])
    return b"".join(reversed(headers)) + der


DER_TREES = st.recursive(_leaf(), lambda inner: _tree(st.lists(inner, min_size=1, max_size=4)), max_leaves=12)
HOSTILE = st.one_of(st.binary(max_size=300), DER_TREES, _key_skeleton(),
                    DER_TREES.flatmap(lambda der: st.integers(0, len(der)).map(lambda cut: der[:cut])),
                    st.tuples(DER_TREES | _key_skeleton(), st.sampled_from([1, 2, 3000])).map(
                        lambda t: _in_private_key_infos(*t)))
"""Random bytes, random DER trees, key skeletons, trees cut short, and trees or skeletons in PrivateKeyInfos
nested 1, 2 or 3,000 deep (hypothesis raises the recursion limit by 2,000 while it runs a
test, so 1,100, which is within the CLI's 64 KiB bound and deep enough outside it, would not
show a recursion)."""


def _as_pem(label: str, der: bytes) -> bytes:
    return f"-----BEGIN {label}-----\n{base64.encodebytes(der).decode()}-----END {label}-----\n".encode()


def _raised(call: Callable[[], object]) -> str | None:
    """What `call()` raised other than PlatformKeyError, as a line; None if it did not. Only
    the line is kept: a traceback thousands of frames deep, each frame holding a slice of its
    input, takes hundreds of megabytes, and hypothesis keeps the failures it shrinks."""
    try:
        call()
    except PlatformKeyError as exc:
        assert str(exc).startswith("platform key invalid: k"), str(exc)
    except Exception as exc:        # noqa: BLE001 - any other exception is the failure
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def _loads_or_refuses(data: bytes) -> None:
    """`read_trust_anchors(data)` gives anchors or raises PlatformKeyError; nothing else."""
    error = _raised(lambda: read_trust_anchors(data, "k"))
    if error is not None:
        pytest.fail(f"read_trust_anchors raised {error}", pytrace=False)


def _structure_read(der: bytes) -> None:
    """`der_structure(der)` and `_der_problem` of what it finds raise nothing, and give a
    structure of a key label or None and a sentence or None."""
    def read() -> None:
        found = der_structure(der)
        assert found is None or found.label in LABELS
        problem = _der_problem(found) if found is not None else None
        assert problem is None or isinstance(problem, str)
    error = _raised(read)
    if error is not None:
        pytest.fail(f"der_structure / _der_problem raised {error}", pytrace=False)


@FUZZ
@given(HOSTILE)
def test_the_der_structure_reader_never_raises(der: bytes) -> None:
    """Property 1: random bytes, random DER trees (every length form, key OIDs among random
    ones) and such trees cut short: `der_structure` returns a structure or None and
    `_der_problem` a sentence or None; neither raises (a RecursionError or ValueError here
    escaped `rmm-mp attest verify` as a traceback)."""
    _structure_read(der)


@FUZZ
@given(HOSTILE, st.sampled_from(("DER",) + LABELS))
def test_a_hostile_key_file_loads_or_is_refused(der: bytes, label: str) -> None:
    """Property 2: the bytes of property 1 as a DER key file and in a PEM block of each key
    label: read_trust_anchors gives anchors or raises PlatformKeyError, never another
    exception."""
    _loads_or_refuses(der if label == "DER" else _as_pem(label, der))


CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
_FORMATS = {"PUBLIC KEY": serialization.PublicFormat.SubjectPublicKeyInfo,
            "EC PRIVATE KEY": serialization.PrivateFormat.TraditionalOpenSSL,
            "PRIVATE KEY": serialization.PrivateFormat.PKCS8}


def _encoded(key: ec.EllipticCurvePrivateKey, label: str) -> bytes:
    """The DER of `key` in the structure a `label` PEM block holds."""
    if label == "PUBLIC KEY":
        return key.public_key().public_bytes(serialization.Encoding.DER, _FORMATS[label])
    return key.private_bytes(serialization.Encoding.DER, _FORMATS[label], serialization.NoEncryption())


@pytest.mark.parametrize("curve", list(CURVES))
@pytest.mark.parametrize("label", LABELS)
def test_real_keys_load_and_their_structure_is_read(curve: str, label: str) -> None:
    """Property 3: a key cryptography made, on each curve, as SPKI, SEC 1 and PKCS #8, in DER
    and in PEM: read_trust_anchors gives exactly its public key, and der_structure finds the
    structure of the label, the curve's OID, its public point and (for a private key) its
    private scalar, and _der_problem finds nothing wrong."""
    key = ec.generate_private_key(CURVES[curve])
    der = _encoded(key, label)
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    for data in (der, _as_pem(label, der)):
        (anchor,) = read_trust_anchors(data, "k").anchors
        assert anchor.key.public_numbers() == key.public_key().public_numbers()
    found = der_structure(der)
    assert found is not None and found.label == label
    assert CURVE_OIDS.get(found.curve or "") == curve
    assert found.point == point
    if label == "PUBLIC KEY":
        assert found.scalar is None
    else:
        assert found.scalar is not None
        assert int.from_bytes(found.scalar, "big") == key.private_numbers().private_value
    assert _der_problem(found) is None


@settings(FUZZ, max_examples=100)
@given(st.sampled_from(list(CURVES)), st.sampled_from(LABELS), st.data())
def test_a_real_key_with_a_byte_changed_or_cut_loads_or_is_refused(curve: str, label: str, data: st.DataObject) -> None:
    """Property 3: a real key's DER with one byte set to another value, or cut short, as DER
    and as PEM under its label: read_trust_anchors gives anchors or raises PlatformKeyError,
    and der_structure / _der_problem do not raise."""
    der = _encoded(ec.generate_private_key(CURVES[curve]), label)
    if data.draw(st.booleans(), "cut"):
        der = der[:data.draw(st.integers(0, len(der) - 1), "length")]
    else:
        at = data.draw(st.integers(0, len(der) - 1), "at")
        der = der[:at] + bytes([data.draw(st.integers(0, 255), "byte")]) + der[at + 1:]
    _structure_read(der)
    _loads_or_refuses(der)
    _loads_or_refuses(_as_pem(label, der))
