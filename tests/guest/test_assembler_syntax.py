"""Corners of the guest assembler's line syntax (docs/guest-isa.md, "Directives"): what a line
that is almost right gets, so that the message points at the real mistake."""

from __future__ import annotations

import pytest

from rmm_mp.guest.assembler import AssemblerError, assemble
from rmm_mp.guest.isa import Op, encode


def test_movk_shift_without_a_space() -> None:
    """`movk xd, #imm, lsl#16` (no blank between lsl and #) is the shift GNU as reads it as
    (it skips optional blanks after the shift keyword): it was refused as "the shift is lsl #0,
    #16, #32 or #48, got 'lsl#16'", which names what was written."""
    assert assemble("movk x4, #1, lsl#16") == encode(Op.MOVK, 4, aux=1, imm=1).to_bytes(8, "little")
    assert assemble("movk x4, #1, LSL\t#32") == encode(Op.MOVK, 4, aux=2, imm=1).to_bytes(8, "little")


@pytest.mark.parametrize("source", ["b.eq:", "b.eq: nop", "b.ne: b .", "loop.1:", "B.EQ:"])
def test_label_with_a_dot_is_named_as_a_label(source: str) -> None:
    """A label with a '.' in its name (`b.eq:`, like a conditional branch) is no label, and the
    message says so and why, as for any other malformed label: it said "b.eq: takes 1
    operand(s), got 0" or "expected a condition such as b.eq or b.ne, got 'b.eq:'"."""
    written = source.split(":")[0] + ":"
    with pytest.raises(AssemblerError, match=rf"^line 1: '{written}' is no label: .*no '\.'"):
        assemble(source)
