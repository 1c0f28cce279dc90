"""The guest assembler's hints (a '#' left out, a ',' left out of a memory operand, GNU as's
.balign and .p2align, adr with a '#', a wrong operand count): each suggestion it makes must
assemble, no hint may be given for text it would not fix, and quoted text is escaped and
shortened as any other message's."""

from __future__ import annotations

import re

import pytest

from rmm_mp.guest.assembler import AssemblerError, assemble


def _message(source: str) -> str:
    with pytest.raises(AssemblerError) as info:
        assemble(source)
    return info.value.message


@pytest.mark.parametrize("source", ["mov x1, 1 2", "mov x1, .foo", "mov x1, . 8", "add x1, x2, SIZE SIZE\n.equ SIZE, 8",
                                    "cmp x1, SIZE + nope\n.equ SIZE, 8", "mov x1, .\u00e9", "mov x1, 1 +",
                                    "ldr x1, [x2], 1 2", "ldr x1, [x2], .foo"])
def test_no_hash_hint_for_text_that_a_hash_would_not_make_an_immediate(source: str) -> None:
    """'mov x1, 1 2' was told "'#1 2'" and 'mov x1, .foo' "'#.foo'": neither assembles."""
    assert "(an immediate is written with" not in _message(source)


@pytest.mark.parametrize(("source", "operand"), [("mov x1, x31\nx31: nop", "x31"), ("mov x1, -x2\nx2: nop", "-x2"),
                                                 ("mov x1, lr2 + 8\nlr2: nop", "lr2 + 8")])
def test_a_name_like_a_register_that_the_source_defines_is_told_its_hash(source: str, operand: str) -> None:
    """A label named x31 (no register) or x2 is a value: '#x31' assembles, and the hint said nothing."""
    assert _message(source).endswith(f"(an immediate is written with '#': '#{operand}')")
    assemble(source.replace(operand, "#" + operand, 1))


def test_a_w_register_that_is_also_a_label_keeps_the_hash_hint() -> None:
    message = _message("mov x1, w1\nw1: nop")
    assert message.endswith("ldrw and strw move 32 bits) (an immediate is written with '#': '#w1')"), message
    assemble("mov x1, #w1\nw1: nop")


def test_a_hash_hint_is_escaped_and_shortened() -> None:
    """The hint printed its text raw (a '\\v' between words reached the terminal) and whole."""
    assert _message("add x1, x2, 1\v+\v2").endswith("(an immediate is written with '#': '#1\\x0b+\\x0b2')")
    long = "1 + " * 100 + "1"
    message = _message(f"mov x1, {long}")
    assert f"({len(long) + 1} characters)'" in message and len(message) < 300, message


@pytest.mark.parametrize("source", ["ldr x1, [x2 foo bar]", "ldr x1, [x2 foo bar]!", "ldr x1, [x2 #]!",
                                    "ldr x1, [x2 #]", "ldr x1, [x2 #nope]!"])
def test_no_comma_suggestion_for_an_offset_that_is_no_expression(source: str) -> None:
    """'[x2 foo bar]' was told "'[x2, #foo bar]'" and '[x2 #]!' "[x2, #]": neither assembles."""
    message = _message(source)
    assert "[x2, #" not in message, message


@pytest.mark.parametrize("source", ["mov x1, 8 % 0", "add x1, x2, 1 << 200", "cmp x1, 1 << 999999", "ldr x1, [x2], 8 % 0"])
def test_no_hash_hint_for_an_expression_with_no_value(source: str) -> None:
    """'mov x1, 8 % 0' was told '#8 % 0', refused next as a modulo by zero ('1 << 200': more bits
    than an expression may reach): the assembler's _known caught that error as 'not known yet'."""
    assert "'#" not in _message(source).split("got", 1)[1].split(")")[0], _message(source)


@pytest.mark.parametrize(("source", "meant"), [("ldr x1, [x2 #8]!", "[x2, #8]"), ("ldr x1, [x2 SIZE]\n.equ SIZE, 8",
                                                                                  "[x2, #SIZE]")])
def test_a_comma_suggestion_assembles(source: str, meant: str) -> None:
    assert meant in _message(source)
    assemble(re.sub(r"\[.*\]!?", lambda _: meant, source, count=1))


