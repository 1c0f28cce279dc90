"""Malformed input: strict CBOR, the outer envelope and COSE_Sign1 headers.

A verifier's parser is attack surface: these tests build broken tokens around the TF-A
sample platform token and RAK and check that each is refused with the reason, never
accepted and never a crash.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from rmm_mp.attest import (TokenFormatError, check_realm_claims, decode_cca_token, decode_sign1, encode_cca_token,
                           encode_cose_key, inspect_token, raw_point, sign_cose_sign1, verify_token)
from rmm_mp.attest._cbor import loads_exact
from rmm_mp.attest.realm_claims import realm_claims_warnings


def _cose(payload: bytes, key: ec.EllipticCurvePrivateKey, protected: Any = None, unprotected: Any = None,
          tag: int | None = 18, signature: bytes | None = None) -> bytes:
    """A COSE_Sign1 built by hand (independently of sign_cose_sign1), ES384 unless told."""
    prot = cbor2.dumps({1: -35} if protected is None else protected)
    tbs = cbor2.dumps(["Signature1", prot, b"", payload])
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA384())))
    sig = signature if signature is not None else r.to_bytes(48, "big") + s.to_bytes(48, "big")
    body = [prot, {} if unprotected is None else unprotected, payload, sig]
    return cbor2.dumps(body if tag is None else cbor2.CBORTag(tag, body))


@pytest.mark.parametrize("data, phrase", [
    (b"", "truncated CBOR"),
    (bytes.fromhex("d9018fa2"), "truncated CBOR"),
    (bytes.fromhex("d9018fa0") + b"\x00", "first CBOR item ends at byte 4 but the input has 5 bytes"),
    (b"hello, world\n", "ends at byte 9 but the input has 13 bytes; expected exactly one CBOR item (is this CBOR"),
    (b"\x81" * 40 + b"\x00", "nested deeper than 32"),
    (bytes.fromhex("d9018fa219acca4019acca40"), "more than once"),
    (bytes.fromhex("5f4101ff"), "expected CBOR tag 399"),
    (bytes.fromhex("5f6101ff"), "indefinite string chunk"),
    (bytes.fromhex("ff"), "'break' (0xff) at byte 0"),
    (bytes.fromhex("1c"), "reserved additional information 28"),
    (bytes.fromhex("5bffffffffffffffff"), "claims 18446744073709551615 bytes"),
    (bytes.fromhex("d9018fd81ca101d81d00"), "tag 28 (shareable value) at byte 3 is not allowed"),
    (bytes.fromhex("d9018fd90100a219acca4301020319acd1d81900"), "tag 256 (string-reference namespace) at byte 3"),
    (bytes.fromhex("d9018fa219acca4301020319acd1d81900"), "tag 25 (string reference) at byte 14"),
    (bytes.fromhex("d9018fc4821b7fffffffffffffff01"), "CBOR tag 4 (decimal fraction) at byte 3 (the content of "
                                                        "tag 399) holds [9223372036854775807, 1]; expected an array"),
    (bytes.fromhex("d9018fc5821b7fffffffffffffff01"), "CBOR tag 5 (bigfloat) at byte 3 (the content of tag 399)"),
    (bytes.fromhex("d9018fa1c4821b7fffffffffffffff0101"), "CBOR tag 4 (decimal fraction) at byte 4 (a map key of the "
                                                          "content of tag 399) holds "),
    (bytes.fromhex("d9018fc259080000") + b"\xff" * 0x800, "tag 2 (unsigned bignum) at byte 3 holds a 2048-byte"),
    (bytes.fromhex("d9018fc35f590400") + b"\x01" * 0x400 + bytes.fromhex("41ffff"), "holds a 1025-byte number"),
    (bytes.fromhex("d9018fc21903e8"), "tag 2 (unsigned bignum) at byte 3 holds a CBOR item of major type 0; expected a byte"),
    (bytes.fromhex("d9018fa1d9d9f70a00"), "tag 55799 (self-described CBOR) at byte 4 inside another item"),
    (bytes.fromhex("d9d9f7d9d9f7d9018fa0"), "tag 55799 (self-described CBOR) at byte 3 inside another item"),
])
def test_malformed_cbor_is_refused_with_the_reason(data: bytes, phrase: str) -> None:
    """Truncated items, trailing bytes, nesting bombs, duplicate map keys, bad indefinite
    strings, stray breaks, reserved heads, absurd lengths, a self-referencing value (tags
    28/29, which cbor2 would turn into a cycle), a string reference (tags 256/25: cbor2 made
    the realm entry a copy of the platform entry, other decoders do not), a decimal fraction / bigfloat whose exponent
    overflows cbor2's Decimal arithmetic and a bignum too long for Python to print:
    TokenFormatError, with a message that says which."""
    with pytest.raises(TokenFormatError, match="CCA token") as info:
        decode_cca_token(data)
    assert phrase in str(info.value)


def test_a_token_with_a_stray_byte_after_it_is_not_asked_whether_it_is_cbor(
        sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes,
        realm_claims: Callable[..., bytes]) -> None:
    """A whole CCA token followed by one byte is refused for the byte, without the hint meant
    for input that is not CBOR at all (a text file reads as a tiny first item): the message
    asked "is this CBOR at all?" of every token with bytes after it."""
    token = encode_cca_token(sample_platform_token, sign_cose_sign1(realm_claims(), sample_rak))
    with pytest.raises(TokenFormatError) as info:
        decode_cca_token(token + b"\x00")
    assert f"ends at byte {len(token)} but the input has {len(token) + 1} bytes" in str(info.value)
    assert "CBOR at all" not in str(info.value)


def test_indefinite_length_forms_are_accepted(sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes,
                                              cpak_pub: bytes, realm_claims: Callable[..., bytes]) -> None:
    """Indefinite-length map and chunked byte strings are well-formed CBOR (RFC 8949 3.2): a
    token written that way still verifies."""
    realm = sign_cose_sign1(realm_claims(), sample_rak)
    chunked = b"\x5f" + cbor2.dumps(realm[:100]) + cbor2.dumps(realm[100:]) + b"\xff"
    token = bytes.fromhex("d9018fbf19acca") + cbor2.dumps(sample_platform_token) + bytes.fromhex("19acd1") + chunked + b"\xff"
    assert verify_token(token, cpak_pub).ok


@pytest.mark.parametrize("build, phrase", [
    (lambda p, r: cbor2.dumps(cbor2.CBORTag(400, {44234: p, 44241: r})), "expected CBOR tag 399 (RMM 1.0) or 907"),
    (lambda p, r: cbor2.dumps({44234: p, 44241: r}), "found untagged a map of 2 entries"),
    (lambda p, r: cbor2.dumps(cbor2.CBORTag(399, {44234: p})), "exactly the keys 44234 (platform) and 44241"),
    (lambda p, r: cbor2.dumps(cbor2.CBORTag(399, {44234: p, 44241: r, 1: b""})), "found keys 1, 44234, 44241"),
    (lambda p, r: cbor2.dumps(cbor2.CBORTag(399, {})), "(realm), found an empty map"),       # was "found []"
    (lambda p, r: cbor2.dumps(cbor2.CBORTag(399, [p, r])), "found an array of 2"),
    (lambda p, r: cbor2.dumps(cbor2.CBORTag(399, {44234: [263, p], 44241: r})), "platform token entry of a tag 399"),
    (lambda p, r: cbor2.dumps(cbor2.CBORTag(907, {44234: p, 44241: [263, r]})), "must be [263, byte string"),
    (lambda p, r: cbor2.dumps(cbor2.CBORTag(907, {44234: [263, p], 44241: [264, r]})), "found [264, a "),
])
def test_wrong_envelopes_are_refused(build: Callable[[bytes, bytes], bytes], phrase: str, sample_rak: ec.EllipticCurvePrivateKey,
                                     sample_platform_token: bytes, realm_claims: Callable[..., bytes]) -> None:
    """Another tag, no tag, missing or extra entries, an array, or entries in the other tag's
    form: TokenFormatError naming what was found and what tag 399 / 907 require."""
    with pytest.raises(TokenFormatError) as info:
        decode_cca_token(build(sample_platform_token, sign_cose_sign1(realm_claims(), sample_rak)))
    assert phrase in str(info.value)


def test_self_described_cbor_marker_in_front_of_the_token_is_accepted(
        sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes, cpak_pub: bytes,
        realm_claims: Callable[..., bytes]) -> None:
    """Tag 55799 (RFC 8949 3.4.6) is a marker for the start of a CBOR file: in front of the
    whole token it changes nothing and the token verifies; inside (a claim label 55799(10),
    cases above) it is refused, since cbor2 drops it and a decoder that keeps tags does not."""
    token = encode_cca_token(sample_platform_token, sign_cose_sign1(realm_claims(), sample_rak))
    assert verify_token(bytes.fromhex("d9d9f7") + token, cpak_pub).ok


@pytest.mark.parametrize("where", ["realm token", "realm payload", "platform token"])
def test_self_described_cbor_marker_in_front_of_carried_cbor_is_refused(
        where: str, sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes, cpak_pub: bytes,
        realm_claims: Callable[..., bytes]) -> None:
    """Tag 55799 in front of CBOR that a byte string carries (an inner token, a COSE payload)
    marks no file or stream: cbor2 drops it, a decoder that keeps tags sees a tag where a
    COSE_Sign1 or a claims map belongs. Refused there, naming the part; it is accepted in front
    of the whole token only (test above)."""
    marker = bytes.fromhex("d9d9f7")
    payload = marker + realm_claims() if where == "realm payload" else realm_claims()
    realm = sign_cose_sign1(payload, sample_rak)
    platform = sample_platform_token
    if where == "realm token":
        realm = marker + realm
    elif where == "platform token":
        platform = marker + platform
    result = verify_token(encode_cca_token(platform, realm), cpak_pub)
    assert not result.ok
    assert "tag 55799 (self-described CBOR) at byte 0 of CBOR carried inside another item" in str(result.to_json())


def test_907_form_round_trips(sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes, cpak_pub: bytes,
                              realm_claims: Callable[..., bytes]) -> None:
    """The same inner tokens in the CMW form (tag 907, [263, bstr] entries) verify like the 399 form."""
    realm = sign_cose_sign1(realm_claims(), sample_rak)
    token = cbor2.dumps(cbor2.CBORTag(907, {44234: [263, sample_platform_token], 44241: [263, realm]}))
    result = verify_token(token, cpak_pub)
    assert result.ok and result.tag == 907


COSE_DEFECTS = {
    "untagged": (dict(tag=None), "expected a COSE_Sign1 with tag 18, found an array of 4"),
    "wrong tag": (dict(tag=17), "found tag 17"),
    "unknown alg": (dict(protected={1: -37}), "alg (1) is -37; expected one of ES256 (-7), ES384 (-35), ES512 (-36)"),
    "no alg": (dict(protected={}), "alg (1) is missing"),
    "crit": (dict(protected={1: -35, 2: [99]}), "crit (2)"),
    "alg also unprotected": (dict(unprotected={1: -35}), "protected header only"),
    "unprotected not a map": (dict(unprotected=[]), "unprotected header must be a map, found an array of 0"),
    "protected not a map": (dict(protected=[1]), "protected header must encode a map, found an array of 1"),
}


@pytest.mark.parametrize("defect", COSE_DEFECTS)
def test_realm_cose_defects_fail_the_realm_claims_check(defect: str, sample_rak: ec.EllipticCurvePrivateKey,
                                                        sample_platform_token: bytes, cpak_pub: bytes,
                                                        realm_claims: Callable[..., bytes]) -> None:
    """A realm token that is not a proper tagged ES256/384/512 COSE_Sign1: 'realm claims' fails
    with the reason, the realm signature and binding are not checked, and the platform side
    still passes."""
    kwargs, phrase = COSE_DEFECTS[defect]
    token = encode_cca_token(sample_platform_token, _cose(realm_claims(), sample_rak, **kwargs))
    result = verify_token(token, cpak_pub)
    assert phrase in result.check("realm claims").reason and result.check("realm claims").passed is False
    assert result.check("realm signature").passed is None and result.check("binding").passed is None
    assert result.check("platform signature").passed is True and result.verdict == "failed"


def test_detached_payload_is_refused(sample_rak: ec.EllipticCurvePrivateKey) -> None:
    """A COSE_Sign1 with a nil payload (detached content) is not a CCA token part."""
    message = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -35}), {}, None, b"\x00" * 96]))
    with pytest.raises(TokenFormatError, match=r"payload must be a byte string, found null \(a detached payload, nil, is not supported\)"):
        decode_sign1(message, "realm token")


@pytest.mark.parametrize("parts, phrase", [
    ([b"\xa1\x01\x38\x22", {}, b"\xa0"], "must hold an array of 4 [protected, unprotected, payload, signature], "
                                        "found an array of 3"),
    ([b"\xa1\x01\x38\x22", {}, b"\xa0", bytes(96), b""], "found an array of 5"),
    ({1: 2}, "found a map of 1 entries"),
    ([b"\xa1\x01\x38\x22", {}, b"\xa0", "sig"], "COSE_Sign1 signature must be a byte string, found text 'sig'"),
    (["a1013822", {}, b"\xa0", bytes(96)], "COSE_Sign1 protected header must be a byte string, found text 'a1013822'"),
], ids=["3-items", "5-items", "map", "text-signature", "text-protected"])
def test_a_cose_sign1_of_the_wrong_shape_names_what_it_found(parts: Any, phrase: str) -> None:
    """A tag 18 holding 3 or 5 items or a map, or a text signature / protected header: the error
    names the part, what was expected and what was found (the arity errors named no count,
    type errors gave Python type names, and a bad signature was called a detached payload)."""
    with pytest.raises(TokenFormatError) as refused:
        decode_sign1(cbor2.dumps(cbor2.CBORTag(18, parts)), "realm token")
    assert phrase in str(refused.value)
    assert "detached" not in str(refused.value)


def test_signature_of_the_wrong_length_or_curve_fails_the_realm_signature(
        sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes, realm_claims: Callable[..., bytes]) -> None:
    """A 95-byte ES384 signature, or an ES256 header over a P-384 RAK: the realm signature check
    fails and says why (length; curve mismatch)."""
    short = _cose(realm_claims(), sample_rak, signature=b"\x01" * 95)
    check = verify_token(encode_cca_token(sample_platform_token, short)).check("realm signature")
    assert check.passed is False and "must be 96 bytes (r || s), got 95" in check.reason
    es256 = _cose(realm_claims(), sample_rak, protected={1: -7})
    check = verify_token(encode_cca_token(sample_platform_token, es256)).check("realm signature")
    assert check.passed is False and "ES256 needs a secp256r1 key" in check.reason


def test_duplicate_claim_in_a_signed_payload_is_refused(sample_rak: ec.EllipticCurvePrivateKey,
                                                        sample_platform_token: bytes, realm_claims: Callable[..., bytes]) -> None:
    """A correctly signed realm payload whose map holds claim 10 twice (cbor2 alone would keep
    the second): 'realm claims' fails with 'more than once', nothing is taken from the payload."""
    payload = bytearray(realm_claims())
    payload[0] += 1  # one more map entry
    payload += cbor2.dumps(10) + cbor2.dumps(b"\xee" * 64)
    result = verify_token(encode_cca_token(sample_platform_token, _cose(bytes(payload), sample_rak)))
    assert result.check("realm claims").passed is False and "more than once" in result.check("realm claims").reason
    assert result.realm_claims is None and result.check("realm signature").passed is None


def test_payload_that_is_not_a_map_fails_the_claims_check(sample_rak: ec.EllipticCurvePrivateKey,
                                                          sample_platform_token: bytes) -> None:
    """A signed realm payload that is a CBOR array: 'realm claims must be a CBOR map'."""
    result = verify_token(encode_cca_token(sample_platform_token, _cose(cbor2.dumps([1, 2]), sample_rak)))
    assert result.check("realm claims").reason == "realm claims must be a CBOR map, found an array of 2"


def test_the_rak_of_a_token_without_profile_claim_may_be_a_cose_key(sample_rak: ec.EllipticCurvePrivateKey,
                                                                   sample_platform_token: bytes,
                                                                   realm_claims: Callable[..., bytes]) -> None:
    """The realm profile claim is optional (A7.2.3.1.2) and the RAK is a COSE_Key whatever the
    profile (A7.2.3.1.7): such claims pass; a legacy token's 97-byte raw point does too (the
    veraison vectors). Only the binding to the sample platform token fails here."""
    assert check_realm_claims(cbor2.loads(realm_claims(profile=None))) == []
    raw = dict(cbor2.loads(realm_claims(profile=None)))
    raw[44237] = raw_point(sample_rak.public_key())
    assert check_realm_claims(raw) == []
    token = encode_cca_token(sample_platform_token, sign_cose_sign1(realm_claims(profile=None), sample_rak))
    checks = {c.name: c.passed for c in verify_token(token).checks}
    assert checks["realm claims"] is True and checks["realm signature"] is True, checks


def _assert_rak_refused_by_both_checks(rak: bytes, expected: str, named: str, realm_claims: Callable[..., bytes],
                                       sample_platform_token: bytes, sample_rak: ec.EllipticCurvePrivateKey) -> None:
    """Claim 44237 set to ``rak``: the realm claims check fails with one problem naming ``named``
    and saying ``expected``, and so does the realm signature check of a token carrying it."""
    claims = dict(cbor2.loads(realm_claims(profile=None)))
    claims[44237] = rak
    problems = check_realm_claims(claims)
    assert len(problems) == 1 and named in problems[0] and expected in problems[0], problems
    result = verify_token(encode_cca_token(sample_platform_token, sign_cose_sign1(cbor2.dumps(claims), sample_rak)))
    assert result.check("realm claims").passed is False
    signature = result.check("realm signature")
    assert signature.passed is False and expected in signature.reason, signature


@pytest.mark.parametrize("first", [0x05, 0x02, 0x00, 0xA4])
def test_a_97_byte_rak_that_is_no_uncompressed_point_fails_the_claims_check(
        first: int, sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes,
        realm_claims: Callable[..., bytes]) -> None:
    """A legacy token's claim 44237 of 97 bytes whose first byte is not 0x04 (SEC 1 2.3.3: an
    uncompressed point starts with 0x04; 0x02 is a compressed prefix, 0xA4 a CBOR map head) was
    passed as well formed because of its length alone, and the realm signature check then
    blamed the bytes for not being one CBOR item. Now the claims check fails naming the claim,
    the byte found and the 0x04 expected, and the realm signature reason says the same."""
    rak = bytes([first]) + sample_rak.public_key().public_numbers().x.to_bytes(48, "big") + bytes(48)
    _assert_rak_refused_by_both_checks(rak, f"first byte is {first:#04x}; expected 0x04", "44237 (public_key)",
                                       realm_claims, sample_platform_token, sample_rak)


def test_claim_labels_are_integers() -> None:
    """A float label equals the integer in Python (10.0 == 10): it is refused by name, for the
    realm and the platform claims; a float alg in the protected header is no COSE alg."""
    from rmm_mp.attest import check_platform_claims
    assert any("claim label 10.0 must be an integer" in p for p in check_realm_claims({10.0: bytes(64)}))
    assert any("claim label 2395.0 must be an integer" in p for p in check_platform_claims({2395.0: 12288}))
    with pytest.raises(TokenFormatError, match="protected header labels must be integers or text"):
        decode_sign1(cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1.0: -35}), {}, b"", bytes(96)])), "realm token")
    with pytest.raises(TokenFormatError, match=r"alg \(1\) is -35.0"):
        decode_sign1(cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -35.0}), {}, b"", bytes(96)])), "realm token")


@pytest.mark.parametrize("size, ok", [(32, True), (48, True), (64, True), (20, False), (1, False)])
def test_software_component_signer_id_is_a_hash(sample_platform_token: bytes, size: int, ok: bool) -> None:
    """A7.2.3.2: a software component's signer ID is a hash of 256 bits or more (cca-hash-type:
    32, 48 or 64 bytes); a 20-byte (SHA-1 sized) or 1-byte one is refused (any length passed)."""
    from rmm_mp.attest import check_platform_claims
    claims = dict(cbor2.loads(decode_sign1(sample_platform_token, "platform token").payload))
    claims[2399] = [{**claims[2399][0], 5: b"\x5a" * size}] + list(claims[2399][1:])
    problems = check_platform_claims(claims)
    assert (problems == []) == ok, problems
    if not ok:
        assert any(f"signer_id (5) must be 32 or 48 or 64 bytes long, found {size}" in p for p in problems)


def test_claim_checks_accept_cbor2_6_shapes(realm_claims: Callable[..., bytes]) -> None:
    """cbor2 6 gives tuples and frozen mappings inside tags: the claim rules accept them."""
    claims = dict(cbor2.loads(realm_claims()))
    claims[44239] = tuple(claims[44239])
    assert check_realm_claims(MappingProxyType(claims)) == []


@pytest.mark.parametrize("algo", [["sha-256"], {"sha-256": 1}], ids=["array", "map"])
def test_rak_hash_algorithm_that_is_not_text_leaves_the_binding_unchecked(
        algo: Any, sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes,
        realm_claims: Callable[..., bytes]) -> None:
    """Realm claim 44240 (RAK hash algorithm) decoded as an array or a map: the binding check
    looked it up in a dict and raised TypeError (unhashable), a traceback from `attest verify`.
    Now 'realm claims' fails and the binding is not checked, naming what the claim holds."""
    claims = dict(cbor2.loads(realm_claims()))
    claims[44240] = algo
    result = verify_token(encode_cca_token(sample_platform_token, _cose(cbor2.dumps(claims), sample_rak)))
    assert result.check("realm claims").passed is False
    binding = result.check("binding")
    assert binding.passed is None and binding.reason.startswith("not checked: realm claim 44240")
    assert ("an array of 1" if isinstance(algo, list) else "a map of 1 entries") in binding.reason


@pytest.mark.parametrize("build, phrase", [
    (lambda p, r: cbor2.dumps(cbor2.CBORTag(399, {44234.0: p, 44241.0: r})), "found keys 44234.0, 44241.0"),
    (lambda p, r: cbor2.dumps(cbor2.CBORTag(907, {44234: [263.0, p], 44241: [263, r]})), "found [263.0, a "),
], ids=["float-entry-keys", "float-content-format"])
def test_a_float_equal_to_the_integer_is_no_envelope_key_or_content_format(
        build: Callable[[bytes, bytes], bytes], phrase: str, sample_rak: ec.EllipticCurvePrivateKey,
        sample_platform_token: bytes, realm_claims: Callable[..., bytes]) -> None:
    """44234.0 == 44234 and 263.0 == 263 in Python, so an envelope keyed by floats, or a CMW
    entry whose content format is a float, passed for a well-formed token (found by fuzzing)."""
    with pytest.raises(TokenFormatError) as info:
        decode_cca_token(build(sample_platform_token, sign_cose_sign1(realm_claims(), sample_rak)))
    assert phrase in str(info.value)


def _rak_cose_key(key: ec.EllipticCurvePrivateKey, **changes: Any) -> bytes:
    numbers = key.public_key().public_numbers()
    fields: dict[Any, Any] = {1: 2, -1: 2, -2: numbers.x.to_bytes(48, "big"), -3: numbers.y.to_bytes(48, "big")}
    for old, new in changes.get("relabel", {}).items():
        fields[new] = fields.pop(old)
    fields.update(changes.get("values", {}))
    return cbor2.dumps(fields)


@pytest.mark.parametrize("form", ["raw point", "COSE_Key"])
def test_a_rak_that_is_not_on_p384_fails_the_claims_check(form: str, sample_rak: ec.EllipticCurvePrivateKey,
                                                          sample_platform_token: bytes,
                                                          realm_claims: Callable[..., bytes]) -> None:
    """Claim 44237 shaped right (97 bytes starting 0x04, or a well-formed EC2/P-384 COSE_Key) but
    whose point is not on P-384 (the sample RAK's y plus one) passed the realm claims check and
    failed only the realm signature, while veraison's validator refuses such a raw point as a
    claim. Now the claims check fails naming the claim and the point, and the realm signature
    check still fails with the same words."""
    numbers = sample_rak.public_key().public_numbers()
    x, y = numbers.x.to_bytes(48, "big"), (numbers.y + 1).to_bytes(48, "big")
    rak = b"\x04" + x + y if form == "raw point" else cbor2.dumps({1: 2, -1: 2, -2: x, -3: y})
    expected = f"(x={numbers.x:#x}, y={numbers.y + 1:#x}) is not on P-384; expected a P-384 public key"
    _assert_rak_refused_by_both_checks(rak, expected, "realm claim 44237 (public_key)",
                                       realm_claims, sample_platform_token, sample_rak)


P384_P = 2**384 - 2**128 - 2**96 + 2**32 - 1
P384_B = 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef
"""p and b of P-384 (SEC 2 2.5.1), written out here rather than taken from rak.py."""


@pytest.mark.parametrize("form", ["raw point", "COSE_Key"])
def test_a_rak_coordinate_not_below_p_fails_the_claims_check(form: str, sample_rak: ec.EllipticCurvePrivateKey,
                                                             sample_platform_token: bytes,
                                                             realm_claims: Callable[..., bytes]) -> None:
    """Claim 44237 whose x is 2 + p, where (2, y) is a point of P-384: 48 bytes hold it, but it
    is no field element (SEC 1 2.3.4 refuses a coordinate >= p, as veraison's elliptic.Unmarshal
    does). cryptography reduces it mod p, so the COSE_Key form passed the claims check and was
    read as the key (2, y); the raw form passed the claims check too and failed the realm
    signature with only "Invalid EC key.". Now both forms fail the claims check naming the
    coordinate and p, and the realm signature check gives the same reason."""
    x = 2
    y = pow(x ** 3 - 3 * x + P384_B, (P384_P + 1) // 4, P384_P)     # p = 3 mod 4: a square root
    assert (y * y - (x ** 3 - 3 * x + P384_B)) % P384_P == 0, "(2, y) must be on P-384 for this test"
    big_x, y_bytes = (x + P384_P).to_bytes(48, "big"), y.to_bytes(48, "big")
    rak = b"\x04" + big_x + y_bytes if form == "raw point" else cbor2.dumps({1: 2, -1: 2, -2: big_x, -3: y_bytes})
    expected = f"its x coordinate {x + P384_P:#x} is not below the field prime p = {P384_P:#x}"
    _assert_rak_refused_by_both_checks(rak, expected, "realm claim 44237 (public_key)",
                                       realm_claims, sample_platform_token, sample_rak)


@pytest.mark.parametrize("algo, rim_size, warned", [
    ("sha-512", 32, True), ("sha-256", 64, True), ("sha-384", 64, True), ("sha-512", 64, False),
    ("sha-256", 32, False), ("sha-512", 31, False), ("sha-1", 32, False),
])
def test_realm_claims_warn_when_the_rim_does_not_fit_the_realm_hash(algo: str, rim_size: int, warned: bool,
                                                                    realm_claims: Callable[..., bytes]) -> None:
    """realm_claims_warnings: a RIM of a valid size that is not the digest size of the
    algorithm claim 44236 names gives one warning naming both claims and sizes; a fitting
    RIM gives none, and so do a RIM or an algorithm the claims check already refuses (no
    warning on top of a failure)."""
    claims = dict(cbor2.loads(realm_claims()))
    claims[44236], claims[44238] = algo, b"\x11" * rim_size
    warnings = realm_claims_warnings(claims)
    if not warned:
        assert warnings == []
        return
    assert len(warnings) == 1 and f"44238 (initial_measurement) is {rim_size} bytes" in warnings[0]
    assert f"44236 (hash_algo_id) names {algo!r}" in warnings[0], warnings


@pytest.mark.parametrize("changes, phrase", [
    ({"values": {1: 2.0}}, "kty (1) is 2.0, expected 2"),
    ({"values": {-1: 2.0}}, "crv (-1) is 2.0, expected 2"),
    ({"relabel": {1: 1.0}}, "label 1.0 must be an integer"),
    ({"relabel": {-2: -2.0}}, "label -2.0 must be an integer"),
], ids=["kty-float", "crv-float", "kty-label-float", "x-label-float"])
def test_rak_cose_key_fields_are_integers(changes: dict[str, Any], phrase: str, sample_rak: ec.EllipticCurvePrivateKey,
                                          realm_claims: Callable[..., bytes]) -> None:
    """A COSE_Key whose kty/crv value or label is a float that equals the integer (2.0, 1.0) is
    no RFC 9052 COSE_Key; it passed the realm claims check and the realm signature verified."""
    claims = dict(cbor2.loads(realm_claims()))
    claims[44237] = _rak_cose_key(sample_rak, **changes)
    problems = check_realm_claims(claims)
    assert any(phrase in p for p in problems), problems


@pytest.mark.parametrize("rak, phrase", [
    (cbor2.dumps([1, 2]), "must encode a COSE_Key map, found an array of 2"),
    (cbor2.dumps({1: 2, -2: b"\0" * 48, -3: b"\0" * 48}), "crv (-1) is missing, expected 2 (P-384)"),
    (cbor2.dumps({-1: 2, -2: b"\0" * 48, -3: b"\0" * 48}), "kty (1) is missing, expected 2 (EC2)"),
    (cbor2.dumps({1: 2, -1: 2, -2: [1], -3: b"\0" * 48}), "x (-2) must be a 48-byte string, found an array of 1"),
    (cbor2.dumps({1: 2, -1: 2, -2: b"\0" * 48, -3: 5}), "y (-3) must be a 48-byte string, found the integer 5"),
    (cbor2.dumps({1: 2, -1: 2, -2: b"\0" * 48}), "y (-3) must be a 48-byte string, it is missing"),
], ids=["array", "no-crv", "no-kty", "x-array", "y-int", "no-y"])
def test_a_bad_rak_cose_key_names_what_it_holds(rak: bytes, phrase: str, realm_claims: Callable[..., bytes]) -> None:
    """A claim 44237 COSE_Key that is an array, lacks kty, crv or y, or has a coordinate of the
    wrong type: the problem says what was found in the CBOR data model. It said 'found list',
    'crv (-1) is None', 'got int' and 'got nothing' (Python's words, and None for absent)."""
    claims = dict(cbor2.loads(realm_claims()))
    claims[44237] = rak
    problems = check_realm_claims(claims)
    assert any(phrase in p for p in problems), problems


@pytest.mark.parametrize("label, value, named", [
    (44236, "sha-1", "44236"), (44236, "SHA-256", "44236"), (44240, "md5", "44240"),
    (44239, [b"\x21" * 48] * 4, "44239"), (44239, [b"\x21" * 32] * 3 + [b"\x24" * 64], "44239"),
], ids=["realm-hash-sha-1", "realm-hash-upper-case", "rak-hash-md5", "rems-48-with-rim-32", "one-rem-64"])
def test_realm_claims_refuse_a_hash_name_no_rmm_uses_and_rems_not_as_long_as_the_rim(
        label: int, value: object, named: str, realm_claims: Callable[..., bytes]) -> None:
    """docs/deviations.md row "`rmm-mp attest verify`: realm claims 44236, 44240 and 2402": the
    realm claims check fails a hash algorithm name other than "sha-256", "sha-384" and
    "sha-512" (the claims are text in the CDDL) and a REM whose length is not the RIM's (the
    CDDL ties them to no length but 32, 48 or 64), naming the claim."""
    claims = dict(cbor2.loads(realm_claims()))
    assert check_realm_claims(claims) == []
    claims[label] = value
    problems = check_realm_claims(claims)
    assert len(problems) >= 1 and all(named in p for p in problems), problems


@pytest.mark.parametrize("value", ["sha-1", "sha3-256", "SHA-256"])
def test_platform_claims_refuse_a_hash_name_no_rmm_uses(value: str, sample_platform_token: bytes) -> None:
    """The same row for platform claim 2402 (platform hash algorithm): only "sha-256",
    "sha-384" and "sha-512" pass the platform claims check."""
    from rmm_mp.attest import check_platform_claims
    claims = dict(cbor2.loads(decode_sign1(sample_platform_token, "platform token").payload))
    assert check_platform_claims(claims) == []
    claims[2402] = value
    problems = check_platform_claims(claims)
    assert len(problems) == 1 and "2402" in problems[0], problems


def test_software_component_labels_are_integers(sample_platform_token: bytes) -> None:
    """{2.0: measurement, 5.0: signer id} looked like a complete software component."""
    from rmm_mp.attest import check_platform_claims
    claims = dict(cbor2.loads(decode_sign1(sample_platform_token, "platform token").payload))
    first = dict(claims[2399][0])
    first[2.0], first[5.0] = first.pop(2), first.pop(5)
    claims[2399] = [first] + list(claims[2399][1:])
    problems = check_platform_claims(claims)
    assert any("sw_components)[0] label 2.0 must be an integer" in p for p in problems), problems


def test_checks_after_an_undecodable_realm_token_say_why_not_missing_or_none(
        sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes, realm_claims: Callable[..., bytes]) -> None:
    """A realm token that is no COSE_Sign1 (here untagged) fails 'realm claims'; the binding
    said 'realm claim 44237 (RAK) is missing' and the --challenge check 'realm claim 10
    (challenge) is None', though neither claim is absent: the token was not readable."""
    realm = _cose(realm_claims(), sample_rak, tag=None)
    result = verify_token(encode_cca_token(sample_platform_token, realm), expected_challenge=bytes(range(64)))
    assert result.check("realm claims").passed is False
    for name in ("binding", "challenge"):
        reason = result.check(name).reason
        assert "the realm token could not be decoded (see realm claims)" in reason, reason
        assert "missing" not in reason and "None" not in reason, reason


def test_a_missing_expected_claim_is_called_missing(sample_rak: ec.EllipticCurvePrivateKey,
                                                    sample_platform_token: bytes,
                                                    realm_claims: Callable[..., bytes]) -> None:
    """A realm token without claim 44238: the --expect-rim check said 'is None'."""
    claims = dict(cbor2.loads(realm_claims()))
    del claims[44238]
    result = verify_token(encode_cca_token(sample_platform_token, _cose(cbor2.dumps(claims), sample_rak)),
                          expected_rim=b"\x11" * 32)
    assert result.check("rim").reason.startswith("realm claim 44238 (initial_measurement) is missing; expected 1111")


def test_a_cbor_simple_value_is_not_taken_for_an_array(sample_platform_token: bytes) -> None:
    """cbor2's CBORSimpleValue is a tuple: claim 2399 = simple(99) was read as an array and
    reported as '[0] must be a map, found the integer 99', claim 10 as 'found an array of 1'."""
    from rmm_mp.attest import check_platform_claims, platform_claims_json
    claims = dict(cbor2.loads(decode_sign1(sample_platform_token, "platform token").payload))
    claims[2399], claims[10] = cbor2.CBORSimpleValue(99), cbor2.undefined
    problems = check_platform_claims(claims)
    assert any("(sw_components) must be a non-empty array of software components, found the simple value 99" in p
               for p in problems), problems
    assert any("(challenge) must be a byte string, found undefined" in p for p in problems), problems
    assert platform_claims_json(claims)["sw_components"] != [99]


def test_a_claim_label_written_as_a_bignum_is_refused(sample_rak: ec.EllipticCurvePrivateKey,
                                                      sample_platform_token: bytes, cpak_pub: bytes,
                                                      realm_claims: Callable[..., bytes]) -> None:
    """A correctly signed realm payload whose challenge label 10 is written as bignum 2(h'0a'):
    cbor2 reads it as 10, so the token verified completely (challenge included) where a
    decoder that keeps tags finds no claim 10. 'realm claims' now fails on the bignum."""
    payload = realm_claims()
    at = payload.index(bytes.fromhex("0a5840"))     # claim 10's label, then its 64-byte string head
    relabelled = payload[:at] + bytes.fromhex("c2410a") + payload[at + 1:]
    result = verify_token(encode_cca_token(sample_platform_token, sign_cose_sign1(relabelled, sample_rak)),
                          cpak_pub, expected_challenge=bytes(range(64)))
    check = result.check("realm claims")
    assert check.passed is False
    assert "CBOR tag 2 (unsigned bignum) at byte" in check.reason and "holds 10, which fits" in check.reason
    assert result.verdict == "failed"


@pytest.mark.parametrize("label, found", [
    ("d81e820a01", "the rational 10 (CBOR tag 30)"),                  # 30([10, 1])
    ("c482000a", "the decimal 10 (CBOR tag 4 or 5)"),                 # 4([0, 10])
    ("c582000a", "the decimal 10 (CBOR tag 4 or 5)"),                 # 5([0, 10])
    ("d9a7f882f94900f90000", "the complex number (10+0j) (CBOR tag 43000)"),
], ids=["rational", "decimal-fraction", "bigfloat", "complex"])
def test_a_claim_label_that_only_equals_10_is_refused(label: str, found: str, sample_rak: ec.EllipticCurvePrivateKey,
                                                      sample_platform_token: bytes, cpak_pub: bytes,
                                                      realm_claims: Callable[..., bytes]) -> None:
    """A correctly signed realm payload whose challenge label 10 is a numeric tag cbor2 builds
    as a Python number equal to 10 (a rational, decimal fraction, bigfloat or complex): the
    token verified completely, where a decoder that keeps tags finds no claim 10. 'realm
    claims' now fails, naming the label and what it is."""
    payload = realm_claims()
    at = payload.index(bytes.fromhex("0a5840"))
    relabelled = payload[:at] + bytes.fromhex(label) + payload[at + 1:]
    result = verify_token(encode_cca_token(sample_platform_token, sign_cose_sign1(relabelled, sample_rak)),
                          cpak_pub, expected_challenge=bytes(range(64)))
    check = result.check("realm claims")
    assert check.passed is False and result.verdict == "failed"
    assert "must be an integer, found " + found in check.reason


def test_a_protected_header_label_that_only_equals_1_is_refused(sample_rak: ec.EllipticCurvePrivateKey) -> None:
    """A protected header {30([1, 1]): -35}: the rational equals alg's label 1, so the header was
    read as ES384; it is refused as a label that is neither an integer nor text."""
    protected = bytes.fromhex("a1d81e8201013822")
    with pytest.raises(TokenFormatError, match=r"protected header labels must be integers or text, found the "
                                              r"rational 1 \(CBOR tag 30\)$"):
        decode_sign1(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, b"", bytes(96)])), "realm token")


