"""RSI commands called by running realms (DEN0137 1.0-rel0 B5.3.*, A4.3, A5.4; rsi-attest.md section 1).

Every test runs a guest program (tests/realm_guests.py): it loads X1.. (X1..X18 start as
sentinels, so the result-register rule can be checked), makes the call at label ``call`` and
stops at ``done`` with a WFI, which exits to the host (IRQ). "No exit" means the first exit is
that WFI's. Per command: the success path with its outputs, then one test per failure condition
in the spec's table order (ACS test/command/cmd_<command>/rsi_*_data.h), each asserting X0, the
result registers (X1..X16 zero when not outputs, spec B1.2; X17 and above kept) and that the REC continued,
or the exact REC exit. Each command's success path also has a footprint test: from a `first`
WFI, the entry that makes the call changes the REC and only what the command's Footprint
section (B5.3.*.4) and its writes name (Guest.changes); and every failure (ERROR_INPUT, an
unknown SMC, the emulated abort exit of an unmapped structure, the abort exit of a host call
whose page went away before completion) changes the calling REC only (B1.9). The attestation
token calls are not covered here.
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct
import sys
from typing import Iterator

import pytest

from realm_guests import CODE, EMPTY_IPA, GRANULE, UNPROTECTED, Guest
from rmi_helpers import Rmi
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.abi import structs
from rmm_mp.abi.structs import RmiRecEnterFlags
from rmm_mp.check import invariants
from rmm_mp.rmm import realm_call
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.realm_desc import Rd

SUCCESS, INPUT = 0, 1
REJECT, ACCEPT = 1, 0
EMPTY, RAM, DESTROYED = 0, 1, 2
EXIT_SYNC, EXIT_IRQ, EXIT_RIPAS_CHANGE, EXIT_HOST_CALL = 0, 1, 4, 5
SMC_UNKNOWN = (1 << 64) - 1
VERSION_1_0 = 0x10000
RIPAS_RESPONSE = int(RmiRecEnterFlags.RIPAS_RESPONSE)
MiB = 1 << 20
UNASSIGNED_L3 = CODE + 0x10_0000
"""Unassigned RAM whose walk ends at level 3 (the image's level-3 table covers the first 2 MiB)."""
UNASSIGNED_L2 = CODE + 0x30_0000
"""Unassigned RAM inside a level-2 RAM block (the second 2 MiB of RAM)."""
PATTERN = 0xA5A5_A5A5_A5A5_A5A5


def sentinel(n: int) -> int:
    return 0x5E5E_0000_0000_0000 | n


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=2, time_slice=2000) as m:
        yield m


def call_program(fid: str, args: dict[int, object] | None = None, data: str = "") -> str:
    """X1..X18 = sentinels, then ``args``; X0 = ``fid``; `call: smc`; `done: wfi`; ``data`` at +0x1000."""
    lines = [f"mov x{n}, ={sentinel(n)}" for n in range(1, 19)]
    lines += [f"mov x{n}, ={value}" for n, value in (args or {}).items()]
    lines += [f"mov x0, ={fid}", "call: smc #0", "done: wfi", "b done", ".org 0x1000", data]
    return "\n".join(lines)


def finish(g: Guest, flags: int = 0, gprs: tuple[int, ...] = ()) -> None:
    """Enter REC 0; it must run to ``done`` without exiting on the way (its WFI's IRQ exit)."""
    x0, ex = g.enter(flags, gprs)
    assert x0 == SUCCESS
    assert (ex["exit_reason"], ex["esr"], ex["hpfar"]) == (EXIT_IRQ, 0, 0), ex
    assert g.pc() == g.label("done") + 8


def first_then(fid: str, args: dict[int, object] | None = None, data: str = "") -> str:
    """`first: wfi`, then call_program: the entry that makes the call can be observed alone."""
    return "first: wfi\n" + call_program(fid, args, data)


def to_first(g: Guest) -> None:
    """Enter REC 0: it stops at the `first` WFI (an IRQ exit) without making any call."""
    x0, ex = g.enter()
    assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_IRQ) and g.pc() == g.label("first") + 8


def exits(g: Guest, reason: int) -> None:
    """Enter REC 0: X0 = SUCCESS and an exit for ``reason``."""
    x0, ex = g.enter()
    assert (x0, ex["exit_reason"]) == (SUCCESS, reason), ex


def call_changes(g: Guest, flags: int = 0, gprs: tuple[int, ...] = ()) -> set[str]:
    """From the `first` WFI: the granules (Guest.changes) the entry that makes the call and runs
    on to `done` (finish) changes. The REC is always among them (its PC and registers, A4)."""
    to_first(g)
    return g.changes(lambda: finish(g, flags, gprs))


def results(g: Guest, *outputs: int) -> None:
    """X0..X16 are (status, outputs..., zeros) (spec B1.2: registers that are no outputs MBZ);
    X17 and X18 keep their sentinels."""
    assert tuple(g.gpr(n) for n in range(17)) == (*outputs, *[0] * (17 - len(outputs)))
    assert kept(g)


def smccc_results(g: Guest, *outputs: int) -> None:
    """An SMC that is no RSI command (PSCI, SMCCC_VERSION, an unknown ID) follows SMCCC: X0..X3 are
    (status, outputs..., zeros) and X4..X18 keep their sentinels."""
    assert tuple(g.gpr(n) for n in range(4)) == (*outputs, 0, 0, 0)[:4]
    assert [g.gpr(n) for n in range(4, 19)] == [sentinel(n) for n in range(4, 19)]


def kept(g: Guest) -> bool:
    """X17 and X18, beyond the registers an RSI command returns, keep their sentinels."""
    return [g.gpr(17), g.gpr(18)] == [sentinel(17), sentinel(18)]


def ok(m: Machine) -> None:
    report = invariants(m)
    assert report.ok, str(report)