@pytest.mark.parametrize(("source", "meant"), [(".balign 3", ".align n"), (".balign 8, 0", ".align 8"),
                                               (".balign 16 + 16", ".align 32"), (".balign SIZE\n.equ SIZE, 64",
                                                                                  ".align 64"),
                                               (".balign " + "x" * 300, ".align n"), (".p2align 1 + 2", ".align 8"),
                                               (".p2align 64", ".align 2^n"), (".p2align -1", ".align 2^n"),
                                               (".p2align 0", ".align 1")])
def test_an_align_suggestion_assembles_or_names_no_count(source: str, meant: str) -> None:
    """'.balign 3' was told '.align 3' (refused: no power of two) and '.balign <300 characters>' the
    300 characters; '.p2align 1 + 2' got only '.align 2^n'."""
    message = _message(source)
    assert message.startswith(f"{source.split()[0]!r} is GNU as's; expected {meant!r} "), message
    if "n" not in meant.split()[1]:
        assemble(meant)


@pytest.mark.parametrize(("source", "meant"), [(".balign 8, 0", ".align 8"), (".p2align 3,,7", ".align 8"),
                                               (".balign 16, 0, 4", ".align 16"), (".p2align 2, 0", ".align 4"),
                                               (".balign 3, 0", ".align n")])
def test_an_align_with_fill_or_max_skip_gives_the_count_and_says_they_are_not_supported(source: str,
                                                                                        meant: str) -> None:
    """'.balign 8, 0' was told '.align n' and '.p2align 3,,7' '.align 2^n': a second or third operand
    threw the first one's value away, and nothing said that .align takes neither."""
    message = _message(source)
    assert message.startswith(f"{source.split()[0]!r} is GNU as's; expected {meant!r} "), message
    assert message.endswith("; .align has no fill or max-skip operand: it pads with zeros"), message
    if "n" not in meant.split()[1]:
        assemble(meant)


@pytest.mark.parametrize("source", ["adr x9z, #8", "adr x1\v2, #8", "adr " + "q" * 300 + ", #8"])
def test_adr_with_a_hash_and_a_bad_register_names_the_register(source: str) -> None:
    """The '#' message came first and quoted the register raw and whole ('\\v' printed as such)."""
    message = _message(source)
    assert message.startswith("expected a register x0..x30, lr or xzr, got "), message
    assert "\v" not in message and len(message) < 200, message


@pytest.mark.parametrize("source", ["nop x1, " + "z" * 300, ".equ " + "9" * 300 + ", 5", "mov x1, " + "a" * 300])
def test_quoted_operands_are_shortened(source: str) -> None:
    """An operand count or .equ message quoted all the operands, a register message all the operand."""
    message = _message(source)
    assert "characters)'" in message and len(message) < 300, message


@pytest.mark.parametrize(("source", "meant"), [("mov x1, 0x100000000", "mov x1, =0x100000000"),
                                               ("mov x1, BIG\n.equ BIG, -0x80000001",
                                                "mov x1, =BIG\n.equ BIG, -0x80000001"),
                                               ("mov x1, 0xffffffffffffffff", "mov x1, =0xffffffffffffffff")])
def test_a_mov_of_a_value_past_32_bits_is_told_its_equals_sign(source: str, meant: str) -> None:
    """'mov x1, 0x100000000' was told '#0x100000000', refused next as too big for 32 bits."""
    message = _message(source)
    assert "'#" not in message and message.endswith(f"(a value past 32 signed bits is written with '=': "
                                                    f"'{meant.split(', ')[1].split(chr(10))[0]}')"), message
    assemble(meant)


@pytest.mark.parametrize("source", ["add x1, x2, 0x100000000", "cmp x1, -0x80000001", "ldr x1, [x2], 0x80000000",
                                    "mov x1, 0x10000000000000000"])
def test_no_hash_hint_for_a_value_too_big_for_an_immediate(source: str) -> None:
    message = _message(source)
    assert "(an immediate is written with" not in message, message
    if "0x1000000000000" not in source:
        assert "would not fit 32 signed bits: load it with 'mov xd, =value' first)" in message, message


@pytest.mark.parametrize(("source", "why"), [("ldr x1, [x2 #0x100000000]!", "(its value is 0x100000000)"),
                                             ("stp x1, x3, [x2 8 % 0]!", "(modulo by zero in '8 % 0')")])
