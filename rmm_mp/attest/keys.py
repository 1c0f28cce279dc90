"""Platform keys (trust anchors) for the platform token's signature, from the files people have.

`load_trust_anchors` reads any of:

* a PEM public key (SPKI, e.g. cca_platform.pub) or PEM private key (SEC1 or PKCS#8, e.g.
  cca_platform.pem; only its public half is kept), or the same in binary DER; the first PEM
  block whose label names a key is read, so the 'EC PARAMETERS' block `openssl ecparam -genkey`
  writes before its key, or a certificate before a key, is passed over;
* one JWK object (RFC 7518 section 6.2: kty "EC", crv P-256/P-384/P-521, x, y; a private
  "d" is ignored), e.g. cpak.json, testIAK.jwk;
* a JWK Set (RFC 7517 section 5: {"keys": [JWK, ...]}, as JWKS endpoints publish keys): every
  EC key on P-256, P-384 or P-521 in it is a trust anchor for any platform, tried in turn like
  the entries of a list; members of another key type (kty "RSA", "OKP", "oct"...: none can
  verify a CCA platform token, and JWKS endpoints publish them beside EC keys) and EC members
  on another curve (crv "secp256k1", "P-192"...) are skipped, as RFC 7517 section 5 has a
  reader ignore a kty it does not understand or a value out of its supported range, and
  read_trust_anchors notes which (the platform signature check's reason names them); a set
  with no usable EC key left is refused;
* a veraison trust-anchor list: a JSON array of objects with a "pkey" JWK and optional
  "implementation-id" / "instance-id" hex strings (ta-tfa.json, ta-02-ok.json); JSON is read
  as UTF-8 (RFC 8259 8.1), and a JSON file that is not UTF-8 is refused naming the byte;
* hex text of an uncompressed point 04 || X || Y (65, 97 or 133 bytes: P-256, P-384, P-521).

Every failure raises PlatformKeyError with a message starting "platform key invalid:", including
a point that is not on its curve (ta-02-bad.json), a JWK coordinate not below the curve's field
prime (cryptography would reduce it and accept another encoding of a key) and a PEM or DER key
of another kind (RSA, Ed25519) or on another curve (P-192), named as such ("an RSA private key
of 2048 bits"), or of an algorithm cryptography cannot read (its OID is named). A PEM block
cryptography refuses is told apart as corrupt (no END line, not base64, DER that is no key
structure), mislabelled (a PKCS #8 key in an 'EC PRIVATE KEY' block) or a well-formed key whose
values are no key (a point off its curve, a private scalar of 0 or >= n, a public half that is
not the private scalar's), and so is such a DER file: a broken trust
anchor is a failed verification, never a crash. A list or JWK Set with one bad entry (a broken
EC key, a member without kty or crv) is refused whole, because quietly using the others would
hide a corrupted trust store; a JWK Set member of another key type or on another curve is not
broken, just of no use here, so it is skipped with a note.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
import string
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from rmm_mp.attest.errors import PlatformKeyError
from rmm_mp.attest.keyder import (CURVE_OIDS, ID_EC_PUBLIC_KEY, KEY_ALGORITHM_OIDS, PEM_STRUCTURES, DerKey,
                                  der_structure)
from rmm_mp.printable import SHOWN_MAX, abbreviated

JWK_CURVES: Final = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
FIELD_PRIMES: Final = {"P-256": 2**256 - 2**224 + 2**192 + 2**96 - 1,
                       "P-384": 2**384 - 2**128 - 2**96 + 2**32 - 1, "P-521": 2**521 - 1}
"""p of each JWK curve's field (SEC 2 2.4.2, 2.5.1, 2.6.1): a coordinate must be below it."""
POINT_CURVES: Final = {65: ec.SECP256R1(), 97: ec.SECP384R1(), 133: ec.SECP521R1()}
"""Length of an uncompressed point 04 || X || Y -> its curve."""
EXPECTED_KEY: Final = ("an EC public key on P-256, P-384 or P-521 (or such a private key, whose public half is "
                       "used; an RMM 1.0 platform's CPAK is P-384)")
EXPECTED_FORMATS: Final = ("a PEM or DER EC key, a JWK, a JWK Set ({\"keys\": [JWK, ...]}), a trust-anchor list "
                           "(JSON array of {\"pkey\": JWK}) or a hex EC point")