def pattern_page() -> str:
    return ".quad " + ", ".join([hex(PATTERN)] * (GRANULE // 8))


def abort_exit(ex: dict, ipa: int, level: int) -> None:
    """The emulated stage-2 data abort an RSI call reports for an unmapped buffer (rsi-attest 1.4):
    HPFAR as HPFAR_EL2 holds it, IPA[51:12] at [43:4] and RES0 bits [3:0] zero (A4.3.4)."""
    assert ex["exit_reason"] == EXIT_SYNC
    assert (ex["esr"], ex["far"], ex["hpfar"]) == ((0x24 << 26) | (0x04 + level), 0, (ipa >> 8) & ~0xF)
    assert ex["gprs"] == (0,) * 31 and ex["imm"] == 0


def read_entry(g: Guest, ipa: int) -> tuple[int, int, int]:
    """(walk level, HIPAS state, RIPAS) of ``ipa``'s RTT entry."""
    x0, level, state, _, ripas = g.smc(F.RMI_RTT_READ_ENTRY, g.realm.rd, ipa, 3)
    assert x0 == SUCCESS
    return level, state, ripas


def create_rtt(g: Guest, ipa: int, level: int) -> None:
    """DELEGATE a granule and RTT_CREATE it at ``level`` for ``ipa`` (destroy_realm frees it)."""
    pa = g.alloc.alloc()
    assert g.smc(F.RMI_GRANULE_DELEGATE, pa)[0] == SUCCESS
    base = ipa & ~((1 << (12 + 9 * (4 - level))) - 1)
    assert g.smc(F.RMI_RTT_CREATE, g.realm.rd, pa, base, level)[0] == SUCCESS


def set_ripas(g: Guest, base: int, top: int) -> int:
    """The host's RMI_RTT_SET_RIPAS loop over [base, top): a missing table (ERROR_RTT below
    level 3) is created and the call repeated; it stops at (ERROR_RTT, 3). Returns the progress."""
    addr = base
    while addr < top:
        x0, out = g.smc(F.RMI_RTT_SET_RIPAS, g.realm.rd, g.rec_pa(), addr, top)[:2]
        if x0 == SUCCESS:
            assert addr < out <= top
            addr = out
        elif x0 == 4 | 3 << 8:
            break
        else:
            assert x0 & 0xFF == 4, hex(x0)
            create_rtt(g, addr, (x0 >> 8) + 1)
    return addr


# -- RSI_VERSION (B5.3.10) ---------------------------------------------------------------------

def test_version_1_0(machine: Machine) -> None:
    """Requested 1.0: SUCCESS, lower = higher = 1.0 (B2 scenario 1); X3..X16 zeroed, X17.. kept."""
    with Guest.build(machine, call_program("RSI_VERSION", {1: VERSION_1_0})) as g:
        finish(g)
        results(g, SUCCESS, VERSION_1_0, VERSION_1_0)
    ok(machine)


@pytest.mark.parametrize("reserved", [1 << 31, 1 << 32, 0xFFFF_FFFF_8000_0000])
def test_version_reserved_bits_ignored(machine: Machine, reserved: int) -> None:
    """RsiInterfaceVersion bits 63:31 are reserved (SBZ, B5.4.4): 1.0 with junk there is still
    1.0, so SUCCESS (B2 outcome a) with lower = higher = 1.0."""
    with Guest.build(machine, call_program("RSI_VERSION", {1: reserved | VERSION_1_0})) as g:
        finish(g)
        results(g, SUCCESS, VERSION_1_0, VERSION_1_0)


@pytest.mark.parametrize("requested", [0x1_0001, 0x2_0000, 0x2_0001, 0x0_0001, 1 << 32 | 0x1_0001])
def test_version_incompatible(machine: Machine, requested: int) -> None:
    """1.1, 2.0, 2.1 (B2 outcome b, scenarios 4, 8, 9) and 0.1 (outcome c): ERROR_INPUT with
    lower = higher = 1.0, the only revision implemented."""
    with Guest.build(machine, call_program("RSI_VERSION", {1: requested})) as g:
        finish(g)
        results(g, INPUT, VERSION_1_0, VERSION_1_0)


def test_version_footprint(machine: Machine) -> None:
    """B5.3.10.4: no footprint. The entry that makes the call changes the REC only (its registers)."""
    with Guest.build(machine, first_then("RSI_VERSION", {1: VERSION_1_0})) as g:
        assert call_changes(g) == {"rec0"}
        results(g, SUCCESS, VERSION_1_0, VERSION_1_0)


# -- RSI_FEATURES (B5.3.3) ---------------------------------------------------------------------

@pytest.mark.parametrize("index", [0, 1, 0xFFFF_FFFF_FFFF_FFFF])
def test_features_reads_zero(machine: Machine, index: int) -> None:
    """Every feature register reads 0 (success condition `index`); no failure conditions."""
    with Guest.build(machine, call_program("RSI_FEATURES", {1: index})) as g:
        finish(g)
        results(g, SUCCESS, 0)


def test_features_footprint(machine: Machine) -> None:
    """B5.3.3.4: no footprint. The entry that makes the call changes the REC only."""
    with Guest.build(machine, first_then("RSI_FEATURES", {1: 0})) as g:
        assert call_changes(g) == {"rec0"}
        results(g, SUCCESS, 0)


# -- RSI_MEASUREMENT_READ (B5.3.8) --------------------------------------------------------------

@pytest.mark.parametrize("hash_algo", [0, 1])
def test_measurement_read_rim(machine: Machine, hash_algo: int) -> None:
    """Index 0 reads the RIM: X1..X8 hold the RD's RIM little-endian, zero padded beyond the
    hash (SHA-256: X5..X8 = 0); X9..X16 = 0, X17 and X18 kept."""
    with Guest.build(machine, call_program("RSI_MEASUREMENT_READ", {1: 0}), hash_algo=hash_algo) as g:
        finish(g)
        rim = g.rim
        assert len(rim) == (32, 64)[hash_algo] and rim != bytes(len(rim))
        value = struct.unpack("<8Q", rim.ljust(64, b"\0"))
        results(g, SUCCESS, *value)


def test_measurement_read_footprint(machine: Machine) -> None:
    """B5.3.8.4: no footprint. Reading the RIM changes the REC only (not the RD)."""
    with Guest.build(machine, first_then("RSI_MEASUREMENT_READ", {1: 0})) as g:
        assert call_changes(g) == {"rec0"}
        assert g.gpr(0) == SUCCESS and g.gpr(1) != 0


@pytest.mark.parametrize("index", [1, 4])
def test_measurement_read_rem_starts_zero(machine: Machine, index: int) -> None:
    """A REM no one extended reads as zeros."""
    with Guest.build(machine, call_program("RSI_MEASUREMENT_READ", {1: index})) as g:
        finish(g)
        assert tuple(g.gpr(n) for n in range(9)) == (SUCCESS,) + (0,) * 8


@pytest.mark.parametrize("index", [5, 0xFFFF_FFFF_FFFF_FFFF])
def test_measurement_read_index_bound(machine: Machine, index: int) -> None:
    """index_bound (ACS cmd_measurement_read): index > 4 -> ERROR_INPUT, X1..X16 zero, X17.. kept."""
    with Guest.build(machine, call_program("RSI_MEASUREMENT_READ", {1: index})) as g:
        finish(g)
        results(g, INPUT)


# -- RSI_MEASUREMENT_EXTEND (B5.3.7) ------------------------------------------------------------

VALUE = bytes(range(0x41, 0x41 + 64))


def extend_then_read(index: int, size: int, value: bytes = VALUE) -> str:
    words = struct.unpack("<8Q", value)
    regs = "\n".join(f"mov x{3 + i}, ={w}" for i, w in enumerate(words))
    return f"""
        mov x1, #{index}
        mov x2, ={size}
        {regs}
        mov x0, =RSI_MEASUREMENT_EXTEND
        smc #0
        mov x19, x0
        mov x0, =RSI_MEASUREMENT_READ
        mov x1, #{index}
        smc #0
    done:
        wfi
        b done
    """


@pytest.mark.parametrize("hash_algo, size", [(0, 0), (0, 1), (0, 32), (0, 64), (1, 1), (1, 64)])
def test_measurement_extend_then_read(machine: Machine, hash_algo: int, size: int) -> None:
    """EXTEND REM 2 with X3..X10 as 64 bytes: REM = H(REM_old || value[:size]) (B5.3.7.3, rsi-attest
    3.6, computed here with hashlib); READ returns it; the RIM and the other REMs are unchanged."""
    with Guest.build(machine, extend_then_read(2, size), hash_algo=hash_algo) as g:
        rim = g.rim
        finish(g)
        name, length = ("sha256", 32) if hash_algo == 0 else ("sha512", 64)
        expected = hashlib.new(name, bytes(length) + VALUE[:size]).digest()
        assert g.gpr(19) == SUCCESS
        assert tuple(g.gpr(n) for n in range(9)) == (SUCCESS, *struct.unpack("<8Q", expected.ljust(64, b"\0")))
        assert g.rd.measurement(2) == expected.ljust(64, b"\0")
        assert [g.rd.measurement(i) for i in (1, 3, 4)] == [bytes(64)] * 3
        assert g.rim == rim


def test_measurement_extend_chains(machine: Machine) -> None:
    """Two extends of REM 4 chain: H(H(0 || a) || b)."""
    program = extend_then_read(4, 16).replace("done:", "b second\ndone:") + """
    second:
        mov x1, #4
        mov x2, #3
        mov x3, =0x636261
        mov x0, =RSI_MEASUREMENT_EXTEND
        smc #0
        mov x0, =RSI_MEASUREMENT_READ
        mov x1, #4
        smc #0
        b done
    """
    with Guest.build(machine, program) as g:
        finish(g)
        first = hashlib.sha256(bytes(32) + VALUE[:16]).digest()
        assert g.rd.measurement(4)[:32] == hashlib.sha256(first + b"abc").digest()


def test_measurement_extend_footprint(machine: Machine) -> None:
    """B5.3.7.4: the footprint is realm.measurements[index], which the RD holds. The entry that
    makes the call changes the REC and the RD only."""
    with Guest.build(machine, first_then("RSI_MEASUREMENT_EXTEND", {1: 3, 2: 8})) as g:
        assert call_changes(g) == {"rec0", "rd"}
        results(g, SUCCESS)
        assert g.rd.measurement(3) != bytes(64)


@pytest.mark.parametrize("index", [0, 5])
def test_measurement_extend_index_bound(machine: Machine, index: int) -> None:
    """index_bound (ACS cmd_measurement_extend): index 0 (the RIM) or > 4 -> ERROR_INPUT; no
    measurement changes; X1..X16 zero, X17.. kept."""
    with Guest.build(machine, call_program("RSI_MEASUREMENT_EXTEND", {1: index, 2: 8})) as g:
        before = [g.rd.measurement(i) for i in range(5)]
        finish(g)
        results(g, INPUT)
        assert [g.rd.measurement(i) for i in range(5)] == before


@pytest.mark.parametrize("size", [65, 1 << 63])
def test_measurement_extend_size_bound(machine: Machine, size: int) -> None:
    """size_bound: size > 64 -> ERROR_INPUT; REM 1 stays zero."""
    with Guest.build(machine, call_program("RSI_MEASUREMENT_EXTEND", {1: 1, 2: size})) as g:
        finish(g)
        results(g, INPUT)
        assert g.rd.measurement(1) == bytes(64)


# -- RSI_REALM_CONFIG (B5.3.9) ------------------------------------------------------------------

@pytest.mark.parametrize("hash_algo, rpv", [(0, b""), (1, bytes(range(100, 164)))])
def test_realm_config_writes_its_fields(machine: Machine, hash_algo: int, rpv: bytes) -> None:
    """ipa_width (0x0), hash_algo (0x8) and rpv (0x200) are written (success conditions
    ipa_width, hash_algo), and every other byte of the 4 KiB structure is zero, whatever the
    realm put there (B5.4.5: unused bits MBZ; rsi-attest 1.5 and TF-RMM leave them)."""
    program = call_program("RSI_REALM_CONFIG", {1: "cfg"}, "cfg:\n" + pattern_page())
    with Guest.build(machine, program, hash_algo=hash_algo, rpv=rpv) as g:
        finish(g)
        results(g, SUCCESS)
        page = g.peek(g.label("cfg"), GRANULE)
        assert page[:9] == (40).to_bytes(8, "little") + bytes([hash_algo])
        assert page[9:0x200] == bytes(0x200 - 9)
        assert page[0x200:0x240] == rpv.ljust(64, b"\0")
        assert page[0x240:] == bytes(GRANULE - 0x240)
    ok(machine)


def test_realm_config_footprint(machine: Machine) -> None:
    """B5.3.9.4: no footprint (no RMM state changes). The entry that makes the call changes the
    REC and the realm's page it writes the RsiRealmConfig into, nothing else."""
    program = first_then("RSI_REALM_CONFIG", {1: "cfg"}, "cfg:\n" + pattern_page())
    with Guest.build(machine, program) as g:
        assert call_changes(g) == {"rec0", g.page(g.label("cfg"))}
        results(g, SUCCESS)


@pytest.mark.parametrize("offset", [8, 0x800, 0xFFF])
def test_realm_config_addr_align(machine: Machine, offset: int) -> None:
    """addr_align (ACS cmd_realm_config): an address not 4 KiB aligned -> ERROR_INPUT, no exit,
    the page unchanged."""
    program = call_program("RSI_REALM_CONFIG", {1: f"cfg + {offset}"}, "cfg:\n" + pattern_page())
    with Guest.build(machine, program) as g:
        finish(g)
        results(g, INPUT)
        assert g.peek(g.label("cfg"), GRANULE) == PATTERN.to_bytes(8, "little") * 512


@pytest.mark.parametrize("ipa", [UNPROTECTED, UNPROTECTED + 0x2000], ids=["lowest-unprotected", "unprotected"])
@pytest.mark.parametrize("mapped", [False, True])
def test_realm_config_addr_bound(machine: Machine, ipa: int, mapped: bool) -> None:
    """addr_bound (ACS cmd_realm_config: 1 << (ipa_width - 1), the lowest unprotected IPA, and
    another one): an unprotected IPA -> ERROR_INPUT, no exit, mapped or not; a mapped NS page is
    not written."""
    with Guest.build(machine, call_program("RSI_REALM_CONFIG", {1: ipa})) as g:
        ns = g.map_unprotected(ipa, b"\x77" * GRANULE) if mapped else None
        finish(g)
        results(g, INPUT)
        if ns is not None:
            assert machine.ns_read(ns, GRANULE) == b"\x77" * GRANULE


def test_realm_config_ripas_empty(machine: Machine) -> None:
    """A protected page whose RIPAS is EMPTY: ERROR_INPUT returned to the realm, no exit
    (rsi-attest 1.4; TF-RMM handle_rsi_realm_config)."""
    with Guest.build(machine, call_program("RSI_REALM_CONFIG", {1: EMPTY_IPA})) as g:
        finish(g)
        results(g, INPUT)


@pytest.mark.parametrize("ipa, level", [(UNASSIGNED_L3, 3), (UNASSIGNED_L2, 2)])
def test_realm_config_unmapped_ram(machine: Machine, ipa: int, level: int) -> None:
    """Unassigned RAM: an emulated stage-2 data abort exit (EC 0x24, translation fault at the
    level the walk stopped, far 0, hpfar = the page's IPA >> 8), PC still on the SMC and the realm's
    registers untouched; once the host faults the page in, re-entry repeats the call: SUCCESS
    and the page is written."""
    with Guest.build(machine, call_program("RSI_REALM_CONFIG", {1: ipa})) as g:
        x0, ex = g.enter()
        assert x0 == SUCCESS
        abort_exit(ex, ipa, level)
        assert g.pc() == g.label("call")
        assert (g.gpr(0), g.gpr(1), g.gpr(2)) == (0xC400_0196, ipa, sentinel(2))
        g.fault_in(ipa)
        finish(g)
        results(g, SUCCESS)
        assert g.peek(ipa, 9) == (40).to_bytes(8, "little") + b"\0"
    ok(machine)


def test_realm_config_destroyed(machine: Machine) -> None:
    """A DESTROYED page: the same abort exit (not ERROR_INPUT), and again on every re-entry,
    since the realm repeats the call."""
    ipa = UNASSIGNED_L3
    with Guest.build(machine, call_program("RSI_REALM_CONFIG", {1: ipa})) as g:
        g.destroy_page(ipa)
        for _ in range(2):
            x0, ex = g.enter()
            assert x0 == SUCCESS
            abort_exit(ex, ipa, 3)
            assert g.pc() == g.label("call")


# -- RSI_IPA_STATE_SET (B5.3.6, A5.4) -----------------------------------------------------------

def state_set(base: object, top: object, ripas: object, flags: object = 0) -> str:
    return call_program("RSI_IPA_STATE_SET", {1: base, 2: top, 3: ripas, 4: flags})


def state_set_refused(g: Guest) -> None:
    finish(g)
    results(g, INPUT)
    assert g.rec().ripas_request() == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("base", [UNASSIGNED_L3 + 1, UNASSIGNED_L3 + 0x800])
def test_ipa_state_set_base_align(machine: Machine, base: int) -> None:
    """base_align (ACS cmd_ipa_state_set): ERROR_INPUT, no exit, nothing recorded in the REC."""
    with Guest.build(machine, state_set(base, UNASSIGNED_L3 + 0x2000, EMPTY)) as g:
        state_set_refused(g)


def test_ipa_state_set_top_align(machine: Machine) -> None:
    """top_align: ERROR_INPUT, no exit."""
    with Guest.build(machine, state_set(UNASSIGNED_L3, UNASSIGNED_L3 + 0x1800, EMPTY)) as g:
        state_set_refused(g)


@pytest.mark.parametrize("top", [UNASSIGNED_L3, UNASSIGNED_L3 - 0x1000])
def test_ipa_state_set_size_valid(machine: Machine, top: int) -> None:
    """size_valid: top <= base -> ERROR_INPUT, no exit."""
    with Guest.build(machine, state_set(UNASSIGNED_L3, top, EMPTY)) as g:
        state_set_refused(g)


@pytest.mark.parametrize("base, top", [(UNASSIGNED_L3, UNPROTECTED + 0x1000),
                                       (UNPROTECTED, UNPROTECTED + 0x1000)])
def test_ipa_state_set_rgn_bound(machine: Machine, base: int, top: int) -> None:
    """rgn_bound (ACS REGION_UNPROTECTED): a range reaching into the unprotected half -> ERROR_INPUT."""
    with Guest.build(machine, state_set(base, top, EMPTY)) as g:
        state_set_refused(g)


def test_ipa_state_set_rgn_bound_limit(machine: Machine) -> None:
    """top = 2^(ipa_width-1) is still protected: the request is accepted (RIPAS_CHANGE exit); the
    host changes nothing and re-enters: X1 = base (no progress), ACCEPT."""
    base = UNPROTECTED - 0x1000
    with Guest.build(machine, state_set(base, UNPROTECTED, EMPTY)) as g:
        x0, ex = g.enter()
        assert x0 == SUCCESS
        assert (ex["exit_reason"], ex["ripas_base"], ex["ripas_top"]) == (EXIT_RIPAS_CHANGE, base, UNPROTECTED)
        finish(g)
        assert tuple(g.gpr(n) for n in range(3)) == (SUCCESS, base, ACCEPT)


@pytest.mark.parametrize("ripas", [DESTROYED, 3, 0xFF])
def test_ipa_state_set_ripas_valid(machine: Machine, ripas: int) -> None:
    """ripas_valid (ACS RIPAS_INVALID uses DESTROYED): neither EMPTY nor RAM -> ERROR_INPUT."""
    with Guest.build(machine, state_set(UNASSIGNED_L3, UNASSIGNED_L3 + 0x1000, ripas)) as g:
        state_set_refused(g)


def test_ipa_state_set_empty_round_trip(machine: Machine) -> None:
    """IPA_STATE_SET(EMPTY) over 4 pages across two level-3 tables' worth of RAM: RIPAS_CHANGE exit
    with base/top/value (every other exit field zero, PC past the SMC, the request recorded in
    the REC); the host's SET_RIPAS loop (creating the level-3 table it needs) changes it all;
    on re-entry X0 = SUCCESS, X1 = top, X2 = ACCEPT, and IPA_STATE_GET sees EMPTY."""
    base, top = CODE + 0x1F_E000, CODE + 0x20_2000
    program = state_set(base, top, EMPTY).replace("done:", f"""
        mov x20, x0
        mov x21, x1
        mov x22, x2
        mov x1, ={CODE + 0x20_0000}
        mov x2, ={top}
        mov x0, =RSI_IPA_STATE_GET
        smc #0
    done:""")
    with Guest.build(machine, program) as g:
        x0, ex = g.enter()
        assert x0 == SUCCESS
        assert ex["exit_reason"] == EXIT_RIPAS_CHANGE
        assert (ex["ripas_base"], ex["ripas_top"], ex["ripas_value"]) == (base, top, EMPTY)
        assert (ex["esr"], ex["far"], ex["hpfar"], ex["gprs"], ex["imm"]) == (0, 0, 0, (0,) * 31, 0)
        assert g.pc() == g.label("call") + 8
        assert g.rec().ripas_request() == (base, top, base, EMPTY, 0)
        assert set_ripas(g, base, top) == top
        finish(g)
        assert (g.gpr(20), g.gpr(21), g.gpr(22)) == (SUCCESS, top, ACCEPT)
        assert tuple(g.gpr(n) for n in range(3)) == (SUCCESS, top, EMPTY)
        assert g.rec().ripas_request() == (0, 0, 0, 0, 0)
        for ipa in (base, top - 0x1000):
            assert read_entry(g, ipa) == (3, 0, EMPTY)
        assert read_entry(g, top)[2] == RAM
    ok(machine)


def test_ipa_state_set_ram_round_trip(machine: Machine) -> None:
    """IPA_STATE_SET(RAM) over EMPTY IPA space with no tables below level 1: the host creates
    the level-2 and level-3 tables on ERROR_RTT and completes it; X1 = top, ACCEPT; the page is
    now unassigned RAM, so a load from it exits (data abort) instead of taking an SEA, and
    works once the host faults it in."""
    base, top = EMPTY_IPA, EMPTY_IPA + 0x2000
    program = state_set(base, top, RAM).replace("done:", f"""
        mov x20, x0
        mov x21, x1
        mov x22, x2
        mov x9, ={base}
        ldr x23, [x9]
    done:""")
    with Guest.build(machine, program) as g:
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["ripas_value"]) == (SUCCESS, EXIT_RIPAS_CHANGE, RAM)
        assert set_ripas(g, base, top) == top
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["esr"] >> 26, ex["hpfar"]) == (SUCCESS, EXIT_SYNC, 0x24, base >> 8)
        assert (g.gpr(20), g.gpr(21), g.gpr(22)) == (SUCCESS, top, ACCEPT)
        g.fault_in(base)
        finish(g)
        assert g.gpr(23) == 0
    ok(machine)