@pytest.mark.parametrize("value, text", [(None, "null"), (True, "true"), (False, "false"), (cbor2.undefined, "undefined"),
                                         (2.0, "2.0"), ("sha-1", "'sha-1'"), (b"ab", "a 2-byte string")])
def test_cbor_null_true_and_false_are_named_as_cbor_writes_them(value: Any, text: str) -> None:
    """describe(None) said "None" and describe(True) "True": Python's words for CBOR's null
    and true (RFC 8949 8 writes null, true, false), though a token's author knows CBOR or JSON,
    not Python (found by an attestation audit). `shown`, for a header or COSE_Key field's
    value, names them the same way and keeps a number or text as written."""
    from rmm_mp.attest._claim_rules import describe, shown
    if value is None or isinstance(value, bool) or value is cbor2.undefined:
        assert describe(value) == text
    assert shown(value) == text


@pytest.mark.parametrize("message, phrase", [
    (cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -35}), {}, None, b"\0" * 96])), "payload must be a byte string, found null ("),
    (cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: None}), {}, b"\xa0", b"\0" * 96])), "protected header alg (1) is null; expected"),
    (cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({4: b"k"}), {}, b"\xa0", b"\0" * 96])), "protected header alg (1) is missing; expected"),
    (cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -35, 2: [True]}), {}, b"\xa0", b"\0" * 96])), "crit (2) = an array of 1;"),
])
def test_a_null_header_value_or_payload_is_called_null(message: bytes, phrase: str) -> None:
    """A COSE_Sign1 with a null payload, a null alg, no alg at all, or a crit parameter: the
    message named a null 'None' and a missing alg 'None' too (nothing told them apart)."""
    with pytest.raises(TokenFormatError) as info:
        decode_sign1(message, "realm token")
    assert phrase in str(info.value), str(info.value)


