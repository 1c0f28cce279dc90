"""The guest assembler's time on pathological lines: text of any shape up to the source limit
(1 MiB) is assembled or refused in time proportional to its length, never in hours. Each case
runs in a child with a time limit, so that a regression fails instead of hanging the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_ASSEMBLE = ("import sys\nfrom rmm_mp.guest.assembler import AssemblerError, assemble\n"
             "try:\n    assemble(sys.stdin.read())\nexcept AssemblerError as exc:\n    print(str(exc)[:100])\n")


def _assembled_within(source: str, seconds: float) -> str:
    """What assembling ``source`` in a child prints (the start of its error, or nothing), failing
    the test if it takes longer than ``seconds``."""
    try:
        proc = subprocess.run([sys.executable, "-c", _ASSEMBLE], input=source, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"assembling took more than {seconds} s")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("operand", ["[x1," + " " * 20_000 + "x", "[" + " " * 20_000 + "]x"])
def test_a_long_malformed_memory_operand_is_refused_at_once(operand: str) -> None:
    """A memory operand with a long run of blanks that is not well formed (no closing bracket,
    text after it): refused as "expected a memory operand" at once. The regular expression
    that read it (blanks around two lazy groups) took time cubic in the run: 4,000 spaces
    took 18 s, these 20,000 would take over half an hour."""
    assert _assembled_within(f"ldr x0, {operand}\n", 20).startswith("line 1: expected a memory operand")


def test_a_long_chain_of_equ_names_defined_further_down_is_resolved_at_once() -> None:
    """10,000 .equ lines, each using the name the next line defines (`.equ a0, a1 + 1` ...):
    resolved at once, a0 = 10,001. The deferred lines were tried again in rounds over all of
    them, one more name resolved per round: time quadratic in the chain (3,000 took 14 s,
    these 10,000 some minutes)."""
    count = 10_000
    source = "".join(f".equ a{i}, a{i + 1} + 1\n" for i in range(count)) + f".equ a{count}, 1\n.quad a0\n"
    check = (f"import sys\nfrom rmm_mp.guest.assembler import assemble\n"
             f"assert assemble(sys.stdin.read()) == ({count} + 1).to_bytes(8, 'little')\n")
    try:
        proc = subprocess.run([sys.executable, "-c", check], input=source, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("resolving the chain took more than 20 s")
    assert proc.returncode == 0, proc.stderr


def test_most_refuses_an_image_by_its_size_before_making_it() -> None:
    """assemble(most=N) raises ImageTooLarge with the image's size when the first pass sizes it
    past N (a 512 MiB .zero is refused at once, its bytes never made), and assembles an image of
    exactly N bytes."""
    from rmm_mp.guest.assembler import ImageTooLarge, assemble
    with pytest.raises(ImageTooLarge) as info:
        assemble("nop\n.zero 0x20000000\n", most=4096)
    assert (info.value.size, info.value.most) == (0x20000008, 4096)
    assert len(assemble("nop\n.zero 4088\n", most=4096)) == 4096


def test_symbols_are_the_first_pass_values() -> None:
    """symbols() gives labels and .equ names (one defined further down too) the values the
    image is assembled with, without making the image."""
    from rmm_mp.guest.assembler import symbols
    text = ".equ SIZE, end - start\nstart:\n    nop\n    .zero 0x3FF00000\nend:\n.equ AFTER, end + 8\n"
    assert symbols(text, base=0x8000_0000) == {"start": 0x8000_0000, "end": 0x8000_0000 + 0x3FF00008,
                                              "SIZE": 0x3FF00008, "AFTER": 0x8000_0000 + 0x3FF00010}
