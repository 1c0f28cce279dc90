"""The guest assembler's reading of a load's or store's memory operand, and what to tell an
author who wrote an operand as GNU as would (a post- or pre-index form, a ',' or a '#' left
out) or GNU as's names of .align (.balign, .p2align). rmm_mp.guest.assembler encodes what these
functions return.

This module owns those operand shapes and their messages, and how its and the assembler's
messages quote an operand (quoted; asmstrings and expr, which it does not serve, quote as it does,
with expr.short). It must not evaluate an expression nor encode anything (both are
the assembler's); it parses one (expr.postfix), and asks the assembler for its value where
known, only to suggest no text that would not assemble."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import NamedTuple

from rmm_mp.guest import expr
from rmm_mp.guest.asmlines import AssemblerError, Line, memory_operand
from rmm_mp.guest.expr import short

REG = re.compile(r"^(x([0-9]|[12][0-9]|30)|xzr|lr)$")
"""A register's name, in lower case."""

Value = Callable[[str], int | None]
"""The value of an expression, or None where the assembler does not know it (yet); raises
expr.ExprError where the expression has none ('8 % 0', '1 << 200'): '#' + it would be refused."""

IMM_RANGE = range(-(1 << 31), 1 << 31)
"""The values a '#imm' operand or offset takes (32 bits, signed)."""


def quoted(text: str) -> str:
    """text for a message: shortened as expr.short does, and escaped (a '\\v' is not printed raw):
    every quoted operand of this module's and rmm_mp.guest.assembler's messages."""
    return repr(short(text))

# The end of an error about a GNU as memory operand that writes its address back to the base: no
# form of this ISA does (docs/guest-isa.md).
_WRITEBACK = ": the {}-index form '{}' (which writes xn + imm back to xn) is not in the ISA; add to xn in an " \
             "instruction of its own"


def immediate_hint(text: str, declared: Collection[str], value: Value, op: str | None = None) -> str:
    """' (an immediate is written with '#': '#text')' if ``text``, found where a register or an
    immediate may stand, reads as an immediate without its '#' (a number, an expression, '.'
    or a name the source defines, as GNU as's `mov x1, 1` or `add x1, x2, SIZE`); else ''.
    No hint for text naming a register ('-x2' or '(x3)' is no immediate either) or for text that
    '#' would not make an expression ('1 2', '.foo'): the text suggested must assemble. So a
    value known (``value``) to be outside IMM_RANGE is not told its '#', which would be refused
    next as too big: ``op`` mov is told its '=' instead, any other instruction to load the value
    with one ('mov x1, 0x100000000' was told '#0x100000000')."""
    written = text.strip()
    if not expression(written, declared):
        return ""
    try:
        known = value(written)
    except expr.ExprError:
        return ""   # '#8 % 0' would be refused too: it has no value
    if known is not None and known not in IMM_RANGE:
        if not -(1 << 63) <= known < 1 << 64:
            return ""
        if op == "mov":
            return f" (a value past 32 signed bits is written with '=': {quoted('=' + written)})"
        return f" ({quoted('#' + written)} would not fit 32 signed bits: load it with 'mov xd, =value' first)"
    # repr and shortened, as the text quoted before it: a '\v' between words is escaped, not printed
    return f" (an immediate is written with '#': {quoted('#' + written)})"


def expression(text: str, declared: Collection[str]) -> bool:
    """Whether ``text`` is an expression whose names all are in ``declared`` (its value apart):
    '#text' as an immediate assembles, if the value fits. A register's name is no such name
    unless the source defines it as a label or .equ name (which it may)."""
    return _not_expression(text, declared) is None


def _not_expression(text: str, declared: Collection[str]) -> str | None:
    """None if ``text`` is an expression whose names all are in ``declared`` (``expression``);
    else why not, for a message: ' (there is no '/' operator)', ' (unknown label or constant
    'name')', or '' where the reason is only that it does not parse."""
    try:
        items = expr.postfix(text)
    except expr.ExprError:
        return " (there is no '/' operator)" if "/" in text else ""
    unknown = next((item for item in items if isinstance(item, str) and NAME.fullmatch(item)
                    and item not in declared), None)
    return None if unknown is None else f" (unknown label or constant {quoted(unknown)})"