def test_a_null_rak_cose_key_field_and_cmw_content_format_are_called_null(
        sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes, realm_claims: Callable[..., bytes]) -> None:
    """A RAK COSE_Key whose kty is null fails the realm claims check saying 'kty (1) is null';
    a tag 907 entry [null, bstr] is refused saying 'found [null, a ...'."""
    key = cbor2.loads(encode_cose_key(sample_rak.public_key()))
    key[1] = None
    problems = check_realm_claims(cbor2.loads(realm_claims()) | {44237: cbor2.dumps(key)})
    assert any("RAK COSE_Key kty (1) is null, expected 2 (EC2)" in p for p in problems), problems
    token = cbor2.dumps(cbor2.CBORTag(907, {44234: [None, sample_platform_token], 44241: [263, b"\xa0"]}))
    with pytest.raises(TokenFormatError, match=r"found \[null, a \d+-byte string\]"):
        decode_cca_token(token)


@pytest.mark.parametrize("payload, key, value", [
    ("a2 8100 00 0a 40", "unknown claim [0]", 0),
    ("a2 0a 40 a100 00 01", "unknown claim {0: 0}", 1),
    ("a2 0a 40 4100 02", "unknown claim h'00'", 2),
    ("a1 0a d90102 81 80", "challenge", {"tag": 258, "value": [[]]}),
    ("a1 0a a1 a100 00 00", "challenge", {"{0: 0}": 0}),
    ("a1 0a f7", "challenge", {"simple": 23}),
])
def test_claims_json_shows_non_text_keys_and_sets_in_cbor_notation(
        payload: str, key: str, value: Any, sample_platform_token: bytes, sample_rak: ec.EllipticCurvePrivateKey) -> None:
    """inspect_token's JSON of a realm token whose claims have an array, map or byte-string
    label, or a value that is a set (tag 258), a map keyed by a map, or undefined: the names
    and values were Python's reprs ("unknown claim (0,)", "{FrozenDict({})}", "b'\\x00'",
    "undefined" as if it were text), found by an attestation audit feeding the CLI odd
    tokens. Now labels are in CBOR diagnostic notation, a set is {"tag": 258, "value": [...]}
    as on the wire, and undefined is simple value 23."""
    realm = sign_cose_sign1(bytes.fromhex(payload.replace(" ", "")), sample_rak)
    claims = inspect_token(encode_cca_token(sample_platform_token, realm))["realm"]["claims"]
    assert claims[key] == value, claims


