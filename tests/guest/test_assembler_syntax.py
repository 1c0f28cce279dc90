"""Corners of the guest assembler's line syntax (docs/guest-isa.md, "Directives"): what a line
that is almost right gets, so that the message points at the real mistake."""

from __future__ import annotations

import random
import re

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


@pytest.mark.parametrize(("source", "after", "got"), [
    ("b.eq :", "the condition in 'b.eq'", "':' (a label is named without the ':' that defines it)"),
    ("B.NE start:", "the condition in 'B.NE'", "'start:' (a label is named without"),
    ("b.lo #8", "the condition in 'b.lo'", "'#8'"),
    ("b x1:", "'b'", "'x1:' (a label is named without"),
    ("bl 1 +", "'bl'", "'1 +'"),
    ("cbz x1, :", "the register of 'cbz'", "':' (a label is named without"),
])
def test_a_branch_without_a_target_says_a_label_was_expected_there(source: str, after: str, got: str) -> None:
    """A branch whose target is no expression (`b.eq :`, a label written with its colon, an
    immediate) is refused saying that a label was expected after the condition (or the
    mnemonic, or cbz's register): it said only "expected a number, a label or an expression,
    got ':'". A target that is an expression naming no label keeps its own message."""
    with pytest.raises(AssemblerError) as info:
        assemble("start:\n" + source)
    assert str(info.value).startswith(f"line 2: expected a label (or an expression giving the target's address) "
                                      f"after {after}, got {got}"), str(info.value)
    with pytest.raises(AssemblerError, match=r"^line 1: unknown label or constant 'x1' \(a register: "):
        assemble("b.eq x1")


@pytest.mark.parametrize(("source", "column", "shown"), [
    ("mov\u00a0x1, #1", 4, r"'\xa0' (U+00A0 NO-BREAK SPACE)"),
    ("mov x1,\u2003#1", 8, r"'\u2003' (U+2003 EM SPACE)"),
    ("mov x1, #\u00a01", 10, r"'\xa0' (U+00A0 NO-BREAK SPACE)"),
    ("foo\u00a0: nop", 4, r"'\xa0' (U+00A0 NO-BREAK SPACE)"),
    ("\u2003nop", 1, r"'\u2003' (U+2003 EM SPACE)"),
    ("nop\u3000", 4, r"'\u3000' (U+3000 IDEOGRAPHIC SPACE)"),
    (".equ\u00a0X, 1", 5, r"'\xa0' (U+00A0 NO-BREAK SPACE)"),
    ("ldr x1, [x2,\x1c#8]", 13, r"'\x1c' (U+001C)"),
    ("\tb\x85.", 3, r"'\x85' (U+0085)"),
])
def test_whitespace_other_than_blanks_is_refused(source: str, column: int, shown: str) -> None:
    """Whitespace that is not a space, tab, form feed or vertical tab (U+00A0, U+2003, \\x1c,
    ...) outside a string is refused wherever it stands, naming its column and the character:
    it was a blank between a mnemonic and its operands (str.split) but not elsewhere, so
    'mov\\xa0x1, #1' assembled, 'foo\\xa0: nop' was "unknown instruction 'foo'" and
    'mov x1, #\\xa01' an invalid expression. The message names the four blanks accepted (it
    said "a space or a tab", though a form feed and a vertical tab are blanks too)."""
    with pytest.raises(AssemblerError, match=rf"^line 1: column {column}: {re.escape(shown)} is no blank here; "
                                             r"expected a space, a tab, a form feed or a vertical tab between "
                                             r"words"):
        assemble(f"{source}\n")


def test_other_whitespace_in_strings_and_comments() -> None:
    """Inside a quoted string any whitespace is text, in a comment it is ignored, and a form feed
    or vertical tab is a blank as a space is."""
    assert assemble('.ascii "a\u00a0\u2003b" // \u00a0 note\n') == "a\u00a0\u2003b".encode()
    assert assemble("mov\x0bx1,\x0c#1 ; \u3000") == encode(Op.MOVI, 1, imm=1).to_bytes(8, "little")


# The memory operand's regular expression before it was read by hand (cubic backtracking on
# long blank runs): kept here as the reference of what the syntax takes.
_OLD_MEMORY_OPERAND = re.compile(r"^\[\s*([^\],]+?)\s*(?:,\s*(.+?))?\s*\]$")


def test_memory_operands_read_as_the_old_regular_expression_read_them() -> None:
    """50,000 random operands of brackets, commas, blanks (Unicode ones too), quotes and operand
    text: the hand-written reader gives the base and offset the old regular expression gave,
    or refuses what it refused. Only a base or offset of blanks alone, which the expression
    took and the register or immediate reader then refused, is refused at once as no memory
    operand."""
    from rmm_mp.guest.asmlines import memory_operand as _memory_operand
    pieces = ["[", "]", ",", " ", "\t", "\x0b", "\x0c", "\xa0", "\u2003", "x1", "#8", "a", '"', "#", "-", "("]
    rng = random.Random(5)
    for _ in range(50_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 9)))
        text = ("[" if rng.random() < 0.6 else "") + text + ("]" if rng.random() < 0.6 else "")
        match = _OLD_MEMORY_OPERAND.fullmatch(text)
        old = None if match is None else (match.group(1), match.group(2))
        if old is not None and (not old[0].strip() or (old[1] is not None and not old[1].strip())):
            old = None
        assert _memory_operand(text) == old, text


