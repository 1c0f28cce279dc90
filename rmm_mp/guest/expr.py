"""Integer expressions of the guest assembler: `.equ` values, immediates, data and branch targets.

    evaluate(text, symbol, here)   the value of ``text``; names through ``symbol``, '.' is ``here``

Numbers as Python writes integers (no leading zeros), names, '.', parentheses and Python's
operators and precedence without '/' (docs/guest-isa.md). Parsing is a shunting-yard with
explicit stacks, so an expression of any length or nesting costs time in proportion to its
text, never a RecursionError; every value on the way is bounded (MAX_BITS), so `.equ` names
that multiply each other cannot grow to a MemoryError. Errors are ExprError with the message
alone; the assembler adds the line.

This module owns the expression syntax and its bounds. It knows nothing of lines, labels or
encodings: names are looked up through the caller's function, whose own errors pass through.
"""

from __future__ import annotations

import operator
import re
from typing import Callable

MAX_SHIFT = 127
"""Largest shift count in an expression: intermediate values may pass 64 bits ((1 << 64) - 1),
not grow without bound."""
MAX_BITS = 1024
"""Largest value (in bits, sign apart) anywhere in an expression, far more than any 64-bit
value needs on the way."""

_BINARY: dict[str, Callable[[int, int], int]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "%": operator.mod, "<<": operator.lshift,
    ">>": operator.rshift, "&": operator.and_, "^": operator.xor, "|": operator.or_}
_UNARY: dict[str, Callable[[int], int]] = {"-": operator.neg, "+": operator.pos, "~": operator.invert}
# Python's precedence (the expressions used to be Python's own, and guests rely on it): unary
# operators (kept on the stack as "u-", "u+", "u~") bind tightest, then * %, + -, << >>, &, ^, |.
_PRECEDENCE = {"|": 1, "^": 2, "&": 3, "<<": 4, ">>": 4, "+": 5, "-": 5, "*": 6, "%": 6, "u-": 7, "u+": 7, "u~": 7}
# A number is ASCII only: int() would also read other scripts' digits, which Python's syntax does not.
_TOKEN = re.compile(r"\s*(?:(?P<number>[0-9][0-9A-Za-z_]*)|(?P<name>[A-Za-z_]\w*)|(?P<op><<|>>|[-+*%&^|~().]))",
                    re.ASCII)


class ExprError(ValueError):
    """An expression that has no value (the message says why; the caller names the line)."""


def evaluate(text: str, symbol: Callable[[str], int], here: int) -> int:
    """The value of ``text``: names through ``symbol``, '.' is ``here``."""
    values: list[int] = []
    for item in postfix(text):
        if isinstance(item, int):
            values.append(item)
        elif item == ".":
            values.append(here)
        elif item in _PRECEDENCE:
            _apply(item, values, text)
        else:
            values.append(symbol(item))
    return values[0]


NOT_AN_EXPRESSION = "expected a number, a label or an expression"
"""How an error about text that is no expression begins (the assembler tells a branch's apart)."""


def postfix(text: str) -> list[int | str]:
    """The numbers (as ints), names, '.' and operators ("u-" for unary minus) of text in postfix
    order, so the whole syntax is checked before any name is looked up."""
    if not text.strip():
        raise ExprError(f"{NOT_AN_EXPRESSION}, got an empty value")
    out: list[int | str] = []
    pending: list[str] = []     # operators not yet output: "(", binary ones, and unary ones as "u-"
    operand = True              # an operand (or a prefix operator) comes next, not an operator
    pos = depth = 0             # depth: the "(" in pending
    while (match := _TOKEN.match(text, pos)) is not None:
        pos, kind, token = match.end(), match.lastgroup, match.group(match.lastgroup or 0)
        if operand and kind == "number":
            out.append(_number(token, text))
        elif operand and (kind == "name" or token == "."):
            out.append(token)
        elif operand and token in ("(", "-", "+", "~"):
            pending.append(token if token == "(" else "u" + token)
            depth += token == "("
            continue
        elif not operand and token in _BINARY:
            while pending and pending[-1] != "(" and _PRECEDENCE[pending[-1]] >= _PRECEDENCE[token]:
                out.append(pending.pop())
            pending.append(token)
            operand = True
            continue
        elif not operand and token == ")" and depth:
            while (op := pending.pop()) != "(":
                out.append(op)
            depth -= 1
            continue
        else:
            pos = match.start()     # a token out of place: left over, so refused below
            break
        operand = False
    if operand or text[pos:].strip() or depth:
        raise ExprError(f"{NOT_AN_EXPRESSION}, got {short(text)!r}")
    out.extend(reversed(pending))
    return out


def _number(token: str, text: str) -> int:
    """A number as Python writes an integer: 42, 0x2a, 0o52, 0b101010, 1_000."""
    try:
        value = int(token, 0)
    except ValueError:
        if re.fullmatch(r"0[0-9_]*", token):
            raise ExprError(f"expected a number, got {token!r}: leading zeros are not allowed "
                            f"(GNU as would read it as octal; write 0o... for that)") from None
        if not re.fullmatch(r"[1-9](?:_?[0-9])*", token):
            raise ExprError(f"{NOT_AN_EXPRESSION}, got {short(text)!r}") from None
        value = 1 << MAX_BITS      # more decimal digits than int() converts: past the bound anyway
    return _bounded(value, text)


def _apply(op: str, values: list[int], text: str) -> None:
    """Replace the operand(s) on top of values with the result of op."""
    if op.startswith("u"):
        values[-1] = _UNARY[op[1:]](values[-1])
    else:
        right = values.pop()
        if op in ("<<", ">>") and not 0 <= right <= MAX_SHIFT:
            # A negative count is an error in Python, and a huge one would build a number of
            # that many bits: neither is a value for a 64-bit machine.
            raise ExprError(f"shift count {shown(right, 10)} in {short(text)!r}: expected 0..{MAX_SHIFT}")
        if op == "%" and right == 0:
            raise ExprError(f"modulo by zero in {short(text)!r}")
        values[-1] = _BINARY[op](values[-1], right)
    _bounded(values[-1], text)


def _bounded(value: int, text: str) -> int:
    # Each operation is bounded by the shift count, but products of .equ names that are
    # products themselves grow exponentially down the lines, to a MemoryError.
    if value.bit_length() > MAX_BITS:
        raise ExprError(f"{short(text)!r} reaches a value of more than {MAX_BITS} bits; "
                        f"expected at most {MAX_BITS} bits on the way")
    return value


def shown(value: int, base: int = 16) -> str:
    """A value in an error message, in hex (or decimal, for counts), or only its size when it
    would be longer than a line."""
    if value.bit_length() > 128:
        return f"a {value.bit_length()}-bit number"
    return f"{value:#x}" if base == 16 else str(value)


def short(text: str) -> str:
    """Text for an error message: a very long expression only by its start and length."""
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"