@pytest.mark.parametrize("ripas, done, flags, response", [
    (RAM, 1, RIPAS_RESPONSE, REJECT),     # partial RAM change, host rejects the rest
    (RAM, 0, RIPAS_RESPONSE, REJECT),     # nothing changed, rejected: new_base == base
    (RAM, 1, 0, ACCEPT),                  # partial, not rejected: the realm calls again
    (RAM, 4, RIPAS_RESPONSE, ACCEPT),     # complete: a reject flag means nothing
    (EMPTY, 1, RIPAS_RESPONSE, ACCEPT),   # a change to EMPTY cannot be rejected
])
def test_ipa_state_set_response(machine: Machine, ripas: int, done: int, flags: int, response: int) -> None:
    """RecRipasChangeResponse (B3.40, A5.4): X2 = REJECT only for a RAM request not completed
    when the host set enter.flags.ripas_response; X1 = the REC's progress."""
    base = EMPTY_IPA if ripas == RAM else UNASSIGNED_L3
    top = base + 4 * GRANULE
    with Guest.build(machine, state_set(base, top, ripas)) as g:
        assert g.enter()[1]["exit_reason"] == EXIT_RIPAS_CHANGE
        if done:
            assert set_ripas(g, base, base + done * GRANULE) == base + done * GRANULE
        finish(g, flags)
        assert tuple(g.gpr(n) for n in range(3)) == (SUCCESS, base + done * GRANULE, response)


