"""The token producer helpers (what the RMM uses): byte-compatibility with TF-RMM / TF-A
vectors, end-to-end verification, deterministic signing, and a round trip of random claims."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import example, given, settings, strategies as st
from pycose.keys.curves import P384
from pycose.keys.ec2 import EC2Key
from pycose.messages import Sign1Message

from rmm_mp.abi.cca_token import (COSE_ALG_ES256, COSE_ALG_ES384, LIFECYCLE_RANGES, PLATFORM_PROFILE_1_0,
                                  PLATFORM_PROFILE_LEGACY, REALM_CLAIM_ORDER, REALM_PROFILE_1_0)
from rmm_mp.attest import cose
from rmm_mp.attest import (UnsupportedCryptoError, decode_cca_token, decode_sign1, encode_cca_token, encode_cose_key,
                           encode_platform_claims, encode_realm_claims,
                           private_key_from_scalar, raw_point, sign_cose_sign1, verify_sign1, verify_token)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ccatoken"
SAMPLE = VECTORS / "tf-a-fvp-sample"
LEGACY_TOKEN = VECTORS / "veraison-ccatoken" / "realm" / "testvectors" / "tf-rmm" / "cca_token.cbor"


def test_cose_key_of_the_sample_rak_is_tf_rmm_claim_44237(sample_rak: ec.EllipticCurvePrivateKey,
                                                          sample_platform_token: bytes) -> None:
    """encode_cose_key of TF-A's sample RAK is byte for byte the 107-byte COSE_Key TF-RMM puts
    in claim 44237, its SHA-256 is the challenge of TF-A's sample platform token, and
    raw_point gives the legacy 97-byte form."""
    cose_key = encode_cose_key(sample_rak.public_key())
    assert cose_key.hex() == (SAMPLE / "fvp_sample_rak_p384_public_cose_key.hex").read_text().strip()
    assert len(cose_key) == 107
    platform_claims = cbor2.loads(decode_sign1(sample_platform_token, "platform token").payload)
    assert platform_claims[10] == hashlib.sha256(cose_key).digest()
    assert raw_point(sample_rak.public_key()).hex() == (SAMPLE / "fvp_sample_rak_p384_public_uncompressed.hex").read_text().strip()


def test_rmm_style_token_verifies_end_to_end(sample_rak: ec.EllipticCurvePrivateKey, sample_platform_token: bytes,
                                             cpak_pub: bytes, realm_claims: Callable[..., bytes]) -> None:
    """A token made like TF-RMM makes it (sample RAK, sample platform token) passes every check
    with cca_platform.pub, has TF-RMM's layout (tag 399 map 44234 then 44241, protected header
    a1 01 38 22, empty unprotected map, claims in rel0 order) and the size the spec digest gives."""
    realm_token = sign_cose_sign1(realm_claims(), sample_rak)
    token = encode_cca_token(sample_platform_token, realm_token)
    result = verify_token(token, cpak_pub, expected_challenge=bytes(range(64)), expected_rim=b"\x11" * 32)
    assert result.ok, result.checks
    assert token.startswith(bytes.fromhex("d9018fa219acca5905ee") + sample_platform_token[:4])
    assert token[10 + len(sample_platform_token):][:3] == bytes.fromhex("19acd1")
    assert realm_token.startswith(bytes.fromhex("d28444a1013822a0"))
    assert list(cbor2.loads(decode_sign1(realm_token, "realm").payload)) == list(REALM_CLAIM_ORDER)
    assert len(token) == 2124
    assert decode_cca_token(token).realm_token == realm_token


def test_legacy_token_binds_to_the_raw_point(sample_rak: ec.EllipticCurvePrivateKey, cpak_pub: bytes,
                                             realm_claims: Callable[..., bytes]) -> None:
    """Legacy form (no profile, raw 97-byte RAK) with the platform token of veraison's
    cca_token.cbor, whose challenge is SHA-256 of the sample RAK's raw point: every check passes."""
    platform_token = decode_cca_token(LEGACY_TOKEN.read_bytes()).platform_token
    payload = realm_claims(public_key=raw_point(sample_rak.public_key()), profile=None)
    result = verify_token(encode_cca_token(platform_token, sign_cose_sign1(payload, sample_rak)), cpak_pub)
    assert result.ok, result.checks
    assert "profile" not in (result.realm_claims or {})


