"""Small checks shared by the realm and platform claim sets: presence, type and length.

Each returns a problem sentence that names the claim, what it holds and what the profile
requires, or None when the value is fine. `describe` says what a decoded value is without
printing all of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable

import cbor2

from rmm_mp.attest._cbor import is_array, is_map


def describe(value: Any) -> str:
    """'a 31-byte string', 'text "sha-1"', 'an array of 2', ... for problem messages."""
    if isinstance(value, bytes):
        return f"a {len(value)}-byte string"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, cbor2.CBORSimpleValue):
        return f"the simple value {value.value}"
    if value is cbor2.undefined:
        return "undefined"
    if isinstance(value, int):
        return f"the integer {value}"
    if is_array(value):
        return f"an array of {len(value)}"
    if is_map(value):
        return f"a map of {len(value)} entries"
    return f"a {type(value).__name__}"


def label_problems(claims: Mapping[Any, Any], what: str, noun: str = "claim label") -> list[str]:
    """Claim labels are CBOR integers (A7.2.3), and so are the labels of a software component
    and of a COSE_Key: a float such as 10.0 equals 10 in Python (and True equals 1), so without
    this check it would pass for claim 10."""
    return [f"{what} {noun} {key!r} must be an integer, found {describe(key)}"
            for key in claims if isinstance(key, (float, bool))]


def missing(claims: Mapping[Any, Any], mandatory: Mapping[int, str], what: str) -> list[str]:
    """One problem per mandatory claim key absent from `claims`."""
    return [f"{what} claim {key} ({name}) is missing; it is mandatory"
            for key, name in mandatory.items() if key not in claims]


def bstr_problem(value: Any, what: str, sizes: Iterable[int] | None = None) -> str | None:
    """`value` must be a byte string, of one of `sizes` bytes when given (non-empty otherwise)."""
    allowed = tuple(sizes) if sizes is not None else None
    if not isinstance(value, bytes):
        return f"{what} must be a byte string, found {describe(value)}"
    if allowed is not None and len(value) not in allowed:
        return f"{what} must be {' or '.join(map(str, allowed))} bytes long, found {len(value)}"
    if allowed is None and not value:
        return f"{what} must not be empty"
    return None


def tstr_problem(value: Any, what: str, allowed: Iterable[str] | None = None) -> str | None:
    """`value` must be non-empty text, one of `allowed` when given."""
    choices = tuple(allowed) if allowed is not None else None
    if not isinstance(value, str):
        return f"{what} must be a text string, found {describe(value)}"
    if choices is not None and value not in choices:
        return f"{what} is {value!r}; expected one of {', '.join(repr(c) for c in choices)}"
    if not value:
        return f"{what} must not be empty"
    return None


Rule = Callable[[Any, str], "str | None"]


def rule_problems(claims: Mapping[Any, Any], rules: Mapping[int, Rule], what: str,
                  names: Mapping[int, str]) -> list[str]:
    """The problems ``rules`` find in the claims present, each named '{what} claim KEY (NAME)'."""
    problems = []
    for key, rule in rules.items():
        if key in claims:
            problem = rule(claims[key], f"{what} claim {key} ({names[key]})")
            if problem:
                problems.append(problem)
    return problems
