"""docs/guest-isa.md's reference tables stay true: the encoding (field layout, opcodes,
conditions, system registers) and the RSI and PSCI function IDs and status codes a guest writes
as `.equ` lines. They are parsed from the doc and compared with rmm_mp.guest.isa and rmm_mp.abi,
so a guest author who copies a number from the doc gets the one the RMM answers to."""

from __future__ import annotations

import re
import struct
from pathlib import Path

from rmm_mp.abi.psci import PSCI_VERSION_1_1, SMCCC_VERSION_1_2, AffinityInfo, PsciFid, PsciReturn
from rmm_mp.abi.rsi import RsiFid, RsiStatus
from rmm_mp.guest import assemble
from rmm_mp.guest.isa import Cond, Op, SysReg, decode, encode

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


def test_the_encoding_table_gives_each_fields_bits() -> None:
    """Each row of the "Encoding" field table ("| [12:8] | `rd`: ...") gives the bits encode()
    puts that field in: the field at its all-ones value fills exactly those bits."""
    enc = section("Encoding")
    rows = dict((name, (int(hi), int(lo))) for hi, lo, name in
                re.findall(r"^\| \[(\d+):(\d+)\] \| `?(opcode|rd|rn|rm|aux|imm)\b", enc, re.M))
    assert set(rows) == {"opcode", "rd", "rn", "rm", "aux", "imm"}, rows
    full = {"opcode": encode(0xFF), "rd": encode(0, rd=31), "rn": encode(0, rn=31), "rm": encode(0, rm=31),
            "aux": encode(0, aux=0xFF), "imm": encode(0, imm=-1)}
    for name, (hi, lo) in rows.items():
        assert full[name] == ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1), (name, hi, lo)


def test_each_opcode_in_the_doc_is_its_mnemonics() -> None:
    """The opcode list names each number by its mnemonic ("`add` 0x10, `add #` 0x11, ...,
    `ldr`/`ldrw`/... 0x40"): the number is Op's for that mnemonic (the immediate form, `#`, is
    Op's name ending in I; `mov xn` is MOV, `b.cond` BCOND), not only some opcode of Op."""
    enc = section("Encoding")
    pairs = re.findall(r"`([a-z.]+)(?: (#\w*|xn))?`(?:/`\w+`)*\s+(0x[0-9A-F]{2})\b", enc)
    assert len(pairs) == len(Op), pairs
    for mnemonic, form, number in pairs:
        name = mnemonic.replace(".", "").upper() + ("I" if form.startswith("#") else "")
        assert Op[name] == int(number, 16), (mnemonic, form, number)


def test_psci_results_in_the_doc_are_the_rmms() -> None:
    """The PSCI table's results are the RMM's: PSCI_VERSION's and SMCCC_VERSION's values, each
    named PSCI return code ("-4 ALREADY_ON") is PsciReturn's, and AFFINITY_INFO answers ON or
    OFF (B6.3.1: runnable or not), never ON_PENDING, which no RMM 1.0 path returns."""
    calls = section("Calling the RMM: RSI and PSCI")
    rows = {name: out for name, out in re.findall(r"^\| `(PSCI_\w+|SMCCC_\w+)` \|.*\| ([^|]*) \|$", calls, re.M)}
    assert int(rows["PSCI_VERSION"].split()[0], 16) == PSCI_VERSION_1_1
    assert int(rows["SMCCC_VERSION"].split()[0], 16) == SMCCC_VERSION_1_2
    codes = [(int(n), name) for out in rows.values() for n, name in re.findall(r"(-\d+) ([A-Z_]+)", out)]
    assert codes, rows
    for n, name in codes:
        assert PsciReturn[f"PSCI_{name}"] == n, (n, name)
    affinity = dict(re.findall(r"\b(\d) (ON|OFF|ON_PENDING)\b", rows["PSCI_AFFINITY_INFO"]))
    assert {name: int(n) for n, name in affinity.items()} == {"ON": AffinityInfo.ON, "OFF": AffinityInfo.OFF}