def test_platform_claims_encoder_reproduces_tf_a_sample_payload(sample_platform_token: bytes) -> None:
    """encode_platform_claims with the claim values of TF-A's sample platform token gives its
    payload byte for byte (same claim order, same CBOR encodings)."""
    payload = decode_sign1(sample_platform_token, "platform token").payload
    c = cbor2.loads(payload)
    assert encode_platform_claims(challenge=c[10], implementation_id=c[2396], instance_id=c[256], config=c[2401],
                                  lifecycle=c[2395], sw_components=c[2399], hash_algo_id=c[2402],
                                  verification_service=c[2400], profile=c[265]) == payload


def test_seeded_platform_key_signs_a_platform_token_that_binds_any_rak(realm_claims: Callable[..., bytes]) -> None:
    """An EL3 model with its own platform key: a platform token made with encode_platform_claims
    (challenge = SHA-512 of a fresh RAK's raw point, legacy profile) and an ES384 signature
    verifies with that key's PEM, together with a legacy realm token naming sha-512."""
    rak, cpak = (private_key_from_scalar(bytes([n]) * 48) for n in (3, 7))
    rak_claim = raw_point(rak.public_key())
    platform = sign_cose_sign1(encode_platform_claims(
        challenge=hashlib.sha512(rak_claim).digest(), implementation_id=b"\x7f" * 32, instance_id=b"\x01" + b"\x22" * 32,
        config=b"", lifecycle=0x3000, sw_components=[{1: "RMM", 2: b"\x33" * 32, 5: b"\x44" * 32}],
        profile=PLATFORM_PROFILE_LEGACY), cpak)
    realm = sign_cose_sign1(realm_claims(public_key=rak_claim, profile=None, public_key_hash_algo_id="sha-512"), rak)
    pem = cpak.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    result = verify_token(encode_cca_token(platform, realm), pem)
    assert result.ok, result.checks
    with pytest.raises(ValueError, match=r"2395 \(lifecycle\) is 0x7000, outside every security-lifecycle range"):
        encode_platform_claims(challenge=b"\x00" * 32, implementation_id=b"\x7f" * 32, instance_id=b"\x01" * 33,
                               config=b"", lifecycle=0x7000, sw_components=[{2: b"\x33" * 32, 5: b"\x44" * 32}])


def test_deterministic_signing_repeats_and_random_signing_does_not(sample_rak: ec.EllipticCurvePrivateKey,
                                                                   realm_claims: Callable[..., bytes]) -> None:
    """sign_cose_sign1 with deterministic=True (RFC 6979) gives identical bytes twice;
    deterministic=False gives different signatures that both verify."""
    payload = realm_claims()
    assert sign_cose_sign1(payload, sample_rak) == sign_cose_sign1(payload, sample_rak, deterministic=True)
    first, second = (sign_cose_sign1(payload, sample_rak, deterministic=False) for _ in range(2))
    assert first != second
    for token in (first, second):
        verify_sign1(decode_sign1(token, "realm"), sample_rak.public_key())


def test_pycose_agrees_in_both_directions(sample_rak: ec.EllipticCurvePrivateKey,
                                          realm_claims: Callable[..., bytes]) -> None:
    """An independent COSE implementation (pycose) verifies what sign_cose_sign1 signs, and
    verify_sign1 accepts what pycose signs with the same key."""
    numbers = sample_rak.public_key().public_numbers()
    public = EC2Key(crv=P384, x=numbers.x.to_bytes(48, "big"), y=numbers.y.to_bytes(48, "big"))
    ours = Sign1Message.decode(sign_cose_sign1(realm_claims(), sample_rak))
    ours.key = public
    assert ours.verify_signature()
    d = sample_rak.private_numbers().private_value.to_bytes(48, "big")
    theirs = Sign1Message(phdr={1: COSE_ALG_ES384}, payload=realm_claims(), key=EC2Key(crv=P384, d=d))
    verify_sign1(decode_sign1(theirs.encode(), "pycose token"), sample_rak.public_key())