def test_ipa_state_set_empty_rejected_without_progress_at_ipa_0(machine: Machine) -> None:
    """ACS cmd_ipa_state_set, "RIPAS reject flow": IPA_STATE_SET(EMPTY) of [0, 4 KiB), the
    first page of the IPA space; the host changes nothing and re-enters with
    enter.flags.ripas_response = REJECT. The request at base 0 is still a pending request (a
    RIPAS_CHANGE exit naming [0, 4 KiB), recorded in the REC), and A5.4 allows a rejection only
    of a RAM request, so the realm sees X0 = SUCCESS, X1 = 0 (no progress), X2 = ACCEPT (the ACS
    accepts that; a REJECT would need X1 == base) and the request is cleared."""
    with Guest.build(machine, state_set(0, GRANULE, EMPTY)) as g:
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["ripas_base"], ex["ripas_top"], ex["ripas_value"]) == \
            (SUCCESS, EXIT_RIPAS_CHANGE, 0, GRANULE, EMPTY)
        assert g.rec().ripas_request() == (0, GRANULE, 0, EMPTY, 0)
        finish(g, RIPAS_RESPONSE)
        results(g, SUCCESS, 0, ACCEPT)
        assert g.rec().ripas_request() == (0, 0, 0, 0, 0)
    ok(machine)


def test_ipa_state_set_ignores_the_sbz_bits_of_x3_and_x4(machine: Machine) -> None:
    """B5.3.6: ripas is X3[7:0] (X3[63:8] SBZ) and flags is a bitfield of X4 whose bit 0 alone is
    defined; no failure condition names the other bits, so junk there changes nothing (B1.6): the
    exit and the recorded request are those of EMPTY without CHANGE_DESTROYED. TF-RMM rel0 casts
    the whole registers (RSI_ERROR_INPUT for X3, a changed flag for X4; docs/deviations.md)."""
    base, top = UNASSIGNED_L3, UNASSIGNED_L3 + 0x1000
    with Guest.build(machine, state_set(base, top, EMPTY | 0xAB << 8 | 1 << 63, (1 << 64) - 2)) as g:
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["ripas_value"]) == (SUCCESS, EXIT_RIPAS_CHANGE, EMPTY)
        assert g.rec().ripas_request() == (base, top, base, EMPTY, 0)
        assert set_ripas(g, base, top) == top
        finish(g)
        assert tuple(g.gpr(n) for n in range(3)) == (SUCCESS, top, ACCEPT)
    ok(machine)


@pytest.mark.parametrize("flags", [0, 1])
def test_ipa_state_set_change_destroyed(machine: Machine, flags: int) -> None:
    """CHANGE_DESTROYED (A5.4): a RAM request over [P - 4K, P + 4K) with page P DESTROYED.
    Without the flag SET_RIPAS stops at P (progress P, then (ERROR_RTT, 3)); rejected, the
    realm sees X1 = P, REJECT and P stays DESTROYED. With it P becomes RAM: X1 = top, ACCEPT."""
    p = UNASSIGNED_L3 + GRANULE
    base, top = p - GRANULE, p + GRANULE
    with Guest.build(machine, state_set(base, top, RAM, flags)) as g:
        g.destroy_page(p)
        assert g.enter()[1]["exit_reason"] == EXIT_RIPAS_CHANGE
        assert g.rec().ripas_request() == (base, top, base, RAM, flags)
        progress = set_ripas(g, base, top)
        finish(g, RIPAS_RESPONSE)
        if flags:
            assert progress == top
            assert tuple(g.gpr(n) for n in range(3)) == (SUCCESS, top, ACCEPT)
            assert read_entry(g, p) == (3, 0, RAM)
        else:
            assert progress == p
            assert tuple(g.gpr(n) for n in range(3)) == (SUCCESS, p, REJECT)
            assert read_entry(g, p) == (3, 0, DESTROYED)
    ok(machine)


def test_ipa_state_set_footprint(machine: Machine) -> None:
    """B5.3.6.4: no footprint (the RTTs change by the host's RMI_RTT_SET_RIPAS, A5.4). The entry
    that makes the call and takes the RIPAS_CHANGE exit changes the REC only (the request it
    records); the host's SET_RIPAS is RMI; the entry that completes the call changes the REC only."""
    base, top = UNASSIGNED_L3, UNASSIGNED_L3 + 2 * GRANULE
    with Guest.build(machine, first_then("RSI_IPA_STATE_SET", {1: base, 2: top, 3: EMPTY, 4: 0})) as g:
        to_first(g)
        assert g.changes(lambda: exits(g, EXIT_RIPAS_CHANGE)) == {"rec0"}
        assert set_ripas(g, base, top) == top
        assert g.changes(lambda: finish(g)) == {"rec0"}
        assert tuple(g.gpr(n) for n in range(3)) == (SUCCESS, top, ACCEPT)


# -- RSI_IPA_STATE_GET (B5.3.5) -----------------------------------------------------------------

@pytest.mark.parametrize("base, end, top, ripas", [
    (CODE, CODE + 0x1000, CODE + 0x1000, RAM),               # capped at end
    (CODE, CODE + 4 * MiB, CODE + 2 * MiB, RAM),             # the run ends with the level-3 table
    (CODE + 2 * MiB, CODE + 1024 * MiB, CODE + 4 * MiB, RAM),   # level-2 blocks, up to the end of RAM
    (CODE + 4 * MiB, CODE + 6 * MiB, CODE + 6 * MiB, EMPTY),   # EMPTY blocks, capped
    (EMPTY_IPA, EMPTY_IPA + 0x3000, EMPTY_IPA + 0x3000, EMPTY),  # no table below level 1
    (EMPTY_IPA, CODE + 0x1000, CODE, EMPTY),                 # EMPTY level-1 blocks end at the table of RAM
    (UNPROTECTED - 0x1000, UNPROTECTED, UNPROTECTED, EMPTY),  # end = 2^(ipa_width-1): rgn_bound holds not
])
def test_ipa_state_get_runs(machine: Machine, base: int, end: int, top: int, ripas: int) -> None:
    """X1 = top of the run of equal RIPAS from base (within the last-level table the walk
    reaches, as TF-RMM) capped at end, X2 = that RIPAS; base < X1 <= end; X3 zeroed."""
    with Guest.build(machine, call_program("RSI_IPA_STATE_GET", {1: base, 2: end})) as g:
        finish(g)
        results(g, SUCCESS, top, ripas)


def test_ipa_state_get_destroyed(machine: Machine) -> None:
    """A DESTROYED page reads as RIPAS DESTROYED (2), its run ending at the next RAM page."""
    p = UNASSIGNED_L3
    with Guest.build(machine, call_program("RSI_IPA_STATE_GET", {1: p, 2: p + 0x10000})) as g:
        g.destroy_page(p)
        finish(g)
        results(g, SUCCESS, p + GRANULE, DESTROYED)


def test_ipa_state_get_footprint(machine: Machine) -> None:
    """B5.3.5.4: no footprint. The entry that makes the call changes the REC only."""
    with Guest.build(machine, first_then("RSI_IPA_STATE_GET", {1: CODE, 2: CODE + GRANULE})) as g:
        assert call_changes(g) == {"rec0"}
        results(g, SUCCESS, CODE + GRANULE, RAM)


@pytest.mark.parametrize("base", [CODE + 1, CODE + 0x800])
def test_ipa_state_get_base_align(machine: Machine, base: int) -> None:
    """base_align (ACS cmd_ipa_state_get): ERROR_INPUT, X1..X3 zero, no exit."""
    with Guest.build(machine, call_program("RSI_IPA_STATE_GET", {1: base, 2: CODE + 0x2000})) as g:
        finish(g)
        results(g, INPUT)


def test_ipa_state_get_end_align(machine: Machine) -> None:
    """end_align: ERROR_INPUT."""
    with Guest.build(machine, call_program("RSI_IPA_STATE_GET", {1: CODE, 2: CODE + 0x1001})) as g:
        finish(g)
        results(g, INPUT)


@pytest.mark.parametrize("end", [CODE, CODE - 0x1000])
def test_ipa_state_get_size_valid(machine: Machine, end: int) -> None:
    """size_valid: end <= base -> ERROR_INPUT."""
    with Guest.build(machine, call_program("RSI_IPA_STATE_GET", {1: CODE, 2: end})) as g:
        finish(g)
        results(g, INPUT)


@pytest.mark.parametrize("base, end", [(CODE, UNPROTECTED + 0x1000), (UNPROTECTED, UNPROTECTED + 0x1000)])
def test_ipa_state_get_rgn_bound(machine: Machine, base: int, end: int) -> None:
    """rgn_bound: a range reaching into the unprotected half -> ERROR_INPUT."""
    with Guest.build(machine, call_program("RSI_IPA_STATE_GET", {1: base, 2: end})) as g:
        finish(g)
        results(g, INPUT)


# -- RSI_HOST_CALL (B5.3.4, A4.5) -----------------------------------------------------------------

HOST_GPRS = tuple(0xCA11_0000_0000_0000 | n for n in range(31))
REALM_GPRS = tuple(0x0123_0000_0000_0000 | n for n in range(31))
HOST_CALL_DATA = ".org 0x1100\nhc:\n.half 0x1234\n.half 0xBEEF\n.word 0\n.quad " + ", ".join(map(hex, REALM_GPRS))
"""An RsiHostCall at page offset 0x100: imm 0x1234 (bytes 2..7 reserved, holding junk), gprs."""