NAME = re.compile(r"[A-Za-z_]\w*", re.ASCII)
"""A label's or .equ name's syntax (the operators expr.postfix returns never match it)."""


def address_operand(line: Line, registers: int, declared: Collection[str], value: Value) -> tuple[str, str | None]:
    """(base, offset or None) of the memory operand of a load or store, which follows its
    ``registers`` registers (1, or 2 for a pair). GNU as's forms that this ISA lacks are told
    as such rather than as a misspelt register or operand count; ``declared``: the names the
    source defines (a post-index offset written without its '#' may be one); ``value``: an
    expression's value where known, so that no offset is suggested that is too big for one."""
    args = line.args
    if len(args) != registers + 1:
        got = quoted(", ".join(args)) if args else "no operand"
        post = ""
        if len(args) == registers + 2 and memory_operand(args[registers]) is not None:
            # '[x2], 8' as well as '[x2], #8': the '#' it lacks is named too, not left for the next try; and
            # an offset with no value ('8 % 0') or none of this syntax ('8 / 0') is a post-index one still.
            # Not a register ('[x2], x3') nor nothing ('[x2],', a trailing ','): '[xn], #imm' is not the form meant.
            offset = args[-1].strip()
            hint = "" if offset.startswith("#") else immediate_hint(offset, declared, value)
            if offset and (not REG.fullmatch(offset.lower()) or offset in declared):
                post = hint + _WRITEBACK.format("post", "[xn], #imm")
        raise AssemblerError(line.number, f"expected '{line.op} xd, {'xe, ' * (registers - 1)}[xn{{, #offset}}]', "
                                          f"got {got}{post}")
    text = args[registers]
    operand = memory_operand(text)
    if operand is None:
        inner = memory_operand(text[:-1].rstrip()) if text.endswith("!") else None
        example, detail = f"[x1] or [x1, #{8 * registers}]", ""
        found = _unseparated(inner, declared, value) if inner is not None else None
        if found is not None and found.meant:
            # '[x2 #8]!': the ',' it lacks is named as for '[x2 #8]', not only the '!'; quoted (and so
            # escaped: an offset holding a '\v' was printed raw) as the operand it got
            example = f"{quoted(found.meant)} (a ',' between the base register and the offset, and no '!')"
        elif found is not None and found.expected:
            # '[x2 #0x100000000]!': the ',' is named too, but no operand suggested (none would assemble)
            example, detail = f"[xn, #imm] (a ',' between the base register and the offset, {found.expected}, " \
                              f"and no '!')", found.detail
        raise AssemblerError(line.number, f"expected a memory operand such as {example}, got {quoted(text)}{detail}"
                                          f"{_WRITEBACK.format('pre', '[xn, #imm]!') if inner else ''}")
    found = _unseparated(operand, declared, value)
    if found is None:
        return operand
    if found.meant:
        raise AssemblerError(line.number, f"expected a ',' between the base register and the offset of a memory "
                                          f"operand, as in {quoted(found.meant)}, got {quoted(text)}")
    if not found.expected:
        raise AssemblerError(line.number, f"expected a memory operand [xn] or [xn, #imm] (no register "
                                          f"offset), got {quoted(text)}")
    # '[x2 #0x100000000]', '[x2 8 % 0]' or '[x1 1/0]': the ',' is named still (the register check
    # would call 'x1 1/0' a misspelt register), but no operand is suggested, as none would assemble
    raise AssemblerError(line.number, f"expected a ',' between the base register and the offset of a memory "
                                      f"operand and {found.expected}, got {quoted(text)}{found.detail}")