@dataclass(frozen=True)
class TrustAnchor:
    """A platform public key, where it came from, and the platform identities it is for
    (None: any). `verify_token` only tries anchors whose identities match the token's."""

    key: ec.EllipticCurvePublicKey
    source: str
    implementation_id: bytes | None = None
    instance_id: bytes | None = None


def load_trust_anchors(data: bytes, name: str = "platform key") -> tuple[TrustAnchor, ...]:
    """Parse a platform key file in any of the module's formats (read_trust_anchors without
    its notes).

    Args:
        data: the file's bytes.
        name: how to call the file in messages (usually its path).

    Raises:
        PlatformKeyError: unknown format, not an EC key, unsupported curve, bad field, or a
            point that is not on its curve.
    """
    return read_trust_anchors(data, name).anchors


@dataclass(frozen=True)
class TrustAnchorFile:
    """What a platform key file holds: its trust anchors, and notes on what was left out
    (members of a JWK Set that are no EC key on a supported curve), for the reader of a verification report."""

    anchors: tuple[TrustAnchor, ...]
    notes: tuple[str, ...] = ()


def read_trust_anchors(data: bytes, name: str = "platform key") -> TrustAnchorFile:
    """Parse a platform key file in any of the module's formats, with notes on what was
    skipped (load_trust_anchors: its arguments and errors)."""
    raw = bytes(data)
    # RFC 8259 8.1 lets a JSON reader ignore a UTF-8 byte order mark (editors on Windows write
    # one); no PEM, DER or hex file starts with one either, so it is dropped for telling them apart.
    raw = raw.removeprefix(codecs.BOM_UTF8)
    text = raw.decode("ascii", errors="replace").strip()
    if not text:
        raise PlatformKeyError(f"platform key invalid: {name} is {'empty' if not raw else 'blank'}; expected "
                               f"{EXPECTED_FORMATS}")
    if text.startswith("-----BEGIN"):
        return TrustAnchorFile((TrustAnchor(_pem_key(text.encode(), name), f"{name} (PEM)"),))
    # RFC 7468 5.2: explanatory text may precede the encapsulation boundary (`openssl x509
    # -text` writes the decoded certificate, a key bundle its comments). Such a file was taken
    # for DER and refused as none of the formats. No JSON, hex point or EC key DER holds a line
    # starting with a BEGIN boundary. A broken JSON file can (a PEM key pasted into a string with
    # its line breaks): text before it that starts as JSON does, with a '"' (a member name or
    # string value) on the way, is no explanatory text, and the file is refused as JSON, not
    # read as its key alone with the entry's implementation and instance ids dropped.
    if (begin := _PEM_BEGIN.search(raw)) is not None and not (
            text[:1] in ("{", "[") and b'"' in raw[:begin.start()]):
        return TrustAnchorFile((TrustAnchor(_pem_key(raw[begin.start():], name), f"{name} (PEM)"),))
    if text[:1] in ("{", "["):
        return TrustAnchorFile(*_json_anchors(_utf8_text(raw, name), name))
    if text and all(c in string.hexdigits or c.isspace() for c in text):
        return TrustAnchorFile((TrustAnchor(_hex_point(text, name), f"{name} (hex point)"),))
    return TrustAnchorFile((TrustAnchor(_der_key(raw, name), f"{name} (DER)"),))


_ASCII_SPACE: Final = "".join(chr(c) for c in range(128) if chr(c).isspace())
"""What str.strip() strips from the file's text as read for telling its format: the ASCII
whitespace only, since that text has every other byte as U+FFFD."""


