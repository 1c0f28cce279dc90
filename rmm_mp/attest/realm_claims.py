"""The realm token's claim set (DEN0137 1.0-rel0 A7.2.3.1; rsi-attest.md 4.3): check, show, produce.

Rules `check_realm_claims` applies (the veraison verifiers' rules, made explicit):

* mandatory: challenge (10, 64 bytes), personalization value (44235, 64 bytes), RAK (44237),
  realm hash algorithm (44236) and RAK hash algorithm (44240), each "sha-256", "sha-384" or
  "sha-512", RIM (44238, 32/48/64 bytes), REMs (44239, an array of 4 byte strings as long as
  the RIM);
* profile (265) is optional: present it must be "tag:arm.com,2023:realm#1.0.0", whose RAK is a
  COSE_Key (EC2, P-384); absent, the RAK is a COSE_Key too (A7.2.3.1.7 ties its form to no
  profile) or, in a legacy token, a 97-byte raw point 04 || X || Y (its first byte must be
  0x04); in either form the point must be on P-384 (veraison's ValidateRealmPubKey tests a raw
  point so), so a RAK that is no public key fails here and not only the realm signature check;
* claim labels are integers (a float label such as 10.0, or a rational or decimal 10, is refused);
* claims this profile does not define are ignored (upstream decodes them successfully).

The RIM's length is not tied to claim 44236 by a rule: A7.2.3.1.6 has that algorithm calculate
every hash value in the realm token (so a "sha-512" realm's RIM is 64 bytes), but veraison's own
valid vectors (cca-token-02.cbor, testGoodCCAToken.cbor) pair "sha-256" with 64-byte
measurements and its verifiers accept them. `realm_claims_warnings` reports the mismatch
instead, without failing the check (docs/deviations.md); the RMM side always produces matching
lengths.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import cbor2

from rmm_mp.abi.cca_token import (REALM_CHALLENGE, REALM_CLAIM_ORDER, REALM_EXTENSIBLE_MEASUREMENTS,
                                  REALM_HASH_ALGO_ID, REALM_INITIAL_MEASUREMENT, REALM_PERSONALIZATION_VALUE,
                                  REALM_PROFILE, REALM_PROFILE_1_0, REALM_PUBLIC_KEY,
                                  REALM_PUBLIC_KEY_HASH_ALGO_ID)
from rmm_mp.attest._claim_rules import bstr_problem, describe, label_problems, missing, rule_problems, tstr_problem
from rmm_mp.attest._cbor import is_array, is_map, label_text, to_json
from rmm_mp.attest.digest import DIGEST_SIZES, HASH_ALGORITHMS
from rmm_mp.attest.rak import RAW_POINT_SIZE, cose_key_problems, raw_point_problem

CHALLENGE_SIZE: Final = 64
RPV_SIZE: Final = 64
MEASUREMENT_SIZES: Final = (32, 48, 64)
REM_COUNT: Final = 4

REALM_CLAIM_NAMES: Final = {
    REALM_CHALLENGE: "challenge",
    REALM_PERSONALIZATION_VALUE: "personalization_value",
    REALM_PUBLIC_KEY: "public_key",
    REALM_HASH_ALGO_ID: "hash_algo_id",
    REALM_PUBLIC_KEY_HASH_ALGO_ID: "public_key_hash_algo_id",
    REALM_PROFILE: "profile",
    REALM_INITIAL_MEASUREMENT: "initial_measurement",
    REALM_EXTENSIBLE_MEASUREMENTS: "extensible_measurements",
}
"""Claim key -> the name used in the JSON form and the CLI table."""

MANDATORY: Final = {k: v for k, v in REALM_CLAIM_NAMES.items() if k != REALM_PROFILE}


def rak_form(claims: Mapping[Any, Any]) -> str:
    """'cose_key' when the realm profile claim is present (RMM 1.0), else 'either': a COSE_Key
    (the profile claim is optional, A7.2.3.1.2) or a legacy token's raw point."""
    return "cose_key" if REALM_PROFILE in claims else "either"


def check_realm_claims(claims: Any) -> list[str]:
    """Every way `claims` breaks the module's rules; an empty list means valid."""
    if not is_map(claims):
        return [f"realm claims must be a CBOR map, found {describe(claims)}"]
    problems = label_problems(claims, "realm") + missing(claims, MANDATORY, "realm")
    rules = {
        REALM_CHALLENGE: lambda v, w: bstr_problem(v, w, (CHALLENGE_SIZE,)),
        REALM_PERSONALIZATION_VALUE: lambda v, w: bstr_problem(v, w, (RPV_SIZE,)),
        REALM_HASH_ALGO_ID: lambda v, w: tstr_problem(v, w, HASH_ALGORITHMS),
        REALM_PUBLIC_KEY_HASH_ALGO_ID: lambda v, w: tstr_problem(v, w, HASH_ALGORITHMS),
        REALM_PROFILE: lambda v, w: tstr_problem(v, w, (REALM_PROFILE_1_0,)),
        REALM_INITIAL_MEASUREMENT: lambda v, w: bstr_problem(v, w, MEASUREMENT_SIZES),
    }
    problems += rule_problems(claims, rules, "realm", REALM_CLAIM_NAMES)
    if REALM_EXTENSIBLE_MEASUREMENTS in claims:
        problems += _rem_problems(claims[REALM_EXTENSIBLE_MEASUREMENTS], claims.get(REALM_INITIAL_MEASUREMENT))
    if REALM_PUBLIC_KEY in claims:
        problems += _rak_problems(claims[REALM_PUBLIC_KEY], rak_form(claims))
    return problems