@pytest.mark.parametrize("value, shown", [
    ("a2 01 00 6131 01", {"1": 0, '"1"': 1}),
    ("a3 8100 00 635b305d 01 02 02", {"[0]": 0, '"[0]"': 1, "2": 2}),
    ("a2 01 00 6178 01", {"1": 0, "x": 1}),
])
def test_claims_json_keeps_apart_keys_that_would_read_the_same(
        value: str, shown: dict[str, int], sample_platform_token: bytes,
        sample_rak: ec.EllipticCurvePrivateKey) -> None:
    """A realm token whose challenge claim is a map keyed by the integer 1 and the text "1" (or
    by the array [0] and the text "[0]"): the JSON made both the key "1", so one value was
    silently dropped (found by review). Now every key of such a map is in CBOR diagnostic
    notation, text quoted, and both values are shown; a map whose keys read apart stays as
    before (1 and "x" are "1" and "x")."""
    payload = "a1 0a " + value
    realm = sign_cose_sign1(bytes.fromhex(payload.replace(" ", "")), sample_rak)
    claims = inspect_token(encode_cca_token(sample_platform_token, realm))["realm"]["claims"]
    assert claims["challenge"] == shown, claims


def test_an_envelope_with_keys_of_other_types_names_them_in_cbor_notation() -> None:
    """A tag 399 map keyed by a byte string, an array or a float: the message listed Python
    reprs (b'\\x00', (0,)); it now names them as CBOR writes them."""
    for encoded, phrase in (("d9018fa1 4100 00", "found keys h'00'"), ("d9018fa1 8100 00", "found keys [0]"),
                            ("d9018fa2 fb40e5994000000000 40 19acd1 40", "found keys 44234.0, 44241")):
        with pytest.raises(TokenFormatError) as info:
            decode_cca_token(bytes.fromhex(encoded.replace(" ", "")))
        assert phrase in str(info.value), str(info.value)