def _utf8_text(raw: bytes, name: str) -> str:
    """A JSON key file's text: UTF-8 (RFC 8259 8.1), strictly, and stripped as the text its
    format was told from is. It was read as ASCII with replacement characters, so a member
    written in UTF-8 (a "kid" in French, a kty in Cyrillic letters that look like "EC") was
    shown as U+FFFD in a message and bytes that are not UTF-8 went unnoticed. The leading
    blanks stripped are given back as newlines and spaces (JSON's own whitespace), so that a
    syntax error is placed at the line and column the file has it on."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = " ".join(f"{b:#04x}" for b in raw[exc.start:exc.end])
        raise PlatformKeyError(f"platform key invalid: {name}: JSON that is not UTF-8 ({exc.reason}: {bad} at byte "
                               f"{exc.start}); expected UTF-8 text (RFC 8259 8.1)") from None
    body = text.lstrip(_ASCII_SPACE)
    lead = "".join("\n" if c == "\n" else " " for c in text[:len(text) - len(body)])
    return lead + body.rstrip(_ASCII_SPACE)


def public_key_from_point(point: bytes, name: str = "platform key") -> ec.EllipticCurvePublicKey:
    """The public key of an uncompressed point 04 || X || Y; the curve follows from the length.

    Raises:
        PlatformKeyError: wrong length or prefix, or not on the curve.
    """
    curve = POINT_CURVES.get(len(point))
    if curve is None or point[:1] != b"\x04":
        raise PlatformKeyError(f"platform key invalid: {name}: an uncompressed EC point is 04 || X || Y "
                               f"of 65, 97 or 133 bytes; got {len(point)} bytes starting {point[:1].hex()}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError:
        raise PlatformKeyError(f"platform key invalid: {name}: point {point.hex()} is not on "
                               f"curve {curve.name}") from None


def _hex_point(text: str, name: str) -> ec.EllipticCurvePublicKey:
    digits = "".join(text.split())
    if len(digits) % 2:
        raise PlatformKeyError(f"platform key invalid: {name} holds {len(digits)} hex digits; a hex EC point "
                               "needs an even number")
    return public_key_from_point(bytes.fromhex(digits), name)


_PEM_BEGIN: Final = re.compile(rb"^-----BEGIN [^\r\n]*-----", re.MULTILINE)
"""The BEGIN line of any PEM block (RFC 7468 3), at the start of a line."""
_PEM_KEY_BEGIN: Final = re.compile(rb"^-----BEGIN [^\r\n]*KEY-----", re.MULTILINE)
"""The BEGIN line of a PEM block whose label names a key ('PUBLIC KEY', 'EC PRIVATE KEY', ...)."""


def _pem_key(pem: bytes, name: str) -> ec.EllipticCurvePublicKey:
    # `openssl ecparam -genkey` writes an 'EC PARAMETERS' block (the curve's OID) before the
    # 'EC PRIVATE KEY' block, and a PEM bundle may hold a certificate first: the key is the first
    # block whose label names one. Without such a block the first block is named in the error.
    keyed = _PEM_KEY_BEGIN.search(pem)
    if keyed is not None:
        pem = pem[keyed.start():]
    first = pem.split(b"\n", 1)[0].decode("ascii", errors="replace").strip()
    label = first.removeprefix("-----BEGIN ").removesuffix("-----")
    private = label.endswith("PRIVATE KEY")
    try:
        key: Any = (serialization.load_pem_private_key(pem, password=None) if private
                    else serialization.load_pem_public_key(pem))
    except UnsupportedAlgorithm as exc:
        raise _unknown_key_type(exc, private, name, "PEM") from None
    except TypeError:
        # cryptography's TypeError here: an encrypted key and no password (none is asked for).
        raise PlatformKeyError(f"platform key invalid: {name}: PEM block {_shown(label)} is encrypted; expected an "
                               "unencrypted key (no password is asked for)") from None
    except ValueError:
        if not private and label != "PUBLIC KEY":
            # A certificate, CSR, parameters...: no key cryptography reads as such.
            raise PlatformKeyError(f"platform key invalid: {name}: PEM block {_shown(label)} is no key; expected a "
                                   "\"PUBLIC KEY\", \"EC PRIVATE KEY\" or \"PRIVATE KEY\" block") from None
        raise PlatformKeyError(f"platform key invalid: {name}: PEM block {_shown(label)} "
                               f"{_pem_problem(pem, label)}") from None
    return _ec_only(key, private, name, "PEM")


def _pem_problem(pem: bytes, label: str) -> str:
    """What is wrong with a key PEM block that cryptography refused with a ValueError, as the
    rest of a sentence after 'PEM block "LABEL"': corrupt (no END line, a body that is not
    base64, DER that is no key structure), mislabelled (the DER is the structure of another
    key label), or well formed with key values that are no key (a point not on its curve, a
    private scalar out of range: `_der_problem`). cryptography's ValueError covers all of these,
    and its text is a paragraph of guesses, a link and Rust debug output."""
    lines = pem.decode("ascii", errors="replace").splitlines()[1:]
    end = f"-----END {label}-----"
    if end not in (line.strip() for line in lines):
        return f"is corrupt: it has no {_shown(end)} line"
    # RFC 1421 headers ("Proc-Type: ...") may precede a traditional key's body.
    body = "".join(line.strip() for line in lines[:[line.strip() for line in lines].index(end)] if ":" not in line)
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return "is corrupt: its body is not base64 (RFC 7468)"
    structure = PEM_STRUCTURES.get(label, "DER structure")
    found = der_structure(der)
    if found is not None and label in PEM_STRUCTURES and found.label != label:
        article = "an" if PEM_STRUCTURES[found.label][0] in "AEIOU" else "a"
        return (f"is mislabelled: its {len(der)} bytes are {article} {PEM_STRUCTURES[found.label]}, which a "
                f"{_shown(found.label)} block holds, not the {structure} a {_shown(label)} block holds")
    problem = _der_problem(found) if found is not None else None
    if problem is not None:
        return problem
    return f"is corrupt: its {len(der)} bytes are not the {structure} a {_shown(label)} block holds"


def _der_problem(found: DerKey) -> str | None:
    """Why cryptography refused a well-formed key structure, as the rest of a sentence after
    'PEM block "LABEL"' or "NAME": a key of another algorithm it cannot use, an EC public
    point not on its curve, a private scalar outside 1..n-1, a public key that is not the
    private scalar's; None when none of these is it."""
    half = "private" if found.label.endswith("PRIVATE KEY") else "public"
    if found.algorithm is not None and found.algorithm != ID_EC_PUBLIC_KEY:
        kind = KEY_ALGORITHM_OIDS.get(found.algorithm, "unknown")
        return (f"holds a well-formed {_shown(found.label)} structure of a {kind} {half} key (algorithm OID "
                f"{found.algorithm}) whose key values cryptography refuses; expected {EXPECTED_KEY}")
    curve_name = CURVE_OIDS.get(found.curve or "")
    if curve_name is None:
        return None     # another curve is UnsupportedAlgorithm, not a ValueError: nothing known to add
    curve = JWK_CURVES[curve_name]
    key = f"an EC {half} key on {curve_name}"
    if found.scalar is not None:
        value = int.from_bytes(found.scalar, "big")
        try:
            private = ec.derive_private_key(value, curve)
        except ValueError:
            return (f"holds {key} whose private scalar ({len(found.scalar)} bytes) is "
                    f"{'0' if value == 0 else 'not below the order n of the curve'}; expected 1 <= scalar < n "
                    "(SEC 1 3.2.1)")
        if found.point is not None and found.point != private.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint):
            # A compressed copy would differ in its bytes too; cryptography refuses any mismatch.
            return (f"holds {key} whose public key ([1], {len(found.point)} bytes) is not the public key of its "
                    "private scalar; expected the two halves of one key pair (SEC 1 C.4)")
        return None
    if found.point is not None:
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(curve, found.point)
        except ValueError:
            first = f"starting {found.point[:1].hex()}" if found.point else "empty"
            return (f"holds {key} whose point ({len(found.point)} bytes, {first}) is not a point on {curve_name}; "
                    "expected an encoded point of the curve (SEC 1 2.3.3)")
    return None


