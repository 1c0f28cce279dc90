"""Verify a CCA token end to end, or decode it without verifying.

`verify_token` runs these checks, each independently of the others' outcome so that a
report names every defect (a tampered RAK claim fails both the realm signature and the
binding):

1. platform claims: the platform token is a COSE_Sign1 whose payload follows
   platform_claims.py's rules;
2. platform signature: verified with a trust anchor whose identities match the token. With
   no platform key the check is *not performed* (passed None): the realm side may be
   perfect and the platform token still forged, so the result is not ok;
3. realm claims: realm_claims.py's rules (and its warnings: a RIM whose length does not fit
   the realm hash algorithm passes, with a warning on the check; a check that fails for
   another reason carries no warning);
4. realm signature: verified with the RAK of realm claim 44237;
5. binding: platform challenge (claim 10) == hash of the exact bytes of realm claim 44237,
   with the algorithm realm claim 44240 names (DEN0137 A7.2.3.1; rsi-attest.md 4.5);
6. challenge / rim, when expected values are given: realm claim 10 / 44238 equal them.

Input that is not a CCA token at all raises TokenFormatError; everything found inside a
well-formed envelope is a Check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from rmm_mp.abi.cca_token import (PLATFORM_CHALLENGE, PLATFORM_IMPLEMENTATION_ID, PLATFORM_INSTANCE_ID,
                                  REALM_CHALLENGE, REALM_INITIAL_MEASUREMENT, REALM_PUBLIC_KEY,
                                  REALM_PUBLIC_KEY_HASH_ALGO_ID)
from rmm_mp.attest._claim_rules import describe, quoted
from rmm_mp.attest._cbor import is_map, loads_exact
from rmm_mp.attest.cose import Sign1, decode_sign1, verify_sign1
from rmm_mp.attest.digest import HASH_ALGORITHMS, digest
from rmm_mp.attest.envelope import decode_cca_token
from rmm_mp.attest.errors import PlatformKeyError, SignatureError, TokenFormatError
from rmm_mp.attest.keys import TrustAnchor, TrustAnchorFile, read_trust_anchors
from rmm_mp.attest.platform_claims import check_platform_claims, platform_claims_json
from rmm_mp.attest.rak import rak_public_key
from rmm_mp.attest.realm_claims import check_realm_claims, realm_claims_json, realm_claims_warnings
from rmm_mp.printable import abbreviated
from rmm_mp.words import count

PLATFORM_CLAIMS: Final = "platform claims"
PLATFORM_SIGNATURE: Final = "platform signature"
REALM_CLAIMS: Final = "realm claims"
REALM_SIGNATURE: Final = "realm signature"
BINDING: Final = "binding"
CHALLENGE: Final = "challenge"
RIM: Final = "rim"
CHECK_NAMES: Final = (PLATFORM_CLAIMS, PLATFORM_SIGNATURE, REALM_CLAIMS, REALM_SIGNATURE, BINDING, CHALLENGE, RIM)


@dataclass(frozen=True)
class Check:
    """One verification step: passed True / False, or None when it could not be performed
    (the reason says why, starting "not checked:"). `warnings` name what the spec rules out
    but the check accepts (realm_claims_warnings); they never change `passed`, and only a
    passing check has any (a failed one accepted nothing)."""

    name: str
    passed: bool | None
    reason: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerificationResult:
    """What `verify_token` found: the checks in order and the decoded claims (JSON form)."""

    tag: int
    checks: tuple[Check, ...]
    platform_claims: dict[str, Any] | None
    realm_claims: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        """True only if every check was performed and passed."""
        return all(c.passed is True for c in self.checks)

    @property
    def verdict(self) -> str:
        """'ok', 'failed' (a check failed) or 'incomplete' (none failed, some not performed)."""
        if any(c.passed is False for c in self.checks):
            return "failed"
        return "ok" if self.ok else "incomplete"

    def check(self, name: str) -> Check:
        """The check called `name` (one of CHECK_NAMES)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r} in this result; it has {[c.name for c in self.checks]}")

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "verdict": self.verdict, "tag": self.tag,
                "checks": [{"name": c.name, "passed": c.passed, "reason": c.reason, "warnings": list(c.warnings)}
                           for c in self.checks],
                "platform_claims": self.platform_claims, "realm_claims": self.realm_claims}


@dataclass(frozen=True)
class _Part:
    """A decoded inner token; `error` says why `sign1` or `claims` is missing."""

    name: str
    sign1: Sign1 | None
    claims: Any
    error: str

    def claim(self, key: int) -> Any:
        return self.claims.get(key) if is_map(self.claims) else None

    def shown(self, key: int) -> str:
        """What claim `key` is, for a reason: 'missing', 'a 31-byte string', ..., or that the
        token had no readable claims (then the claim is not absent, just unknown)."""
        if not is_map(self.claims):
            problem = "could not be decoded" if self.error else "payload is not a claims map"
            return f"unknown: the {self.name} {problem} (see {self.name.split()[0]} claims)"
        return describe(self.claims[key]) if key in self.claims else "missing"


