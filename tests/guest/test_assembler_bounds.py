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
