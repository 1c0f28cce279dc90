"""The platform token's claim set (Arm CCA platform profile; rsi-attest.md 4.4): check, show, produce.

TF-RMM only forwards the platform token it gets from EL3; `encode_platform_claims` is for an
EL3 model that signs its own platform token (with a seeded platform key) and for tests. Rules
`check_platform_claims` applies:

* profile (265): "tag:arm.com,2023:cca_platform#1.0.0" or legacy "http://arm.com/CCA-SSD/1.0.0";
* challenge (10): 32, 48 or 64 bytes (a hash of the RAK claim);
* implementation id (2396): 32 bytes; instance id (256): 33 bytes, first byte 0x01 (RAND UEID);
* platform config (2401): a byte string;
* security lifecycle (2395): an unsigned integer inside one of the defined ranges;
* software components (2399): a non-empty array of maps (integer labels), each with a measurement value (2,
  32/48/64 bytes) and a signer id (5, a hash: 32/48/64 bytes, A7.2.3.2.6); type (1), version (4) and hash algorithm
  id (6, A7.2.3.2.7; "measurement_description" in the JSON form) are optional text;
* verification service (2400): optional, non-empty text;
* platform hash algorithm (2402): "sha-256", "sha-384" or "sha-512".

All but the verification service are mandatory. Unknown claims are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import cbor2

from rmm_mp.abi.cca_token import (LIFECYCLE_RANGES, PLATFORM_CHALLENGE, PLATFORM_CONFIG, PLATFORM_HASH_ALGO_ID,
                                  PLATFORM_IMPLEMENTATION_ID, PLATFORM_INSTANCE_ID, PLATFORM_LIFECYCLE,
                                  PLATFORM_PROFILE, PLATFORM_PROFILE_1_0, PLATFORM_PROFILE_LEGACY,
                                  PLATFORM_SW_COMPONENTS, PLATFORM_VERIFICATION_SERVICE, SW_MEASUREMENT_DESCRIPTION,
                                  SW_MEASUREMENT_TYPE, SW_MEASUREMENT_VALUE, SW_SIGNER_ID, SW_VERSION)
from rmm_mp.attest._claim_rules import bstr_problem, describe, label_problems, missing, rule_problems, tstr_problem
from rmm_mp.attest._cbor import is_array, is_map, label_text, to_json
from rmm_mp.attest.digest import HASH_ALGORITHMS

CHALLENGE_SIZES: Final = (32, 48, 64)
IMPLEMENTATION_ID_SIZE: Final = 32
INSTANCE_ID_SIZE: Final = 33
UEID_TYPE_RAND: Final = 0x01
MEASUREMENT_SIZES: Final = (32, 48, 64)

ENCODE_ORDER: Final = (PLATFORM_PROFILE, PLATFORM_CHALLENGE, PLATFORM_IMPLEMENTATION_ID, PLATFORM_INSTANCE_ID,
                       PLATFORM_CONFIG, PLATFORM_LIFECYCLE, PLATFORM_HASH_ALGO_ID, PLATFORM_VERIFICATION_SERVICE,
                       PLATFORM_SW_COMPONENTS)
"""The claim order of TF-A's FVP sample platform token."""

PLATFORM_CLAIM_NAMES: Final = {
    PLATFORM_PROFILE: "profile",
    PLATFORM_CHALLENGE: "challenge",
    PLATFORM_IMPLEMENTATION_ID: "implementation_id",
    PLATFORM_INSTANCE_ID: "instance_id",
    PLATFORM_CONFIG: "config",
    PLATFORM_LIFECYCLE: "lifecycle",
    PLATFORM_SW_COMPONENTS: "sw_components",
    PLATFORM_VERIFICATION_SERVICE: "verification_service",
    PLATFORM_HASH_ALGO_ID: "hash_algo_id",
}
"""Claim key -> the name used in the JSON form and the CLI table (in the profile's order)."""