@pytest.mark.parametrize("value, text", [(float("nan"), "the float NaN"), (1.5, "the float 1.5"),
                                         (float("-inf"), "the float -Infinity"), (10.0, "the float 10.0")])
def test_a_float_is_described_with_its_value(value: float, text: str) -> None:
    """describe(1.5) said only 'a float' (its fallback, a Python type name): 'platform claim
    2395 (lifecycle) must be an unsigned integer, found a float' did not name the value, as an
    error for bad input must (found probing verify with a NaN lifecycle). It is now named in
    CBOR diagnostic notation."""
    from rmm_mp.attest._claim_rules import describe
    assert describe(value) == text
    problems = check_realm_claims({10: value})
    assert f"realm claim 10 (challenge) must be a byte string, found {text}" in problems, problems


@pytest.mark.parametrize("members", ["10 08 00", "00 08 10", "08 10 00"])
def test_a_set_is_shown_in_one_order_whatever_the_order_of_its_members(
        members: str, sample_platform_token: bytes, sample_rak: ec.EllipticCurvePrivateKey) -> None:
    """A set (tag 258) keeps no order, and cbor2 decodes one to a Python set, whose iteration
    order depends on the order its members were added in and, for text, on the process's hash
    seed: 258([16, 8, 0]) was shown as [16, 8, 0] and 258([0, 8, 16]) as [0, 8, 16], and a set
    of text came out in another order in each run of `rmm-mp attest inspect` (found by an
    attestation audit). Members are now listed in RFC 8949 4.2.1's order, bytewise by their
    deterministic encoding, in the JSON and in CBOR diagnostic notation alike."""
    from rmm_mp.attest._cbor import diag
    payload = bytes.fromhex(f"a1 0a d90102 83 {members}".replace(" ", ""))      # {10: 258([...])}
    realm = sign_cose_sign1(payload, sample_rak)
    claims = inspect_token(encode_cca_token(sample_platform_token, realm))["realm"]["claims"]
    assert claims["challenge"] == {"tag": 258, "value": [0, 8, 16]}, claims
    assert diag(cbor2.loads(bytes.fromhex(f"d90102 83 {members}".replace(" ", "")))) == "258([0, 8, 16])"


