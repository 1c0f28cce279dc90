"""Why cbor2 could not build a well-formed CBOR item: which tag, where, holding what.

`_cbor.loads_exact` walks an item's heads first, then has cbor2 build its value. cbor2 turns
some tags into Python values (a date, a rational, a UUID, an IP address...) and refuses content
that is not theirs in its own words ("invalid datetime value: 5", "error decoding UUID value",
"invalid timestamp value datetime.datetime(1970, ...)"), which name neither the tag, nor where
it stands, nor what it should hold. `content_error` finds the tag cbor2 refused and says so:
the tag and its name, its byte offset, where it stands in the item (item 1 of the value of map
key 44239), what it holds in CBOR diagnostic notation (abbreviated) and what it should hold.

cbor2 builds an item depth first, so the tag it refused is the first, in the order the tags
end (an inner tag before the one around it), that it refuses on its own. The walk here reads
bytes `_cbor._skip` has already found well formed, so it checks nothing; it keeps its own head
reader because `_cbor` imports this module.
"""

from __future__ import annotations

import json
from typing import Final

import cbor2

from rmm_mp.printable import abbreviated, start_of

TAG_CONTENT: Final[dict[int, tuple[str, str]]] = {
    0: ("date/time string", 'a text string in RFC 3339 date-time form, such as "2013-03-21T20:04:00Z", its T '
        "and Z upper case (RFC 8949 3.4.1, as RFC 4287 3.3 refines RFC 3339) and with no leap second (:60), "
        "which Python's datetime cannot hold"),
    1: ("epoch-based date/time", "an integer or a float, seconds since 1970-01-01T00:00Z, of a time in the years "
        "1 to 9999 (RFC 8949 3.4.2)"),
    4: ("decimal fraction", "an array [exponent, mantissa] of two integers (RFC 8949 3.4.4) whose value can be "
        "represented; no claim of a CCA token is such a number"),
    5: ("bigfloat", "an array [exponent, mantissa] of two integers (RFC 8949 3.4.4) whose value can be "
        "represented; no claim of a CCA token is such a number"),
    30: ("rational number", "an array [numerator, denominator] of two integers, the denominator positive"),
    35: ("regular expression", "a text string holding a regular expression (RFC 8949 3.4.5.3) that Python's "
         "re module compiles (not nested too deep for it)"),
    36: ("MIME message", "a text string holding a MIME message (RFC 8949 3.4.5.3)"),
    37: ("UUID", "a 16-byte string (RFC 9562)"),
    100: ("days since 1970-01-01", "an integer, days since 1970-01-01 of a date in the years 1 to 9999 "
          "(RFC 8943)"),
    258: ("set", "an array of distinct members"),
    260: ("network address", "a byte string of 4 or 16 bytes (an IPv4 or IPv6 address) or of 6 (a MAC "
          "address) (RFC 9164)"),
    261: ("network address prefix", "a map of one entry, an address byte string of 4 or 16 bytes to its prefix "
          "length"),
    1004: ("full-date string", 'a text string in RFC 3339 full-date form, such as "1940-10-09" (RFC 8943)'),
    43000: ("complex number", "an array [real, imaginary] of two floats (cbor2 reads no integer part: [1.0, "
            "2.0], not [1, 2])"),
}
"""The tags cbor2 builds into values, and can therefore refuse: tag -> (name, what it must hold).
Bignums (2, 3) are checked by the walk itself, value-sharing and string references (25, 28,
29, 256) refused by it, and 55799 is a marker cbor2 drops."""

CBOR2_REFUSALS: Final = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, ArithmeticError,
                         RecursionError)
"""What cbor2 raises for a tag whose content it cannot build. ArithmeticError: a decimal fraction
or bigfloat (tags 4, 5) with a huge exponent (decimal.Overflow / InvalidOperation). RecursionError:
a regular expression (tag 35) nested a thousand parentheses deep, which Python's re module parses
recursively; it escaped as a traceback."""

_KEY_SHOWN: Final = 40
"""Characters of a map key a place names before it elides the rest."""

_BREAK: Final = 0xFF
_SET_TAG: Final = 258