SW_COMPONENT_NAMES: Final = {
    SW_MEASUREMENT_TYPE: "measurement_type",
    SW_MEASUREMENT_VALUE: "measurement_value",
    SW_VERSION: "version",
    SW_SIGNER_ID: "signer_id",
    SW_MEASUREMENT_DESCRIPTION: "measurement_description",
}
"""A software component's field key -> its name in the JSON form (`attest inspect/verify --json`):
kept as it was first published, PSA's name for key 6, so that readers of the JSON do not break."""

SW_COMPONENT_SHOWN: Final[dict[int, str]] = {**SW_COMPONENT_NAMES, SW_MEASUREMENT_DESCRIPTION: "hash_algo_id"}
"""A software component's field key -> its name in the tables and messages: the CCA platform
token's (RMM spec A7.2.3.2.7: key 6 is the component's hash algorithm ID, not PSA's measurement
description; docs/deviations.md)."""

SHOWN_FIELD: Final[dict[str, str]] = {SW_COMPONENT_NAMES[key]: name for key, name in SW_COMPONENT_SHOWN.items()}
"""A software component's field name in the JSON form -> its name in the tables."""

MANDATORY: Final = {k: v for k, v in PLATFORM_CLAIM_NAMES.items() if k != PLATFORM_VERIFICATION_SERVICE}


def lifecycle_state(value: int) -> str | None:
    """The name of the security-lifecycle range `value` falls in ("secured"), or None."""
    for name, (low, high) in LIFECYCLE_RANGES.items():
        if low <= value <= high:
            return name
    return None


def check_platform_claims(claims: Any) -> list[str]:
    """Every way `claims` breaks the module's rules; an empty list means valid."""
    if not is_map(claims):
        return [f"platform claims must be a CBOR map, found {describe(claims)}"]
    problems = label_problems(claims, "platform") + missing(claims, MANDATORY, "platform")
    rules = {
        PLATFORM_PROFILE: lambda v, w: tstr_problem(v, w, (PLATFORM_PROFILE_1_0, PLATFORM_PROFILE_LEGACY)),
        PLATFORM_CHALLENGE: lambda v, w: bstr_problem(v, w, CHALLENGE_SIZES),
        PLATFORM_IMPLEMENTATION_ID: lambda v, w: bstr_problem(v, w, (IMPLEMENTATION_ID_SIZE,)),
        PLATFORM_INSTANCE_ID: _instance_id_problem,
        PLATFORM_CONFIG: _config_problem,
        PLATFORM_LIFECYCLE: _lifecycle_problem,
        PLATFORM_SW_COMPONENTS: _sw_components_problem,
        PLATFORM_VERIFICATION_SERVICE: tstr_problem,
        PLATFORM_HASH_ALGO_ID: lambda v, w: tstr_problem(v, w, HASH_ALGORITHMS),
    }
    problems += rule_problems(claims, rules, "platform", PLATFORM_CLAIM_NAMES)
    return problems


def _config_problem(value: Any, what: str) -> str | None:
    return None if isinstance(value, bytes) else f"{what} must be a byte string, found {describe(value)}"


def _instance_id_problem(value: Any, what: str) -> str | None:
    problem = bstr_problem(value, what, (INSTANCE_ID_SIZE,))
    if problem is None and value[0] != UEID_TYPE_RAND:
        problem = f"{what} must start with {UEID_TYPE_RAND:#04x} (RAND UEID), found {value[0]:#04x}"
    return problem