@pytest.mark.parametrize("label", [44236, 44240, 265, 10], ids=["hash_algo_id", "rak-hash", "profile", "challenge"])
def test_a_long_text_claim_is_shown_abbreviated_in_the_reasons(label: int, sample_rak: ec.EllipticCurvePrivateKey,
                                                               sample_platform_token: bytes,
                                                               realm_claims: Callable[..., bytes]) -> None:
    """A realm claim holding 30,000 characters of text where a hash name, the profile or a byte
    string belongs: the realm claims check and the binding reason name it by its start and its
    length ("... (30,002 characters in all)"), as a key file's or a platform file's long value is.
    The claims-failure reason printed the whole text, a 30 KB line (the last stop's known gaps)."""
    claims = dict(cbor2.loads(realm_claims()))
    claims[label] = "x" * 30_000
    result = verify_token(encode_cca_token(sample_platform_token, _cose(cbor2.dumps(claims), sample_rak)))
    reasons = [result.check("realm claims").reason] + ([result.check("binding").reason] if label == 44240 else [])
    for reason in reasons:
        assert f"'{'x' * 100}" in reason and "... (30,002 characters in all)" in reason, reason[:400]
        assert len(reason) < 600, reason[:400]


def test_a_long_envelope_key_is_shown_abbreviated() -> None:
    """A CCA token whose map has a text key of 30,000 characters beside 44234 and 44241: the
    envelope error names the keys it found by their start and their length, not the whole key."""
    token = cbor2.dumps(cbor2.CBORTag(399, {44234: b"", 44241: b"", "x" * 30_000: b""}))
    with pytest.raises(TokenFormatError) as info:
        decode_cca_token(token)
    assert '"xxx' in str(info.value) and "... (30,002 characters in all), 44234, 44241" in str(info.value), \
        str(info.value)[:400]
    assert len(str(info.value)) < 600, str(info.value)[:400]