@pytest.mark.parametrize("source", ["b :", "b\t:", "b:", "b :  // no target"])
def test_a_label_may_have_blanks_before_its_colon_so_b_colon_is_a_label(source: str) -> None:
    """`b :` is the label `b`, not a branch missing its target (docs/guest-isa.md, "Directives"):
    blanks may stand between a label and its colon, and a label may be named like a mnemonic,
    as GNU as reads both (`b.eq :` is refused: `b.eq` can be no label). The label is placed
    where it stands and a branch to it assembles; the line alone makes no bytes."""
    assert assemble(source) == b""
    assert assemble(f"nop\n{source}\nb b") == assemble("nop\nhere:\nb here")


@pytest.mark.parametrize(("source", "got"), [
    ("lsl x0, x1, #N\n.equ N, 64", "'#N' = 64"),
    ("lsr x0, x1, #1 - 2", "'#1 - 2' = -1"),
    ("lsl x0, x1, #0x40", "'#0x40' = 64"),
])
def test_a_shift_out_of_range_names_its_value(source: str, got: str) -> None:
    """A shift amount outside 0..63 written as a name or an expression is refused naming its value,
    as an immediate out of range is: the message quoted only '#N', leaving the reader to find N."""
    with pytest.raises(AssemblerError, match=rf"^line 1: expected a shift amount in #0\.\.#63, got {re.escape(got)}$"):
        assemble(source)


@pytest.mark.parametrize("source", ["mov x1, 1", "add x1, x2, 5", "cmp x1, -1", "orr x0, x0, (1 << 4)"])
def test_an_immediate_without_its_hash_is_named_so(source: str) -> None:
    """An operand that may be a register or an immediate, written as a number without its '#'
    (GNU as takes `mov x1, 1`), is refused saying the immediate needs it: the message said only
    that a register was expected, as if no immediate were allowed there."""
    operand = source.split(", ")[-1]
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    assert str(info.value) == (f"line 1: expected a register x0..x30, lr or xzr, got {operand!r} "
                               f"(an immediate is written with '#': '#{operand}')"), str(info.value)


@pytest.mark.parametrize(("source", "operand"), [
    ("mov x1, . + 8", ". + 8"), ("cmp x1, .", "."), (".equ SIZE, 16\nadd x1, x2, SIZE", "SIZE"),
    ("sub x1, x1, STEP * 2\n.equ STEP, 8", "STEP * 2"), ("here:\nmov x1, here - 8", "here - 8"),
])
def test_an_expression_of_dot_or_names_without_its_hash_is_named_so(source: str, operand: str) -> None:
    """'mov x1, . + 8' and 'add x1, x2, SIZE' (an .equ name) got no '#' hint: only an operand
    starting with a digit, a sign, '~' or '(' did."""
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    assert info.value.message == (f"expected a register x0..x30, lr or xzr, got {operand!r} "
                                  f"(an immediate is written with '#': '#{operand}')"), str(info.value)


@pytest.mark.parametrize("source", ["mov x1, foo", "mov x1, x31", "add x1, x2, x3 + 1", "mov x1, .x2"])
def test_no_hash_hint_for_an_unknown_name_or_a_register(source: str) -> None:
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    assert "(an immediate is written with" not in str(info.value)


@pytest.mark.parametrize("source", ["br 8", "ldr x1, [8]", "mov 1, x2", "mov x1, -x2", "add x1, x2, (x3)",
                                    "cmp x1, ~xzr"])
def test_no_hash_hint_where_no_immediate_is_allowed(source: str) -> None:
    """The '#' hint is given only where an immediate could stand, and not for a register operand that
    is no register ('#-x2' was suggested for '-x2', which is no immediate either)."""
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    assert "(an immediate is written with" not in str(info.value)


@pytest.mark.parametrize("cond", ["cs", "CC", "vs", "vc", "nv", "xx"])
def test_an_unnamed_condition_is_refused_listing_the_named_ones(cond: str) -> None:
    """A condition the assembler does not name (AArch64's cs and cc aliases, vs, vc, nv) is refused
    with the list of those it does: the message gave only b.eq and b.ne as examples."""
    with pytest.raises(AssemblerError) as info:
        assemble(f"x: b.{cond} x")
    assert str(info.value) == (f"line 1: expected a condition such as b.eq or b.ne, got 'b.{cond}' (the assembler "
                               f"names eq, ne, hs, lo, mi, pl, hi, ls, ge, lt, gt, le and al)"), str(info.value)