def test_signing_refuses_a_key_of_the_wrong_curve_and_unknown_algorithms(sample_rak: ec.EllipticCurvePrivateKey) -> None:
    """ES256 with a P-384 key, or an alg that is not ES256/384/512, is a ValueError naming both."""
    with pytest.raises(ValueError, match="ES256 needs a secp256r1 key, got one on secp384r1"):
        sign_cose_sign1(b"\xa0", sample_rak, alg=COSE_ALG_ES256)
    with pytest.raises(ValueError, match="alg -37 is not one of"):
        sign_cose_sign1(b"\xa0", sample_rak, alg=-37)


def test_producer_helpers_reject_bad_inputs(sample_rak: ec.EllipticCurvePrivateKey,
                                            realm_claims: Callable[..., bytes]) -> None:
    """encode_cose_key wants P-384; private_key_from_scalar 48 bytes; encode_realm_claims
    refuses claims that break the realm rules, naming the claim and the expected size."""
    with pytest.raises(ValueError, match="P-384 key, got one on secp256r1"):
        encode_cose_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(ValueError, match="must be 48 bytes"):
        private_key_from_scalar(b"\x01" * 47)
    with pytest.raises(ValueError, match=r"44235 \(personalization_value\) must be 64 bytes long, found 32"):
        realm_claims(personalization_value=b"\x00" * 32)
    with pytest.raises(ValueError, match=r"extensible_measurements\)\[2\] must be 32 bytes long, found 64"):
        realm_claims(extensible_measurements=[b"\x00" * 32, b"\x00" * 32, b"\x00" * 64, b"\x00" * 32])
    with pytest.raises(ValueError, match="without profile claim must be a COSE_Key or, in a legacy token, a 97-byte raw"):
        realm_claims(profile=None, public_key=b"\x04" * 50)
    with pytest.raises(ValueError, match="hash_algo_id\\) is 'sha-1'"):
        realm_claims(hash_algo_id="sha-1")


P384_ORDER = 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973
"""n of P-384 (SEC 2 2.5.1), written out here rather than taken from rak.py."""


@pytest.mark.parametrize("scalar", [bytes(48), b"\xff" * 48, P384_ORDER.to_bytes(48, "big")], ids=["zero", "ones", "n"])
def test_a_rak_scalar_out_of_range_names_the_value_and_the_range(scalar: bytes) -> None:
    """private_key_from_scalar with 0, n (P-384's group order) or 2^384 - 1: the error gives the
    scalar and the range 1 <= scalar < n. It used to be cryptography's 'private_value must be a
    positive integer' or 'Invalid EC key (key out of range, infinity, etc.)'."""
    with pytest.raises(ValueError, match=f"RAK private scalar {scalar.hex()} is not a P-384 private key; "
                                         r"expected 1 <= scalar < the group order n = 0xffff"):
        private_key_from_scalar(scalar)
    assert private_key_from_scalar((P384_ORDER - 1).to_bytes(48, "big")).private_numbers().private_value == P384_ORDER - 1


def test_missing_deterministic_ecdsa_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                     sample_rak: ec.EllipticCurvePrivateKey) -> None:
    """With a cryptography whose ECDSA has no deterministic_signing (simulated: the constructor
    rejects the keyword as cryptography < 43 does), deterministic signing raises
    UnsupportedCryptoError that names the installed version and the way out; random signing works."""
    real = ec.ECDSA

    def old_ecdsa(algorithm: object, **kwargs: object) -> ec.ECDSA:
        if kwargs:
            raise TypeError("ECDSA.__init__() got an unexpected keyword argument 'deterministic_signing'")
        return real(algorithm)  # type: ignore[arg-type]

    monkeypatch.setattr(cose.ec, "ECDSA", old_ecdsa)
    with pytest.raises(UnsupportedCryptoError, match=r"deterministic ECDSA \(RFC 6979\) is not available in cryptography"):
        sign_cose_sign1(b"\xa0", sample_rak)
    verify_sign1(decode_sign1(sign_cose_sign1(b"\xa0", sample_rak, deterministic=False), "t"), sample_rak.public_key())