def realm_claims_warnings(claims: Any) -> list[str]:
    """What in well-formed `claims` the spec rules out but verifiers in use accept: a RIM whose
    length is not the digest length of the algorithm claim 44236 names (A7.2.3.1.6)."""
    if not is_map(claims):
        return []
    algo, rim = claims.get(REALM_HASH_ALGO_ID), claims.get(REALM_INITIAL_MEASUREMENT)
    # A claim may be an array or a map: unhashable, so test the type before the lookup.
    if not isinstance(algo, str) or algo not in DIGEST_SIZES or not isinstance(rim, bytes):
        return []
    size = DIGEST_SIZES[algo]
    if len(rim) == size or len(rim) not in MEASUREMENT_SIZES:
        return []       # matching, or a length the claims check already refuses
    return [f"realm claim {REALM_INITIAL_MEASUREMENT} (initial_measurement) is {len(rim)} bytes, but realm claim "
            f"{REALM_HASH_ALGO_ID} (hash_algo_id) names {algo!r}, whose digests are {size} bytes (RMM spec "
            f"A7.2.3.1.6: it calculates every hash value in the realm token); accepted, as veraison's verifiers "
            f"accept it"]


def _rem_problems(rems: Any, rim: Any) -> list[str]:
    what = f"realm claim {REALM_EXTENSIBLE_MEASUREMENTS} (extensible_measurements)"
    if not is_array(rems) or len(rems) != REM_COUNT:
        return [f"{what} must be an array of {REM_COUNT} byte strings, found {describe(rems)}"]
    sizes = (len(rim),) if isinstance(rim, bytes) and len(rim) in MEASUREMENT_SIZES else MEASUREMENT_SIZES
    problems = [bstr_problem(rem, f"{what}[{i}]", sizes) for i, rem in enumerate(rems)]
    return [p + " (REMs are as long as the RIM)" for p in problems if p]


def _rak_problems(rak: Any, form: str) -> list[str]:
    what = f"realm claim {REALM_PUBLIC_KEY} (public_key)"
    if not isinstance(rak, bytes):
        return [f"{what} must be a byte string, found {describe(rak)}"]
    if form == "either":
        if len(rak) == RAW_POINT_SIZE:
            # Its length alone does not make a raw point (no P-384 COSE_Key is 97 bytes long):
            # the 0x04 prefix and the curve equation are checked too.
            problem = raw_point_problem(rak)
            return [f"{what} of a token without profile claim is {RAW_POINT_SIZE} bytes, the size of a raw "
                    f"P-384 point, but {problem}"] if problem else []
        return [f"{what} of a token without profile claim must be a COSE_Key or, in a legacy token, a "
                f"{RAW_POINT_SIZE}-byte raw P-384 point: {p}" for p in cose_key_problems(rak)]
    return [f"{what} of profile {REALM_PROFILE_1_0!r} must be a COSE_Key: {p}" for p in cose_key_problems(rak)]


def realm_claims_json(claims: Mapping[Any, Any]) -> dict[str, Any]:
    """The claims by name (REALM_CLAIM_NAMES, in TF-RMM order), bytes as hex; claims the
    profile does not define follow as "unknown claim <key>"."""
    out = {name: to_json(claims[key]) for key, name in
           sorted(REALM_CLAIM_NAMES.items(), key=lambda kv: REALM_CLAIM_ORDER.index(kv[0])) if key in claims}
    out.update({f"unknown claim {label_text(key)}": to_json(v)
                for key, v in claims.items() if key not in REALM_CLAIM_NAMES})
    return out


def encode_realm_claims(*, challenge: bytes, personalization_value: bytes, public_key: bytes,
                        hash_algo_id: str, initial_measurement: bytes, extensible_measurements: Sequence[bytes],
                        public_key_hash_algo_id: str = "sha-256", profile: str | None = REALM_PROFILE_1_0) -> bytes:
    """The realm token payload: the claims map in TF-RMM rel0's key order (rsi-attest.md 4.3, 7.7).

    Args:
        challenge: the 64 bytes of RSI_ATTESTATION_TOKEN_INIT's X1..X8.
        personalization_value: RmiRealmParams.rpv (64 bytes).
        public_key: claim 44237 bytes, `encode_cose_key(rak.public_key())` for RMM 1.0.
        hash_algo_id: the realm's measurement algorithm ("sha-256" or "sha-512").
        initial_measurement: the RIM, truncated to the hash length.
        extensible_measurements: the 4 REMs, each as long as the RIM.
        public_key_hash_algo_id: how the platform challenge was derived from `public_key`
            (TF-RMM: always "sha-256").
        profile: the realm profile claim; None leaves it out (legacy tokens, raw RAK).

    Raises:
        ValueError: the claims break `check_realm_claims`; the message lists every problem.
    """
    values = {
        REALM_CHALLENGE: bytes(challenge), REALM_PERSONALIZATION_VALUE: bytes(personalization_value),
        REALM_PUBLIC_KEY: bytes(public_key), REALM_HASH_ALGO_ID: hash_algo_id,
        REALM_PUBLIC_KEY_HASH_ALGO_ID: public_key_hash_algo_id, REALM_PROFILE: profile,
        REALM_INITIAL_MEASUREMENT: bytes(initial_measurement),
        REALM_EXTENSIBLE_MEASUREMENTS: [bytes(m) for m in extensible_measurements],
    }
    claims = {key: values[key] for key in REALM_CLAIM_ORDER if not (key == REALM_PROFILE and profile is None)}
    problems = check_realm_claims(claims)
    if problems:
        raise ValueError("cannot encode realm claims: " + "; ".join(problems))
    return cbor2.dumps(claims)