@pytest.mark.parametrize("source", [".zero 8\n.org . + 8\nnop", "start: nop\n.org start + 0x100"])
def test_an_org_to_an_address_says_that_org_takes_an_offset(source: str) -> None:
    """`.org . + 8` (GNU as's idiom, where '.' is section-relative) at a workload's base names an
    address, since '.' and labels are addresses here, while .org takes an offset from the image's
    first byte: it was refused as an image of 2 GiB with no word of why."""
    with pytest.raises(AssemblerError) as info:
        assemble(source, base=0x8000_0000)
    assert str(info.value).endswith("(1 GiB, the largest realm RAM); .org takes an offset from the image's first "
                                    "byte, and '.' and labels are addresses (base 0x80000000 + offset)"), str(info.value)
    with pytest.raises(AssemblerError, match=r"\(1 GiB, the largest realm RAM\)$"):
        assemble(".org (1 << 30) + 8")             # base 0: an offset and an address are one


def test_zero_written_with_leading_zeros_is_zero() -> None:
    """docs/guest-isa.md: a decimal number has no leading zeros, but zero alone may be written 00 or
    0_0 (Python's rule, and GNU as reads them as 0 too): test-only, the doc now says so."""
    assert assemble(".quad 00, 0_0") == bytes(16)
    with pytest.raises(AssemblerError, match="leading zeros are not allowed"):
        assemble(".quad 007")


@pytest.mark.parametrize(("source", "register"), [("mov w1, #1", "w1"), ("add x1, w30, x2", "w30"),
                                                  ("ldrw wzr, [x1]", "wzr"), ("str x1, [w2]", "w2")])
def test_a_w_register_is_told_its_x_name(source: str, register: str) -> None:
    """An AArch64 author's 'w1' was refused as any misspelt register, not saying that the ISA has
    no 32-bit register names and which name to write."""
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    assert info.value.message == (f"expected a register x0..x30, lr or xzr, got {register!r} (there are no 32-bit w "
                                  f"registers: write 'x{register[1:]}'; ldrw and strw move 32 bits)"), str(info.value)


@pytest.mark.parametrize(("source", "says"), [
    ("mov x1 #1", "mov takes 2 operand(s), got 1: 'x1 #1'"),
    ("mov x1, #1,", "mov takes 2 operand(s), got 3: 'x1, #1, '"),
    ("cmp x1", "cmp takes 2 operand(s), got 1: 'x1'"),
    ("ret", None),
    ("nop\nret x1", "ret takes 0 operand(s), got 1: 'x1'"),
    ("b", "b takes 1 operand(s), got 0"),
])
def test_a_wrong_operand_count_quotes_the_operands(source: str, says: str | None) -> None:
    """'mov x1 #1' (a ',' left out) said only 'got 1', not the text at fault."""
    if says is None:
        assemble(source)
        return
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    assert info.value.message == says, str(info.value)


@pytest.mark.parametrize(("source", "got"), [(".equ 9X, 5", "'9X, 5'"), (".equ X 5", "'X 5'"),
                                             (".equ", "no operand")])
def test_a_bad_equ_line_says_what_it_got_and_what_a_name_is(source: str, got: str) -> None:
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    assert info.value.message == ("expected '.equ NAME, value' (a NAME starts with an ASCII letter or _ and goes on "
                                  f"with ASCII letters, digits or _), got {got}"), str(info.value)


@pytest.mark.parametrize(("source", "meant"), [(".balign 8", ".align 8"), (".p2align 3", ".align 8"),
                                               (".P2ALIGN 12", ".align 4096"), (".p2align N", ".align 2^n")])
def test_gnu_as_align_names_are_told_the_align_to_write(source: str, meant: str) -> None:
    """docs/guest-isa.md says our .align is GNU as's .balign, yet '.balign 8' was an 'unknown
    instruction', as was '.p2align 3'."""
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    assert info.value.message == (f"{source.split()[0]!r} is GNU as's; expected {meant!r} (a number of bytes, a "
                                  f"power of two: this assembler's .align is GNU as's .balign)"), str(info.value)
    if "^" not in meant:
        assert assemble(f"{meant}\nnop") == assemble("nop")


@pytest.mark.parametrize(("source", "name"), [("mov x1, =x2", "x2"), ("b x1", "x1"), ("add x1, x1, #LR", "LR"),
                                              (".quad xzr", "xzr")])
def test_a_register_in_an_expression_is_named_a_register(source: str, name: str) -> None:
    """'mov x1, =x2' said only "unknown label or constant 'x2'", as if a label were misspelt."""
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    assert info.value.message == (f"unknown label or constant {name!r} (a register: an expression takes numbers, "
                                  f"labels, .equ names and '.')"), str(info.value)
    assemble(f"{source}\n{name}:")          # a label may be named as a register


@pytest.mark.parametrize("source", ["adr x1, #8", "adr x1, #buf\nbuf:"])
def test_adr_with_a_hash_says_it_takes_a_label(source: str) -> None:
    """'adr x1, #8' said "expected a number, a label or an expression, got '#8'"."""
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    got = source.split(", ")[1].split("\n")[0]
    assert info.value.message == (f"expected a label (or an expression giving an address) after 'adr x1,', got "
                                  f"{got!r}: adr takes no '#' (for a value, write 'mov xd, =value')"), str(info.value)