def test_host_call_round_trip(machine: Machine) -> None:
    """ACS exception_rec_exit_hostcall: HOST_CALL exit: imm and gprs[0..30] from the structure,
    every other exit field zero, the realm's registers as they were (X0 still the FID), PC past
    the SMC; re-entry copies enter.gprs into the structure (imm untouched) and the realm sees
    X0 = SUCCESS."""
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: "hc"}, HOST_CALL_DATA)) as g:
        hc = g.label("hc")
        x0, ex = g.enter()
        assert x0 == SUCCESS
        assert (ex["exit_reason"], ex["imm"], ex["gprs"]) == (EXIT_HOST_CALL, 0x1234, REALM_GPRS)
        assert (ex["esr"], ex["far"], ex["hpfar"], ex["ripas_base"], ex["ripas_top"]) == (0, 0, 0, 0, 0)
        assert g.pc() == g.label("call") + 8
        assert (g.gpr(0), g.gpr(1), g.gpr(2)) == (0xC400_0199, hc, sentinel(2))
        assert g.rec().host_call_pending
        finish(g, gprs=HOST_GPRS)
        results(g, SUCCESS)       # X1 (addr) included: RSI_HOST_CALL has no output register
        assert g.peek(hc, 8) == struct.pack("<HHI", 0x1234, 0xBEEF, 0)
        assert g.peek(hc + 8, 248) == struct.pack("<31Q", *HOST_GPRS)
        assert not g.rec().host_call_pending
    ok(machine)


def test_host_call_exit_packs_in_one_call(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A HOST_CALL exit's fields reach the run page through RMI_REC_EXIT_RAW's one-call packer:
    the GIC state gives gicv3_lrs as the whole 16-entry array (the LRs above GICV3_NUM_LRS 0),
    not the implemented LRs alone, which made every REC exit take the field-by-field loop
    (about 150 Python bytecodes more per exit). The loop, which checks the gprs bytes first, is
    made to fail here: the exit still succeeds with the registers and LRs 0..3 as entered, the
    LR above them 0."""
    def loop_taken(*_: object) -> None:
        raise AssertionError("RmiRecExit packed field by field")
    monkeypatch.setattr(structs.RMI_REC_EXIT_RAW, "_check_length", loop_taken)
    lrs = (0x77, 0x88, 0, 0x99, 0xAA)
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: "hc"}, HOST_CALL_DATA)) as g:
        x0, ex = g.enter(gicv3_lrs=lrs)
        assert x0 == SUCCESS
        assert (ex["exit_reason"], ex["gprs"], ex["gicv3_lrs"]) == (EXIT_HOST_CALL, REALM_GPRS, lrs[:4] + (0,) * 12)
    ok(machine)


def test_host_call_round_trip_reads_no_enum_member_through_its_class(machine: Machine) -> None:
    """A REC round trip that completes one host call and makes the next (the host writing the
    run page, REC_ENTER with its completion and locked walk, the host reading the exit back)
    reads no enum member as an attribute of its class (Pas.NS, Kind.ASSIGNED): on CPython 3.11
    each such read passes EnumType's __getattr__ hook, about 1,000 instructions, and the NS
    copies and the walk made six of them per trip. Spied on the metaclass's __getattribute__
    for the second entry only, for reads made by rmm_mp's code (the test's own are left out)."""
    program = "loop:\n    mov x0, =RSI_HOST_CALL\n    adr x1, hc\n    smc #0\n    b loop\n" + HOST_CALL_DATA
    seen: list[str] = []
    plain = type.__getattribute__

    def spy(cls: type, name: str) -> object:
        caller = sys._getframe(1).f_code.co_filename
        if not name.startswith("__") and f"{os.sep}rmm_mp{os.sep}" in caller:
            seen.append(f"{cls.__name__}.{name} in {os.path.basename(caller)}")
        return plain(cls, name)
    with Guest.build(machine, program) as g:
        assert g.enter()[1]["exit_reason"] == EXIT_HOST_CALL
        enum.EnumType.__getattribute__ = spy     # type: ignore[method-assign]
        try:
            x0, ex = g.enter(gprs=HOST_GPRS)
        finally:
            del enum.EnumType.__getattribute__
        assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_HOST_CALL)
        assert seen == []
    ok(machine)


def test_host_call_footprint(machine: Machine) -> None:
    """B5.3.4.4: the footprint is rec.host_call_pending. The entry that makes the call (HOST_CALL
    exit) changes the REC only; the entry that completes it changes the REC and the realm's
    page holding the RsiHostCall (the host's gprs written there, A4.5), nothing else."""
    with Guest.build(machine, first_then("RSI_HOST_CALL", {1: "hc"}, HOST_CALL_DATA)) as g:
        to_first(g)
        assert g.changes(lambda: exits(g, EXIT_HOST_CALL)) == {"rec0"}
        assert g.rec().host_call_pending
        assert g.changes(lambda: finish(g, gprs=HOST_GPRS)) == {"rec0", g.page(g.label("hc"))}
        results(g, SUCCESS)


@pytest.mark.parametrize("offset", [8, 0x80, 0xFF])
def test_host_call_addr_align(machine: Machine, offset: int) -> None:
    """addr_align (ACS cmd_host_call): not 256-byte aligned -> ERROR_INPUT, no exit."""
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: f"hc + {offset}"}, HOST_CALL_DATA)) as g:
        finish(g)
        results(g, INPUT)
        assert not g.rec().host_call_pending


@pytest.mark.parametrize("addr, mapped", [(UNPROTECTED, False), (UNPROTECTED + 0x1100, True)],
                         ids=["lowest-unprotected", "unprotected-mapped"])
def test_host_call_addr_bound(machine: Machine, addr: int, mapped: bool) -> None:
    """addr_bound (ACS cmd_host_call: 1 << (ipa_width - 1), the lowest unprotected IPA, not
    mapped; and another unprotected IPA whose page is mapped) -> ERROR_INPUT, no exit, no host
    call pending."""
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: addr})) as g:
        if mapped:
            g.map_unprotected(addr & ~0xFFF)
        finish(g)
        results(g, INPUT)
        assert not g.rec().host_call_pending


def test_host_call_ripas_empty(machine: Machine) -> None:
    """A structure in a RIPAS EMPTY page: ERROR_INPUT, no exit (rsi-attest 1.4)."""
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: EMPTY_IPA + 0x100})) as g:
        finish(g)
        results(g, INPUT)


def test_host_call_unmapped(machine: Machine) -> None:
    """A structure in unassigned RAM: abort exit (hpfar = the page's IPA >> 8, no in-page bits), PC
    on the SMC; after fault_in the call repeats: HOST_CALL exit with the zero page's imm and
    gprs; completion writes the host's gprs there."""
    ipa = UNASSIGNED_L3 + 0x300
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: ipa})) as g:
        x0, ex = g.enter()
        assert x0 == SUCCESS
        abort_exit(ex, ipa, 3)
        assert g.pc() == g.label("call") and not g.rec().host_call_pending
        g.fault_in(ipa)
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["imm"], ex["gprs"]) == (SUCCESS, EXIT_HOST_CALL, 0, (0,) * 31)
        finish(g, gprs=HOST_GPRS)
        assert g.gpr(0) == SUCCESS
        assert g.peek(ipa + 8, 248) == struct.pack("<31Q", *HOST_GPRS)
    ok(machine)


def test_host_call_page_destroyed_before_completion(machine: Machine) -> None:
    """The structure's page is destroyed between the HOST_CALL exit and the next entry (A4.2.2):
    REC_ENTER succeeds with an abort exit for it, without running the realm (PC, X0 as they
    were) and the host call still pending."""
    ipa = UNASSIGNED_L3 + 0x200
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: ipa})) as g:
        g.fault_in(ipa)
        assert g.enter()[1]["exit_reason"] == EXIT_HOST_CALL
        x0, pa = g.smc(F.RMI_DATA_DESTROY, g.realm.rd, ipa & ~0xFFF)[:2]
        assert x0 == SUCCESS
        assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
        g.alloc.free(pa)
        x0, ex = g.enter(gprs=HOST_GPRS)
        assert x0 == SUCCESS
        abort_exit(ex, ipa, 3)
        assert g.pc() == g.label("call") + 8
        assert g.gpr(0) == 0xC400_0199 and g.rec().host_call_pending


def test_host_call_completion_abort_exit_reports_the_entrys_gic_state(machine: Machine) -> None:
    """docs/deviations.md row "REC exit due to Data Abort from the entry that completes a host
    call": the structure's page is destroyed after the HOST_CALL exit, and the host enters again
    with UIE and VGrp1DIE set in gicv3_hcr and a pending vINTID 27 in LR 0. The abort exit that
    entry returns carries that GIC state (A6.1, as every exit does): gicv3_hcr and gicv3_lrs[0]
    as entered, gicv3_misr U (at most one valid LR) and VGrp1D (group 1 off); TF-RMM rel0
    leaves all three 0 on this path."""
    ipa = UNASSIGNED_L3 + 0x200
    hcr, lr0 = (1 << 1) | (1 << 7), (1 << 62) | (1 << 60) | 27     # UIE, VGrp1DIE; LR 0: pending, group 1
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: ipa})) as g:
        g.fault_in(ipa)
        assert g.enter()[1]["exit_reason"] == EXIT_HOST_CALL
        x0, pa = g.smc(F.RMI_DATA_DESTROY, g.realm.rd, ipa & ~0xFFF)[:2]
        assert x0 == SUCCESS and g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
        g.alloc.free(pa)
        x0, ex = g.enter(gprs=HOST_GPRS, gicv3_hcr=hcr, gicv3_lrs=(lr0,))
        assert x0 == SUCCESS
        abort_exit(ex, ipa, 3)
        assert (ex["gicv3_hcr"], ex["gicv3_lrs"][0], ex["gicv3_misr"]) == (hcr, lr0, (1 << 1) | (1 << 7))
        assert g.rec().host_call_pending


