"""What the guest assembler says of a memory operand written as GNU as would take it but this
ISA does not: a ',' left out between the base register and the offset, and the post-index
('[xn], #imm') and pre-index ('[xn, #imm]!') forms, which write the address back to xn and are
not in the ISA (docs/guest-isa.md). Each error names the line, what it got and what was expected."""

from __future__ import annotations

import pytest

from rmm_mp.guest.assembler import AssemblerError, assemble


def _message(text: str) -> str:
    with pytest.raises(AssemblerError) as info:
        assemble(text)
    assert info.value.line == 1, info.value
    return info.value.message


@pytest.mark.parametrize(("text", "operand", "meant"), [
    ("ldr x1, [x2 #8]", "[x2 #8]", "[x2, #8]"),
    ("strb x1, [x2#8]", "[x2#8]", "[x2, #8]"),
    ("ldr x1, [lr  #-8]", "[lr  #-8]", "[lr, #-8]"),
    ("ldp x1, x3, [x2 #16]", "[x2 #16]", "[x2, #16]"),
    ("stp x1, x3, [X2 8]", "[X2 8]", "[X2, #8]"),       # the '#' it lacks too: '[X2, 8]' is refused
    ("ldr x1, [x2 - 8]", "[x2 - 8]", "[x2, #- 8]"),
])
def test_a_missing_comma_in_a_memory_operand_is_named(text: str, operand: str, meant: str) -> None:
    """It said 'expected a register ..., got 'x2 #8'', as if the register were misspelt."""
    message = _message(text)
    assert message == (f"expected a ',' between the base register and the offset of a memory operand, as in "
                       f"{meant!r}, got {operand!r}"), message


@pytest.mark.parametrize("text", ["ldr x1, [x2 8]", "ldr x1, [x2 + 8]", "stp x1, x3, [x2 16]"])
def test_the_operand_a_missing_comma_message_suggests_assembles(text: str) -> None:
    """The suggestion is a valid operand: it was '[x2, 8]', which is refused for its missing '#'."""
    meant = _message(text).split("as in ")[1].split(", got")[0].strip("'")
    assemble(text.replace(text[text.index("["):], meant))


def test_a_register_offset_is_not_suggested() -> None:
    """'[x2 x3]' was told to be written '[x2, x3]', which the ISA has not either (no register offset)."""
    message = _message("ldr x1, [x2 x3]")
    assert message == "expected a memory operand [xn] or [xn, #imm] (no register offset), got '[x2 x3]'", message


def test_a_base_that_is_no_register_is_still_told_so() -> None:
    assert "expected a register x0..x30, lr or xzr, got 'x1x #8'" in _message("ldr x0, [x1x #8]")


@pytest.mark.parametrize(("text", "shape"), [
    ("ldr x1, [x2], #8", "ldr xd, [xn{, #offset}]"),
    ("strw x1, [x2], #4", "strw xd, [xn{, #offset}]"),
    ("ldp x1, x2, [x3], #16", "ldp xd, xe, [xn{, #offset}]"),
])
def test_a_post_index_form_is_said_not_to_be_in_the_isa(text: str, shape: str) -> None:
    """It said only the expected shape, not what it got nor that the form is missing."""
    got = text.split(" ", 1)[1]
    message = _message(text)
    assert message == (f"expected '{shape}', got {got!r}: the post-index form '[xn], #imm' (which writes "
                       f"xn + imm back to xn) is not in the ISA; add to xn in an instruction of its own"), message


@pytest.mark.parametrize(("text", "operand", "example"), [
    ("ldr x1, [x2, #8]!", "[x2, #8]!", "[x1, #8]"),
    ("stp x1, x2, [sp, #-16]!", "[sp, #-16]!", "[x1, #16]"),
])
def test_a_pre_index_form_is_said_not_to_be_in_the_isa(text: str, operand: str, example: str) -> None:
    message = _message(text)
    assert message == (f"expected a memory operand such as [x1] or {example}, got {operand!r}: the pre-index form "
                       f"'[xn, #imm]!' (which writes xn + imm back to xn) is not in the ISA; add to xn in an "
                       f"instruction of its own"), message


@pytest.mark.parametrize(("text", "expected"), [
    ("ldr x1", "expected 'ldr xd, [xn{, #offset}]', got 'x1'"),
    ("str x1, [x2], x3", "expected 'str xd, [xn{, #offset}]', got 'x1, [x2], x3'"),   # no #imm: no post-index
    ("ldr", "expected 'ldr xd, [xn{, #offset}]', got no operand"),
    ("ldp x1, [x2]", "expected 'ldp xd, xe, [xn{, #offset}]', got 'x1, [x2]'"),
])
def test_a_wrong_operand_count_says_what_it_got(text: str, expected: str) -> None:
    assert _message(text) == expected