def content_error(data: bytes, what: str, offset: int = 0, place: str = "", as_key: bool = False) -> str | None:
    """The message for the tag cbor2 refuses in well-formed `data` (the part named `what`), or
    None when it refuses no tag on its own. `data` may be one item from inside another, a map
    key or set member (`as_key`): then `offset` is where it starts there and `place` what it is
    ("a map key")."""
    tags: list[tuple[int, int, int, int, str, bool]] = []
    _walk(data, 0, place, tags, as_key)
    for start, content, end, tag, place, in_key in sorted(tags, key=lambda t: (t[2], -t[0])):
        if tag not in TAG_CONTENT:
            continue
        name, expected = TAG_CONTENT[tag]
        where = f" ({place})" if place else ""
        holds = f"{what}: CBOR tag {tag} ({name}) at byte {offset + start}{where} holds " + abbreviated(
            diag_at(data, content)[0])
        try:
            cbor2.loads(data[start:end])
        except CBOR2_REFUSALS:
            return f"{holds}; expected {expected}"
        if not in_key:
            continue
        try:
            # Inside a key cbor2 builds every array as a tuple and every map as a FrozenDict,
            # and its C decoder's tag 261 takes a dict only: 261({h'0a000000': 24}) is built
            # alone but refused there. The tag is built as a key to see it as cbor2 does.
            cbor2.loads(b"\xa1" + data[start:end] + b"\xf6")
        except CBOR2_REFUSALS:
            return (f"{holds}, which cbor2 builds on its own but not inside a map key or set member, where it "
                    f"builds maps and arrays immutable; expected no {name} in a map key or set member")
    return None


def _head(data: bytes, pos: int) -> tuple[int, int, int | None, int]:
    """(major type, additional information, argument or None for indefinite length, position
    after the head) of the well-formed head at `pos`."""
    major, info = data[pos] >> 5, data[pos] & 0x1F
    if info < 24:
        return major, info, info, pos + 1
    if info <= 27:
        size = 1 << (info - 24)
        return major, info, int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size
    return major, info, None, pos + 1


def _within(segment: str, place: str) -> str:
    return f"{segment} of {place}" if place else segment


class _Reached(Exception):
    """`_walk` came to the item at its `stop` offset, which stands at `place`."""

    def __init__(self, place: str) -> None:
        super().__init__(place)
        self.place = place


def place_of(data: bytes, target: int, fallback: str) -> str:
    """Where the item at byte `target` of `data` stands (a map key of the value of map key
    44238), `fallback` if no item starts there. Everything in `data` before `target` and the
    item at it must be well formed: `_cbor._skip` has walked them when it builds a map key or
    set member, not yet what follows, which this walk never reaches."""
    try:
        _walk(data, 0, "", [], stop=target)
    except _Reached as reached:
        return reached.place or fallback
    except IndexError:      # no item starts at `target`: the walk ran into unchecked bytes
        return fallback
    return fallback


def _walk(data: bytes, pos: int, place: str, tags: list[tuple[int, int, int, int, str, bool]],
          in_key: bool = False, stop: int = -1, members: bool = False) -> int:
    """Position after the item at `pos` (standing at `place`; `in_key`: inside a map key or set
    member, which cbor2 builds immutable; `members`: the array of a set), adding each tag in it
    to `tags` as (start, content start, end, tag number, place, in_key). Raises _Reached with
    the place of the item at `stop`, if it comes to one."""
    if pos == stop:
        raise _Reached(place)
    start = pos
    major, _, arg, pos = _head(data, pos)
    if major in (2, 3):
        return _string(data, pos, arg)[1]
    if major == 4:
        count = 0
        while (count < arg) if arg is not None else data[pos] != _BREAK:
            segment = f"{'member' if members else 'item'} {count}"
            pos = _walk(data, pos, _within(segment, place), tags, in_key, stop)
            count += 1
        return pos if arg is not None else pos + 1
    if major == 5:
        count = 0
        while (count < arg) if arg is not None else data[pos] != _BREAK:
            key_start = pos
            pos = _walk(data, pos, _within("a map key", place), tags, True, stop)
            key = diag_at(data, key_start)[0]
            # Cut between escapes: key[:40] of "\u001b..." ended in "\u0" or a lone backslash.
            key = key if len(key) <= _KEY_SHOWN else start_of(key, _KEY_SHOWN) + "..."
            pos = _walk(data, pos, _within(f"the value of map key {key}", place), tags, in_key, stop)
            count += 1
        return pos if arg is not None else pos + 1
    if major == 6:
        assert arg is not None      # a tag's head always has an argument
        # A set's members are built as map keys are (cbor2 makes a frozenset of them).
        is_set = arg == _SET_TAG and data[pos] >> 5 == 4
        end = _walk(data, pos, _within(f"the content of tag {arg}", place), tags, in_key or is_set, stop, is_set)
        tags.append((start, pos, end, arg, place, in_key))
        return end
    return pos