def test_host_call_page_made_empty_before_completion(machine: Machine) -> None:
    """docs/deviations.md row "RSI_HOST_CALL completed after the structure's page became RIPAS
    EMPTY": REC 0's HOST_CALL exits; REC 1 then asks for its structure's page to become EMPTY
    (RSI_IPA_STATE_SET) and the host's RTT_SET_RIPAS makes it ASSIGNED EMPTY. The entry that
    completes REC 0's call finds the page mapped but EMPTY: no abort exit (A4.2.2 asks for one
    only for an unmapped IPA), X0 = SUCCESS with X1..X16 zero (the TF-RMM table's row), and
    nothing is written into the structure."""
    page = CODE + 0x1000
    rec1 = f"""
rec1:
    mov x0, =0xC4000197
    mov x1, ={page}
    mov x2, ={page + GRANULE}
    mov x3, #{EMPTY}
    mov x4, #0
    smc #0
rec1_done:
    wfi
    b rec1_done
"""
    program = call_program("RSI_HOST_CALL", {1: "hc"}, HOST_CALL_DATA).replace("b done\n", "b done\n" + rec1, 1)
    with Guest.build(machine, program, num_recs=2) as g:
        hc = g.label("hc")
        assert hc & ~0xFFF == page
        assert g.enter()[1]["exit_reason"] == EXIT_HOST_CALL
        g.rec(1).pc = g.label("rec1")
        g.rec(1).runnable = True
        x0, ex = g.enter(rec=1)
        assert (x0, ex["exit_reason"], ex["ripas_base"], ex["ripas_top"]) == (SUCCESS, EXIT_RIPAS_CHANGE, page,
                                                                              page + GRANULE)
        assert g.smc(F.RMI_RTT_SET_RIPAS, g.realm.rd, g.rec_pa(1), page, page + GRANULE)[:2] == (SUCCESS,
                                                                                               page + GRANULE)
        assert g.smc(F.RMI_RTT_READ_ENTRY, g.realm.rd, page, 3)[1:5] == (3, 1, g.page_pa(page), EMPTY)
        finish(g, gprs=HOST_GPRS)
        results(g, SUCCESS)     # TF-RMM rel0: X0 stays the FID, X1.. as passed
        assert not g.rec().host_call_pending
        assert g.peek(hc + 8, 248) == struct.pack("<31Q", *REALM_GPRS)
    ok(machine)


def rtt_locks(g: Guest) -> int:
    """RTT lock acquisitions so far on the Guest's host CPU (hw.granule counts them per class)."""
    return g.cpu.granules.stats.acquired[GranuleState.RTT]


def _completes_without_a_walk(g: Guest, hc: int) -> None:
    """The entry completing the pending host call takes no RTT lock (it trusts the call's walk)
    and writes HOST_GPRS into the RsiHostCall at ``hc``; the call returns SUCCESS."""
    before = rtt_locks(g)
    finish(g, gprs=HOST_GPRS)
    assert rtt_locks(g) == before
    assert g.gpr(0) == SUCCESS
    assert g.peek(hc + 8, 248) == struct.pack("<31Q", *HOST_GPRS)


def test_host_call_completion_reuses_the_calls_walk(machine: Machine) -> None:
    """One locked walk per host call (realm_call.py): RSI_HOST_CALL walks the RTTs with locks
    to read the structure; the entry that completes it, with no invalidation of the realm's
    stage 2 in between, writes the host's gprs where that walk found the structure without
    taking any RTT lock."""
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: "hc"}, HOST_CALL_DATA)) as g:
        hc = g.label("hc")
        before = rtt_locks(g)
        assert g.enter()[1]["exit_reason"] == EXIT_HOST_CALL
        walked = rtt_locks(g) - before
        assert walked >= 1
        _completes_without_a_walk(g, hc)
    ok(machine)


def test_host_call_completion_reuses_the_walk_after_an_earlier_invalidation(machine: Machine) -> None:
    """The realm's TLB generation has moved before the call (the host destroyed another page of
    the realm first), and not between the call and its completion: the completion still trusts
    the call's walk (no RTT lock), because the generation the call kept is the realm's current
    one, read from the RD (rsi_host_call reads it there), not any other value. (Built from CPU
    1's end of the allocator, so that the RD is not DRAM granule 0.)"""
    other = UNASSIGNED_L3 + 0x5000
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: "hc"}, HOST_CALL_DATA), cpu=1) as g:
        assert g.realm.rd != machine.dram_base
        hc = g.label("hc")
        g.fault_in(other)
        x0, pa = g.smc(F.RMI_DATA_DESTROY, g.realm.rd, other)[:2]
        assert x0 == SUCCESS
        assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
        g.alloc.free(pa)
        assert g.enter()[1]["exit_reason"] == EXIT_HOST_CALL
        _completes_without_a_walk(g, hc)
    ok(machine)


def test_host_call_completion_walks_again_after_an_invalidation(machine: Machine) -> None:
    """The host destroys another page of the realm between the HOST_CALL exit and the next
    entry: DATA_DESTROY invalidates the realm's TLBs (its TLB generation moves), so the
    completion does not trust what the call's walk found: it walks again with locks (as many
    RTT locks as the call's walk took), then writes the host's gprs into the structure."""
    other = UNASSIGNED_L3 + 0x5000
    with Guest.build(machine, call_program("RSI_HOST_CALL", {1: "hc"}, HOST_CALL_DATA)) as g:
        hc = g.label("hc")
        g.fault_in(other)
        before = rtt_locks(g)
        assert g.enter()[1]["exit_reason"] == EXIT_HOST_CALL
        walked = rtt_locks(g) - before
        x0, pa = g.smc(F.RMI_DATA_DESTROY, g.realm.rd, other)[:2]
        assert x0 == SUCCESS
        assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
        g.alloc.free(pa)
        before = rtt_locks(g)
        finish(g, gprs=HOST_GPRS)
        assert rtt_locks(g) - before == walked
        assert g.gpr(0) == SUCCESS
        assert g.peek(hc + 8, 248) == struct.pack("<31Q", *HOST_GPRS)
        assert not g.rec().host_call_pending
    ok(machine)


# -- the top of the protected IPA space -----------------------------------------------------------

def test_highest_protected_page_is_usable(machine: Machine) -> None:
    """The last granule below 2^(ipa_width - 1) is protected (B3.4 AddrIsProtected; one granule
    higher, addr_bound fails: test_realm_config_addr_bound, test_host_call_addr_bound). The realm
    makes it RAM (IPA_STATE_SET, the host's SET_RIPAS creating the tables it needs) and the host
    backs it after the abort exit of RSI_REALM_CONFIG there; the repeated call writes
    RsiRealmConfig into it (SUCCESS), and RSI_HOST_CALL with the last 256 bytes of the protected
    space as its RsiHostCall exits to the host (imm and gprs read from there) and is completed
    into them."""
    page, hc = UNPROTECTED - GRANULE, UNPROTECTED - 0x100
    program = f"""
        mov x1, ={page}
        mov x2, ={UNPROTECTED}
        mov x3, #{RAM}
        mov x4, #0
        mov x0, =RSI_IPA_STATE_SET
        smc #0
        mov x20, x0
        mov x21, x1
        mov x1, ={page}
        mov x0, =RSI_REALM_CONFIG
    config: smc #0
        mov x22, x0
        mov x1, ={hc}
        mov x0, =RSI_HOST_CALL
        smc #0
        mov x23, x0
    done: wfi
        b done
    """
    with Guest.build(machine, program) as g:
        exits(g, EXIT_RIPAS_CHANGE)
        assert set_ripas(g, page, UNPROTECTED) == UNPROTECTED
        x0, ex = g.enter()
        assert x0 == SUCCESS
        abort_exit(ex, page, 3)
        assert g.pc() == g.label("config")
        g.fault_in(page)
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["imm"], ex["gprs"]) == (SUCCESS, EXIT_HOST_CALL, 0, (0,) * 31)
        finish(g, gprs=HOST_GPRS)
        assert (g.gpr(20), g.gpr(21), g.gpr(22), g.gpr(23)) == (SUCCESS, UNPROTECTED, SUCCESS, SUCCESS)
        assert g.peek(page, 9) == (40).to_bytes(8, "little") + b"\0"
        assert g.peek(hc + 8, 248) == struct.pack("<31Q", *HOST_GPRS)
    ok(machine)


# -- the result-register rule, unknown SMCs, the SVE hint -----------------------------------------

def test_result_registers_measurement_read_writes_x1_to_x8(machine: Machine) -> None:
    """MEASUREMENT_READ writes X1..X8 (X4 included); X9..X16 read 0; X17, X18 keep their values."""
    with Guest.build(machine, call_program("RSI_MEASUREMENT_READ", {1: 3})) as g:
        finish(g)
        assert [g.gpr(n) for n in range(17)] == [0] * 17
        assert kept(g)


@pytest.mark.parametrize("fid, args, x0", [
    ("RSI_MEASUREMENT_EXTEND", {1: 1, 2: 4}, SUCCESS),   # no outputs: X1..X16 zeroed, inputs X3..X10 too
    ("RSI_REALM_CONFIG", {1: CODE + 8}, INPUT),          # an error: X1..X16 zeroed
    ("RSI_IPA_STATE_GET", {1: CODE, 2: CODE}, INPUT),
])
def test_result_registers(machine: Machine, fid: str, args: dict[int, object], x0: int) -> None:
    """Spec B1.2: on return from an RSI command X0 is the status and X1..X16 are outputs or 0
    (TF-RMM rel0 and rsi-attest.md 1.2 zero X1..X3 only and keep X4 and above); X17.. untouched."""
    with Guest.build(machine, call_program(fid, args)) as g:
        finish(g)
        results(g, x0)


@pytest.mark.parametrize("fid", [0xC400_019A, 0xC400_01AF, 0xC400_0150, 0xC400_0158, 0x8200_0000, 0x0, 0xC500_0000,
                                 0x8400_0190, 0x0400_0190, 0xC402_0190, 0xC000_0000, 0x8000_0001])