def _der_key(der: bytes, name: str) -> ec.EllipticCurvePublicKey:
    try:
        return _ec_only(serialization.load_der_public_key(der), False, name, "DER")
    except PlatformKeyError:
        raise   # a ValueError too, but it is the answer: the DER holds a key of the wrong kind
    except UnsupportedAlgorithm as exc:
        raise _unknown_key_type(exc, False, name, "DER") from None
    except ValueError:
        pass
    try:
        key: Any = serialization.load_der_private_key(der, password=None)
    except UnsupportedAlgorithm as exc:
        raise _unknown_key_type(exc, True, name, "DER") from None
    except (ValueError, TypeError):
        # A well-formed SPKI, ECPrivateKey or PKCS #8 key whose values are no key is named so,
        # not called a file of no known format.
        found = der_structure(der)
        problem = _der_problem(found) if found is not None else None
        if problem is not None:
            raise PlatformKeyError(f"platform key invalid: {name} (DER) {problem}") from None
        raise PlatformKeyError(f"platform key invalid: {name} is none of {EXPECTED_FORMATS}") from None
    return _ec_only(key, True, name, "DER")


def _unknown_key_type(exc: UnsupportedAlgorithm, private: bool, name: str, encoding: str) -> PlatformKeyError:
    """A well-formed key of an algorithm cryptography does not know (a post-quantum key, an
    unknown OID): cryptography raises UnsupportedAlgorithm, no ValueError, so it needs its own
    catch to be a failed verification and not a traceback."""
    return PlatformKeyError(f"platform key invalid: {name} holds a {'private' if private else 'public'} key of a "
                            f"type cryptography cannot read ({exc}) ({encoding}); expected {EXPECTED_KEY}")