@pytest.mark.parametrize(("text", "operand", "meant"), [
    ("ldr x1, [x2 #8]!", "[x2 #8]!", "[x2, #8]"),
    ("stp x1, x3, [x2 16]!", "[x2 16]!", "[x2, #16]"),
])
def test_a_pre_index_form_missing_its_comma_says_what_was_expected(text: str, operand: str, meant: str) -> None:
    """'[x2 #8]!' was told only that the pre-index form is not in the ISA, with '[x1, #8]' as the
    example: the ',' it lacks went unnamed, to be found at the next try."""
    message = _message(text)
    assert message == (f"expected a memory operand such as {meant!r} (a ',' between the base register and the offset, "
                       f"and no '!'), got {operand!r}: the pre-index form '[xn, #imm]!' (which writes xn + imm back "
                       f"to xn) is not in the ISA; add to xn in an instruction of its own"), message
    assemble(text.replace(operand, meant))


@pytest.mark.parametrize(("text", "shape", "offset"), [
    ("ldr x1, [x2], 8", "ldr xd, [xn{, #offset}]", "8"),
    ("ldp x1, x3, [x2], 16", "ldp xd, xe, [xn{, #offset}]", "16"),
    ("strb x1, [x2], -1", "strb xd, [xn{, #offset}]", "-1"),
    ("str x1, [x2], STEP\n.equ STEP, 8", "str xd, [xn{, #offset}]", "STEP"),
])
def test_a_post_index_offset_without_its_hash_is_told_both(text: str, shape: str, offset: str) -> None:
    """'[x2], 8' was told only the expected shape: neither that the post-index form is not in the
    ISA (given for '[x2], #8' alone) nor that its offset lacks the '#'."""
    got = text.split("\n")[0].split(" ", 1)[1]
    message = _message(text)
    assert message == (f"expected '{shape}', got {got!r} (an immediate is written with '#': '#{offset}'): the "
                       f"post-index form '[xn], #imm' (which writes xn + imm back to xn) is not in the ISA; add to "
                       f"xn in an instruction of its own"), message


def test_memory_operand_messages_shorten_and_escape_what_they_quote() -> None:
    """The operand (and the operands of a wrong count) were quoted whole, however long, where other
    messages shorten them; the '[x2 ...]!' example was not quoted at all, so a '\\v' in its offset
    was printed raw."""
    long = "1 + " * 40 + "1"
    for source in (f"ldr x1, [x2 {long}]", f"ldr x1, [x2 #{long}]!", f"ldr x1, [x2], #{long}",
                   f"str x1, [x2, #8]!, {long}"):
        message = _message(source)
        assert "characters)'" in message and long not in message and len(message) < 400, message
    message = _message("ldr x1, [x2 #8\v+1]!")
    assert "\v" not in message and "such as '[x2, #8\\x0b+1]' (a ','" in message, message


@pytest.mark.parametrize("source", ["ldr x1, [x2 x3]\nx3: nop", "ldr x1, [x2 x3]\n.equ x3, 8",
                                    "stp x1, x4, [x2 X3]\n.equ X3, 16"])
def test_a_name_like_a_register_that_the_source_defines_is_an_offset(source: str) -> None:
    """'[x2 x3]' with a label or .equ name x3 was told 'no register offset', though '[x2, #x3]' assembles."""
    operand = source[source.index("["):source.index("]") + 1]
    meant = operand.replace(" ", ", #", 1)
    message = _message(source)
    assert f"as in {meant!r}, got {operand!r}" in message, message
    assemble(source.replace(operand, meant))


@pytest.mark.parametrize("source", ["ldr x1, [x2 #0x100000000]", "ldr x1, [x2 0x80000000]!",
                                    "ldp x1, x3, [x2 BIG]\n.equ BIG, -0x80000001"])
def test_no_offset_is_suggested_that_is_too_big_for_one(source: str) -> None:
    """'[x2 #0x100000000]' was told '[x2, #0x100000000]', refused next as too big for 32 bits."""
    message = _message(source)
    assert "[x2, #" not in message, message
    if "!" not in source:
        assert message.startswith("expected a ',' between the base register and the offset of a memory operand and "
                                  "an offset with a value in #-0x80000000..#0x7fffffff, got '[x2 "), message


@pytest.mark.parametrize("source", ["ldr x1, [x2 8 % 0]", "ldr x1, [x2 #1 << 200]", "ldr x1, [x2 8 % 0]!"])
def test_no_offset_is_suggested_that_has_no_value(source: str) -> None:
    """'[x2 8 % 0]' was told '[x2, #8 % 0]', refused next as a modulo by zero ('1 << 200': more bits
    than an expression may reach); the ',' is still named."""
    message = _message(source)
    assert "[x2, #" not in message, message
    if "!" not in source:
        assert message.startswith("expected a ',' between the base register and the offset of a memory operand and "
                                  "an offset with a value in #-0x80000000..#0x7fffffff, got '[x2 "), message