def test_a_pre_index_operand_missing_its_comma_with_a_bad_offset_names_the_comma(source: str, why: str) -> None:
    """'[x2 #0x100000000]!' was given the generic example '[x1] or [x1, #8]': neither its missing ','
    nor its offset's range was named (without the '!' both were)."""
    message = _message(source)
    assert message.startswith("expected a memory operand such as [xn, #imm] (a ',' between the base register and "
                              "the offset, an offset with a value in #-0x80000000..#0x7fffffff, and no '!'), got "), \
        message
    assert f"]!' {why}: the pre-index form '[xn, #imm]!'" in message, message


@pytest.mark.parametrize("source", ["ldr x1, [x2], 8 % 0", "ldr x1, [x2], 8 / 0", "stp x1, x3, [x2], 1 << 200",
                                    "str x1, [x2], nope"])
def test_a_post_index_offset_with_no_value_is_told_the_post_index_form(source: str) -> None:
    """'[x2], 8 % 0' got only the expected shape: a '#' hint is rightly not given (it would not
    assemble), and with it went the post-index explanation that '[x2], 8' gets."""
    message = _message(source)
    assert message.endswith(": the post-index form '[xn], #imm' (which writes xn + imm back to xn) is not in the "
                            "ISA; add to xn in an instruction of its own"), message
    assert "(an immediate is written with" not in message, message


@pytest.mark.parametrize("source", ["ldr x1, [x2],", "ldr x1, [x2], ", "ldp x0, x1, [x2],\t", "str x1, [x2],\v"])
def test_a_trailing_comma_after_a_memory_operand_is_not_told_the_post_index_form(source: str) -> None:
    """'ldr x1, [x2],' has no offset after the ',': nothing says a post-index form was meant, and
    the explanation that '[x2], 8 % 0' gets was given to it too."""
    message = _message(source)
    assert "post-index" not in message, message
    assert message.startswith("expected '"), message


@pytest.mark.parametrize(("source", "why"), [("str x0, [x1 1/0]", " (there is no '/' operator)"),
                                             ("str x0, [x1 #1/0]", " (there is no '/' operator)"),
                                             ("ldr x0, [x1 foo bar]", ""),
                                             ("ldr x0, [x1 #nope]", " (unknown label or constant 'nope')")])
def test_an_unseparated_offset_that_is_no_expression_is_told_its_comma_not_a_register(source: str, why: str) -> None:
    """'[x1 1/0]' was told "expected a register x0..x30, lr or xzr, got 'x1 1/0'": it is a ','
    left out and an offset that is no expression (there is no '/'). One expectation, worded one
    way whatever the offset lacks (an unknown name was told "an offset of numbers, labels, ...")."""
    message = _message(source)
    operand = source[source.index("["):]
    assert message.startswith("expected a ',' between the base register and the offset of a memory operand and an "
                              "offset that is an expression of numbers, labels, .equ names and '.', got "), message
    assert message.endswith(f"got {operand!r}{why}"), message
    assert "expected a register" not in message, message


@pytest.mark.parametrize(("source", "outside"), [(".p2align 40", "; its 40 is outside 0..30 (an alignment of at most "
                                                                 "0x40000000 bytes, the largest image)"),
                                                 (".p2align -3", "; its -3 is outside 0..30"),
                                                 (".balign 0x10000000000", "; its 1099511627776 is outside "
                                                                           "1..0x40000000 (the largest image)")])
def test_an_align_suggestion_past_the_largest_image_says_the_range(source: str, outside: str) -> None:
    """'.p2align 40' was told '.align 1099511627776': a power of two, but an alignment past any
    image (1 GiB), which .align refuses as soon as it pads."""
    message = _message(source)
    assert "'.align 2^n'" in message or "'.align n'" in message, message
    assert outside in message, message
    assert "1099511627776'" not in message, message


def test_the_largest_align_suggested_assembles() -> None:
    assert "'.align 1073741824'" in _message(".p2align 30")
    assemble(".align 1073741824")    # at offset 0: no padding (a 1 GiB image would take seconds)


@pytest.mark.parametrize("source", ["f" * 300, "f" * 300 + " x1", "b." + "q" * 300 + " 0", "x:" + "y" * 300 + ":"])
def test_an_unknown_instruction_is_quoted_shortened(source: str) -> None:
    """'unknown instruction' (and the condition and second-label messages) quoted the text whole."""
    message = _message(source)
    assert "characters)'" in message and len(message) < 250, message


def test_an_unknown_instruction_is_escaped() -> None:
    assert _message("foo\x07 x1") == "unknown instruction 'foo\\x07'; see docs/guest-isa.md for the list"