def _ec_only(key: Any, private: bool, name: str, encoding: str) -> ec.EllipticCurvePublicKey:
    """The EC public key of a loaded public or private key on a supported curve."""
    public = key.public_key() if private else key
    if not isinstance(public, ec.EllipticCurvePublicKey) or not any(
            isinstance(public.curve, type(curve)) for curve in JWK_CURVES.values()):
        raise PlatformKeyError(f"platform key invalid: {name} holds {_key_kind(public, private)} ({encoding}); "
                               f"expected {EXPECTED_KEY}")
    return public


def _key_kind(public: Any, private: bool) -> str:
    """'an RSA private key of 2048 bits', 'an EC public key on secp192r1', ...: what a key file
    holds, in the terms its owner knows it by (not the Python class)."""
    half = "private" if private else "public"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"an EC {half} key on {public.curve.name}"
    if isinstance(public, (rsa.RSAPublicKey, dsa.DSAPublicKey)):
        article = "an RSA" if isinstance(public, rsa.RSAPublicKey) else "a DSA"
        return f"{article} {half} key of {public.key_size} bits"
    for kind, article in ((ed25519.Ed25519PublicKey, "an Ed25519"), (ed448.Ed448PublicKey, "an Ed448"),
                          (x25519.X25519PublicKey, "an X25519"), (x448.X448PublicKey, "an X448")):
        if isinstance(public, kind):
            return f"{article} {half} key"
    # Diffie-Hellman among them: naming its class here would set off cryptography's FFDH warning.
    return f"a {half} key of type {type(public).__name__}"


def _json_anchors(text: str, name: str) -> tuple[tuple[TrustAnchor, ...], tuple[str, ...]]:
    doc = _parse_json(text, name)
    if isinstance(doc, dict) and "keys" in doc and "kty" not in doc:
        return _jwk_set_anchors(doc["keys"], name)
    if isinstance(doc, dict) and "pkey" not in doc:
        return (TrustAnchor(jwk_public_key(doc, name), f"{name} (JWK)"),), ()
    entries = doc if isinstance(doc, list) else [doc]
    if not entries:
        raise PlatformKeyError(f"platform key invalid: {name} is an empty trust-anchor list")
    return tuple(_anchor(entry, f"{name} trust anchor {i}") for i, entry in enumerate(entries)), ()


MAX_JSON_DIGITS: Final = 100
"""Longest integer a key file's JSON may hold. No member of a JWK or trust-anchor entry is a
number (coordinates and ids are strings); Python refuses to convert an integer of more than
4,300 digits (sys.get_int_max_str_digits) with a ValueError that would escape as a traceback."""


