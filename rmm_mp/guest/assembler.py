"""The realm guest assembler: text in the syntax of docs/guest-isa.md -> image bytes.

Two passes: the first sizes every line and places the labels, the second encodes. Pseudo
instructions have a fixed size (``mov xd, =value`` and ``adr xd, label`` are always three
instructions), so labels never move between passes. An ``.equ`` that uses a name defined
further down (``.equ SIZE, end - start`` at the top, as GNU as allows) gets its value at the
end of the first pass; only sizes (.zero, .org, .align) must be known where they stand. Errors
name the line and what was expected. Integer expressions are rmm_mp.guest.expr's.

This module owns the text syntax (labels, directives, operands; rmm_mp.guest.asmlines cuts a
line into them, rmm_mp.guest.asmstrings reads the quoted text of .ascii and .asciz). It must not
execute anything.
"""

from __future__ import annotations

import heapq
import re
import struct

from rmm_mp.guest import expr
from rmm_mp.guest.asmlines import AssemblerError, Line as _Line, ascii_upper as _ascii_upper
from rmm_mp.guest.asmlines import parse_line as _parse
from rmm_mp.guest.asmoperands import IMM_RANGE, NAME, REG as _REG, address_operand, gnu_alignment, immediate_hint
from rmm_mp.guest.asmoperands import quoted as _quoted
from rmm_mp.guest.asmstrings import string_bytes
from rmm_mp.guest.expr import shown as _shown
from rmm_mp.guest.isa import INSTRUCTION_SIZE, ZR, Cond, Op, SysReg, encode


class _NotYet(AssemblerError):
    """A name that the text defines, but further down than the first pass has reached."""

    def __init__(self, line: int, message: str, name: str) -> None:
        super().__init__(line, message)
        self.name = name


_ALU = {name: (Op[name.upper()], Op[name.upper() + "I"]) for name in ("add", "sub", "and", "orr", "eor")}
_SIZES = {"ldr": 3, "ldrw": 2, "ldrh": 1, "ldrb": 0, "str": 3, "strw": 2, "strh": 1, "strb": 0}
# GNU as directives that place code in sections or describe symbols for a linker: an image is one
# section in source order and nothing links it, so they are refused by name rather than as typos.
_UNNEEDED = frozenset({".text", ".data", ".bss", ".section", ".global", ".globl", ".type", ".size"})
# Lines end at \n, \r\n or \r only, as an editor counts them: str.splitlines() would also break
# at a form feed, \x85 or U+2028, so error line numbers after one would be off and such a
# character in an .ascii string would cut it in two.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_DATA = {".quad": 8, ".word": 4, ".half": 2, ".byte": 1}
_NAMED_CONDITIONS = ", ".join(c.name.lower() for c in list(Cond)[:-1]) + f" and {list(Cond)[-1].name.lower()}"
MAX_IMAGE = 1 << 30
"""Largest image (bytes): a workload realm's RAM is at most 1 GiB, and a bigger .zero or .org
would only be a typo that allocates it all."""


MAX_SOURCE = 1 << 20
"""Largest source text (characters). The bundled guests are a few KiB; parsing keeps every line,
so a million-line file took some 20 s and 550 MB before a later check refused it: refused at
once instead.

Why there are two 1 MiB bounds, this one and hw.tomlsrc.MAX_INPUT: MAX_INPUT bounds the bytes
read from any input file (workload, platform, guest source) in a module that knows no schema and
no assembler; this one bounds the text handed to the assembler by any caller, file or not, and
the guest package imports nothing of hw. A guest file meets both (read_source reads at most
MAX_INPUT bytes of it, workload.spec naming a larger one by its realm's key, before its text
reaches the assembler), so they are kept equal: one limit whichever check sees the file first
(tests/workload/test_spec.py checks)."""