@pytest.mark.parametrize("value, found", [
    ("d903e88101", "tag 1000 holding an array of 1"),
    ("d9010282 01 02", "a set of 2 (CBOR tag 258)"),
    ("d82550" + "00" * 16, "a UUID (CBOR tag 37)"),
    ("c1 00", "a date/time (CBOR tag 0 or 1)"),
    ("d864 00", "a date (CBOR tag 100 or 1004)"),
    ("d90104 44 0a000001", "an IP address (CBOR tag 260)"),
    ("d90105 a1 44 0a000000 18 18", "an IP network (CBOR tag 261)"),
    ("d823 61 61", "a regular expression (CBOR tag 35)"),
], ids=["tag", "set", "uuid", "datetime", "date", "ip-address", "ip-network", "regexp"])
def test_a_claim_holding_a_tag_is_named_by_the_tag(value: str, found: str) -> None:
    """Realm claim 10 (challenge) holding a tag: kept as a tag by cbor2 (1000), or built into a
    Python value (a set, a UUID, a date, an IP address, a regular expression). The claims check
    names it by the CBOR tag its author wrote; it said 'a CBORTag', 'a IPv4Address', 'a UUID',
    Python's class names (found by feeding odd claim values to the verifier)."""
    payload = bytes.fromhex("a10a" + value.replace(" ", ""))       # {10: value}
    problems = check_realm_claims(loads_exact(payload, "realm token payload"))
    assert f"realm claim 10 (challenge) must be a byte string, found {found}" in problems, problems