def _parse_json(text: str, name: str) -> Any:
    """The JSON document of a key file, or PlatformKeyError for what RFC 8259 or Python's parser
    refuses: a syntax error, NaN / Infinity (Python's json reads them, JSON has no such token),
    an integer too long to convert, nesting deeper than the parser's recursion allows."""
    def no_constant(token: str) -> Any:
        raise PlatformKeyError(f"platform key invalid: {name}: not valid JSON: {token} is no JSON value (RFC 8259 "
                               "6 has no NaN or Infinity); expected a JWK, a JWK Set or a trust-anchor list")

    def bounded_int(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_JSON_DIGITS:
            raise PlatformKeyError(f"platform key invalid: {name}: holds a JSON number of {len(digits.lstrip('-'))} "
                                   f"digits; expected none longer than {MAX_JSON_DIGITS} (no member of a JWK or a "
                                   "trust anchor is a number)")
        return int(digits)

    try:
        return json.loads(text, parse_constant=no_constant, parse_int=bounded_int)
    except json.JSONDecodeError as exc:
        raise PlatformKeyError(f"platform key invalid: {name}: not valid JSON ({exc})") from None
    except RecursionError:
        raise PlatformKeyError(f"platform key invalid: {name}: JSON nested deeper than the parser can follow; "
                               "expected a JWK, a JWK Set or a trust-anchor list (3 levels deep at most)") from None


def _jwk_set_anchors(keys: object, name: str) -> tuple[tuple[TrustAnchor, ...], tuple[str, ...]]:
    """The EC keys on a JWK_CURVES curve of a JWK Set, each a trust anchor for any platform, and
    a note naming the members of another key type (RSA, OKP, oct...) or on another curve
    (secp256k1, P-192, ...), which are skipped: JWKS endpoints publish such keys beside the ones
    a CCA platform token is signed with, and RFC 7517 section 5 has a reader ignore a kty it
    does not understand or a value out of its supported range. A broken member (an EC key that
    does not load, one without kty or crv, a crv that is not text) is refused whole, as a
    trust-anchor list is, and so is a set left without a usable EC key."""
    if not isinstance(keys, list) or not keys:
        found = "an empty array" if isinstance(keys, list) else f"a JSON {_json_type(keys)}"
        raise PlatformKeyError(f"platform key invalid: {name}: JWK Set \"keys\" is {found}; expected an array "
                               "of at least one EC JWK")
    anchors, skipped = [], []
    for i, jwk in enumerate(keys):
        what = f"{name} JWK Set key {i}"
        if not isinstance(jwk, dict):
            raise PlatformKeyError(f"platform key invalid: {what} is a JSON {_json_type(jwk)}; expected a JWK object")
        kty, crv = jwk.get("kty"), jwk.get("crv")
        if isinstance(kty, str) and kty != "EC":
            skipped.append((i, f"kty {_shown(kty)}"))
            continue
        if kty == "EC" and isinstance(crv, str) and crv not in JWK_CURVES:
            skipped.append((i, f"kty \"EC\", crv {_shown(crv)}"))
            continue
        anchors.append(TrustAnchor(jwk_public_key(jwk, what), f"{name} (JWK Set key {i})"))
    if not anchors:
        held = ", ".join(f"key {i} has {what}" for i, what in skipped)
        raise PlatformKeyError(f"platform key invalid: {name}: JWK Set holds no EC key on {_CURVE_LIST} ({held}); "
                               f"expected at least one EC JWK on one of them")
    listed = ", ".join(f"key {i} ({what})" for i, what in skipped)
    notes = (f"{name} JWK Set keys skipped, as no EC key on {_CURVE_LIST}: {listed}",) if skipped else ()
    return tuple(anchors), notes


_CURVE_LIST: Final = ", ".join(list(JWK_CURVES)[:-1]) + f" or {list(JWK_CURVES)[-1]}"
"""'P-256, P-384 or P-521', for messages."""


def _json_type(value: object) -> str:
    """JSON's name for the type of a decoded value, for messages."""
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}[type(value)]


def _shown(value: object) -> str:
    """A member of a key file's JSON (or a PEM label) as a message shows it: as JSON writes it
    ("RSA", ["P-384"], null), as a platform file's value is shown as TOML writes it and as the
    same messages write the JSON they expect ('expected "EC"'); Python's repr showed 'RSA' and,
    for JSON's null, true and false, None, True and False, which the file's author never wrote.
    A character that is not printable (ESC, a bidi override) is shown as its \\uXXXX escape.
    Abbreviated past printable.SHOWN_MAX characters as a TOML file's value is (its start and
    its length), except that a longer array or object is named by its size, as the token
    side's `shown` names a claim value too large for a line: a member pasted by mistake (a 60 KB
    "kty") made a 60 KB line."""
    text = _json_text(value)
    if len(text) > SHOWN_MAX and isinstance(value, (list, dict)):
        noun = "member" if isinstance(value, dict) else "value"
        return f"a JSON {_json_type(value)} of {len(value):,} {noun}{'' if len(value) == 1 else 's'}"
    return abbreviated(text)