def verify_token(token: bytes, platform_key: bytes | ec.EllipticCurvePublicKey | None = None, *,
                 expected_challenge: bytes | None = None, expected_rim: bytes | None = None,
                 key_name: str = "platform key") -> VerificationResult:
    """Verify a CCA token (module docstring: the checks and their order).

    Args:
        token: the CCA token bytes (tag 399 or 907).
        platform_key: the contents of a platform key file in any format keys.py reads, or a
            public key; None leaves the platform signature unchecked.
        expected_challenge: the challenge the realm was given (64 bytes); adds a check.
        expected_rim: the RIM the realm must have; adds a check.
        key_name: how to call the key in reasons (the CLI passes the file name).

    Raises:
        TokenFormatError: `token` is not a CCA token envelope.
    """
    envelope = decode_cca_token(token)
    platform = _decode_part(envelope.platform_token, "platform token")
    realm = _decode_part(envelope.realm_token, "realm token")
    checks = [_claims_check(PLATFORM_CLAIMS, platform, check_platform_claims),
              _platform_signature_check(platform, platform_key, key_name),
              _claims_check(REALM_CLAIMS, realm, check_realm_claims, realm_claims_warnings),
              _realm_signature_check(realm),
              _binding_check(platform, realm)]
    if expected_challenge is not None:
        checks.append(_expected_check(CHALLENGE, realm, REALM_CHALLENGE, expected_challenge))
    if expected_rim is not None:
        checks.append(_expected_check(RIM, realm, REALM_INITIAL_MEASUREMENT, expected_rim))
    return VerificationResult(envelope.tag, tuple(checks),
                              platform_claims_json(platform.claims) if is_map(platform.claims) else None,
                              realm_claims_json(realm.claims) if is_map(realm.claims) else None)


def _decode_part(data: bytes, name: str) -> _Part:
    try:
        sign1 = decode_sign1(data, name)
    except TokenFormatError as exc:
        return _Part(name, None, None, str(exc))
    try:
        return _Part(name, sign1, loads_exact(sign1.payload, f"{name} payload"), "")
    except TokenFormatError as exc:
        return _Part(name, sign1, None, str(exc))


def _claims_check(name: str, part: _Part, rules: Callable[[Any], list[str]],
                  warnings: Callable[[Any], list[str]] = lambda claims: []) -> Check:
    if part.error:
        return Check(name, False, part.error)
    problems = rules(part.claims)
    if problems:
        # A warning says what the check accepts ("accepted, as veraison's verifiers accept
        # it"): a check that failed accepted nothing, so it carries none.
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"all mandatory claims present and well formed ({len(part.claims)} claims)",
                 tuple(warnings(part.claims)))


def _platform_signature_check(part: _Part, platform_key: bytes | ec.EllipticCurvePublicKey | None,
                              key_name: str) -> Check:
    if part.sign1 is None:
        return Check(PLATFORM_SIGNATURE, None, f"not checked: {part.error}")
    if platform_key is None:
        return Check(PLATFORM_SIGNATURE, None, "not checked: no platform key (trust anchor) was given, so "
                     "nothing shows that a genuine platform issued the platform token")
    try:
        found = (read_trust_anchors(platform_key, key_name) if isinstance(platform_key, (bytes, bytearray))
                 else TrustAnchorFile((TrustAnchor(platform_key, key_name),)))
    except PlatformKeyError as exc:
        return Check(PLATFORM_SIGNATURE, False, str(exc))
    anchors = found.anchors
    # What the key file's reader left out (JWK Set members that are no EC key on a supported
    # curve) goes with every
    # outcome: a failure may be explained by a key that was skipped.
    noted = "".join(f"; {note}" for note in found.notes)
    candidates = [a for a in anchors if _anchor_matches(a, part)]
    if not candidates:
        return Check(PLATFORM_SIGNATURE, False, f"no trust anchor in {key_name} is for this platform "
                     f"(instance id {_hex(part.claim(PLATFORM_INSTANCE_ID))}, implementation id "
                     f"{_hex(part.claim(PLATFORM_IMPLEMENTATION_ID))}); its anchors are for {_anchor_ids(anchors)}"
                     + noted)
    errors = []
    for anchor in candidates:
        try:
            verify_sign1(part.sign1, anchor.key)
        except SignatureError as exc:
            errors.append(f"{exc} ({anchor.source})")
        else:
            return Check(PLATFORM_SIGNATURE, True,
                         f"{part.sign1.algorithm.name} signature verified with {anchor.source}" + noted)
    return Check(PLATFORM_SIGNATURE, False, "; ".join(errors) + noted)


def _anchor_ids(anchors: tuple[TrustAnchor, ...], shown: int = 3) -> str:
    """The platforms `anchors` are for, the first `shown` of them, for a reason: a trust store
    may list many."""
    ids = [f"instance id {_hex(a.instance_id) if a.instance_id is not None else 'any'}, implementation id "
           f"{_hex(a.implementation_id) if a.implementation_id is not None else 'any'}" for a in anchors[:shown]]
    more = f" and {count(len(anchors) - shown, 'other')}" if len(anchors) > shown else ""
    return "; ".join(f"({i})" for i in ids) + more