def _lifecycle_problem(value: Any, what: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"{what} must be an unsigned integer, found {describe(value)}"
    if lifecycle_state(value) is None:
        ranges = ", ".join(f"{lo:#06x}-{hi:#06x}" for lo, hi in LIFECYCLE_RANGES.values())
        return f"{what} is {value:#06x}, outside every security-lifecycle range ({ranges})"
    return None


def _sw_components_problem(value: Any, what: str) -> str | None:
    if not is_array(value) or not value:
        return f"{what} must be a non-empty array of software components, found {describe(value)}"
    for i, component in enumerate(value):
        problem = _sw_component_problem(component, f"{what}[{i}]")
        if problem:
            return problem
    return None


def _sw_component_problem(component: Any, what: str) -> str | None:
    if not is_map(component):
        return f"{what} must be a map, found {describe(component)}"
    labels = label_problems(component, what, "label")
    if labels:
        return labels[0]
    for key in (SW_MEASUREMENT_VALUE, SW_SIGNER_ID):
        if key not in component:
            return f"{what} has no {SW_COMPONENT_SHOWN[key]} ({key}); it is mandatory"
    checks = [bstr_problem(component[SW_MEASUREMENT_VALUE], f"{what} measurement_value (2)", MEASUREMENT_SIZES),
              bstr_problem(component[SW_SIGNER_ID], f"{what} signer_id (5)", MEASUREMENT_SIZES)]
    checks += [tstr_problem(component[key], f"{what} {SW_COMPONENT_SHOWN[key]} ({key})")
               for key in (SW_MEASUREMENT_TYPE, SW_VERSION, SW_MEASUREMENT_DESCRIPTION) if key in component]
    return next((p for p in checks if p), None)


def platform_claims_json(claims: Mapping[Any, Any]) -> dict[str, Any]:
    """The claims by name (PLATFORM_CLAIM_NAMES order), bytes as hex, software components
    with named fields; claims the profile does not define follow as "unknown claim <key>"."""
    out: dict[str, Any] = {}
    for key, name in PLATFORM_CLAIM_NAMES.items():
        if key in claims:
            out[name] = to_json(claims[key])
    components = claims.get(PLATFORM_SW_COMPONENTS)
    if is_array(components):
        out["sw_components"] = [_component_json(c) for c in components]
    out.update({f"unknown claim {label_text(key)}": to_json(v)
                for key, v in claims.items() if key not in PLATFORM_CLAIM_NAMES})
    return out


def _component_json(component: Any) -> Any:
    if not is_map(component):
        return to_json(component)
    named = {SW_COMPONENT_NAMES.get(k, f"unknown field {label_text(k)}"): to_json(v) for k, v in component.items()}
    return {**{n: named[n] for n in SW_COMPONENT_NAMES.values() if n in named},
            **{n: v for n, v in named.items() if n not in SW_COMPONENT_NAMES.values()}}


def encode_platform_claims(*, challenge: bytes, implementation_id: bytes, instance_id: bytes, config: bytes,
                           lifecycle: int, sw_components: Sequence[Mapping[int, bytes | str]],
                           hash_algo_id: str = "sha-256", verification_service: str | None = None,
                           profile: str = PLATFORM_PROFILE_1_0) -> bytes:
    """A platform token payload in the claim order of TF-A's sample token (ENCODE_ORDER).

    Args:
        challenge: the hash of the RAK claim (rsi-attest.md 4.5).
        sw_components: maps keyed by SW_MEASUREMENT_VALUE, SW_SIGNER_ID and optionally
            SW_MEASUREMENT_TYPE, SW_VERSION, SW_MEASUREMENT_DESCRIPTION (cca_token.py).
        verification_service: None leaves the optional claim 2400 out.
        The others are the claims of the same name (module docstring for their rules).

    Raises:
        ValueError: the claims break `check_platform_claims`; the message lists every problem.
    """
    values = {PLATFORM_PROFILE: profile, PLATFORM_CHALLENGE: bytes(challenge),
              PLATFORM_IMPLEMENTATION_ID: bytes(implementation_id), PLATFORM_INSTANCE_ID: bytes(instance_id),
              PLATFORM_CONFIG: bytes(config), PLATFORM_LIFECYCLE: lifecycle, PLATFORM_HASH_ALGO_ID: hash_algo_id,
              PLATFORM_VERIFICATION_SERVICE: verification_service,
              PLATFORM_SW_COMPONENTS: [dict(c) for c in sw_components]}
    claims = {key: values[key] for key in ENCODE_ORDER if values[key] is not None}
    problems = check_platform_claims(claims)
    if problems:
        raise ValueError("cannot encode platform claims: " + "; ".join(problems))
    return cbor2.dumps(claims)
