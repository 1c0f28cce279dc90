"""The verifier against external CCA token vectors (tests/vectors/ccatoken; provenance in its README).

expected-verification.json was produced by an independent check (not rmm-mp code), so these
tests hold the verifier to outcomes it did not compute itself: which check passes for each
real token, the claim values, and which check fails when one byte is flipped.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from rmm_mp.attest import (PlatformKeyError, TokenFormatError, VerificationResult, check_platform_claims,
                           check_realm_claims, decode_cca_token, decode_sign1, inspect_token, load_trust_anchors,
                           verify_token)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ccatoken"
EXPECTED = json.loads((VECTORS / "expected-verification.json").read_text())
TESTDATA = "veraison-rust-ccatoken/testdata"
TEST_COMMON = "veraison-ccatoken/extracted/test_common"
PRETTY = "veraison-ccatoken/extracted/pretty_test_vectors"
CPAK_FILES = ("veraison-ccatoken/realm/testvectors/tf-rmm/cca_platform.pub",
              "veraison-ccatoken/realm/testvectors/tf-rmm/cca_platform.pem",
              f"{TESTDATA}/cpak.json", f"{TESTDATA}/ta-tfa.json", f"{TEST_COMMON}/testRMMCPAK.jwk")


def _read(rel: str) -> bytes:
    return (VECTORS / rel).read_bytes()


def _name(entry: dict[str, Any]) -> str:
    return str(entry["token"]).rsplit("/", 1)[-1]


def _passed(result: VerificationResult) -> dict[str, bool | None]:
    return {c.name: c.passed for c in result.checks}


@pytest.mark.parametrize("entry", EXPECTED, ids=_name)
def test_each_token_verifies_as_the_vector_file_says(entry: dict[str, Any]) -> None:
    """Every token of expected-verification.json, with the key it names: the platform
    signature, realm signature and binding checks come out exactly as the file says, the
    claim sets are valid, and the result is ok only when all three hold."""
    result = verify_token(_read(entry["token"]), _read(entry["platform_key"]))
    assert result.tag == entry["outer_tag"]
    assert _passed(result) == {
        "platform claims": True,
        "platform signature": entry["platform"]["signature_valid"],
        "realm claims": True,
        "realm signature": entry["realm"]["signature_valid_with_embedded_rak"],
        "binding": entry["binding_platform_nonce_equals_hash_of_rak_claim"],
    }
    assert result.ok is all(_passed(result).values())


@pytest.mark.parametrize("entry", EXPECTED, ids=_name)
def test_claim_values_come_out_of_the_decoder(entry: dict[str, Any]) -> None:
    """The claim values expected-verification.json lists (profiles, nonces, ids, lifecycle,
    hash algorithms, RPV, RIM, REMs, RAK form and length, protected headers, claim order) are
    what verify_token / inspect_token / decode_sign1 report."""
    token = _read(entry["token"])
    result, decoded = verify_token(token), inspect_token(token)
    plat, realm, want_p, want_r = result.platform_claims, result.realm_claims, entry["platform"], entry["realm"]
    assert plat is not None and realm is not None
    assert (plat["profile"], plat["challenge"], plat["implementation_id"], plat["instance_id"]) == (
        want_p["profile"], want_p["nonce_hex"], want_p["implementation_id_hex"], want_p["instance_id_hex"])
    assert (plat["lifecycle"], plat["hash_algo_id"], plat["verification_service"], len(plat["sw_components"])) == (
        want_p["lifecycle"], want_p["hash_algo_id"], want_p["verification_service"], want_p["num_sw_components"])
    assert (realm.get("profile"), realm["challenge"], realm["personalization_value"]) == (
        want_r["profile"], want_r["challenge_hex"], want_r["rpv_hex"])
    assert (realm["initial_measurement"], realm["extensible_measurements"]) == (want_r["rim_hex"], want_r["rems_hex"])
    assert (realm["hash_algo_id"], realm["public_key_hash_algo_id"]) == (want_r["hash_algo_id"], want_r["rak_hash_algo_id"])
    assert len(bytes.fromhex(realm["public_key"])) == want_r["rak_claim_len"]
    assert (want_r["rak_format"] == "cose_key") is ("profile" in realm)
    for side, want in (("platform", want_p), ("realm", want_r)):
        assert (decoded[side]["protected"], decoded[side]["alg"]) == (want["protected_hex"],
                                                                       {-7: "ES256", -35: "ES384"}[want["alg"]])
    realm_token = decode_sign1(decode_cca_token(token).realm_token, "realm token")
    assert list(cbor2.loads(realm_token.payload)) == want_r["claim_key_order"]


# --- one flipped byte -------------------------------------------------------------------------

def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1:]


def _parts(token: bytes) -> tuple[Any, Any, dict[Any, Any], dict[Any, Any]]:
    envelope = decode_cca_token(token)
    platform = decode_sign1(envelope.platform_token, "platform")
    realm = decode_sign1(envelope.realm_token, "realm")
    return platform, realm, cbor2.loads(platform.payload), cbor2.loads(realm.payload)


def _at(token: bytes, container: bytes, needle: bytes, index: int) -> int:
    """Offset in `token` of byte `index` of the first `needle` inside `container` (a signed
    payload or a signature, itself found in the token)."""
    base, inner = token.find(container), container.find(needle)
    assert base >= 0 and inner >= 0
    return base + inner + index


TAMPERING = {
    # what is flipped: (its offset, the checks that must then fail, a phrase of their reasons)
    "platform signature": (lambda t, p, r, pc, rc: _at(t, p.signature, p.signature, 7),
                           {"platform signature"}, "does not verify"),
    "realm signature": (lambda t, p, r, pc, rc: _at(t, r.signature, r.signature, 40),
                        {"realm signature"}, "does not verify"),
    "platform payload": (lambda t, p, r, pc, rc: _at(t, p.payload, pc[2400].encode(), 3),
                         {"platform signature"}, "does not verify"),
    "platform challenge": (lambda t, p, r, pc, rc: _at(t, p.payload, pc[10], 3),
                           {"platform signature", "binding"}, "does not verify"),
    "realm payload": (lambda t, p, r, pc, rc: _at(t, r.payload, rc[44235], 9),
                      {"realm signature"}, "does not verify"),
    "realm RAK claim": (lambda t, p, r, pc, rc: _at(t, r.payload, rc[44237], len(rc[44237]) - 60),
                        {"realm claims", "realm signature", "binding"}, "not on P-384"),
}


@pytest.mark.parametrize("target", TAMPERING)
@pytest.mark.parametrize("entry", EXPECTED, ids=_name)
def test_one_flipped_byte_fails_the_right_check(entry: dict[str, Any], target: str) -> None:
    """A copy of each vector token with one bit flipped in a signature, a signed payload, the
    platform challenge or the RAK claim: exactly the checks that byte feeds turn to failed
    (the others keep the vector's outcome), with a reason that says why."""
    token, key = _read(entry["token"]), _read(entry["platform_key"])
    where, broken, phrase = TAMPERING[target]
    baseline = _passed(verify_token(token, key))
    result = verify_token(_flip(token, where(token, *_parts(token))), key)
    assert _passed(result) == {name: (False if name in broken else ok) for name, ok in baseline.items()}
    assert phrase in " ".join(result.check(name).reason for name in broken)


def _flip_key_file(data: bytes) -> bytes:
    """The key file with one bit of the public point's y coordinate flipped."""
    text = data.decode()
    if text.startswith("-----BEGIN"):
        key = load_trust_anchors(data)[0].key
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        flipped = base64.encodebytes(_flip(der, len(der) - 3))
        return b"-----BEGIN PUBLIC KEY-----\n" + flipped + b"-----END PUBLIC KEY-----\n"
    doc = json.loads(text)
    jwk = doc[0]["pkey"] if isinstance(doc, list) else doc
    y = bytearray(base64.urlsafe_b64decode(jwk["y"] + "=="))
    y[-3] ^= 0x01
    jwk["y"] = base64.urlsafe_b64encode(bytes(y)).rstrip(b"=").decode()
    return json.dumps(doc).encode()


@pytest.mark.parametrize("entry", EXPECTED, ids=_name)
def test_one_flipped_byte_in_the_platform_key_is_an_invalid_key(entry: dict[str, Any]) -> None:
    """The platform key file with one bit of its point flipped (the point leaves the curve):
    the platform signature check fails with 'platform key invalid'; nothing crashes and the
    realm-side checks keep their outcome."""
    token = _read(entry["token"])
    baseline = _passed(verify_token(token, _read(entry["platform_key"])))
    result = verify_token(token, _flip_key_file(_read(entry["platform_key"])))
    assert result.check("platform signature").passed is False
    assert result.check("platform signature").reason.startswith("platform key invalid:")
    assert {n: p for n, p in _passed(result).items() if n != "platform signature"} == {
        n: p for n, p in baseline.items() if n != "platform signature"}


def test_the_wrong_platform_key_fails_the_platform_signature() -> None:
    """testGoodCCAToken.cbor with testAltIAK.jwk (a valid P-256 key, but not the signer):
    platform signature fails ('does not verify'); the realm side still passes."""
    result = verify_token(_read(f"{TEST_COMMON}/testGoodCCAToken.cbor"), _read(f"{TEST_COMMON}/testAltIAK.jwk"))
    assert _passed(result) == {"platform claims": True, "platform signature": False, "realm claims": True,
                               "realm signature": True, "binding": True}
    assert "does not verify" in result.check("platform signature").reason


def test_ta_02_bad_is_platform_key_invalid() -> None:
    """cca-token-02.cbor with ta-02-bad.json (x of one key, y of another: off the curve): the
    platform signature check fails with 'platform key invalid ... not on curve P-256', and
    load_trust_anchors raises PlatformKeyError with the same message."""
    token, bad = _read(f"{TESTDATA}/cca-token-02.cbor"), _read(f"{TESTDATA}/ta-02-bad.json")
    check = verify_token(token, bad).check("platform signature")
    assert check.passed is False
    assert check.reason.startswith("platform key invalid:") and "not on curve P-256" in check.reason
    with pytest.raises(PlatformKeyError, match="not on curve P-256"):
        load_trust_anchors(bad, "ta-02-bad.json")


def test_trust_anchor_for_another_platform_is_not_used() -> None:
    """ta.json names instance id 01AA..AA: for cca-token-02.cbor (instance 0102..02) no trust
    anchor applies, and the platform signature fails saying so."""
    check = verify_token(_read(f"{TESTDATA}/cca-token-02.cbor"), _read(f"{TESTDATA}/ta.json")).check("platform signature")
    assert check.passed is False and "no trust anchor" in check.reason and "0102020202" in check.reason


def test_no_matching_trust_anchor_names_the_platforms_the_anchors_are_for() -> None:
    """ta.json (one anchor, instance 01AA..AA) against cca-token-02.cbor: the reason named only
    the token's ids, not which platforms the file's anchors are for. Now it lists them ('any'
    for an id an anchor leaves open, at most three and a count of the others)."""
    check = verify_token(_read(f"{TESTDATA}/cca-token-02.cbor"), _read(f"{TESTDATA}/ta.json")).check("platform signature")
    assert f"its anchors are for (instance id 01{'aa' * 32}, implementation id {'aa' * 32})" in check.reason, check
    entry = json.loads(_read(f"{TESTDATA}/ta.json"))[0]
    five = json.dumps([entry, {"pkey": entry["pkey"], "instance-id": "01" + "bb" * 32}] + [entry] * 3).encode()
    check = verify_token(_read(f"{TESTDATA}/cca-token-02.cbor"), five).check("platform signature")
    assert (f"; (instance id 01{'bb' * 32}, implementation id any); (instance id 01{'aa' * 32}, "
            f"implementation id {'aa' * 32}) and 2 others") in check.reason, check


def test_every_key_format_loads_the_same_cpak() -> None:
    """SPKI PEM, SEC1 private PEM, JWK, trust-anchor list, private JWK, DER and a hex point of
    the TF-M/FVP platform key all give the same public key."""
    keys = [load_trust_anchors(_read(f))[0].key for f in CPAK_FILES]
    point = keys[0].public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    der = keys[0].public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    keys += [load_trust_anchors(point.hex().encode())[0].key, load_trust_anchors(der)[0].key]
    assert len({k.public_numbers() for k in keys}) == 1
    assert keys[0].curve.name == "secp384r1"


@pytest.mark.parametrize("content, phrase", [
    (b"not a key", "is none of a PEM or DER EC key"), (b'{"kty": "RSA"}', "kty is \"RSA\""),
    (b'{"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}', "crv is \"P-192\""),
    (b"[]", "empty trust-anchor list"), (b'[{"key": {}}]', 'k trust anchor 0: "pkey" is missing; expected a JWK object'),
    (b'[3]', 'k trust anchor 0 is a JSON number; expected an object with a "pkey" JWK'),
    (b'[{"pkey": "x"}]', '"pkey" is a JSON string; expected a JWK object'), (b"04" + b"00" * 96, "not on curve"),
    (b"0400", "65, 97 or 133 bytes"), (b"\x30\x03\x02\x01\x00", "is none of a PEM or DER EC key"), (b"041", "even number"),
])
def test_unreadable_platform_keys_are_refused_with_the_reason(content: bytes, phrase: str) -> None:
    """Key files that are not an EC public key in a supported format raise PlatformKeyError
    starting 'platform key invalid:' and naming what is wrong."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(content, "k")
    assert phrase in str(info.value)


def test_a_jwk_set_gives_each_of_its_keys_as_a_trust_anchor() -> None:
    """A JWK Set (RFC 7517 section 5, {"keys": [...]}) holding testAltIAK (wrong key) and then
    testIAK: testGoodCCAToken's platform signature verifies with the second member, named in
    the reason. It was read as one JWK and refused with 'JWK kty is None'."""
    keys = [json.loads(_read(f"{TEST_COMMON}/{f}")) for f in ("testAltIAK.jwk", "testIAK.jwk")]
    jwk_set = json.dumps({"keys": keys}).encode()
    assert len(load_trust_anchors(jwk_set, "k")) == 2
    check = verify_token(_read(f"{TEST_COMMON}/testGoodCCAToken.cbor"), jwk_set, key_name="set.json").check(
        "platform signature")
    assert check.passed is True and "set.json (JWK Set key 1)" in check.reason, check


RSA_JWK = {"kty": "RSA", "kid": "jwt-signing", "use": "sig", "n": "sXch", "e": "AQAB"}
OKP_JWK = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}


def test_a_jwk_set_skips_members_that_are_no_ec_key_and_says_so() -> None:
    """A JWK Set as JWKS endpoints publish them: an RSA key and an Ed25519 (OKP) key around
    testIAK. The whole set was refused ('JWK kty is 'RSA', expected "EC"'), so such a file
    could not be used at all. Now the EC member is the one trust anchor (named by its index in
    the set) and testGoodCCAToken's platform signature verifies with it; the check's reason
    names each skipped member and its kty."""
    iak = json.loads(_read(f"{TEST_COMMON}/testIAK.jwk"))
    jwk_set = json.dumps({"keys": [RSA_JWK, iak, OKP_JWK]}).encode()
    anchors = load_trust_anchors(jwk_set, "k")
    assert [a.source for a in anchors] == ["k (JWK Set key 1)"]
    check = verify_token(_read(f"{TEST_COMMON}/testGoodCCAToken.cbor"), jwk_set, key_name="set.json").check(
        "platform signature")
    assert check.passed is True and "set.json (JWK Set key 1)" in check.reason, check
    assert ("set.json JWK Set keys skipped, as no EC key on P-256, P-384 or P-521: key 0 (kty \"RSA\"), "
            "key 2 (kty \"OKP\")" in check.reason), check


def test_a_jwk_set_without_an_ec_key_is_refused_naming_its_members() -> None:
    """A JWK Set whose members are all of other key types: no trust anchor is left, so
    PlatformKeyError says the set holds no EC key and names each member's kty."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(json.dumps({"keys": [RSA_JWK, OKP_JWK]}).encode(), "k")
    assert ("k: JWK Set holds no EC key on P-256, P-384 or P-521 (key 0 has kty \"RSA\", key 1 has kty \"OKP\"); "
            "expected at least one EC JWK on one of them") in str(info.value)


SECP256K1_JWK = {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}
P192_JWK = {"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}


def test_a_jwk_set_skips_ec_members_on_an_unsupported_curve_and_says_so() -> None:
    """A JWK Set with an EC key on secp256k1 (as Ethereum-style JWKS publish) and one on P-192
    beside testIAK: the whole set was refused ("JWK crv is 'secp256k1', expected one of P-256,
    P-384, P-521"), although RFC 7517 section 5 has a reader ignore members whose values are
    out of its supported range, and testIAK verifies the token. Now both are skipped (named in
    the platform signature check's reason with their crv) and the signature verifies with
    testIAK; a set of such keys only is refused, naming each member's curve."""
    iak = json.loads(_read(f"{TEST_COMMON}/testIAK.jwk"))
    jwk_set = json.dumps({"keys": [SECP256K1_JWK, iak, RSA_JWK, P192_JWK]}).encode()
    assert [a.source for a in load_trust_anchors(jwk_set, "k")] == ["k (JWK Set key 1)"]
    check = verify_token(_read(f"{TEST_COMMON}/testGoodCCAToken.cbor"), jwk_set, key_name="set.json").check(
        "platform signature")
    assert check.passed is True and "set.json (JWK Set key 1)" in check.reason, check
    assert ("set.json JWK Set keys skipped, as no EC key on P-256, P-384 or P-521: key 0 (kty \"EC\", crv "
            "\"secp256k1\"), key 2 (kty \"RSA\"), key 3 (kty \"EC\", crv \"P-192\")") in check.reason, check
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(json.dumps({"keys": [SECP256K1_JWK, P192_JWK]}).encode(), "k")
    assert ("k: JWK Set holds no EC key on P-256, P-384 or P-521 (key 0 has kty \"EC\", crv \"secp256k1\", key 1 has "
            "kty \"EC\", crv \"P-192\")") in str(info.value)


def test_a_jwk_set_member_whose_skip_leaves_the_token_unverified_is_named_in_the_failure() -> None:
    """A JWK Set of testAltIAK (the wrong P-256 key) and a secp256k1 key: the set loads, the
    signature fails with testAltIAK, and the failure names the skipped member, which may be
    the key the user meant."""
    alt = json.loads(_read(f"{TEST_COMMON}/testAltIAK.jwk"))
    jwk_set = json.dumps({"keys": [alt, SECP256K1_JWK]}).encode()
    check = verify_token(_read(f"{TEST_COMMON}/testGoodCCAToken.cbor"), jwk_set, key_name="set.json").check(
        "platform signature")
    assert check.passed is False and "key 1 (kty \"EC\", crv \"secp256k1\")" in check.reason, check


@pytest.mark.parametrize("content, phrase", [
    ({"keys": []}, 'JWK Set "keys" is an empty array; expected an array of at least one EC JWK'),
    ({"keys": {"kty": "EC"}}, 'JWK Set "keys" is a JSON object; expected an array'),
    ({"keys": ["x"]}, "k JWK Set key 0 is a JSON string; expected a JWK object"),
    ({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}, "k JWK Set key 0: JWK x decodes to 1 bytes"),
    ({"keys": [RSA_JWK, {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]},
     "k JWK Set key 1: JWK x decodes to 1 bytes"),
    ({"keys": [{"crv": "P-384"}]}, 'k JWK Set key 0: JWK has no "kty" member; expected "EC"'),
    ({"keys": [{"kty": "EC", "x": "AA", "y": "AA"}]}, 'k JWK Set key 0: JWK has no "crv" member'),
    ({"keys": [{"kty": "EC", "crv": ["P-384"], "x": "AA", "y": "AA"}]}, "k JWK Set key 0: JWK crv is [\"P-384\"]"),
])
def test_a_bad_jwk_set_is_refused_naming_the_member(content: dict[str, Any], phrase: str) -> None:
    """An empty JWK Set, a "keys" that is no array, or a bad member (a broken EC key, even
    beside a skipped RSA one, or a member without kty): PlatformKeyError naming the set or
    the member index, what it holds and what was expected."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(json.dumps(content).encode(), "k")
    assert phrase in str(info.value)


BIG = "A" * 60_000


@pytest.mark.parametrize("content, phrase", [
    ({"kty": BIG}, "JWK kty is \"AAAA"),
    ({"kty": "EC", "crv": BIG}, "JWK crv is \"AAAA"),
    ({"kty": "EC", "crv": "P-256", "x": [BIG], "y": "AA"}, "JWK x must be a base64url string, got a JSON array of 1 value"),
    ({"kty": "EC", "crv": "P-256", "x": "!" + BIG, "y": "AA"}, "JWK x is not base64url: \"!AAA"),
    ([{"pkey": {"kty": "EC"}, "instance-id": "z" + BIG}], '"instance-id" must be a hex string, got "zAAA'),
    ({"keys": [{"kty": BIG}]}, "key 0 has kty \"AAAA"),
    ({"keys": [{"kty": "EC", "crv": BIG}]}, "key 0 has kty \"EC\", crv \"AAAA"),
    (b"-----BEGIN " + BIG.encode() + b"-----\nAAAA\n", "k: PEM block \"AAAA"),
])
def test_a_key_file_message_shows_a_long_member_shortly(content: Any, phrase: str) -> None:
    """A JWK or trust-anchor member of 60,000 characters (a kty, a crv, a coordinate that is
    no base64url or no string, an id that is no hex, a JWK Set member's kty or crv, a PEM
    block's label): the
    PlatformKeyError names it by its start and its length, in a line of a few hundred
    characters. Found by review: the message held the whole value, a 60 KB line."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(content if isinstance(content, bytes) else json.dumps(content).encode(), "k")
    text = str(info.value)
    assert phrase in text and len(text) < 600, text[:1000]
    assert "characters in all" in text or "JSON array" in text, text[:1000]


@pytest.mark.parametrize("content, phrase", [
    ({"kty": None}, 'JWK kty is null, expected "EC"'),
    ({"kty": "EC", "crv": False}, "JWK crv is false, expected one of P-256, P-384, P-521"),
    ({"kty": "EC", "crv": "P-256", "x": True, "y": "AA"}, "JWK x must be a base64url string, got true"),
    ({"kty": "EC", "crv": {"name": "P-384"}}, 'JWK crv is {"name": "P-384"}, expected one of'),
    ({"kty": "it's"}, 'JWK kty is "it\'s", expected "EC"'),
    ({"kty": "\u202eCE"}, 'JWK kty is "\\u202eCE", expected "EC"'),
    ([{"pkey": {"kty": "EC"}, "instance-id": 1.5}], '"instance-id" must be a hex string, got 1.5'),
])
def test_a_key_file_message_shows_a_member_as_json_writes_it(content: Any, phrase: str) -> None:
    """A JWK or trust-anchor member is shown in the message as the JSON file writes it, in the
    double quotes of the 'expected "EC"' beside it: null, true and false, not Python's None,
    True and False ('JWK kty is None'), which the file's author never wrote; an object as JSON
    ({"name": ...}), text with a quote or a character that is not printable (a bidi override)
    as a JSON string with escapes. Found by review: key-file messages used Python's repr."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(json.dumps(content).encode(), "k")
    assert phrase in str(info.value) and str(info.value).isprintable(), str(info.value)


@pytest.mark.parametrize("content, phrase", [
    ('{"kty": "\u0415\u0421"}', 'JWK kty is "\u0415\u0421", expected "EC"'),
    ('{"kty": "EC", "crv": "P-256\u00a0"}', 'JWK crv is "P-256\\u00a0", expected one of'),
    ('{"kid": "cl\u00e9", "kty": "\u202eCE"}', 'JWK kty is "\\u202eCE", expected "EC"'),
    ('{"keys": [{"kid": "\u043a\u043b\u044e\u0447", "kty": "\u00c9C"}]}', 'key 0 has kty "\u00c9C"'),
])
def test_a_key_file_is_read_as_utf8_json(content: str, phrase: str) -> None:
    """A JSON key file holding non-ASCII text written raw in UTF-8 (RFC 8259 8.1), not as
    \\u escapes: a kty in Cyrillic letters that look like "EC", a crv ending in a no-break
    space, a bidi override, a kid in French or Russian. The file was decoded as ASCII with
    replacement, so each non-ASCII byte was shown as U+FFFD ('JWK kty is "\ufffd\ufffd..."'),
    which hides what the file holds. Found by review. A printable character is now shown as
    itself, one that is not (a no-break space, a bidi override) as its \\uXXXX escape."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(content.encode("utf-8"), "k")
    assert phrase in str(info.value) and "\ufffd" not in str(info.value), str(info.value)


@pytest.mark.parametrize("content, phrase", [
    (b'{"kty": "E\xffC"}', "k: JSON that is not UTF-8 (invalid start byte: 0xff at byte 10)"),
    (b'{"kid": "\xc3", "kty": "EC"}', "k: JSON that is not UTF-8 (invalid continuation byte: 0xc3 at byte 9)"),
    (b'{"kty": "EC"}\n\xe2\x82', "k: JSON that is not UTF-8 (unexpected end of data: 0xe2 0x82 at byte 14)"),
])
def test_a_json_key_file_that_is_not_utf8_is_refused_naming_the_byte(content: bytes, phrase: str) -> None:
    """A JSON key file with bytes that are not UTF-8 (a stray 0xff, a sequence cut short, one
    at the end of the file): JSON is UTF-8 (RFC 8259 8.1), and such a file was read as ASCII
    with replacement characters, its bad bytes becoming U+FFFD in a member. It is refused,
    naming the bytes and their offset in the file."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(content, "k")
    assert phrase in str(info.value) and "expected UTF-8 text (RFC 8259 8.1)" in str(info.value), str(info.value)


FIELD_PRIMES = {"P-256": 2**256 - 2**224 + 2**192 + 2**96 - 1, "P-384": 2**384 - 2**128 - 2**96 + 2**32 - 1,
                "P-521": 2**521 - 1}
CURVE_B = {"P-256": 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b,
           "P-384": 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef}
JWK_CURVE_OBJECTS = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}


def _b64(value: int, size: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(size, "big")).rstrip(b"=").decode()


def _small_x_point(crv: str) -> tuple[int, int]:
    """A point of ``crv`` (P-256 or P-384) with a small x, so that x + p still fits the
    coordinate's bytes: y = sqrt(x^3 - 3x + b) (p = 3 mod 4), checked by cryptography."""
    p, b = FIELD_PRIMES[crv], CURVE_B[crv]
    for x in range(1, 100):
        rhs = (x ** 3 - 3 * x + b) % p
        y = pow(rhs, (p + 1) // 4, p)
        if y * y % p == rhs:
            ec.EllipticCurvePublicNumbers(x, y, JWK_CURVE_OBJECTS[crv]).public_key()
            return x, y
    raise AssertionError(f"no point with x < 100 on {crv}")


@pytest.mark.parametrize("crv, coordinate", [("P-256", "x"), ("P-384", "x"), ("P-521", "x"), ("P-521", "y")])
def test_a_jwk_coordinate_not_below_the_field_prime_is_refused(crv: str, coordinate: str) -> None:
    """A JWK whose x (or y) is a point's coordinate plus the field prime p (it still fits the
    coordinate's bytes): cryptography reduced it mod p and took the point as the key, so two
    encodings named one key; such a value is no field element (SEC 1 2.3.4, RFC 7518 6.2.1.2
    asks for the coordinate's full-length octet string). It is refused, naming the member, the
    value and p, as the RAK check does. The same point with its coordinates below p loads."""
    curve = JWK_CURVE_OBJECTS[crv]
    size = (curve.key_size + 7) // 8
    if crv == "P-521":
        numbers = ec.generate_private_key(curve).public_key().public_numbers()
        x, y = numbers.x, numbers.y
    else:
        x, y = _small_x_point(crv)
    good = {"kty": "EC", "crv": crv, "x": _b64(x, size), "y": _b64(y, size)}
    assert load_trust_anchors(json.dumps(good).encode(), "k")[0].key.public_numbers().x == x
    bad = dict(good, **{coordinate: _b64((x if coordinate == "x" else y) + FIELD_PRIMES[crv], size)})
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(json.dumps(bad).encode(), "k")
    assert f"k: JWK {coordinate} is " in str(info.value)
    assert f"not below the field prime p = {FIELD_PRIMES[crv]:#x} of {crv}" in str(info.value)


def _key_file(kind: str) -> bytes:
    """A key file of the named kind, made here (no such file is among the vectors)."""
    enc, fmt = serialization.Encoding, serialization.PrivateFormat
    plain = serialization.NoEncryption()
    if kind == "rsa-private-pem":
        return rsa.generate_private_key(65537, 1024).private_bytes(enc.PEM, fmt.TraditionalOpenSSL, plain)
    if kind == "rsa-private-der":
        return rsa.generate_private_key(65537, 1024).private_bytes(enc.DER, fmt.PKCS8, plain)
    if kind == "rsa-public-pem":
        return rsa.generate_private_key(65537, 1024).public_key().public_bytes(
            enc.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if kind == "ed25519-private-pem":
        return ed25519.Ed25519PrivateKey.generate().private_bytes(enc.PEM, fmt.PKCS8, plain)
    if kind == "p192-private-pem":
        return ec.generate_private_key(ec.SECP192R1()).private_bytes(enc.PEM, fmt.PKCS8, plain)
    if kind == "encrypted-p384-pem":
        return ec.generate_private_key(ec.SECP384R1()).private_bytes(
            enc.PEM, fmt.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    return {"certificate": b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", "empty": b"",
            "jwk-without-kty": b'{"crv": "P-384"}', "jwk-without-crv": b'{"kty": "EC"}'}[kind]


@pytest.mark.parametrize("kind, phrase", [
    ("rsa-private-pem", "k holds an RSA private key of 1024 bits (PEM); expected an EC public key on P-256, P-384 or P-521"),
    ("rsa-private-der", "k holds an RSA private key of 1024 bits (DER); expected an EC public key"),
    ("rsa-public-pem", "k holds an RSA public key of 1024 bits (PEM); expected an EC public key"),
    ("ed25519-private-pem", "k holds an Ed25519 private key (PEM); expected an EC public key"),
    ("p192-private-pem", "k holds an EC private key on secp192r1 (PEM); expected an EC public key on P-256, P-384"),
    ("encrypted-p384-pem", "PEM block \"ENCRYPTED PRIVATE KEY\" is encrypted; expected an unencrypted key"),
    ("certificate", "PEM block \"CERTIFICATE\" is no key; expected a \"PUBLIC KEY\", \"EC PRIVATE KEY\" or \"PRIVATE KEY\""),
    ("empty", "k is empty; expected a PEM or DER EC key, a JWK, a JWK Set"),
    ("jwk-without-kty", 'JWK has no "kty" member; expected "EC"'),
    ("jwk-without-crv", 'JWK has no "crv" member; expected one of P-256, P-384, P-521'),
])
def test_a_key_file_of_the_wrong_kind_is_named_for_what_it_holds(kind: str, phrase: str) -> None:
    """Key files that hold no usable EC key: the message says what the file holds (an RSA
    private key was called 'a RSAPublicKey', the Python class of its public half; an Ed25519
    key 'a Ed25519PublicKey'), and what was expected. A P-192 key was loaded and failed only
    at the signature; an empty file was 'not a PEM or DER key'; a JWK without kty had 'kty is
    None'."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(_key_file(kind), "k")
    assert phrase in str(info.value)


@pytest.mark.parametrize("pem, phrase", [
    (b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n",
     "k.pem: PEM block \"PUBLIC KEY\" is corrupt: its 27 bytes are not the SubjectPublicKeyInfo (RFC 5280 4.1.2.7) a "
     "\"PUBLIC KEY\" block holds"),
    (b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
     "k.pem: PEM block \"EC PRIVATE KEY\" is corrupt: its 3 bytes are not the ECPrivateKey (SEC 1 C.4, RFC 5915) a "
     "\"EC PRIVATE KEY\" block holds"),
    (b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
     "k.pem: PEM block \"PRIVATE KEY\" is corrupt: its body is not base64 (RFC 7468)"),
    (b"-----BEGIN PUBLIC KEY-----\nMFkw\n",
     "k.pem: PEM block \"PUBLIC KEY\" is corrupt: it has no \"-----END PUBLIC KEY-----\" line"),
], ids=["truncated-spki", "bad-ecprivatekey", "not-base64", "no-end-line"])
def test_a_corrupt_pem_key_block_is_named_shortly(pem: bytes, phrase: str) -> None:
    """A PEM block with a key's label but a corrupt body (truncated, not the expected DER
    structure, not base64, no END line): the message showed cryptography's whole text in
    brackets ('Could not deserialize key data. The data may be in an incorrect format, it may
    be encrypted with...', a link to its FAQ, 'MalformedFraming'). Now it names the file, the
    block, what is wrong and what the block should hold, in a line."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(pem, "k.pem")
    message = str(info.value)
    assert phrase in message
    assert "Could not deserialize" not in message and "cryptography.io" not in message and len(message) < 240, message


def _p384_pair() -> tuple[ec.EllipticCurvePrivateKey, bytes, bytes]:
    """A fresh P-384 key, its SEC 1 ECPrivateKey DER and its SPKI DER."""
    key = ec.generate_private_key(ec.SECP384R1())
    sec1 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, sec1, spki


def _as_pem(label: str, der: bytes) -> bytes:
    return f"-----BEGIN {label}-----\n{base64.encodebytes(der).decode()}-----END {label}-----\n".encode()


def _well_formed_bad_key(kind: str) -> tuple[str, bytes]:
    """(PEM label or "DER", key DER) of a well-formed key structure whose values are no key."""
    key, sec1, spki = _p384_pair()
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    scalar = key.private_numbers().private_value.to_bytes(48, "big")
    off_curve = spki[:-1] + bytes([spki[-1] ^ 1])
    if kind in ("off-curve-spki", "off-curve-spki-der"):
        return ("DER" if kind.endswith("der") else "PUBLIC KEY"), off_curve
    if kind == "zero-scalar-sec1":
        return "EC PRIVATE KEY", sec1.replace(scalar, bytes(48))
    if kind == "big-scalar-sec1":
        return "EC PRIVATE KEY", sec1.replace(scalar, b"\xff" * 48)
    if kind == "zero-scalar-pkcs8":
        pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        return "PRIVATE KEY", pkcs8.replace(scalar, bytes(48))
    other = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return "EC PRIVATE KEY", sec1.replace(point, other)      # "mismatched-public-sec1"


@pytest.mark.parametrize("kind, phrase", [
    ("off-curve-spki", "k.pem: PEM block \"PUBLIC KEY\" holds an EC public key on P-384 whose point (97 bytes, starting "
                       "04) is not a point on P-384; expected an encoded point of the curve"),
    ("off-curve-spki-der", "k.pem (DER) holds an EC public key on P-384 whose point (97 bytes, starting 04) is not a "
                           "point on P-384"),
    ("zero-scalar-sec1", "PEM block \"EC PRIVATE KEY\" holds an EC private key on P-384 whose private scalar (48 bytes) "
                         "is 0; expected 1 <= scalar < n"),
    ("big-scalar-sec1", "PEM block \"EC PRIVATE KEY\" holds an EC private key on P-384 whose private scalar (48 bytes) "
                        "is not below the order n of the curve; expected 1 <= scalar < n"),
    ("zero-scalar-pkcs8", "PEM block \"PRIVATE KEY\" holds an EC private key on P-384 whose private scalar"),
    ("mismatched-public-sec1", "PEM block \"EC PRIVATE KEY\" holds an EC private key on P-384 whose public key ([1], "
                               "97 bytes) is not the public key of its private scalar"),
])
def test_a_well_formed_key_whose_values_are_no_key_is_not_called_corrupt(kind: str, phrase: str) -> None:
    """A PEM or DER key whose structure is sound but whose values cryptography refuses (a
    point off its curve, a private scalar of 0 or >= n, a public half that is not the private
    scalar's): every ValueError of cryptography was reported as 'PEM block ... is corrupt: its
    120 bytes are not the SubjectPublicKeyInfo', and a DER one as 'none of a PEM or DER EC
    key...', though the bytes are exactly that structure (found by an attestation audit). The
    message now names the key, its curve and what about it is wrong."""
    label, der = _well_formed_bad_key(kind)
    data = der if label == "DER" else _as_pem(label, der)
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(data, "k.pem")
    assert phrase in str(info.value) and "corrupt" not in str(info.value), str(info.value)


@pytest.mark.parametrize("label, structure, holder", [
    ("EC PRIVATE KEY", "pkcs8", "a PrivateKeyInfo (PKCS #8, RFC 5208 5), which a \"PRIVATE KEY\" block holds, not the "
                                "ECPrivateKey (SEC 1 C.4, RFC 5915) a \"EC PRIVATE KEY\" block holds"),
    ("PUBLIC KEY", "sec1", "an ECPrivateKey (SEC 1 C.4, RFC 5915), which a \"EC PRIVATE KEY\" block holds, not the "
                           "SubjectPublicKeyInfo"),
    ("PRIVATE KEY", "spki", "a SubjectPublicKeyInfo (RFC 5280 4.1.2.7), which a \"PUBLIC KEY\" block holds, not the "
                            "PrivateKeyInfo"),
])
def test_a_pem_key_under_another_keys_label_is_called_mislabelled(label: str, structure: str, holder: str) -> None:
    """A sound key under the label of another key structure (a PKCS #8 key in an 'EC PRIVATE
    KEY' block, a SEC 1 key in a 'PUBLIC KEY' block...) was called corrupt; the message now
    says which structure the bytes are and which label holds it."""
    key, sec1, spki = _p384_pair()
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    der = {"pkcs8": pkcs8, "sec1": sec1, "spki": spki}[structure]
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(_as_pem(label, der), "k.pem")
    assert f"k.pem: PEM block \"{label}\" is mislabelled: its {len(der)} bytes are {holder}" in str(info.value), \
        str(info.value)


@pytest.mark.parametrize("before, after", [
    ("-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n", ""),
    ("", "-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n"),
    ("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", ""),
], ids=["ecparam-genkey", "parameters-after", "certificate-first"])
def test_a_pem_key_after_another_block_is_read(before: str, after: str) -> None:
    """`openssl ecparam -name secp384r1 -genkey` writes an 'EC PARAMETERS' block (the curve's
    OID) and then the 'EC PRIVATE KEY' block: such a file, the most common way to make an EC
    key, was refused as "PEM block 'EC PARAMETERS' is no key", because only the first block's
    label was looked at (found by an attestation audit). The first block whose label names a
    key is now the key, wherever it is; the key loads as its public half."""
    key, sec1, _ = _p384_pair()
    pem = before.encode() + _as_pem("EC PRIVATE KEY", sec1) + after.encode()
    (anchor,) = load_trust_anchors(pem, "k.pem")
    assert anchor.key.public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize("before", [
    "Subject: CN=test platform\nexplanatory text, RFC 7468 section 5.2\n\n",
    "[a comment]\n",
    "  \u00e9t\u00e9 \u2014 text that is not ASCII\n",
], ids=["explanatory-text", "bracketed", "non-ascii"])
def test_a_pem_key_after_explanatory_text_is_read(before: str) -> None:
    """A PEM 'EC PRIVATE KEY' file with explanatory text before its BEGIN line, which RFC 7468
    section 5.2 allows (`openssl x509 -text` writes such files): it was taken for DER and
    refused as "none of a PEM or DER EC key ..." (found by review). The BEGIN line is now
    found wherever its line is and the key loads; a PEM block that is no key after such text
    is still named as one."""
    key, sec1, _ = _p384_pair()
    (anchor,) = load_trust_anchors(before.encode() + _as_pem("EC PRIVATE KEY", sec1), "k.pem")
    assert anchor.key.public_numbers() == key.public_key().public_numbers()
    with pytest.raises(PlatformKeyError) as info:
        load_trust_anchors(before.encode() + b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", "k.pem")
    assert "k.pem: PEM block \"CERTIFICATE\" is no key" in str(info.value), str(info.value)


@pytest.mark.parametrize("start", ['[{"implementation-id": "00", "instance-id": "01", "pkey": "',
                                   '{"keys": ["'], ids=["trust-anchor-list", "jwk-set"])
def test_a_broken_json_file_holding_a_pem_key_is_still_refused_as_json(start: str) -> None:
    """A JSON trust-anchor list (or JWK Set) whose string holds a PEM key with raw line breaks,
    which JSON does not allow: it is refused as not valid JSON, as before explanatory text
    before a BEGIN line was passed over. Found by review: the BEGIN line made it a PEM file, so
    the key loaded alone and the entry's implementation and instance ids were silently dropped
    (the key then verified any platform's token). Text before the BEGIN line that starts as JSON
    does (`{` or `[`, and a `"` before the line) is no explanatory text."""
    _, sec1, _ = _p384_pair()
    doc = start.encode() + b"\n" + _as_pem("EC PRIVATE KEY", sec1) + b'"}]\n'
    with pytest.raises(PlatformKeyError) as info:
        load_trust_anchors(doc, "k.json")
    assert "k.json: not valid JSON (" in str(info.value), str(info.value)


def test_a_pem_file_of_ec_parameters_alone_is_no_key() -> None:
    """An 'EC PARAMETERS' block with no key block after it is still refused, naming the block."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(b"-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n", "k.pem")
    assert "k.pem: PEM block \"EC PARAMETERS\" is no key; expected a \"PUBLIC KEY\"" in str(info.value), str(info.value)


@pytest.mark.parametrize("encoding", ["PEM", "DER"])
def test_a_key_of_an_unknown_algorithm_fails_verification_without_a_traceback(encoding: str) -> None:
    """A well-formed SubjectPublicKeyInfo whose algorithm OID cryptography does not know
    (1.2.3.4 here; a post-quantum key is one in practice): cryptography raises
    UnsupportedAlgorithm, which is no ValueError, so it escaped load_trust_anchors and
    verify_token as a traceback. Now it is a PlatformKeyError naming the file, the OID and
    what was expected, and the platform signature check fails with it."""
    body = bytes.fromhex("300506032a0304030400010203")       # SEQUENCE {OID 1.2.3.4}, BIT STRING
    der = bytes([0x30, len(body)]) + body
    key = (der if encoding == "DER"
           else b"-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der) + b"\n-----END PUBLIC KEY-----\n")
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(key, "k")
    assert (f"k holds a public key of a type cryptography cannot read (Unknown key type: 1.2.3.4) ({encoding}); "
            "expected an EC public key") in str(info.value)
    check = verify_token(_read(f"{TEST_COMMON}/testGoodCCAToken.cbor"), key, key_name="k").check("platform signature")
    assert check.passed is False and "Unknown key type: 1.2.3.4" in check.reason, check


def _tlv(tag: int, contents: bytes) -> bytes:
    """A DER item: tag, definite length (short or long form), contents."""
    size = len(contents)
    if size < 0x80:
        return bytes([tag, size]) + contents
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + contents


def _pkcs8_nested(depth: int) -> bytes:
    """An ECPrivateKey wrapped in `depth` PrivateKeyInfo structures (id-ecPublicKey, no curve)."""
    der = _tlv(0x30, _tlv(0x02, b"\x01") + _tlv(0x04, b"\x01" * 48))
    ec_algorithm = _tlv(0x30, bytes.fromhex("06072a8648ce3d0201"))
    for _ in range(depth):
        der = _tlv(0x30, _tlv(0x02, b"\x00") + ec_algorithm + _tlv(0x04, der))
    return der


@pytest.mark.parametrize("encoding", ["PEM", "DER"])
def test_a_private_key_info_nested_deep_is_corrupt_not_a_traceback(encoding: str) -> None:
    """A 'PRIVATE KEY' (or DER) file of 1,200 PrivateKeyInfo structures each wrapping the next
    (27 KB, within the CLI's 64 KiB bound for a key file): the structure reader that tells a
    corrupt key from a mislabelled or invalid one followed each PrivateKeyInfo's privateKey
    into the next, recursively, and raised RecursionError, which escaped `rmm-mp attest
    verify` as a traceback (found by an attestation audit feeding hostile DER). A
    PrivateKeyInfo holds an ECPrivateKey, never another PrivateKeyInfo, so the reader looks
    one level in; the file is refused as corrupt and the platform signature check fails."""
    der = _pkcs8_nested(1200)
    key = der if encoding == "DER" else _as_pem("PRIVATE KEY", der)
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(key, "k")
    phrase = ("k is none of a PEM or DER EC key" if encoding == "DER"
              else "k: PEM block \"PRIVATE KEY\" is corrupt: its ")
    assert phrase in str(info.value), str(info.value)
    check = verify_token(_read(f"{TEST_COMMON}/testGoodCCAToken.cbor"), key, key_name="k").check("platform signature")
    assert check.passed is False and phrase in check.reason, check


def _with_huge_oid(structure: str) -> bytes:
    """A key structure with an OBJECT IDENTIFIER whose second arc is 3,000 bytes of 0xff (21,000
    bits: more than 4,300 decimal digits), where the algorithm or the named curve goes."""
    huge = _tlv(0x06, b"\x2a" + b"\xff" * 3000 + b"\x01")
    ec_algorithm = bytes.fromhex("06072a8648ce3d0201")
    point = _tlv(0x03, b"\x00\x04" + b"\x01" * 96)
    if structure == "spki-algorithm":
        return _tlv(0x30, _tlv(0x30, huge) + point)
    if structure == "spki-curve":
        return _tlv(0x30, _tlv(0x30, ec_algorithm + huge) + point)
    if structure == "pkcs8-algorithm":
        return _tlv(0x30, _tlv(0x02, b"\x00") + _tlv(0x30, huge) + _tlv(0x04, b"\x00"))
    return _tlv(0x30, _tlv(0x02, b"\x01") + _tlv(0x04, b"\x01" * 48) + _tlv(0xA0, huge))     # "sec1-curve"


@pytest.mark.parametrize("label", ["PUBLIC KEY", "PRIVATE KEY", "EC PRIVATE KEY", "DER"])
@pytest.mark.parametrize("structure", ["spki-algorithm", "spki-curve", "pkcs8-algorithm", "sec1-curve"])
def test_a_key_structure_with_a_huge_oid_arc_is_corrupt_not_a_traceback(structure: str, label: str) -> None:
    """A key whose algorithm or curve OID has an arc of 21,000 bits: the structure reader wrote
    the arc in decimal, and Python refuses to convert an integer of more than 4,300 digits
    (ValueError 'Exceeds the limit'), raised while handling cryptography's ValueError, so it
    escaped `rmm-mp attest verify` as a traceback (found by an attestation audit). Such an
    OID is malformed for this reader (no algorithm or curve OID has an arc near that size), so
    the file is refused as corrupt or of no known format, and the platform signature check
    fails with that reason."""
    der = _with_huge_oid(structure)
    key = der if label == "DER" else _as_pem(label, der)
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(key, "k")
    assert "Exceeds the limit" not in str(info.value) and len(str(info.value)) < 400, str(info.value)
    check = verify_token(_read(f"{TEST_COMMON}/testGoodCCAToken.cbor"), key, key_name="k").check("platform signature")
    assert check.passed is False and check.reason == str(info.value), check


def test_bad_unwrapped_tokens_are_refused() -> None:
    """testBadUnwrappedTokens.cbor (tag 907 whose entries hold a COSE_Sign1 array instead of a
    byte string) is not a CCA token: TokenFormatError naming the entry and the expected form."""
    with pytest.raises(TokenFormatError, match=r"platform token entry .* must be \[263, byte string"):
        verify_token(_read(f"{TEST_COMMON}/testBadUnwrappedTokens.cbor"))


# --- unsigned claim sets ----------------------------------------------------------------------

CLAIM_SETS = {
    # file: (realm or platform, None if valid else a phrase of the reason)
    f"{PRETTY}/CcaRealmClaimsAll.cbor": ("realm", None),
    f"{PRETTY}/CcaRealmLegacyClaimsAll.cbor": ("realm", None),
    f"{PRETTY}/CcaClaimsMissingMandExtendedMeas.cbor": ("realm", "44239 (extensible_measurements) is missing"),
    f"{PRETTY}/CcaClaimsMissingMandHashAlgID.cbor": ("realm", "44236 (hash_algo_id) is missing"),
    f"{PRETTY}/CcaClaimsMissingMandInitialMeas.cbor": ("realm", "44238 (initial_measurement) is missing"),
    f"{PRETTY}/CcaClaimsMissingMandPubKey.cbor": ("realm", "44237 (public_key) is missing"),
    f"{PRETTY}/CcaRealmClaimsMissingMandNonce.cbor": ("realm", "claim 10 (challenge) is missing"),
    f"{PRETTY}/CcaPlatformClaimsAll.cbor": ("platform", None),
    f"{PRETTY}/CcaPlatformClaimsMandatoryOnly.cbor": ("platform", None),
    f"{PRETTY}/CcaPlatformLegacyClaimsAll.cbor": ("platform", None),
    f"{PRETTY}/CcaPlatformLegacyClaimsMandatoryOnly.cbor": ("platform", None),
    f"{PRETTY}/CcaPlatformClaimsInvalidMultiNonce.cbor": ("platform", "claim 10 (challenge) must be a byte string"),
    f"{PRETTY}/CcaPlatformClaimsMissingMandatoryNonce.cbor": ("platform", "claim 10 (challenge) is missing"),
    f"{TESTDATA}/realm-claims.cbor": ("realm", None),
    f"{TESTDATA}/platform-claims.cbor": ("platform", None),
    f"{TESTDATA}/realm-claims-missing-challenge.cbor": ("realm", "claim 10 (challenge) is missing"),
    f"{TESTDATA}/realm-claims+spurious-numeric-key.cbor": ("realm", None),
    f"{TESTDATA}/realm-claims+spurious-text-key.cbor": ("realm", None),
}
CHECKERS = {"realm": check_realm_claims, "platform": check_platform_claims}


@pytest.mark.parametrize("rel", CLAIM_SETS, ids=lambda r: r.rsplit("/", 1)[-1])
def test_unsigned_cbor_claim_sets_are_judged_as_the_readme_says(rel: str) -> None:
    """Each unsigned claim map of the vectors is valid, or invalid with a problem naming the
    defect its file name announces (README: 'Claim sets without signatures')."""
    side, phrase = CLAIM_SETS[rel]
    problems = CHECKERS[side](cbor2.loads(_read(rel)))
    if phrase is None:
        assert problems == []
    else:
        assert problems and phrase in problems[0], problems


REALM_JSON = {"cca-realm-challenge": 10, "cca-realm-personalization-value": 44235, "cca-realm-public-key": 44237,
              "cca-realm-hash-algo-id": 44236, "cca-realm-public-key-hash-algo-id": 44240,
              "cca-realm-profile": 265, "cca-realm-initial-measurement": 44238,
              "cca-realm-extensible-measurements": 44239}
PLATFORM_JSON = {"cca-platform-profile": 265, "cca-platform-challenge": 10, "cca-platform-implementation-id": 2396,
                 "cca-platform-instance-id": 256, "cca-platform-config": 2401, "cca-platform-lifecycle": 2395,
                 "cca-platform-sw-components": 2399, "cca-platform-service-indicator": 2400,
                 "cca-platform-hash-algo-id": 2402}
SW_JSON = {"measurement-type": 1, "measurement-value": 2, "version": 4, "signer-id": 5, "measurement-description": 6}
BINARY = {10, 44235, 44237, 44238, 44239, 2396, 256, 2401, 2, 5}


def _from_json(value: Any, names: dict[str, int]) -> dict[Any, Any]:
    """veraison's JSON claims -> a CBOR-style claim map (base64 byte strings, strictly decoded)."""
    out: dict[Any, Any] = {}
    for name, v in value.items():
        key = names.get(name, name)
        if key == 2399:
            v = [_from_json(c, SW_JSON) for c in v]
        elif key in BINARY:
            v = [base64.b64decode(x, validate=True) for x in v] if isinstance(v, list) else base64.b64decode(v, validate=True)
        out[key] = v
    return out


JSON_SETS = {
    # Not valid after all: its 97-byte RAK is "YBYB..." (0x59 0x42 ...), no uncompressed point;
    # upstream's own validator (realm/common.go ValidateRealmPubKey, elliptic.Unmarshal) refuses
    # it, and no upstream test loads this file (README, "Claim sets without signatures").
    "realm/testvectors/json/test-cca-claims-all-valid.json": "first byte is 0x59; expected 0x04",
    "realm/testvectors/json/test-invalid-extended-meas.json": "44239 (extensible_measurements)[0] must be 64 bytes",
    "realm/testvectors/json/test-invalid-initial-meas.json": "44238 (initial_measurement) must be 32 or 48 or 64 bytes long, found 95",
    "realm/testvectors/json/test-invalid-nonce.json": "claim 10 (challenge) must be 64 bytes long, found 95",
    "realm/testvectors/json/test-invalid-personalization-val.json": "44235 (personalization_value) must be 64 bytes long, found 95",
    "realm/testvectors/json/test-invalid-public-key.json": "44237 (public_key) of a token without profile claim",
    "realm/testvectors/json/test-missing-extended-meas.json": "44239 (extensible_measurements) is missing",
    "realm/testvectors/json/test-missing-hash-alg-id.json": "44236 (hash_algo_id) is missing",
    "realm/testvectors/json/test-missing-initial-meas.json": "44238 (initial_measurement) is missing",
    "realm/testvectors/json/test-missing-nonce.json": "claim 10 (challenge) is missing",
    "realm/testvectors/json/test-missing-personalization-val.json": "44235 (personalization_value) is missing",
    "realm/testvectors/json/test-missing-public-key-alg-id.json": "44240 (public_key_hash_algo_id) is missing",
    "realm/testvectors/json/test-missing-public-key.json": "44237 (public_key) is missing",
    "platform/testvectors/json/test-token-valid-full.json": None,
    "platform/testvectors/json/test-config-missing.json": "2401 (config) is missing",
    "platform/testvectors/json/test-hash-algid-invalid.json": "2402 (hash_algo_id) is 'none'",
    "platform/testvectors/json/test-hash-algid-missing.json": "2402 (hash_algo_id) is missing",
    "platform/testvectors/json/test-implementation-id-invalid-long.json": "2396 (implementation_id) must be 32 bytes long, found 34",
    "platform/testvectors/json/test-implementation-id-invalid-missing.json": "2396 (implementation_id) is missing",
    "platform/testvectors/json/test-instance-id-invalid.json": "256 (instance_id) must be 33 bytes long, found 3",
    "platform/testvectors/json/test-instance-id-missing.json": "256 (instance_id) is missing",
    "platform/testvectors/json/test-invalid-profile.json": "265 (profile) is 'http://arm.com/PSA-SSD/1.0.0'",
    "platform/testvectors/json/test-invalid-psa-claims.json": "2396 (implementation_id) is missing",
    "platform/testvectors/json/test-lifecycle-invalid.json": "2395 (lifecycle) is 0x7f35",
    "platform/testvectors/json/test-no-sw-components.json": "2399 (sw_components) is missing",
    "platform/testvectors/json/test-nonce-invalid.json": "claim 10 (challenge) must be 32 or 48 or 64 bytes long, found 50",
    "platform/testvectors/json/test-sw-components-invalid-missing.json": "2399 (sw_components) is missing",
    "platform/testvectors/json/test-vsi-invalid-empty.json": "2400 (verification_service) must not be empty",
}


@pytest.mark.parametrize("rel", JSON_SETS)
def test_json_claim_sets_are_judged_as_the_readme_says(rel: str) -> None:
    """veraison's JSON claim files, turned into claim maps: the valid one passes, every other
    one fails with a first problem naming the defect of its file name (or, for the realm
    "all-valid" file, the defect the README records)."""
    side = rel.split("/", 1)[0]
    claims = _from_json(json.loads(_read(f"veraison-ccatoken/{rel}")), REALM_JSON if side == "realm" else PLATFORM_JSON)
    problems = CHECKERS[side](claims)
    if JSON_SETS[rel] is None:
        assert problems == []
    else:
        assert problems and JSON_SETS[rel] in problems[0], problems


def test_json_sw_component_with_broken_base64_is_rejected() -> None:
    """test-sw-components-invalid-combo.json: its measurement value is not valid base64 (data
    after the padding), so the claim set cannot even be built; the JSON set above covers every
    other platform JSON file."""
    doc = json.loads(_read("veraison-ccatoken/platform/testvectors/json/test-sw-components-invalid-combo.json"))
    with pytest.raises(binascii.Error):
        _from_json(doc, PLATFORM_JSON)


@pytest.mark.parametrize("content, phrase", [
    ('{"keys":' + "[" * 30000 + "]" * 30000 + "}", "JSON nested deeper than the parser can follow"),
    ('{"kty": "EC", "crv": "P-256", "x": ' + "9" * 5000 + ', "y": 1}', "holds a JSON number of 5000 digits; expected "
                                                                          "none longer than 100"),
    ('{"kty": "EC", "crv": NaN}', "not valid JSON: NaN is no JSON value"),
    ('[{"pkey": {"kty": "EC"}, "instance-id": -Infinity}]', "not valid JSON: -Infinity is no JSON value"),
])
def test_a_key_file_json_that_python_cannot_read_is_a_failed_check_not_a_traceback(content: str, phrase: str) -> None:
    """A --platform-key JSON file nested 30,000 deep, or with a 5,000-digit number: json.loads
    raised RecursionError / ValueError ('Exceeds the limit (4300 digits)'), which escaped
    `rmm-mp attest verify` as a traceback (found by an attestation audit feeding odd key files).
    NaN and -Infinity, which Python's json reads but JSON has no token for, were taken as
    values ('JWK crv is nan'). Each is now a PlatformKeyError, so verify_token fails the
    platform signature check with the reason."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(content.encode(), "k.json")
    assert f"k.json: {phrase}" in str(info.value), str(info.value)
    check = verify_token(_read(f"{TESTDATA}/cca-token-draft-ffm-00.cbor"), content.encode(),
                         key_name="k.json").check("platform signature")
    assert check.passed is False and phrase in check.reason


def test_a_json_key_files_syntax_error_is_placed_as_the_file_has_it() -> None:
    """A JSON key file with blank lines and indentation before a syntax error on line 3: the
    error names the line and column of the file. The text was stripped before it was parsed,
    so the error was placed on line 1 (found by review)."""
    with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
        load_trust_anchors(b'\n\n  {"kty": }\n', "k")
    assert "line 3 column 11" in str(info.value), str(info.value)


@pytest.mark.parametrize("good", [False, True], ids=["refused-as-json", "read"])
def test_a_json_key_file_may_start_with_a_byte_order_mark(good: bool) -> None:
    """A JSON key file starting with the UTF-8 byte order mark (EF BB BF), as some editors on
    Windows write it: RFC 8259 8.1 lets a parser ignore it, and it is read as the same file
    without it (an EC JWK of the vectors loads; a broken one is refused as JSON). It was taken
    for DER and refused as none of the formats."""
    data = codecs.BOM_UTF8 + (_read(f"{TEST_COMMON}/testRMMCPAK.jwk") if good else b'{"kty": "EC"}')
    if good:
        assert len(load_trust_anchors(data, "k")) == 1
    else:
        with pytest.raises(PlatformKeyError, match="^platform key invalid:") as info:
            load_trust_anchors(data, "k")
        assert "DER" not in str(info.value) and "JWK" in str(info.value), str(info.value)
