"""The order in which the guest assembler gives deferred .equ lines (those using names defined
further down) their values, and so which error a text with two of them names: that of rounds
over the deferred lines in source order, each round trying every line still without a value,
whatever way the resolver finds them."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from rmm_mp.guest.assembler import AssemblerError, assemble


def test_of_two_errors_in_deferred_lines_the_earlier_round_is_named() -> None:
    """Two .equ lines redefine D; both wait for names from further down (line 4 for C, line 5
    for A), and line 4's C gets its value in the round after line 5's A. Line 4 is tried (and
    fails) in that second round before line 5 is tried again: line 4 is named, as the rounds
    named it. The resolver that woke the lines waiting for a name as it got its value tried
    line 5 first."""
    source = ("\n".join([".equ E, G", ".equ G, 8", ".equ C, 0 << . * A", ".equ D, C", ".equ D, A", ".equ F, .",
                         ".equ A, 0 - D", ".equ D, F"]))
    with pytest.raises(AssemblerError, match=r"^line 4: 'D' is already defined"):
        assemble(source)


def _rounds(source: str) -> str:
    """What the assembler gives for ``source``, a text of .equ lines and .quad lines of their
    names, worked out by the rounds themselves: the hex of its image or its error."""
    values: dict[str, int] = {}
    lines = source.split("\n")
    deferred: list[tuple[int, str, list[str]]] = []
    declared = {line.split()[1].rstrip(",") for line in lines if line.startswith(".equ")}

    def try_line(number: int, name: str, needs: list[str]) -> bool:
        for need in needs:
            if need not in values:
                if need in declared:
                    return False
                raise AssemblerError(number, f"unknown label or constant {need!r}")
        if name in values:
            raise AssemblerError(number, f"{name!r} is already defined (labels and .equ names share one namespace)")
        values[name] = sum(values[need] for need in needs) + number
        return True

    for number, line in enumerate(lines, start=1):
        if line.startswith(".equ"):
            name, value = line[5:].split(", ")
            needs = value.split(" + ")[1:]
            if not try_line(number, name, needs):
                deferred.append((number, name, needs))
    while deferred:
        waiting = [item for item in deferred if not try_line(*item)]
        if len(waiting) == len(deferred):
            raise AssemblerError(waiting[0][0], "no value for these .equ names: they need each other in a cycle "
                                                f"(or need a name that does): {', '.join(w[1] for w in waiting)}")
        deferred = waiting
    return b"".join(values[line.split()[1]].to_bytes(8, "little") for line in lines if line.startswith(".quad")).hex()


def _outcome(run: Callable[[str], str], source: str) -> str:
    """``run(source)``, or the text of the AssemblerError it raised."""
    try:
        return run(source)
    except AssemblerError as exc:
        return str(exc)


def _random_source(rng: random.Random) -> str:
    """.equ lines over up to six names, each `.equ N, LINE + M + ...` (so that a value shows
    which lines it came from) using names defined in the text (before or after, once or twice,
    maybe in a cycle) or now and then one defined nowhere; then a .quad of each name defined."""
    if rng.random() < 0.5:          # each name once: an image, or a cycle
        defined = rng.sample("ABCDEF", rng.randint(1, 6))
    else:
        defined = [rng.choice("ABCDEF") for _ in range(rng.randint(2, 12))]
    pool = sorted(set(defined))
    lines = []
    for number, name in enumerate(defined, start=1):
        needs = rng.sample(pool + ["U"] if rng.random() < 0.05 else pool, min(len(pool), rng.randint(0, 2)))
        lines.append(f".equ {name}, {' + '.join([str(number)] + needs)}")
    return "\n".join(lines + [f".quad {name}" for name in pool])


def test_random_deferred_equ_lines_resolve_as_rounds_would() -> None:
    """5,000 random texts of .equ lines (``_random_source``): the assembler gives the image, or
    the error, that rounds over the deferred lines in source order give (``_rounds``, a model
    of them)."""
    rng = random.Random(7)

    def assembled(text: str) -> str:
        return assemble(text).hex()

    for _ in range(5000):
        source = _random_source(rng)
        assert _outcome(assembled, source) == _outcome(_rounds, source), source
