"""docs/guest-isa.md's reference tables stay true: the encoding (field layout, opcodes,
conditions, system registers) and the RSI and PSCI function IDs and status codes a guest writes
as `.equ` lines. They are parsed from the doc and compared with rmm_mp.guest.isa and rmm_mp.abi,
so a guest author who copies a number from the doc gets the one the RMM answers to."""

from __future__ import annotations

import re
import struct
from pathlib import Path

from rmm_mp.abi.psci import PsciFid
from rmm_mp.abi.rsi import RsiFid, RsiStatus
from rmm_mp.guest import assemble
from rmm_mp.guest.isa import Cond, Op, SysReg, decode

TEXT = (Path(__file__).resolve().parents[2] / "docs" / "guest-isa.md").read_text()


def section(title: str) -> str:
    """The text of the doc's section `## title`, up to the next `## `."""
    start = TEXT.index(f"\n## {title}\n")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start:end if end >= 0 else len(TEXT)]


def test_rsi_and_psci_ids_in_the_doc_are_the_rmms() -> None:
    """Every row of "Calling the RMM" names an RSI or PSCI function by its .equ name and gives
    the RMM's ID (and the SMC32 ID where one is given); every RSI 1.0 command has a row."""
    calls = section("Calling the RMM: RSI and PSCI")
    rows = re.findall(r"^\| `(\w+)` \| (0x[0-9A-F]+)(?: \(SMC32 (0x[0-9A-F]+)\))? \|", calls, re.M)
    assert len(rows) >= 19, rows
    for name, fid, smc32 in rows:
        enum = RsiFid if name.startswith("RSI_") else PsciFid
        assert int(fid, 16) == enum[name], (name, fid)
        if smc32:
            assert int(smc32, 16) == PsciFid[f"{name}_SMC32"], (name, smc32)
    assert {fid.name for fid in RsiFid} <= {name for name, _, _ in rows}


def test_rsi_status_codes_in_the_doc_are_the_rmms() -> None:
    """The RSI status list under the table ("0 SUCCESS, 1 ERROR_INPUT, ...") is RsiStatus."""
    line = re.search(r"RSI status codes in X0: (.*?)\.", section("Calling the RMM: RSI and PSCI"), re.S)
    assert line is not None
    pairs = re.findall(r"(\d+) (\w+)", line.group(1))
    assert {f"RSI_{name}": int(n) for n, name in pairs} == {s.name: int(s) for s in RsiStatus}


def test_the_encoding_section_lists_every_opcode_condition_and_system_register() -> None:
    """"Encoding" gives each opcode's number (the set of numbers is exactly Op's), each
    condition's and system register's number as isa.py defines them, and its worked example
    word is what the assembler makes of `add x1, x2, #7`."""
    enc = section("Encoding")
    opcodes = {int(h, 16) for h in re.findall(r"`\s+(0x[0-9A-F]{2})\b", enc)}
    assert opcodes == {int(op) for op in Op}
    conds = dict(re.findall(r"\b(eq|ne|hs|lo|mi|pl|hi|ls|ge|lt|gt|le|al) (\d+)", enc))
    assert {name.upper(): int(n) for name, n in conds.items()} == {c.name: int(c) for c in Cond}
    sysregs = dict(re.findall(r"\b(vbar|elr|esr|far|mpidr) (\d)\b", enc))
    assert {name.upper(): int(n) for name, n in sysregs.items()} == {s.name: int(s) for s in SysReg}
    word = int(re.search(r"`\.quad (0x[0-9a-f]{16})` is\s+`add x1, x2, #7`", enc).group(1), 16)  # type: ignore[union-attr]
    assert struct.unpack("<Q", assemble("add x1, x2, #7", base=0))[0] == word
    assert decode(word) == (Op.ADDI, 1, 2, 0, 0, 7)