MEASUREMENT = st.sampled_from([32, 48, 64]).flatmap(
    lambda n: st.tuples(st.binary(min_size=n, max_size=n), st.lists(st.binary(min_size=n, max_size=n), min_size=4, max_size=4)))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(challenge=st.binary(min_size=64, max_size=64), rpv=st.binary(min_size=64, max_size=64),
       measurements=MEASUREMENT, hash_algo=st.sampled_from(["sha-256", "sha-384", "sha-512"]),
       rak_hash=st.sampled_from(["sha-256", "sha-384", "sha-512"]), legacy=st.booleans())
def test_random_realm_claims_round_trip(challenge: bytes, rpv: bytes, measurements: tuple[bytes, list[bytes]],
                                        hash_algo: str, rak_hash: str, legacy: bool) -> None:
    """Random valid realm claims, encoded, signed with the sample RAK and wrapped with the sample
    platform token, decode to the same values; the realm checks pass, and the binding passes
    exactly when the claims name the form and hash the platform token was made for (COSE_Key,
    SHA-256)."""
    rak = private_key_from_scalar(bytes.fromhex((SAMPLE / "fvp_sample_rak_p384_private_scalar.hex").read_text()))
    rim, rems = measurements
    public_key = raw_point(rak.public_key()) if legacy else encode_cose_key(rak.public_key())
    payload = encode_realm_claims(challenge=challenge, personalization_value=rpv, public_key=public_key,
                                  hash_algo_id=hash_algo, initial_measurement=rim, extensible_measurements=rems,
                                  public_key_hash_algo_id=rak_hash, profile=None if legacy else REALM_PROFILE_1_0)
    platform = (SAMPLE / "fvp_sample_platform_token.cbor").read_bytes()
    result = verify_token(encode_cca_token(platform, sign_cose_sign1(payload, rak)))
    assert result.realm_claims == {
        "challenge": challenge.hex(), "personalization_value": rpv.hex(), "public_key": public_key.hex(),
        "hash_algo_id": hash_algo, "public_key_hash_algo_id": rak_hash,
        **({} if legacy else {"profile": REALM_PROFILE_1_0}),
        "initial_measurement": rim.hex(), "extensible_measurements": [m.hex() for m in rems]}
    assert result.check("realm claims").passed and result.check("realm signature").passed
    assert result.check("binding").passed is (not legacy and rak_hash == "sha-256")