class _Unseparated(NamedTuple):
    """What _unseparated makes of '[x2 ...]': the operand meant, or '' and what its offset lacks."""

    meant: str
    """'[x2, #8]' for '[x2 #8]', if it assembles; else ''."""
    expected: str = ""
    """Where meant is '': what the offset should be ('' if it is a register: no register offset)."""
    detail: str = ""
    """Where expected is not '': ' (why the offset is not that)', or ''."""


_IN_RANGE = "an offset with a value in #-0x80000000..#0x7fffffff"


def _unseparated(operand: tuple[str, str | None], declared: Collection[str], value: Value) -> _Unseparated | None:
    """For '[x2 #8]' (a register, then an offset with no ',' before it, which the register check
    would call a misspelt register): the operand meant, '[x2, #8]', if it would assemble; None for
    any other operand. No operand is suggested ('[x2 a b]' was told '[x2, #a b]', which does not
    assemble either) where what follows the register is a register too (there is no register
    offset), or an offset that is no expression ('[x1 1/0]': there is no '/'), names a name the
    source does not define, or whose ``value`` has none or is outside IMM_RANGE ('[x2, #0x100000000]'
    is refused as too big): what the offset should be is said instead. A name the source
    defines ('[x2 x3]' with a label x3) is an offset, not a register."""
    unseparated = re.fullmatch(r"(\w+)(?:\s+|(?=#))(.+)", operand[0], re.DOTALL | re.ASCII)
    if operand[1] is not None or not unseparated or not REG.fullmatch(unseparated.group(1).lower()):
        return None
    base, rest = unseparated.groups()
    # The operand suggested must assemble: there is no register offset, and an offset takes its '#'.
    if REG.fullmatch(rest.strip().lower()) and rest.strip() not in declared:
        return _Unseparated("")
    offset = rest[1:] if rest.startswith("#") else rest
    why = _not_expression(offset, declared)
    if why is not None:
        return _Unseparated("", "an offset that is an expression of numbers, labels, .equ names and '.'", why)
    try:
        known = value(offset.strip())
    except expr.ExprError as exc:
        return _Unseparated("", _IN_RANGE, f" ({exc})")     # no value: '[x2, #8 % 0]' is refused too
    if known is not None and known not in IMM_RANGE:
        return _Unseparated("", _IN_RANGE, f" (its value is {expr.shown(known)})")
    return _Unseparated(f"[{base}, #{offset}]")


def gnu_alignment(line: Line, value: int | None, most: int) -> AssemblerError:
    """The refusal of GNU as's .balign or .p2align (``value``: its first operand's, None if none
    is known), whose .align this assembler's is: it counts bytes, as .balign does. The count named
    is the one the line means, in bytes, if its value makes one (a power of two) of at most
    ``most`` (a power of two: the largest image, past which no alignment means anything), else
    'n' or '2^n' and, for a value out of that range, the range ('.p2align 40' was told
    '.align 1099511627776'); never the text as written ('.balign 3' was told '.align 3', refused
    too), and a fill or max-skip operand does not hide it ('.balign 8, 0' was told '.align n')."""
    bits = most.bit_length() - 1
    count, outside = ("2^n", "") if line.op == ".p2align" else ("n", "")
    if value is not None and line.op == ".p2align":
        if 0 <= value <= bits:
            count = str(1 << value)
        else:
            outside = f"; its {expr.shown(value, 10)} is outside 0..{bits} (an alignment of at most {most:#x} " \
                      f"bytes, the largest image)"
    elif value is not None:
        if 0 < value <= most and not value & (value - 1):
            count = str(value)
        elif not 0 < value <= most:
            outside = f"; its {expr.shown(value, 10)} is outside 1..{most:#x} (the largest image)"
    extra = "; .align has no fill or max-skip operand: it pads with zeros" if len(line.args) > 1 else ""
    return AssemblerError(line.number, f"{quoted(line.written)} is GNU as's; expected '.align {count}' (a number "
                                       f"of bytes, a power of two: this assembler's .align is GNU as's .balign)"
                                       f"{outside}{extra}")