def test_unknown_smc(machine: Machine, fid: int) -> None:
    """An SMC that is neither RSI nor PSCI (a 1.1-only RSI ID, the end of the RSI range, RMI_VERSION,
    RMI_REALM_CREATE (ACS exception_realm_unsupported_smc: a realm calling an RMI command), SiP,
    0, another owner; RSI_VERSION's ID in the SMC32 convention, as a yielding call, and with
    FID bit 17 set (only bit 16, the SVE hint, is ignored); SMCCC_VERSION's ID in the SMC64
    convention, SMCCC_ARCH_FEATURES (B1.1: the realm ABIs are RSI and PSCI)) -> X0 = SMC_UNKNOWN
    (A4.3.4: SMCCC_NOT_SUPPORTED), X1..X3 zeroed, X4 and above kept (no RSI command, so
    SMCCC's rule), no exit."""
    with Guest.build(machine, call_program(hex(fid), {1: 1})) as g:
        finish(g)
        smccc_results(g, SMC_UNKNOWN)


def test_fid_is_w0(machine: Machine) -> None:
    """The function ID is W0: bits [63:32] of X0 are ignored (SMCCC)."""
    with Guest.build(machine, call_program(hex(0xFFFF_FFFF_C400_0190), {1: VERSION_1_0})) as g:
        finish(g)
        results(g, SUCCESS, VERSION_1_0, VERSION_1_0)


@pytest.mark.parametrize("fid, args, outputs", [
    (0xC400_0190, {1: VERSION_1_0}, (SUCCESS, VERSION_1_0, VERSION_1_0)),   # RSI_VERSION
    (0xC400_0198, {1: CODE, 2: CODE + 0x1000}, (SUCCESS, CODE + 0x1000, RAM)),   # RSI_IPA_STATE_GET
    (0x8000_0000, {}, (0x10002,)),                                          # SMCCC_VERSION
    (0x8400_0000, {}, (0x10001,)),                                          # PSCI_VERSION
])
def test_sve_hint_ignored(machine: Machine, fid: int, args: dict[int, object], outputs: tuple[int, ...]) -> None:
    """The SMCCC SVE hint (bit 16 of the FID) is ignored: the call behaves as without it."""
    with Guest.build(machine, call_program(hex(fid | 1 << 16), args)) as g:
        finish(g)
        if fid >> 24 == 0xC4:
            results(g, *outputs)
        else:
            smccc_results(g, *outputs)


# -- failing calls change the calling REC only (B1.9) ---------------------------------------------

CFG_DATA = "cfg:\n" + pattern_page()
"""A page of PATTERN at label `cfg` (CODE + 0x1000)."""
NS_IPA = UNPROTECTED + 0x2000
"""An unprotected IPA the `map_ns` cases map to an NS page first."""
BEYOND = 1 << 40
"""The first IPA past a default Guest's 40-bit IPA space."""
TOP_GRANULE = (1 << 64) - GRANULE
"""The last granule of the 64-bit address space."""
U64 = (1 << 64) - 1

INPUT_FAILURES = {
    # id: (command, X1.., data, host's preparation) -> RSI_ERROR_INPUT returned, no exit
    "version-incompatible": ("RSI_VERSION", {1: 0x2_0000}, "", None),
    "realm-config-misaligned": ("RSI_REALM_CONFIG", {1: "cfg + 8"}, CFG_DATA, None),
    "realm-config-misaligned-by-1": ("RSI_REALM_CONFIG", {1: "cfg + 1"}, CFG_DATA, None),   # bit 0 counts too
    "realm-config-empty": ("RSI_REALM_CONFIG", {1: EMPTY_IPA}, "", None),
    "realm-config-unprotected": ("RSI_REALM_CONFIG", {1: NS_IPA}, "", "map_ns"),
    "host-call-misaligned": ("RSI_HOST_CALL", {1: "hc + 8"}, HOST_CALL_DATA, None),
    "host-call-misaligned-by-1": ("RSI_HOST_CALL", {1: "hc + 1"}, HOST_CALL_DATA, None),
    "host-call-empty": ("RSI_HOST_CALL", {1: EMPTY_IPA + 0x100}, "", None),
    "host-call-unprotected": ("RSI_HOST_CALL", {1: NS_IPA + 0x100}, "", "map_ns"),
    "ipa-state-set-ripas-destroyed": ("RSI_IPA_STATE_SET", {1: UNASSIGNED_L3, 2: UNASSIGNED_L3 + GRANULE,
                                                            3: DESTROYED, 4: 0}, "", None),
    "ipa-state-set-ripas-3": ("RSI_IPA_STATE_SET", {1: UNASSIGNED_L3, 2: UNASSIGNED_L3 + GRANULE, 3: 3, 4: 0},
                              "", None),
    "ipa-state-set-base-misaligned": ("RSI_IPA_STATE_SET", {1: UNASSIGNED_L3 + 0x800, 2: UNASSIGNED_L3 + 0x2000,
                                                            3: EMPTY, 4: 0}, "", None),
    "ipa-state-set-top-misaligned": ("RSI_IPA_STATE_SET", {1: UNASSIGNED_L3, 2: UNASSIGNED_L3 + 0x1800,
                                                           3: EMPTY, 4: 0}, "", None),
    "ipa-state-set-empty-range": ("RSI_IPA_STATE_SET", {1: UNASSIGNED_L3, 2: UNASSIGNED_L3, 3: RAM, 4: 0}, "", None),
    "ipa-state-set-unprotected": ("RSI_IPA_STATE_SET", {1: UNASSIGNED_L3, 2: UNPROTECTED + GRANULE, 3: EMPTY, 4: 0},
                                  "", None),
    "ipa-state-get-unprotected": ("RSI_IPA_STATE_GET", {1: NS_IPA, 2: NS_IPA + GRANULE}, "", "map_ns"),
    "ipa-state-get-misaligned": ("RSI_IPA_STATE_GET", {1: CODE + 0x800, 2: CODE + 0x2000}, "", None),
    "ipa-state-get-empty-range": ("RSI_IPA_STATE_GET", {1: CODE, 2: CODE}, "", None),
    "measurement-extend-index-0": ("RSI_MEASUREMENT_EXTEND", {1: 0, 2: 8}, "", None),
    "measurement-extend-index-5": ("RSI_MEASUREMENT_EXTEND", {1: 5, 2: 8}, "", None),
    "measurement-extend-size-65": ("RSI_MEASUREMENT_EXTEND", {1: 1, 2: 65}, "", None),
    "measurement-read-index-5": ("RSI_MEASUREMENT_READ", {1: 5}, "", None),
    # edge values: past the 40-bit IPA space (at 2^40 + a RAM page's IPA, so that reading the
    # address modulo 2^ipa_width would find that page), the top of the 64-bit space, and
    # indices and sizes far out of range
    "realm-config-beyond-ipa-space": ("RSI_REALM_CONFIG", {1: f"{BEYOND} + cfg"}, CFG_DATA, None),
    "realm-config-top-granule": ("RSI_REALM_CONFIG", {1: TOP_GRANULE}, "", None),
    "host-call-beyond-ipa-space": ("RSI_HOST_CALL", {1: f"{BEYOND} + hc"}, HOST_CALL_DATA, None),
    "host-call-top-structure": ("RSI_HOST_CALL", {1: TOP_GRANULE + 0xF00}, "", None),
    "ipa-state-set-beyond-ipa-space": ("RSI_IPA_STATE_SET", {1: BEYOND + UNASSIGNED_L3,
                                                             2: BEYOND + UNASSIGNED_L3 + GRANULE, 3: EMPTY, 4: 0},
                                       "", None),
    "ipa-state-set-top-at-2^64-4k": ("RSI_IPA_STATE_SET", {1: UNASSIGNED_L3, 2: TOP_GRANULE, 3: EMPTY, 4: 0},
                                     "", None),
    "ipa-state-set-ripas-ff": ("RSI_IPA_STATE_SET", {1: UNASSIGNED_L3, 2: UNASSIGNED_L3 + GRANULE, 3: 0xFF, 4: 0},
                               "", None),
    "ipa-state-get-end-misaligned": ("RSI_IPA_STATE_GET", {1: CODE, 2: CODE + 0x1001}, "", None),
    "ipa-state-get-beyond-ipa-space": ("RSI_IPA_STATE_GET", {1: BEYOND + CODE, 2: BEYOND + CODE + GRANULE}, "", None),
    "ipa-state-get-end-at-2^64-4k": ("RSI_IPA_STATE_GET", {1: CODE, 2: TOP_GRANULE}, "", None),
    "measurement-extend-index-7": ("RSI_MEASUREMENT_EXTEND", {1: 7, 2: 8}, "", None),
    "measurement-extend-index-8": ("RSI_MEASUREMENT_EXTEND", {1: 8, 2: 8}, "", None),
    "measurement-extend-index-max": ("RSI_MEASUREMENT_EXTEND", {1: U64, 2: 8}, "", None),
    "measurement-extend-size-max": ("RSI_MEASUREMENT_EXTEND", {1: 1, 2: U64}, "", None),
    "measurement-read-index-7": ("RSI_MEASUREMENT_READ", {1: 7}, "", None),
    "measurement-read-index-8": ("RSI_MEASUREMENT_READ", {1: 8}, "", None),
    # a failure condition of the spec (addr_align) comes before the buffer walk: a misaligned
    # structure in a page the RMM could not reach (unassigned, DESTROYED) fails with
    # ERROR_INPUT, no emulated abort exit (TF-RMM rel0 checks the address first too)
    "realm-config-misaligned-unassigned": ("RSI_REALM_CONFIG", {1: UNASSIGNED_L3 + 8}, "", None),
    "realm-config-misaligned-destroyed": ("RSI_REALM_CONFIG", {1: UNASSIGNED_L3 + 8}, "", "destroy"),
    "host-call-misaligned-unassigned": ("RSI_HOST_CALL", {1: UNASSIGNED_L3 + 0x308}, "", None),
    "host-call-misaligned-destroyed": ("RSI_HOST_CALL", {1: UNASSIGNED_L3 + 0x308}, "", "destroy"),
}