class ImageTooLarge(ValueError):
    """An image larger than the caller's bound (assemble's ``most``): raised once the first pass
    has sized it, before a byte of it is made. ``size`` is its size in bytes."""

    def __init__(self, size: int, most: int) -> None:
        super().__init__(f"the image would be {size:,} bytes; expected at most {most:,}")
        self.size = size
        self.most = most


def assemble(text: str, base: int = 0, most: int | None = None) -> bytes:
    """Assemble ``text`` into an image to be loaded at IPA ``base``.

    ``most``: the largest image the caller can take, in bytes. A larger one raises ImageTooLarge
    after the first pass, which only sizes the lines: making a 1 GiB image takes seconds and
    2 GiB of memory (its bytearray and the bytes returned), so a caller that would refuse it by
    its size (workload.spec: the images of all instances must fit in DRAM) asks for the size
    first rather than for the image.

    Raises:
        AssemblerError (a ValueError) naming the line and what was expected; a ValueError for
        a base that is no 8-byte aligned 64-bit IPA; ImageTooLarge (a ValueError).
    """
    _check_input(text, base)
    return _Assembler(text, base).run(most)


def _check_input(text: str, base: int) -> None:
    if not 0 <= base < 1 << 64 or base % INSTRUCTION_SIZE:
        # Checked here, as no line is to blame: an unaligned base made line 1's instruction
        # 'not 8-byte aligned ... after data', and a negative one or one past 64 bits gave
        # labels no IPA has (a negative .quad of a label, an adr that 'does not fit 64 bits').
        raise ValueError(f"base {_shown(base)}: expected an IPA in 0..{(1 << 64) - 1:#x} that is "
                         f"{INSTRUCTION_SIZE}-byte aligned, as the instruction there must be")
    if len(text) > MAX_SOURCE:
        # The line of character MAX_SOURCE + 1 (index MAX_SOURCE): a newline belongs to the line
        # it ends, so a source one trailing newline too long names its last line, not one after it.
        line = text.count("\n", 0, MAX_SOURCE) + 1
        raise AssemblerError(line, f"the source is {len(text):,} characters; expected at most {MAX_SOURCE:,} "
                                   f"(1 MiB, the most a guest may be)")


def symbols(text: str, base: int = 0) -> dict[str, int]:
    """The labels and ``.equ`` names of ``text`` assembled at ``base``, with their values, from
    the first pass alone (the image is not made; errors as assemble's, but only those the first
    pass finds: an operand it does not encode is not checked)."""
    _check_input(text, base)
    assembler = _Assembler(text, base)
    assembler.layout()
    return dict(assembler.symbols)


