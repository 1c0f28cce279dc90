"""The guest assembler and the 64-bit address space: an image must end at 2^64 at the latest,
and a branch or adr target must be an address in 0..2^64 - 1 (the PC wraps at 2^64 when a
branch runs, but a target written outside the space is a mistake, as a .quad of it is)."""

from __future__ import annotations

import pytest

from rmm_mp.guest.assembler import AssemblerError, assemble, symbols
from rmm_mp.guest.isa import Op, decode

TOP = 1 << 64


def _error(text: str, base: int = 0) -> AssemblerError:
    with pytest.raises(AssemblerError) as info:
        assemble(text, base=base)
    return info.value


def test_an_image_that_ends_at_2_64_is_taken() -> None:
    """The last word may be the one at 2^64 - 8, and a label after it (its end) is 2^64."""
    image = assemble("nop\nl: nop\nend:", base=TOP - 16)
    assert len(image) == 16
    assert symbols("nop\nl: nop\nend:", base=TOP - 16)["end"] == TOP


@pytest.mark.parametrize(("text", "line"), [
    ("nop\nl: nop\n b l", 2),           # the probe's: the second word at 2^64
    ("nop\n.quad 1", 2),
    ("nop\n.byte 1", 2),
    ("nop\n.zero 16", 2),
    ("nop\n.asciz \"\"", 2),
    (".org 16", 1),
    ("mov x1, =1", 1),
])
def test_an_image_that_passes_2_64_is_refused_naming_its_line(text: str, line: int) -> None:
    exc = _error(text, base=TOP - 8)
    assert exc.line == line, exc
    assert "past the 64-bit address space" in exc.message, exc
    assert f"base {TOP - 8:#x}" in exc.message, exc
    assert "expected it to end at 2^64 (0x10000000000000000) at the latest" in exc.message, exc


@pytest.mark.parametrize(("text", "base", "target"), [
    ("b . + 16", TOP - 8, TOP + 8),     # the probe's: past 2^64
    ("b . - 8", 0, -8),                 # the probe's: below 0
    ("bl . - 8", 0, -8),
    ("b.eq . - 8", 0, -8),
    ("cbz x1, . - 8", 0, -8),
    ("cbnz x1, end\nend:", TOP - 8, TOP),   # a label at the image's end, 2^64, is no instruction's
])
def test_a_branch_target_outside_the_address_space_is_refused(text: str, base: int, target: int) -> None:
    exc = _error(text, base)
    assert exc.line == 1, exc
    shown = f"{target:#x}" if target >= 0 else f"-{-target:#x}"
    assert f"= {shown} is outside the 64-bit address space; expected an address in 0..0xffffffffffffffff" \
        in exc.message, exc


def test_a_branch_within_the_address_space_keeps_its_offset() -> None:
    """Targets at both ends of the space, and below base or past the image (a guest may branch
    to code it built in memory), are taken."""
    assert _branch(assemble("b 0", base=8)) == (Op.B, -8)
    assert _branch(assemble("nop\nb . - 8", base=TOP - 16)[8:]) == (Op.B, -8)
    assert _branch(assemble("b . + 0x1000")) == (Op.B, 0x1000)


def test_a_branch_too_far_back_high_in_the_space_is_still_told_its_distance() -> None:
    """Below 2 GiB a target 2 GiB + 8 back is below 0 (refused as such); higher up it is in the
    space, and refused for the offset the word cannot hold."""
    assert "is -0x80000008 bytes away" in _error("b . - 0x80000008", base=1 << 63).message


def _branch(image: bytes) -> tuple[int, int]:
    """(op, imm) of the image's first word."""
    op, _, _, _, _, imm = decode(int.from_bytes(image[:8], "little"))
    return op, imm


@pytest.mark.parametrize(("text", "target"), [
    ("adr x1, . - 8", -8),
    ("adr x1, . + (1 << 64)", TOP),
])
def test_an_adr_target_outside_the_address_space_is_refused(text: str, target: int) -> None:
    exc = _error(text)
    assert exc.line == 1, exc
    shown = f"{target:#x}" if target >= 0 else f"-{-target:#x}"
    assert f"adr target {text[8:]!r} = {shown} is outside the 64-bit address space; expected an address in " \
           f"0..0xffffffffffffffff" in exc.message, exc


def test_adr_of_the_last_address_is_taken() -> None:
    assert len(assemble("adr x1, 0xffffffffffffffff")) == 24