def prepared(g: Guest, preparation: str | None) -> Guest:
    """Do the host's ``preparation`` (before REC 0 first runs): 'map_ns' maps NS_IPA to an NS page,
    'destroy' makes UNASSIGNED_L3 a DESTROYED page."""
    if preparation == "map_ns":
        g.map_unprotected(NS_IPA, b"\x77" * GRANULE)
    elif preparation == "destroy":
        g.destroy_page(UNASSIGNED_L3)
    return g


@pytest.mark.parametrize("fid, args, data, preparation", INPUT_FAILURES.values(), ids=INPUT_FAILURES.keys())
def test_failure_changes_the_rec_only(machine: Machine, fid: str, args: dict[int, object], data: str,
                                      preparation: str | None) -> None:
    """B1.9: except for the footprint and the output registers, a command has no observable
    effect; a failing one leaves its footprint as it was too. The entry that makes each failing
    call (RSI_ERROR_INPUT, no exit) changes the calling REC (its registers) and nothing else:
    not the RD (measurements), not the realm's pages (the `cfg`/`hc` pattern, a mapped NS page),
    not the RTTs; no host call or RIPAS request is left pending."""
    with Guest.build(machine, first_then(fid, args, data)) as g:
        prepared(g, preparation)
        assert call_changes(g) == {"rec0"}
        if fid == "RSI_VERSION":
            results(g, INPUT, VERSION_1_0, VERSION_1_0)
        else:
            results(g, INPUT)
        assert not g.rec().host_call_pending and g.rec().ripas_request() == (0, 0, 0, 0, 0)
        if preparation == "map_ns":
            assert machine.ns_read(g.ns_pages[0], GRANULE) == b"\x77" * GRANULE


@pytest.mark.parametrize("fid", [0xC400_019A, 0x8200_0000, 0xC500_0000])
def test_unknown_smc_changes_the_rec_only(machine: Machine, fid: int) -> None:
    """An SMC no one implements (SMC_UNKNOWN, no exit) changes the calling REC only."""
    with Guest.build(machine, first_then(hex(fid), {1: 1})) as g:
        assert call_changes(g) == {"rec0"}
        smccc_results(g, SMC_UNKNOWN)


ABORT_FAILURES = {
    # id: (command, X1, preparation, walk level) -> emulated stage-2 abort exit, PC on the SMC
    "realm-config-unassigned-l3": ("RSI_REALM_CONFIG", UNASSIGNED_L3, None, 3),
    "realm-config-unassigned-l2": ("RSI_REALM_CONFIG", UNASSIGNED_L2, None, 2),
    "realm-config-destroyed": ("RSI_REALM_CONFIG", UNASSIGNED_L3, "destroy", 3),
    "host-call-unassigned": ("RSI_HOST_CALL", UNASSIGNED_L3 + 0x300, None, 3),
    "host-call-destroyed": ("RSI_HOST_CALL", UNASSIGNED_L3 + 0x300, "destroy", 3),
}


@pytest.mark.parametrize("fid, ipa, preparation, level", ABORT_FAILURES.values(), ids=ABORT_FAILURES.keys())
def test_abort_exit_changes_the_rec_only(machine: Machine, fid: str, ipa: int, preparation: str | None,
                                         level: int) -> None:
    """A structure in unassigned or DESTROYED RAM: the call is not made (rsi-attest 1.4; the spec
    lists no such condition, A4.4 only the exit): the REC exits with an emulated stage-2 abort,
    its PC on the SMC, so the call has no effect yet: the entry changes the REC only (the
    syndrome it keeps, its PC), the footprint (rec.host_call_pending) stays clear."""
    with Guest.build(machine, first_then(fid, {1: ipa})) as g:
        prepared(g, preparation)
        to_first(g)
        exit_fields: dict = {}
        assert g.changes(lambda: exit_fields.update(g.enter()[1])) == {"rec0"}
        abort_exit(exit_fields, ipa, level)
        assert g.pc() == g.label("call") and not g.rec().host_call_pending


def test_host_call_completion_abort_changes_the_rec_only(machine: Machine) -> None:
    """The RsiHostCall's page is destroyed between the HOST_CALL exit and the next entry: that
    entry returns an abort exit without completing the call (A4.2.2) and changes at most the REC
    (no realm page written, rec.host_call_pending still set, X0 still the FID)."""
    ipa = UNASSIGNED_L3 + 0x200
    with Guest.build(machine, first_then("RSI_HOST_CALL", {1: ipa})) as g:
        g.fault_in(ipa)
        to_first(g)
        exits(g, EXIT_HOST_CALL)
        x0, pa = g.smc(F.RMI_DATA_DESTROY, g.realm.rd, ipa & ~0xFFF)[:2]
        assert x0 == SUCCESS and g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
        g.alloc.free(pa)
        exit_fields: dict = {}
        # (the REC may keep nothing of this exit: its PC, registers and request are as they were)
        assert g.changes(lambda: exit_fields.update(g.enter(gprs=HOST_GPRS)[1])) <= {"rec0"}
        abort_exit(exit_fields, ipa, 3)
        assert g.pc() == g.label("call") + 8 and g.rec().host_call_pending
        assert g.gpr(0) == 0xC400_0199
    ok(machine)


# -- what the latency histograms count as an error ------------------------------------------------

def test_histograms_count_only_failures_as_errors(machine: Machine) -> None:
    """PSCI_VERSION and AFFINITY_INFO return values, not statuses: neither counts as an error
    (they once did: any X0 != 0 was one); RSI_ERROR_INPUT and PSCI_NOT_SUPPORTED do."""
    from rmm_mp.stats import calls
    from rmm_mp.stats.report import collect, kind

    program = """
        mov x0, =PSCI_VERSION
        smc #0
        mov x0, =PSCI_AFFINITY_INFO
        mov x1, #0
        mov x2, #0
        smc #0
        mov x0, =PSCI_FEATURES
        mov x1, #0x12345
        smc #0
        mov x0, =RSI_MEASUREMENT_READ
        mov x1, #9
        smc #0
    done: wfi
        b done
    """
    with Guest.build(machine, program) as g:
        finish(g)
        g.cpu.flush_statistics()
        stats = collect(machine, [0])[0]
    errors = {calls.name(slot): s.errors for slot, s in stats.items() if kind(slot) in ("RSI", "PSCI")}
    assert errors == {"PSCI_VERSION": 0, "PSCI_AFFINITY_INFO": 0, "PSCI_FEATURES": 1, "RSI_MEASUREMENT_READ": 1}


# -- realm_call's locked walk -----------------------------------------------------------------------

@pytest.mark.parametrize("ipa", [(1 << 30) + 7 * 0x20_0000 + 0x5000, 7 * 0x20_0000 + 0x5000],
                         ids=["root-1", "root-0"])
def test_locked_walk_in_concatenated_roots(machine: Machine, ipa: int) -> None:
    """realm_call.lock_realm_page, the locked walk RSI_REALM_CONFIG, RSI_HOST_CALL and the token
    copy use, in an s2sz-32 realm whose stage 2 starts at level 2 with 4 concatenated root
    RTTs: a protected IPA above 1 GiB is in the second root, which the walk must move to (and
    release the first). The page comes back RAM at its DATA granule with only its level-3
    table locked; once released, no lock is held."""
    t = Rmi(machine)
    realm = t.realm(s2sz=32, start_level=2)
    t.rtts(realm, ipa, 3)
    page_ipa = ipa & ~(GRANULE - 1)
    assert t.smc(F.RMI_RTT_INIT_RIPAS, realm.rd, page_ipa, page_ipa + GRANULE)[0] == 0
    data = t.delegate()
    assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, page_ipa)[0] == 0
    rmm = machine.cpu(0).rmm
    rd_idx = (realm.rd - machine.dram_base) // GRANULE
    rd = Rd(machine.memory, rd_idx)
    call = realm_call.RealmCall(rmm, None, rd, realm.rd, None, rd.params().s2ctx())  # type: ignore[arg-type]
    page = realm_call.lock_realm_page(call, ipa)
    assert (page.kind, page.level, page.pa) == (realm_call.RAM, 3, data)
    assert page.llt is not None and page.llt.addr == realm.rtts[(ipa & ~0x1F_FFFF, 3)]
    page.release()
    assert invariants(machine).ok, invariants(machine)


def test_locked_walk_to_a_block(machine: Machine) -> None:
    """realm_call.lock_realm_page inside a 2 MiB RAM block (512 DATA pages folded): RAM at level
    2, the PA of the page that holds the IPA (the block's PA plus the IPA's page offset in the
    block), with the level-2 table locked; a level-3 page's PA is its entry's output address."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    block_ipa = 3 * 0x20_0000
    t.rtts(realm, block_ipa, 3)
    assert t.smc(F.RMI_RTT_INIT_RIPAS, realm.rd, block_ipa, block_ipa + 0x20_0000)[0] == 0
    first = t.ns_granules(512, align=0x20_0000)
    for i in range(512):
        data = t.delegate(first + i * GRANULE)
        assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, block_ipa + i * GRANULE)[0] == 0
    rmm = machine.cpu(0).rmm
    rd = Rd(machine.memory, (realm.rd - machine.dram_base) // GRANULE)
    call = realm_call.RealmCall(rmm, None, rd, realm.rd, None, rd.params().s2ctx())  # type: ignore[arg-type]
    ipa = block_ipa + 0x1F5 * GRANULE + 0x123
    page = realm_call.lock_realm_page(call, ipa)
    assert (page.kind, page.level, page.pa) == (realm_call.RAM, 3, first + 0x1F5 * GRANULE)
    page.release()
    assert t.smc(F.RMI_RTT_FOLD, realm.rd, block_ipa, 3)[0] == 0
    page = realm_call.lock_realm_page(call, ipa)
    assert (page.kind, page.level, page.pa) == (realm_call.RAM, 2, first + 0x1F5 * GRANULE)
    assert page.llt is not None and page.llt.addr == realm.rtts[(block_ipa & ~0x3FFF_FFFF, 2)]
    page.release()
    assert invariants(machine).ok, invariants(machine)
