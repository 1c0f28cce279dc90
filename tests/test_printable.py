"""printable.abbreviated and start_of: the one rule by which a message shortens a value too long for a line."""

from __future__ import annotations

import json

import pytest

from rmm_mp.attest.errors import PlatformKeyError
from rmm_mp.attest.keys import load_trust_anchors
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.printable import SHOWN_MAX, abbreviated, start_of


def test_a_short_value_is_shown_whole() -> None:
    """A value of SHOWN_MAX characters as written is returned as it is."""
    assert abbreviated("x" * SHOWN_MAX) == "x" * SHOWN_MAX


@pytest.mark.parametrize("shown, escaped_in", [
    ('"' + "\\u001B" * 100 + '"', '"'),       # TOML basic string / JSON
    (repr("\x1b" * 100), "\"'"),             # Python's repr, single quotes, \xXX escapes
    (repr("'\x1b" * 100), "\"'"),            # Python's repr, double quotes
    (repr("\U0001F600\u202e" * 100), "\"'"),   # \U and \u escapes (U+1F600 is printable, U+202E is not)
])
def test_a_long_value_is_cut_between_escapes(shown: str, escaped_in: str) -> None:
    """A value longer than SHOWN_MAX written with backslash escapes is cut at or before
    SHOWN_MAX // 2 characters, never inside an escape (which would show a lone backslash or
    "\\u001", no character at all), and followed by its length."""
    out = abbreviated(shown, escaped_in)
    start, _, rest = out.partition("... (")
    assert rest == f"{len(shown):,} characters in all)", out
    assert SHOWN_MAX // 2 - 10 <= len(start) <= SHOWN_MAX // 2, out
    assert shown.startswith(start), out
    # Every string above is a run of escapes and single characters: a cut between two of them
    # leaves the next one whole, starting with its backslash or being that character.
    assert shown[len(start)] in "\\'\U0001F600", out


def test_a_key_file_and_a_toml_file_shorten_a_long_value_alike() -> None:
    """A 60,000-character member of a JWK (its kty) and a 60,000-character value of a
    platform file are shown the same way: their first characters as written, then '... (60,002
    characters in all)'. The key file counted the characters of the value (60,000) and cut it at
    100, where the TOML message counted what it writes (with its quotes) and cut at 120: two
    rules for one thing, in two near-duplicate helpers."""
    big = "A" * 60_000
    with pytest.raises(PlatformKeyError) as info:
        load_trust_anchors(('{"kty": "' + big + '"}').encode(), "k")
    toml = str(ConfigError("p.toml", "name", big, "text"))
    toml_shown = toml.split(" = ", 1)[1].split(": expected", 1)[0]
    key_shown = str(info.value).split("JWK kty is ", 1)[1].split(", expected", 1)[0]
    for shown in (toml_shown, key_shown):
        assert shown[1:] == "A" * (SHOWN_MAX // 2 - 1) + "... (60,002 characters in all)", shown


@pytest.mark.parametrize("lead", range(6))
def test_a_long_value_is_not_cut_between_the_halves_of_a_surrogate_pair(lead: int) -> None:
    """A long JSON string of characters beyond U+FFFF, each written as a UTF-16 surrogate pair
    of escapes ("\\ud83d\\ude00", as json.dumps and CBOR diagnostic notation write them), after
    0 to 5 other characters, so that the cut point falls at several places in a pair: the shown
    start ends with a whole pair, never with a high surrogate alone (half a character, which a
    JSON reader refuses). It ended with "\\ud83d" for every lead below 6."""
    shown = json.dumps("a" * lead + "\U0001F600" * 100)
    start = abbreviated(shown).partition("... (")[0]
    assert start.endswith("\\ude00") and shown.startswith(start), start[-30:]
    assert json.loads(start + '"') == "a" * lead + "\U0001F600" * ((len(start) - 1 - lead) // 12), start[-30:]


@pytest.mark.parametrize(("shown", "end", "cut"), [
    ("", 40, ""), ("abc", 40, "abc"), ("abc", 3, "abc"), ("abcd", 3, "abc"),
    ('"a\\u001B"', 9, '"a\\u001B"'),      # exactly ``end`` long, ending in an escape: whole
    ('"ab\\u00', 7, '"ab\\u00'),          # exactly ``end`` long, a cut-off escape: whole, not cut before it
    ('"a\\u001B"x', 5, '"a'), ('"a\\u001B"x', 8, '"a\\u001B'),
    ('"\\ud83d\\ude00"', 8, '"'),         # never between a surrogate pair's halves
])
def test_start_of_cuts_only_a_longer_text_and_never_inside_an_escape(shown: str, end: int, cut: str) -> None:
    """start_of keeps a text of at most ``end`` characters whole (a shorter one crashed the cut's
    scan: stress --shrink of a deadlock's short headline), and cuts a longer one before an escape
    it would split."""
    assert start_of(shown, end) == cut