def _anchor_matches(anchor: TrustAnchor, part: _Part) -> bool:
    return all(wanted is None or wanted == part.claim(key) for wanted, key in
               ((anchor.instance_id, PLATFORM_INSTANCE_ID), (anchor.implementation_id, PLATFORM_IMPLEMENTATION_ID)))


def _realm_signature_check(part: _Part) -> Check:
    if part.sign1 is None:
        return Check(REALM_SIGNATURE, None, f"not checked: {part.error}")
    rak = part.claim(REALM_PUBLIC_KEY)
    if not isinstance(rak, bytes):
        return Check(REALM_SIGNATURE, None, f"not checked: realm claim {REALM_PUBLIC_KEY} (RAK) is "
                     f"{part.shown(REALM_PUBLIC_KEY)}, so there is no key to verify with")
    try:
        key = rak_public_key(rak)
    except ValueError as exc:
        return Check(REALM_SIGNATURE, False, str(exc))
    try:
        verify_sign1(part.sign1, key)
    except SignatureError as exc:
        return Check(REALM_SIGNATURE, False, f"{exc} (the RAK of realm claim {REALM_PUBLIC_KEY})")
    return Check(REALM_SIGNATURE, True, f"{part.sign1.algorithm.name} signature verified with the RAK of "
                 f"realm claim {REALM_PUBLIC_KEY} ({len(rak)} bytes)")


def _binding_check(platform: _Part, realm: _Part) -> Check:
    challenge, rak = platform.claim(PLATFORM_CHALLENGE), realm.claim(REALM_PUBLIC_KEY)
    algo = realm.claim(REALM_PUBLIC_KEY_HASH_ALGO_ID)
    for value, part, key, what in ((challenge, platform, PLATFORM_CHALLENGE, "challenge"),
                                   (rak, realm, REALM_PUBLIC_KEY, "RAK")):
        if not isinstance(value, bytes):
            return Check(BINDING, None, f"not checked: {part.name.split()[0]} claim {key} ({what}) is "
                         f"{part.shown(key)}")
    # A decoded claim may be an array or a map: unhashable, so test the type before the lookup.
    if not isinstance(algo, str) or algo not in HASH_ALGORITHMS:
        named = (f"names hash {quoted(algo)}" if isinstance(algo, str)
                 else f"is {realm.shown(REALM_PUBLIC_KEY_HASH_ALGO_ID)}")
        return Check(BINDING, None, f"not checked: realm claim {REALM_PUBLIC_KEY_HASH_ALGO_ID} {named}, "
                     f"not one of {', '.join(HASH_ALGORITHMS)}")
    expected = digest(algo, rak)
    what = f"{algo}(realm claim {REALM_PUBLIC_KEY}, {len(rak)} bytes)"
    if challenge == expected:
        return Check(BINDING, True, f"platform challenge == {what} = {expected.hex()}")
    return Check(BINDING, False, f"platform challenge {_hex(challenge)} != {what} = {expected.hex()}: the "
                 "platform token was not issued for this realm token's RAK")


def _expected_check(name: str, realm: _Part, key: int, expected: bytes) -> Check:
    actual = realm.claim(key)
    what = f"realm claim {key} ({'challenge' if key == REALM_CHALLENGE else 'initial_measurement'})"
    if actual == expected:
        return Check(name, True, f"{what} equals the expected {_hex(expected)}")
    shown = f"{_hex(actual)} ({count(len(actual), 'byte')})" if isinstance(actual, bytes) else realm.shown(key)
    return Check(name, False, f"{what} is {shown}; expected {_hex(expected)} ({count(len(expected), 'byte')})")


def _hex(value: Any) -> str:
    """A claim's bytes in hex for a reason, abbreviated past printable.SHOWN_MAX digits as a long
    text claim is (a 5,000-byte challenge made a 10,000-digit reason); `describe` of another value."""
    return abbreviated(value.hex()) if isinstance(value, bytes) else describe(value)


def inspect_token(token: bytes) -> dict[str, Any]:
    """Decode a CCA token without verifying anything: for each inner token its algorithm,
    protected header, signature and claims (JSON form, bytes as hex).

    Raises:
        TokenFormatError: not a CCA token, an inner token that is not a COSE_Sign1, or a
            payload that is not a claims map.
    """
    envelope = decode_cca_token(token)
    return {"tag": envelope.tag,
            "platform": _inspect_part(envelope.platform_token, "platform token", platform_claims_json),
            "realm": _inspect_part(envelope.realm_token, "realm token", realm_claims_json)}


def _inspect_part(data: bytes, name: str, to_json: Callable[[Mapping[Any, Any]], dict[str, Any]]) -> dict[str, Any]:
    sign1 = decode_sign1(data, name)
    claims = loads_exact(sign1.payload, f"{name} payload")
    if not is_map(claims):
        raise TokenFormatError(f"{name} payload must be a claims map, found {describe(claims)}")
    return {"alg": sign1.algorithm.name, "protected": sign1.protected.hex(), "signature": sign1.signature.hex(),
            "claims": to_json(claims)}