def _string(data: bytes, pos: int, length: int | None) -> tuple[bytes, int]:
    """The bytes of the string whose content starts at `pos` (an indefinite one's chunks
    joined), and the position after it."""
    if length is not None:
        return data[pos:pos + length], pos + length
    chunks = []
    while data[pos] != _BREAK:
        _, _, size, pos = _head(data, pos)
        chunk, pos = _string(data, pos, size)
        chunks.append(chunk)
    return b"".join(chunks), pos + 1


def diag_at(data: bytes, pos: int) -> tuple[str, int]:
    """The well-formed item at `pos` in CBOR diagnostic notation (RFC 8949 8) as its bytes
    write it, tags as tags (cbor2 would have built them into values), and the position after
    it. Text is escaped as JSON with ASCII only, so that nothing in it acts on a terminal."""
    start = pos
    major, info, arg, pos = _head(data, pos)
    if major == 0:
        return str(arg), pos
    if major == 1:
        assert arg is not None
        return str(-1 - arg), pos
    if major in (2, 3):
        raw, pos = _string(data, pos, arg)
        return (f"h'{raw.hex()}'" if major == 2 else json.dumps(raw.decode("utf-8", errors="replace"))), pos
    if major in (4, 5):
        items = []
        count = 0
        while (count < arg) if arg is not None else data[pos] != _BREAK:
            item, pos = diag_at(data, pos)
            if major == 5:
                value, pos = diag_at(data, pos)
                item = f"{item}: {value}"
            items.append(item)
            count += 1
        pos = pos if arg is not None else pos + 1
        return ("[" + ", ".join(items) + "]" if major == 4 else "{" + ", ".join(items) + "}"), pos
    if major == 6:
        content, pos = diag_at(data, pos)
        return f"{arg}({content})", pos
    if info >= 25:      # a float: what cbor2 reads from its head alone
        value = cbor2.loads(data[start:pos])
        return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(repr(value), repr(value)), pos
    return {20: "false", 21: "true", 22: "null", 23: "undefined"}.get(arg or 0, f"simple({arg})"), pos


def as_tag(value: object) -> cbor2.CBORTag | None:
    """A value cbor2 built from a tag it knows (a date/time, a UUID, an IP address, a rational,
    a decimal fraction, a complex number, a regular expression, a MIME message...) as that tag
    again, the way cbor2 writes it: 37(h'...'), 260(h'0a000001'), 30([1, 3]). The JSON and
    diagnostic forms of a claim show this instead of the Python value's repr ("UUID('...')", or
    a MIME message's "<email.message.Message object at 0x7f...>", which changed from run to run).
    It is the value, not always the bytes the token has: a date/time of tag 1 (epoch) comes back
    as tag 0 (text), a bigfloat (tag 5) as the decimal fraction (tag 4) of the same value.
    None for a value cbor2 does not write as a tag."""
    try:
        encoded = cbor2.dumps(value)
    except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError, ArithmeticError, RecursionError):
        # RecursionError: a MIME message of multiparts nested a few hundred deep, which the
        # email package parsed but writes back recursively.
        return None
    major, _, tag, content = _head(encoded, 0)
    if major != 6 or tag is None:
        return None
    return cbor2.CBORTag(tag, cbor2.loads(encoded[content:]))
