"""Small checks shared by the realm and platform claim sets: presence, type and length.

Each returns a problem sentence that names the claim, what it holds and what the profile
requires, or None when the value is fine. `describe` says what a decoded value is without
printing all of it.
"""

from __future__ import annotations

import datetime
import email.message
import ipaddress
import numbers
import re
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Final

import cbor2

from rmm_mp.attest._cbor import diag, is_array, is_map
from rmm_mp.printable import abbreviated


def describe(value: Any) -> str:
    """'a 31-byte string', 'text "sha-1"', 'an array of 2', ... for problem messages. CBOR's
    null, true and false are named as CBOR diagnostic notation and JSON write them (RFC 8949
    8), not as Python's None, True and False: the token's author knows no Python."""
    if isinstance(value, bytes):
        return f"a {len(value)}-byte string"
    if isinstance(value, str):
        return f"text {quoted(value)}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, cbor2.CBORSimpleValue):
        return f"the simple value {value.value}"
    if value is cbor2.undefined:
        return "undefined"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the float {diag(value)}"
    if isinstance(value, Fraction):
        return f"the rational {value} (CBOR tag 30)"
    if isinstance(value, Decimal):
        return f"the decimal {value} (CBOR tag 4 or 5)"
    if isinstance(value, complex):
        return f"the complex number {value} (CBOR tag 43000)"
    if is_array(value):
        return f"an array of {len(value)}"
    if is_map(value):
        return f"a map of {len(value)} entries"
    if isinstance(value, cbor2.CBORTag):
        return f"tag {value.tag} holding {describe(value.value)}"
    if isinstance(value, (set, frozenset)):
        return f"a set of {len(value)} (CBOR tag 258)"
    for kind, name in _BUILT_FROM_TAGS:
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


_BUILT_FROM_TAGS: Final = (
    (datetime.datetime, "a date/time (CBOR tag 0 or 1)"),
    (datetime.date, "a date (CBOR tag 100 or 1004)"),
    (uuid.UUID, "a UUID (CBOR tag 37)"),
    ((ipaddress.IPv4Address, ipaddress.IPv6Address), "an IP address (CBOR tag 260)"),
    ((ipaddress.IPv4Network, ipaddress.IPv6Network), "an IP network (CBOR tag 261)"),
    (re.Pattern, "a regular expression (CBOR tag 35)"),
    (email.message.Message, "a MIME message (CBOR tag 36)"),
)
"""The Python values cbor2 builds from tags it knows, as `describe` names them: by the CBOR
tag the token's author wrote, not by the Python class ('a CBORTag', 'a IPv4Address' before)."""


def shown(value: Any) -> str:
    """A decoded scalar as written in a message: null, true, false and undefined in CBOR
    diagnostic notation (RFC 8949 8), a number or text as Python writes it (2, 2.0, 'sha-1'; long
    text abbreviated, `quoted`), anything larger as `describe` says it (no claim's whole value
    in a line)."""
    if value is None or isinstance(value, bool) or value is cbor2.undefined:
        return describe(value)
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return describe(value)


def quoted(text: str) -> str:
    """Text from a token as a message writes it: quoted as Python writes it ('sha-1', with
    escapes for characters that are not printable), abbreviated past printable.SHOWN_MAX
    characters to its start and its length, as a key file's or a platform file's long value
    is: a claim of 60,000 characters made a 60,000-character reason."""
    return abbreviated(repr(text), escaped_in="\"'")


def is_integer_lookalike(value: Any) -> bool:
    """True for a decoded number that is no CBOR integer but that Python finds equal to one
    (same hash, so `10 in claims` finds it): a float (10.0), a bool (True == 1), and the
    values cbor2 builds from numeric tags: a rational 30([10, 1]), a decimal fraction
    4([0, 10]) or bigfloat 5([0, 10]), a complex 43000([10.0, 0.0]). A decoder that keeps
    CBOR's data model sees a float, simple value or tag there, not an integer."""
    return isinstance(value, numbers.Number) and type(value) is not int


def label_problems(claims: Mapping[Any, Any], what: str, noun: str = "claim label") -> list[str]:
    """Claim labels are CBOR integers (A7.2.3), and so are the labels of a software component
    and of a COSE_Key: a label that only equals an integer (is_integer_lookalike: 10.0, True,
    a rational or decimal 10) would otherwise pass for claim 10."""
    # A float or bool label as CBOR writes it (10.0, true; Python's repr wrote True); any other
    # is named once, by what it is (a rational 10, CBOR tag 30).
    return [f"{what} {noun}{f' {diag(key)}' if isinstance(key, (bool, float)) else ''} must be an integer, "
            f"found {describe(key)}" for key in claims if is_integer_lookalike(key)]


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
        return f"{what} is {quoted(value)}; expected one of {', '.join(repr(c) for c in choices)}"
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