HASH = st.sampled_from([32, 48, 64]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
SW_COMPONENT = st.fixed_dictionaries(
    {2: HASH, 5: HASH},
    optional={1: st.text(min_size=1, max_size=8), 4: st.text(min_size=1, max_size=8), 6: st.text(min_size=1, max_size=8)})
LIFECYCLE = st.sampled_from(sorted(LIFECYCLE_RANGES.values())).flatmap(
    lambda r: st.integers(r[0], r[1]))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(implementation_id=st.binary(min_size=32, max_size=32), instance=st.binary(min_size=32, max_size=32),
       config=st.binary(max_size=16), lifecycle=LIFECYCLE, components=st.lists(SW_COMPONENT, min_size=1, max_size=3),
       hash_algo=st.sampled_from(["sha-256", "sha-384", "sha-512"]),
       service=st.none() | st.text(min_size=1, max_size=12), legacy=st.booleans())
def test_random_platform_claims_round_trip(implementation_id: bytes, instance: bytes, config: bytes, lifecycle: int,
                                           components: list[dict[int, bytes | str]], hash_algo: str,
                                           service: str | None, legacy: bool) -> None:
    """Random valid platform claims, encoded, signed with a seeded platform key and bound to a
    realm token (challenge = SHA-256 of its RAK claim), come out of verify_token as the same
    values (software components with named fields) and the whole token verifies."""
    rak, cpak = (private_key_from_scalar(bytes([n]) * 48) for n in (3, 7))
    rak_claim = encode_cose_key(rak.public_key())
    profile = PLATFORM_PROFILE_LEGACY if legacy else PLATFORM_PROFILE_1_0
    challenge = hashlib.sha256(rak_claim).digest()
    payload = encode_platform_claims(
        challenge=challenge, implementation_id=implementation_id, instance_id=b"\x01" + instance, config=config,
        lifecycle=lifecycle, sw_components=components, hash_algo_id=hash_algo, verification_service=service,
        profile=profile)
    realm = encode_realm_claims(challenge=bytes(64), personalization_value=bytes(64), public_key=rak_claim,
                                hash_algo_id="sha-256", initial_measurement=bytes(32),
                                extensible_measurements=[bytes(32)] * 4)
    pem = cpak.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    result = verify_token(encode_cca_token(sign_cose_sign1(payload, cpak), sign_cose_sign1(realm, rak)), pem)
    assert result.ok, result.checks
    names = {1: "measurement_type", 2: "measurement_value", 4: "version", 5: "signer_id", 6: "measurement_description"}
    assert result.platform_claims == {
        "profile": profile, "challenge": challenge.hex(), "implementation_id": implementation_id.hex(),
        "instance_id": (b"\x01" + instance).hex(), "config": config.hex(), "lifecycle": lifecycle,
        "sw_components": [{names[k]: (v.hex() if isinstance(v, bytes) else v) for k, v in c.items()} for c in components],
        **({} if service is None else {"verification_service": service}), "hash_algo_id": hash_algo}


SHORT_X, SHORT_Y = 197, 176
"""Private scalars whose public x (resp. y) is below 2^376: a leading zero byte that a
minimal-length encoding would drop (the drawn scalars almost never give one)."""


@settings(max_examples=20, deadline=None, derandomize=True)
@given(scalar=st.integers(1, P384_ORDER - 1), payload=st.binary(max_size=64),
       alg=st.sampled_from(sorted(cose.ALGORITHMS)))
@example(scalar=1, payload=b"", alg=COSE_ALG_ES384)
@example(scalar=SHORT_X, payload=b"\xa0", alg=COSE_ALG_ES256)
@example(scalar=SHORT_Y, payload=b"\x00" * 64, alg=COSE_ALG_ES384)
@example(scalar=P384_ORDER - 1, payload=b"\xff", alg=-36)
def test_random_keys_encode_to_fixed_size_claims_and_sign1_round_trips(scalar: int, payload: bytes, alg: int) -> None:
    """For any P-384 private scalar (the ends of its range and the two with a short coordinate
    included): encode_cose_key gives the 107 bytes {1: 2, -1: 2, -2: x, -3: y} with 48-byte
    coordinates and raw_point the 97 bytes 04 || X || Y, both read back by rak_public_key as
    the same key and both accepted by check_realm_claims. A COSE_Sign1 over any payload, with a
    key of any supported algorithm's curve, decodes to that payload and algorithm and verifies;
    with one signature byte flipped it does not."""
    from rmm_mp.attest import check_realm_claims
    from rmm_mp.attest.errors import SignatureError
    from rmm_mp.attest.rak import rak_public_key
    public = private_key_from_scalar(scalar.to_bytes(48, "big")).public_key()
    numbers = public.public_numbers()
    claim, point = encode_cose_key(public), raw_point(public)
    assert len(claim) == 107 and cbor2.loads(claim) == {1: 2, -1: 2, -2: numbers.x.to_bytes(48, "big"),
                                                        -3: numbers.y.to_bytes(48, "big")}
    assert len(point) == 97 and point == b"\x04" + numbers.x.to_bytes(48, "big") + numbers.y.to_bytes(48, "big")
    for form, profile in ((claim, REALM_PROFILE_1_0), (claim, None), (point, None)):
        assert rak_public_key(form).public_numbers() == numbers
        claims = {10: bytes(64), 44235: bytes(64), 44237: form, 44236: "sha-256", 44240: "sha-256",
                  44238: bytes(32), 44239: [bytes(32)] * 4, **({265: profile} if profile else {})}
        assert check_realm_claims(claims) == []
    # Below 2^240 + 1 is a valid scalar of P-256, P-384 and P-521 alike.
    key = ec.derive_private_key(scalar % (1 << 240) + 1, cose.ALGORITHMS[alg].curve)
    message = decode_sign1(sign_cose_sign1(payload, key, alg), "token")
    assert (message.payload, message.alg, message.unprotected) == (payload, alg, {})
    verify_sign1(message, key.public_key())
    tampered = cose.Sign1(message.protected, message.alg, message.unprotected, message.payload,
                          bytes([message.signature[0] ^ 1]) + message.signature[1:])
    with pytest.raises(SignatureError, match="does not verify"):
        verify_sign1(tampered, key.public_key())