class _Assembler:
    def __init__(self, text: str, base: int) -> None:
        self.base = base
        self.lines = [_parse(n, raw) for n, raw in enumerate(_LINE_BREAK.split(text), start=1)]
        self.symbols: dict[str, int] = {}
        self.declared = {line.label for line in self.lines if line.label is not None} | \
            {line.args[0] for line in self.lines if line.op == ".equ" and line.args}
        self.here = base

    def run(self, most: int | None = None) -> bytes:
        size = self.layout()
        if most is not None and size > most:
            raise ImageTooLarge(size, most)
        out = bytearray()
        for line in self.lines:
            self.here = self.base + len(out)
            if line.op is not None and line.op != ".equ":
                out += self._emit(line, len(out))
        return bytes(out)

    def layout(self) -> int:
        """The first pass: every label and .equ name its value; returns the image's size."""
        offset = 0
        later: list[tuple[_Line, int]] = []     # .equ lines that use names defined further down, with their '.'
        for line in self.lines:
            self.here = self.base + offset
            if line.label is not None:
                self._define(line, line.label, self.base + offset)
            if line.op == ".equ":
                try:
                    self._equ(line)
                except _NotYet:
                    later.append((line, self.here))
            elif line.op is not None:
                try:
                    offset += self._size(line, offset)
                except _NotYet as exc:
                    raise AssemblerError(exc.line, exc.message) from None
                if offset > MAX_IMAGE:
                    why = (f"; .org takes an offset from the image's first byte, and '.' and labels are addresses "
                           f"(base {self.base:#x} + offset)") if line.op == ".org" and 0 < self.base <= offset else ""
                    raise AssemblerError(line.number, f"the image would be {_shown(offset)} bytes; expected at most "
                                                      f"{MAX_IMAGE:#x} (1 GiB, the largest realm RAM){why}")
                if self.base + offset > 1 << 64:
                    # Its last bytes would have no IPA: a word 'at 2^64' was emitted, and '.' and labels there
                    # were addresses no instruction can reach.
                    raise AssemblerError(line.number, f"the image would end at {self.base + offset:#x} (base "
                                                      f"{self.base:#x} + {offset:#x} bytes), past the 64-bit address "
                                                      f"space; expected it to end at 2^64 (0x10000000000000000) at "
                                                      f"the latest")
        self._resolve(later)
        return offset

    # -- pass 1 ------------------------------------------------------------------------------

    def _equ(self, line: _Line) -> None:
        if len(line.args) != 2 or not NAME.fullmatch(line.args[0]):
            got = f", got {_quoted(', '.join(line.args))}" if line.args else ", got no operand"
            raise AssemblerError(line.number, f"expected '.equ NAME, value' (a NAME starts with an ASCII letter or _ "
                                              f"and goes on with ASCII letters, digits or _){got}")
        self._define(line, line.args[0], self._value(line, line.args[1]))

    def _resolve(self, later: list[tuple[_Line, int]]) -> None:
        """Give the deferred .equ lines their values, each with its own '.': a line whose
        value needs a name with none yet waits for that name and is tried again once the name
        has one; what is left refers to itself in a cycle. Each try either gives a value or
        stops at another name, so the tries are as many as the references, where rounds over
        every waiting line took time quadratic in a chain of names defined further down
        (3,000 took 14 s).

        The tries come in the order of those rounds (round, then source order), so that a
        text with two errors names the one it named: a line woken by a name that a line before
        it defined is tried in that line's round, one woken by a line after it in the next
        round. Tried in the order they were woken, a later line's error came first."""
        waiting: dict[str, list[int]] = {}      # a name with no value yet -> the lines (indexes of later) needing it
        tries = [(0, index) for index in range(len(later))]     # (round, index): a heap, sorted already
        while tries:
            round_, index = heapq.heappop(tries)
            line, self.here = later[index]
            try:
                self._equ(line)
            except _NotYet as exc:
                waiting.setdefault(exc.name, []).append(index)
                continue
            for woken in waiting.pop(line.args[0], ()):
                heapq.heappush(tries, (round_ if woken > index else round_ + 1, woken))
        if waiting:
            left = [later[index][0] for index in sorted(i for items in waiting.values() for i in items)]
            raise AssemblerError(left[0].number, f"no value for these .equ names: they need each other in a "
                                                 f"cycle (or need a name that does): "
                                                 f"{', '.join(ln.args[0] for ln in left)}")

    def _define(self, line: _Line, name: str, value: int) -> None:
        if name in self.symbols:
            raise AssemblerError(line.number,
                                 f"{name!r} is already defined (labels and .equ names share one namespace)")
        self.symbols[name] = value

    def _size(self, line: _Line, offset: int) -> int:
        op = line.op
        assert op is not None
        if op in _DATA:
            # At least one value: a bare '.quad' used to emit a zero, which the syntax
            # (v[, v...]) does not allow and which hides a value left out.
            if not line.args:
                raise AssemblerError(line.number, f"expected '{op} value[, value...]', got no value")
            return _DATA[op] * len(line.args)
        if op in (".ascii", ".asciz"):
            return len(self._string(line)) + (op == ".asciz")
        if op == ".zero":
            count = self._value(line, self._one(line))
            if count < 0:
                raise AssemblerError(line.number, f"expected a byte count >= 0 for .zero, got {_shown(count, 10)}")
            return count
        if op == ".align":
            align = self._value(line, self._one(line))
            if align < 1 or align & (align - 1):
                raise AssemblerError(line.number, f"expected a power of two for .align (a number of bytes, as GNU "
                                                  f"as's .balign), got {align}")
            return (-(self.base + offset)) % align
        if op == ".org":
            target = self._value(line, self._one(line))
            if target < offset:
                raise AssemblerError(line.number, f".org {_shown(target)} is behind the current offset {offset:#x}; "
                                                  f"expected an offset >= {offset:#x} (.org only pads forward)")
            return target - offset
        if op in ("adr",) or (op == "mov" and len(line.args) == 2 and line.args[1].startswith("=")):
            return 3 * INSTRUCTION_SIZE
        return INSTRUCTION_SIZE

    # -- pass 2 ------------------------------------------------------------------------------

    def _emit(self, line: _Line, offset: int) -> bytes:
        op = line.op
        assert op is not None
        if op in _DATA:
            size = _DATA[op]
            bits = 8 * size
            values = []
            for arg in line.args:
                value = self._value(line, arg)
                # Signed or unsigned, as long as it fits: silently keeping the low bits of a
                # larger value would hide a mistake (GNU as at least warns).
                if not -(1 << (bits - 1)) <= value < 1 << bits:
                    raise AssemblerError(line.number, f"{op} {_quoted(arg)} = {_shown(value)} does not fit "
                                                      f"{bits} bits; "
                                                      f"expected {-(1 << (bits - 1)):#x}..{(1 << bits) - 1:#x}")
                values.append(value & ((1 << bits) - 1))
            return b"".join(v.to_bytes(size, "little") for v in values)
        if op in (".ascii", ".asciz"):
            return self._string(line) + (b"\0" if op == ".asciz" else b"")
        if op in (".zero", ".align", ".org"):
            return bytes(self._size(line, offset))
        words = self._instruction(line, self.base + offset)
        # The PC is always 8-byte aligned, so an instruction placed anywhere else (after data of
        # another size) could never run; GNU as refuses unaligned A64 opcodes too. Checked once
        # the instruction is known to be one, so that a typo is reported as a typo.
        if (self.base + offset) % INSTRUCTION_SIZE:
            raise AssemblerError(line.number, f"{op} at {self.base + offset:#x} is not {INSTRUCTION_SIZE}-byte "
                                              f"aligned; expected '.align {INSTRUCTION_SIZE}' after data before an "
                                              "instruction")
        return b"".join(struct.pack("<Q", w) for w in words)

    def _instruction(self, line: _Line, pc: int) -> list[int]:
        op, args = line.op, line.args
        assert op is not None
        if op.endswith(":"):
            # A label the line syntax did not take as one. Looked at first: 'b.eq:' (a label
            # named like a conditional branch) was taken for one, 'b.eq: takes 1 operand(s)'.
            if line.label is not None:
                raise AssemblerError(line.number, f"a second label {_quoted(line.written)} after "
                                                  f"{_quoted(line.label + ':')}: one label per line")
            dot = " (no '.', unlike GNU as's symbols)" if "." in op else ""
            raise AssemblerError(line.number, f"{_quoted(line.written)} is no label: a label starts with an ASCII "
                                              f"letter or _ and goes on with ASCII letters, digits or _{dot}")
        if op == "nop":
            return [self._arity(line, 0) or encode(Op.NOP)]
        if op == "mov":
            return self._mov(line)
        if op == "adr":
            self._arity(line, 2)
            # The register first: the message below quotes it, so it must be one ('adr x9z, #8' was told
            # only of its '#', and a blank such as '\v' in the register was printed as it stands)
            rd = self._reg(line, args[0])
            if args[1].startswith("#"):
                raise AssemblerError(line.number, f"expected a label (or an expression giving an address) after "
                                                  f"'{line.written} {args[0]},', got {_quoted(args[1])}: adr takes no "
                                                  f"'#' (for a value, write 'mov xd, =value')")
            return self._load_constant(rd, self._target(line, args[1], "adr target"))
        if op == "movk":
            return [self._movk(line)]
        if op in _ALU:
            self._arity(line, 3)
            rd, rn = self._reg(line, args[0]), self._reg(line, args[1])
            if args[2].startswith("#"):
                return [encode(_ALU[op][1], rd, rn, imm=self._imm(line, args[2]))]
            return [encode(_ALU[op][0], rd, rn, self._reg(line, args[2], or_imm=True))]
        if op in ("lsl", "lsr"):
            self._arity(line, 3)
            shift = self._imm(line, args[2])
            if not 0 <= shift < 64:
                value = "" if args[2][1:].strip() == str(shift) else f" = {shift}"   # '#N' alone hid N's value
                raise AssemblerError(line.number, f"expected a shift amount in #0..#63, got {_quoted(args[2])}{value}")
            return [encode(Op.LSLI if op == "lsl" else Op.LSRI, self._reg(line, args[0]), self._reg(line, args[1]),
                           imm=shift)]
        if op == "mul":
            self._arity(line, 3)
            return [encode(Op.MUL, self._reg(line, args[0]), self._reg(line, args[1]), self._reg(line, args[2]))]
        if op == "cmp":
            self._arity(line, 2)
            rn = self._reg(line, args[0])
            if args[1].startswith("#"):
                return [encode(Op.CMPI, rn=rn, imm=self._imm(line, args[1]))]
            return [encode(Op.CMP, rn=rn, rm=self._reg(line, args[1], or_imm=True))]
        return [self._control(line, pc)]

    def _control(self, line: _Line, pc: int) -> int:
        op, args = line.op, line.args
        assert op is not None
        if op in ("b", "bl"):
            self._arity(line, 1)
            return encode(Op.B if op == "b" else Op.BL, imm=self._branch(line, args[0], pc, repr(line.written)))
        if op.startswith("b."):
            self._arity(line, 1)
            try:
                cond = Cond[_ascii_upper(op[2:])]
            except KeyError:
                raise AssemblerError(line.number, f"expected a condition such as b.eq or b.ne, got "
                                                  f"{_quoted(line.written)} (the assembler names {_NAMED_CONDITIONS})"
                                     ) from None
            return encode(Op.BCOND, aux=cond, imm=self._branch(line, args[0], pc,
                                                               f"the condition in {_quoted(line.written)}"))
        if op in ("cbz", "cbnz"):
            self._arity(line, 2)
            return encode(Op.CBZ if op == "cbz" else Op.CBNZ, rn=self._reg(line, args[0]),
                          imm=self._branch(line, args[1], pc, f"the register of {_quoted(line.written)}"))
        if op == "ret":
            return self._arity(line, 0) or encode(Op.RET, rn=30)
        if op == "br":
            self._arity(line, 1)
            return encode(Op.BR, rn=self._reg(line, args[0]))
        if op in _SIZES:
            return self._memory(line)
        if op in ("ldp", "stp"):
            return self._pair(line)
        if op in ("smc", "hvc"):
            self._arity(line, 1)
            imm = self._imm(line, args[0])
            if not 0 <= imm <= 0xFFFF:
                raise AssemblerError(line.number, f"expected an immediate in #0..#0xFFFF for {op}, "
                                                  f"got {_quoted(args[0])}")
            return encode(Op.SMC if op == "smc" else Op.HVC, imm=imm)
        if op in ("wfi", "wfe", "eret", "udf"):
            self._arity(line, 0)
            return encode({"wfi": Op.WFI, "wfe": Op.WFE, "eret": Op.ERET, "udf": Op.UDF}[op])
        if op in ("mrs", "msr"):
            self._arity(line, 2)
            reg_arg, sys_arg = (args[0], args[1]) if op == "mrs" else (args[1], args[0])
            sysreg = self._sysreg(line, sys_arg, write=op == "msr")
            if op == "mrs":
                return encode(Op.MRS, rd=self._reg(line, reg_arg), aux=sysreg)
            return encode(Op.MSR, rn=self._reg(line, reg_arg), aux=sysreg)
        if op in _UNNEEDED:
            raise AssemblerError(line.number, f"{op} is a GNU as directive this assembler does not need (an image is "
                                              "one section, in source order, with no linker); remove it")
        if op in (".balign", ".p2align"):
            raise gnu_alignment(line, self._alignment_value(line), MAX_IMAGE)
        # shortened and escaped as the operands quoted elsewhere: the op is all of a line with no blank
        raise AssemblerError(line.number, f"unknown instruction {_quoted(line.written)}; see docs/guest-isa.md for "
                                          "the list")

    def _alignment_value(self, line: _Line) -> int | None:
        """The value of a .balign's or .p2align's first operand (the alignment), None if it has none."""
        try:
            return self._value(line, line.args[0]) if line.args else None
        except AssemblerError:
            return None

    def _mov(self, line: _Line) -> list[int]:
        self._arity(line, 2)
        rd, src = self._reg(line, line.args[0]), line.args[1]
        if src.startswith("="):
            return self._load_constant(rd, self._fit64(line, "mov", src, self._value(line, src[1:])))
        if src.startswith("#"):
            return [encode(Op.MOVI, rd, imm=self._imm(line, src))]
        return [encode(Op.MOV, rd, self._reg(line, src, or_imm=True))]

    def _movk(self, line: _Line) -> int:
        args = line.args
        if len(args) not in (2, 3):
            raise AssemblerError(line.number, "expected 'movk xd, #imm16[, lsl #0|16|32|48]'")
        if not args[1].startswith("#"):
            # Not _imm: its 32-bit limit would hide the 16-bit one that the message below names.
            raise AssemblerError(line.number, f"expected an immediate such as #42, got {_quoted(args[1])}")
        value = self._value(line, args[1][1:])
        shift = 0
        if len(args) == 3:
            # The shift is an immediate like any other (an expression: #0x10, #SHIFT), not
            # digits read by int(), which took '#016' and non-ASCII digits that expr refuses.
            # re.ASCII: a Unicode IGNORECASE match takes the long s for s ('lſl #16'). The
            # blank before '#' is optional ('lsl#16'), as GNU as skips blanks there if any.
            match = re.fullmatch(r"lsl\s*#(.*)", args[2], re.IGNORECASE | re.DOTALL | re.ASCII)
            shift = self._value(line, match.group(1)) if match else -1
        if shift not in (0, 16, 32, 48):
            got = f"lsl #{shift}" if match else repr(args[2])
            raise AssemblerError(line.number, f"expected 'movk xd, #imm16[, lsl #0|16|32|48]': the shift is "
                                              f"lsl #0, #16, #32 or #48, got {got}")
        if not 0 <= value <= 0xFFFF:
            got = f"{value:#x}" if value >= 0 else str(value)
            raise AssemblerError(line.number, f"expected 'movk xd, #imm16[, lsl #0|16|32|48]' with imm16 in "
                                              f"0..0xFFFF, got {got}")
        return encode(Op.MOVK, self._reg(line, args[0]), aux=shift // 16, imm=value)

    @staticmethod
    def _fit64(line: _Line, op: str, text: str, value: int) -> int:
        """value (of op's operand text), if it fits 64 bits signed or unsigned: _load_constant
        keeps only the low 64 bits, which for a larger value would silently load another one."""
        if not -(1 << 63) <= value < 1 << 64:
            raise AssemblerError(line.number, f"{op} {_quoted(text)} = {_shown(value)} does not fit 64 bits; expected "
                                              f"{-(1 << 63):#x}..{(1 << 64) - 1:#x}")
        return value

    @staticmethod
    def _load_constant(rd: int, value: int) -> list[int]:
        value &= (1 << 64) - 1
        low = value & 0xFFFF_FFFF
        return [encode(Op.MOVI, rd, imm=low - (1 << 32) if low >> 31 else low),
                encode(Op.MOVK, rd, aux=2, imm=(value >> 32) & 0xFFFF),
                encode(Op.MOVK, rd, aux=3, imm=(value >> 48) & 0xFFFF)]

    def _memory(self, line: _Line) -> int:
        op, args = line.op, line.args
        assert op is not None
        base, imm = address_operand(line, 1, self.declared, self._known)
        offset = self._imm(line, imm) if imm is not None else 0
        kind = Op.LDR if op.startswith("ldr") else Op.STR
        return encode(kind, self._reg(line, args[0]), self._reg(line, base), aux=_SIZES[op], imm=offset)

    def _pair(self, line: _Line) -> int:
        op, args = line.op, line.args
        assert op is not None
        operand = address_operand(line, 2, self.declared, self._known)
        first, second = self._reg(line, args[0]), self._reg(line, args[1])
        if op == "ldp" and first == second:
            # CONSTRAINED UNPREDICTABLE on AArch64 (GNU as refuses it too); the interpreter runs
            # such a word as udf.
            raise AssemblerError(line.number, f"ldp loads {args[0].strip()} twice; expected two different "
                                              "registers (an ldp with xd == xe is CONSTRAINED UNPREDICTABLE)")
        base, imm = operand
        offset = self._imm(line, imm) if imm is not None else 0
        return encode(Op.LDP if op == "ldp" else Op.STP, first, self._reg(line, base), second, imm=offset)

    # -- operands ----------------------------------------------------------------------------

    def _arity(self, line: _Line, count: int) -> int:
        if len(line.args) != count:
            # The operands quoted: 'mov x1 #1' (a ',' left out) or a trailing ',' shows there.
            got = f": {_quoted(', '.join(line.args))}" if line.args else ""
            raise AssemblerError(line.number, f"{line.op} takes {count} operand(s), got {len(line.args)}{got}")
        return 0

    def _one(self, line: _Line) -> str:
        self._arity(line, 1)
        return line.args[0]

    def _reg(self, line: _Line, text: str, or_imm: bool = False) -> int:
        # or_imm: '#imm' may stand here too, so a bare number (GNU as takes `mov x1, 1`) is told its '#'
        written, text = text.strip(), text.strip().lower()
        if not _REG.fullmatch(text):
            hint = immediate_hint(written, self.declared, self._known, line.op) if or_imm else ""
            if re.fullmatch(r"w([0-9]|[12][0-9]|30)|wzr", text):
                # (and a label or .equ name 'w1', which may stand as '#w1', keeps that hint too)
                hint = f" (there are no 32-bit w registers: write 'x{text[1:]}'; ldrw and strw move 32 bits){hint}"
            raise AssemblerError(line.number, f"expected a register x0..x30, lr or xzr, got {_quoted(written)}{hint}")
        if text == "xzr":
            return ZR
        return 30 if text == "lr" else int(text[1:])

    @staticmethod
    def _sysreg(line: _Line, text: str, write: bool) -> int:
        try:
            reg = SysReg[_ascii_upper(text.strip())]
        except KeyError:
            raise AssemblerError(line.number, f"expected a system register (vbar, elr, esr, far, mpidr), "
                                              f"got {_quoted(text)}") from None
        if write and reg == SysReg.MPIDR:
            raise AssemblerError(line.number, "mpidr is read only; expected vbar, elr, esr or far")
        return int(reg)

    def _imm(self, line: _Line, text: str) -> int:
        if not text.startswith("#"):
            raise AssemblerError(line.number, f"expected an immediate such as #42, got {_quoted(text)}")
        value = self._value(line, text[1:])
        if value not in IMM_RANGE:
            # 'mov xd, =value' is the way out for mov only: an operand or an offset of another
            # instruction cannot be written so (the value goes into a register first).
            alternative = ", or 'mov xd, =value' for any 64-bit value" if line.op == "mov" else ""
            raise AssemblerError(line.number, f"immediate {_quoted(text)} = {_shown(value)} does not fit 32 signed "
                                              f"bits; expected #-0x80000000..#0x7fffffff{alternative}")
        return value

    def _target(self, line: _Line, text: str, what: str) -> int:
        """The address ``text`` gives (``what``: how an error names it). One outside 0..2^64 - 1 is
        refused: the PC wraps at 2^64 when a branch runs, but a target written below 0 or past
        the top (`b . - 8` at 0) is a mistake, as a .quad of it is."""
        target = self._value(line, text)
        if not 0 <= target < 1 << 64:
            raise AssemblerError(line.number, f"{what} {_quoted(text)} = {_shown(target)} is outside the 64-bit "
                                              f"address space; expected an address in 0..{(1 << 64) - 1:#x}")
        return target

    def _branch(self, line: _Line, text: str, pc: int, after: str) -> int:
        """The offset of the branch target ``text``, which comes after ``after`` on the line."""
        try:
            target = self._target(line, text, "branch target")
        except AssemblerError as exc:
            if not exc.message.startswith(expr.NOT_AN_EXPRESSION):
                raise
            # A target that is no expression at all: say that a label was expected where it
            # stands ('b.eq :' said 'expected a number, a label or an expression', which did not
            # say a branch needs its target there, nor that a label is used without its colon).
            hint = " (a label is named without the ':' that defines it)" if ":" in text else ""
            raise AssemblerError(line.number, f"expected a label (or an expression giving the target's address) "
                                              f"after {after}, got {_quoted(text)}{hint}") from None
        offset = target - pc
        if offset not in IMM_RANGE:
            away = f"{offset:#x} bytes" if offset.bit_length() <= 64 else "far more than 2 GiB"
            raise AssemblerError(line.number, f"branch target {_quoted(text)} is {away} away; expected an offset "
                                              f"in -0x80000000..0x7ffffff8 (a signed 32-bit immediate: 2 GiB back, "
                                              f"2 GiB - 8 forward)")
        # Every instruction is 8-byte aligned, so any other target would only take a
        # misaligned-PC exception when the branch is taken. (A branch that is not aligned itself
        # is reported as such by _emit, as any instruction.)
        if target % INSTRUCTION_SIZE and not pc % INSTRUCTION_SIZE:
            raise AssemblerError(line.number, f"branch target {_quoted(text)} = {_shown(target)} is not "
                                              f"{INSTRUCTION_SIZE}-byte aligned; expected the address of an "
                                              "instruction")
        return offset

    def _string(self, line: _Line) -> bytes:
        assert line.op is not None
        return string_bytes(line.number, line.op, line.args)

    def _value(self, line: _Line, text: str) -> int:
        """An integer expression over numbers, labels, .equ names and '.' (this address)."""
        try:
            return expr.evaluate(text, lambda name: self._symbol(line, name), self.here)
        except expr.ExprError as exc:
            raise AssemblerError(line.number, str(exc)) from None

    def _known(self, text: str) -> int | None:
        """text's value, for a hint; None where a name has none yet; expr.ExprError where text has none."""
        try:
            return expr.evaluate(text, lambda name: self.symbols[name], self.here)
        except KeyError:
            return None

    def _symbol(self, line: _Line, name: str) -> int:
        if name not in self.symbols:
            if name in self.declared:
                raise _NotYet(line.number, f"{name!r} has no value yet here (it is defined further down, or "
                                           f"from names that are), but a size (.zero, .org, .align) must "
                                           f"be known where it stands", name)
            # 'mov x1, =x2', 'b x1': a register where only a value can stand (a label may be named x2 too)
            hint = " (a register: an expression takes numbers, labels, .equ names and '.')" \
                if _REG.fullmatch(name.lower()) else ""
            raise AssemblerError(line.number, f"unknown label or constant {name!r}{hint}")
        return self.symbols[name]