def _json_text(value: object) -> str:
    """``value`` (decoded JSON, or a string) as JSON text on one line, every character that is
    not printable as its JSON escape: json.dumps escapes the C0 controls but leaves DEL, the C1
    controls and a bidi override raw, which would act on the terminal."""
    out = []
    for char in json.dumps(value, ensure_ascii=False):
        if char.isprintable():
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:       # JSON has no \\U: a UTF-16 surrogate pair (RFC 8259 7)
            high, low = divmod(ord(char) - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
    return "".join(out)


def _anchor(entry: object, name: str) -> TrustAnchor:
    if not isinstance(entry, dict):
        raise PlatformKeyError(f"platform key invalid: {name} is a JSON {_json_type(entry)}; expected an object "
                               "with a \"pkey\" JWK")
    if not isinstance(entry.get("pkey"), dict):
        found = f"is a JSON {_json_type(entry['pkey'])}" if "pkey" in entry else "is missing"
        raise PlatformKeyError(f"platform key invalid: {name}: \"pkey\" {found}; expected a JWK object")
    ids = {}
    for field in ("implementation-id", "instance-id"):
        value = entry.get(field)
        try:
            ids[field] = None if value is None else bytes.fromhex(value)
        except (TypeError, ValueError):
            raise PlatformKeyError(f"platform key invalid: {name}: \"{field}\" must be a hex string, "
                                   f"got {_shown(value)}") from None
    return TrustAnchor(jwk_public_key(entry["pkey"], name), name, ids["implementation-id"], ids["instance-id"])


def jwk_public_key(jwk: dict[str, Any], name: str = "JWK") -> ec.EllipticCurvePublicKey:
    """The public key of an EC JWK (kty "EC", crv, x, y; "d" ignored).

    Raises:
        PlatformKeyError: not an EC JWK, unknown crv, bad base64url, wrong coordinate
            length, a coordinate not below the field prime, or a point that is not on the curve.
    """
    if "kty" not in jwk:
        raise PlatformKeyError(f"platform key invalid: {name}: JWK has no \"kty\" member; expected \"EC\"")
    if jwk.get("kty") != "EC":
        raise PlatformKeyError(f"platform key invalid: {name}: JWK kty is {_shown(jwk.get('kty'))}, expected \"EC\"")
    crv = jwk.get("crv")
    # JSON may give a list or an object here: unhashable, so only text is looked up.
    curve = JWK_CURVES.get(crv) if isinstance(crv, str) else None
    if "crv" not in jwk:
        raise PlatformKeyError(f"platform key invalid: {name}: JWK has no \"crv\" member; expected one of "
                               f"{', '.join(JWK_CURVES)}")
    if curve is None:
        raise PlatformKeyError(f"platform key invalid: {name}: JWK crv is {_shown(jwk.get('crv'))}, "
                               f"expected one of {', '.join(JWK_CURVES)}")
    size = (curve.key_size + 7) // 8
    x, y = (_b64url(jwk.get(c), f"{name}: JWK {c}", size) for c in ("x", "y"))
    prime = FIELD_PRIMES[str(crv)]     # text: JWK_CURVES found it
    for member, value in (("x", x), ("y", y)):
        # The coordinate's bytes hold values from p up: such a value is no field element (SEC 1
        # 2.3.4), and cryptography would reduce it mod p and take another encoding of a point
        # as this key (rak.point_problem refuses the same in a RAK).
        if value >= prime:
            raise PlatformKeyError(f"platform key invalid: {name}: JWK {member} is {value:#x}, not below the field "
                                   f"prime p = {prime:#x} of {crv}; expected a coordinate of a point on {crv}")
    try:
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except ValueError:
        raise PlatformKeyError(f"platform key invalid: {name}: JWK point (x={x:#x}, y={y:#x}) is not on "
                               f"curve {jwk['crv']}") from None


def _b64url(value: object, what: str, size: int) -> int:
    if not isinstance(value, str):
        raise PlatformKeyError(f"platform key invalid: {what} must be a base64url string, got {_shown(value)}")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise PlatformKeyError(f"platform key invalid: {what} is not base64url: {_shown(value)}") from None
    if len(raw) != size:
        raise PlatformKeyError(f"platform key invalid: {what} decodes to {len(raw)} bytes, expected {size}")
    return int.from_bytes(raw, "big")
