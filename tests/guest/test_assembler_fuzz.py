"""Random text for the guest assembler and rmm_mp.guest.equ: whatever the text, the result is
an image or an AssemblerError naming a line (equ: a ValueError naming the constant), never
another exception. Lines are built from the syntax's own pieces (mnemonics, registers,
immediates, brackets, strings, labels, directives) and from characters that have tripped
parsers before (escapes, control characters, non-ASCII letters and digits, Unicode blanks).

Hypothesis runs derandomized with no example database (tests/README.md: fixed seeds)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_mp.guest.assembler import AssemblerError, assemble
from rmm_mp.guest.equ import equ_names, with_constants

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=300)

_PIECES = [
    "nop", "mov", "movk", "adr", "add", "sub", "and", "orr", "eor", "lsl", "lsr", "mul", "cmp", "b", "bl",
    "b.eq", "B.NE", "b.nv", "b.", "cbz", "cbnz", "ret", "br", "ldr", "ldrw", "ldrh", "ldrb", "str", "strb",
    "ldp", "stp", "smc", "hvc", "wfi", "eret", "mrs", "msr", "udf", ".equ", ".EQU", ".quad", ".word", ".half",
    ".byte", ".ascii", ".asciz", ".zero", ".align", ".org", ".text", "x0", "x1", "x30", "x31", "xzr", "lr",
    "sp", "vbar", "mpidr", "#", "#0", "#-1", "#0x7fffffff", "#(1<<64)", "#~0", "=", "=foo", "=-1", ",", "[",
    "]", "[x1]", "[x1, #8]", "(", ")", "+", "-", "*", "%", "<<", ">>", "&", "^", "|", "~", ".", "foo", "foo:",
    "bar:", "lsl #16", "lsl#16", "0", "1", "0x", "0b2", "00", "1_", "9" * 40, '"hi"', '"\\q"', '"\\x4"',
    '"', '"\\"', "\\", ";", "//", "\t", " ", "\x0b", "\x0c", "\xa0", "\u2003", "\x00", "\ud800", "\u0661",
    "ſ", "ı", "\u212a", "$", ":", "1:", "a.b:", "\r", "\n", "\x85", "\u2028", "\ufeff", "é",
]
_SEPARATORS = ["", " ", ", ", ","]
_LINE = st.lists(st.tuples(st.sampled_from(_PIECES), st.sampled_from(_SEPARATORS)), max_size=8).map(
    lambda parts: "".join(piece + separator for piece, separator in parts))
_PROGRAM = st.lists(_LINE, min_size=1, max_size=6).map("\n".join)


def _assembled_or_refused(text: str) -> None:
    try:
        image = assemble(text)
    except AssemblerError as exc:
        assert str(exc).startswith(f"line {exc.line}: ") and exc.line >= 1
    else:
        assert isinstance(image, bytes)


@FUZZ
@given(_PROGRAM)
def test_lines_of_syntax_pieces_assemble_or_are_refused(text: str) -> None:
    """Lines made of the syntax's pieces in any order: an image or an AssemblerError whose
    message starts with its line, never another exception."""
    _assembled_or_refused(text)


@FUZZ
@given(st.text(max_size=60))
def test_any_text_assembles_or_is_refused(text: str) -> None:
    """Any text at all (surrogates, NUL, every line end included): an image or an
    AssemblerError, never another exception."""
    _assembled_or_refused(text)


@FUZZ
@given(_PROGRAM, st.integers(-(1 << 70), 1 << 70))
def test_equ_rewriting_of_any_text_raises_only_its_own_error(text: str, value: int) -> None:
    """equ_names and with_constants on such text: a list of names, the rewritten text, or a
    ValueError naming a constant that no .equ line defines; never another exception."""
    names = equ_names(text)
    try:
        with_constants(text, {"foo": value})
    except ValueError as exc:
        assert "foo" not in names and str(exc).startswith("foo is not an .equ constant"), exc


_BLANK = st.sampled_from(["", " ", "\t", "\x0b", "\x0c", "  ", "\xa0"])
# An .equ-like line piece by piece: label, directive, name, comma, value, comment, each with a
# few near misses, so that most lines come close to one of the forms the assembler takes.
_EQU_LINE = st.tuples(_BLANK, st.sampled_from(["", "", "foo:", "foo :", "a.b:", "1:", "foo"]), _BLANK,
                      st.sampled_from([".equ", ".EQU", "equ", ".equX", ".quad"]), _BLANK,
                      st.sampled_from(["X", "Y", "X1", "1X", ""]), _BLANK, st.sampled_from([",", "", ";", ",,"]), _BLANK,
                      st.sampled_from(["1", "X", "", "1 // c", '"'])).map("".join)
_EQU_TEXT = st.lists(_EQU_LINE, min_size=1, max_size=4).map(lambda lines: "\n".join(lines))


@FUZZ
@given(_EQU_TEXT)
def test_equ_names_are_the_names_the_assembler_defines(text: str) -> None:
    """For text the assembler accepts, equ_names lists exactly the names its .equ lines
    define, in order: a workload's constants can set every one of them and no other. (An .equ
    after a label, or after a vertical tab, was defined by the assembler but not found.)"""
    from rmm_mp.guest.assembler import _Assembler
    try:
        assembler = _Assembler(text, 0)
        assembler.run()
    except AssemblerError:
        return
    assert equ_names(text) == [line.args[0] for line in assembler.lines if line.op == ".equ"]
