"""rmm_mp.guest.equ finds and rewrites every .equ line the assembler reads as one: after a label
on the same line, and with any blank the assembler takes between words."""

from __future__ import annotations

import pytest

from rmm_mp.guest.assembler import assemble
from rmm_mp.guest.equ import equ_names, with_constants


def _first_immediate(image: bytes) -> int:
    """The 32-bit immediate of the image's first instruction (the high word)."""
    return int.from_bytes(image[4:8], "little")


@pytest.mark.parametrize("line", ["here: .equ COUNT, 3", "here :\t.EQU COUNT ,3", "here:.equ COUNT, 3 // c"])
def test_equ_after_a_label(line: str) -> None:
    """`label: .equ NAME, value` defines NAME for the assembler (and the label); equ_names
    found no name there and with_constants refused the constant as "not an .equ constant of
    the guest", so a workload could not set it."""
    source = f"{line}\nmov x0, #COUNT\nb here\n"
    assert _first_immediate(assemble(source)) == 3
    assert equ_names(source) == ["COUNT"]
    rewritten = with_constants(source, {"COUNT": 9})
    assert rewritten.startswith(line[:line.index("COUNT")])
    assert _first_immediate(assemble(rewritten)) == 9


@pytest.mark.parametrize("blank", ["\x0b", "\x0c"], ids=["vt", "ff"])
def test_equ_with_the_assemblers_other_blanks(blank: str) -> None:
    """A vertical tab or form feed between the words of an .equ line is a blank to the
    assembler, as a space is; equ_names and with_constants knew only spaces and tabs."""
    source = f"{blank}.equ{blank}COUNT{blank},{blank}3\nmov x0, #COUNT\n"
    assert _first_immediate(assemble(source)) == 3
    assert equ_names(source) == ["COUNT"]
    assert _first_immediate(assemble(with_constants(source, {"COUNT": 9}))) == 9