def test_a_claim_label_true_is_named_as_cbor_writes_it() -> None:
    """A claim label true (which Python finds equal to 1): named 'true', as CBOR writes it, not
    Python's 'True'."""
    assert "realm claim label true must be an integer, found true" in check_realm_claims({True: b""})


def test_a_long_claim_is_shown_abbreviated_in_the_binding_and_expected_value_reasons(
        sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes, realm_claims: Callable[..., bytes]) -> None:
    """A realm challenge (claim 10) of 5,000 bytes checked against --challenge, and a platform
    challenge of 5,000 bytes in the binding: the reasons show the bytes' hex by its start and its
    length, not 10,000 hex digits (found by feeding the verifier claims of odd values)."""
    claims = dict(cbor2.loads(realm_claims()))
    claims[10] = bytes(5000)
    result = verify_token(encode_cca_token(sample_platform_token, _cose(cbor2.dumps(claims), sample_rak)),
                          expected_challenge=bytes(range(64)))
    reason = result.check("challenge").reason
    assert "is " + "0" * 120 + "... (10,000 characters in all) (5,000 bytes); expected 000102" in reason, reason[:400]
    platform = decode_sign1(sample_platform_token, "platform token")
    platform_claims = dict(cbor2.loads(platform.payload))
    platform_claims[10] = bytes(5000)
    token = encode_cca_token(_cose(cbor2.dumps(platform_claims), sample_rak), _cose(realm_claims(), sample_rak))
    binding = verify_token(token).check("binding").reason
    assert binding.startswith("platform challenge " + "0" * 120 + "... (10,000 characters in all) != "), binding[:400]
    assert len(reason) < 600 and len(binding) < 600


@pytest.mark.parametrize("value, json_form", [
    ("d82550" + "00" * 16, {"tag": 37, "value": "00" * 16}),
    ("c100", {"tag": 0, "value": "1970-01-01T00:00:00Z"}),                   # epoch 0: written back as tag 0
    ("d86400", {"tag": 1004, "value": "1970-01-01"}),
    ("d90104440a000001", {"tag": 260, "value": "0a000001"}),
    ("d81e820103", {"tag": 30, "value": [1, 3]}),
    ("d8246161", {"tag": 36, "value": "\na"}),
], ids=["uuid", "epoch-time", "days", "ip-address", "rational", "mime"])
def test_a_claim_cbor2_built_from_a_tag_is_shown_as_that_tag(value: str, json_form: Any) -> None:
    """An unknown realm claim holding a value cbor2 builds from a tag it knows (a UUID, a
    date/time, a date, an IP address, a rational, a MIME message): the claims JSON (what
    `attest inspect --json` prints) holds it as {"tag": N, "value": ...}, the same on every run.
    It held Python's repr ("UUID('...')", "datetime.datetime(1970, ...)") and, for a MIME
    message, '<email.message.Message object at 0x7f...>', an address that changed from run to run
    (found by feeding the verifier claims of odd values)."""
    from rmm_mp.attest.realm_claims import realm_claims_json
    claims = loads_exact(bytes.fromhex("a11903e7" + value), "realm token payload")     # {999: value}
    assert realm_claims_json(claims) == {"unknown claim 999": json_form}
