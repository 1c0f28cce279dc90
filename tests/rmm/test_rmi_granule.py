"""RMI_GRANULE_DELEGATE and RMI_GRANULE_UNDELEGATE (DEN0137 1.0-rel0 B4.3.5, B4.3.6).

Failure conditions are tested one per test, in the spec's order (gran_align, gran_bound,
gran_state, gran_gpt), each named after the ARM cca-rmm-acs check it mirrors. Every failing
call must return (RMI_ERROR_INPUT, 0, 0, 0, 0) and leave the footprint unchanged.
"""

from __future__ import annotations

import pytest

from footprint import snapshot
from rmm_mp import GranuleProtectionFault, Machine, RmmInternalError
from rmm_mp.abi.rmi import RmiFid, RmiStatus, pack_return
from rmm_mp.check import invariants
from rmm_mp.hw.gpt import Pas
from rmm_mp.rmm.granule_state import GranuleState

DELEGATE = RmiFid.RMI_GRANULE_DELEGATE
UNDELEGATE = RmiFid.RMI_GRANULE_UNDELEGATE
ERROR_INPUT = pack_return(RmiStatus.RMI_ERROR_INPUT, 0)
SUCCESS = pack_return(RmiStatus.RMI_SUCCESS, 0)

# Junk in the registers the commands do not read; X4 is no output, so it must come back as 0 (B1.2).
X2, X3, X4 = 0x2222_2222_2222_2222, 0x3333_3333_3333_3333, 0x4444_5555_6666_7777
FAILED = (ERROR_INPUT, 0, 0, 0, 0)
DONE = (SUCCESS, 0, 0, 0, 0)

PATTERN = bytes(range(256)) * 16


def _pa(machine: Machine, idx: int) -> int:
    return machine.dram_base + idx * machine.granule_size


def _idx(machine: Machine, pa: int) -> int:
    return (pa - machine.dram_base) // machine.granule_size


def _last_ns_idx(machine: Machine) -> int:
    """Index of the highest DRAM granule outside every Secure region."""
    idx = machine.granule_count - 1
    while any(base <= _pa(machine, idx) < base + size for base, size in machine.secure_regions):
        idx -= 1
    return idx


def _secure_pa(machine: Machine) -> int:
    base, size = machine.secure_regions[0]
    assert size >= machine.granule_size
    return base


def _out_of_bounds_pa(machine: Machine, where: str) -> int:
    """A granule-aligned PA that is not delegable: gran_bound's cases."""
    dram_end = machine.dram_base + machine.granule_count * machine.granule_size
    if where == "mmio":
        base, _ = machine.mmio_regions[0]
        assert not machine.dram_base <= base < dram_end
        return base
    if where == "beyond-pa-range":
        return 1 << machine.pa_bits
    if where == "top-of-address-space":
        return 0xFFFF_FFFF_FFFF_F000
    if where == "just-past-dram":
        return dram_end
    if where == "just-below-dram":
        return machine.dram_base - machine.granule_size
    raise AssertionError(where)


BOUND_CASES = ["mmio", "beyond-pa-range", "top-of-address-space", "just-past-dram", "just-below-dram"]


def _delegate(machine: Machine, cpu, idx: int) -> int:  # type: ignore[no-untyped-def]
    pa = _pa(machine, idx)
    assert cpu.smc(DELEGATE, pa) == (SUCCESS, 0, 0, 0, 0)
    return pa


def _fails_unchanged(machine: Machine, cpu, fid: int, addr: int, *pas: int) -> None:  # type: ignore[no-untyped-def]
    """Call fid(addr) with junk in X2..X4: RMI_ERROR_INPUT and an unchanged footprint."""
    before = snapshot(machine, *pas)
    regs = cpu.smc(fid, addr, X2, X3, X4)
    after = snapshot(machine, *pas)
    assert regs == FAILED
    assert before.diff(after) == []


# -- RMI_GRANULE_DELEGATE: failure conditions in the spec's order -----------------------------


def test_delegate_gran_align(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """ACS gran_align: DELEGATE of an unaligned PA inside an NS DRAM granule -> RMI_ERROR_INPUT,
    footprint (and the containing granule's contents) unchanged."""
    pa = _pa(machine, 5)
    machine.ns_write(pa, PATTERN)
    _fails_unchanged(machine, cpu0, DELEGATE, pa + 8, pa)
    _fails_unchanged(machine, cpu0, DELEGATE, pa + machine.granule_size // 2, pa)
    assert machine.granule_table(0).state(5) == GranuleState.NS
    assert machine.ns_read(pa, len(PATTERN)) == PATTERN


@pytest.mark.parametrize("where", BOUND_CASES)
def test_delegate_gran_bound(machine: Machine, cpu0, where: str) -> None:  # type: ignore[no-untyped-def]
    """ACS gran_bound: DELEGATE of an aligned PA that is not delegable (MMIO, beyond the PA
    range, just past the end of DRAM, just below DRAM) -> RMI_ERROR_INPUT, footprint unchanged."""
    _fails_unchanged(machine, cpu0, DELEGATE, _out_of_bounds_pa(machine, where))


def test_delegate_gran_state(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """ACS gran_state: DELEGATE of a granule that is already DELEGATED -> RMI_ERROR_INPUT; the
    granule stays DELEGATED in the Realm PAS with zero contents."""
    pa = _delegate(machine, cpu0, 7)
    _fails_unchanged(machine, cpu0, DELEGATE, pa, pa)
    assert machine.granule_table(0).state(7) == GranuleState.DELEGATED
    assert machine.gpt.pas(7) == Pas.REALM
    assert machine.memory.is_zero(7)


def test_delegate_gran_gpt_secure(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """ACS gran_gpt (SECURE): DELEGATE of a DRAM granule in the platform's Secure region (state
    UNDELEGATED, GPT entry Secure): EL3 refuses -> RMI_ERROR_INPUT, footprint unchanged."""
    pa = _secure_pa(machine)
    idx = _idx(machine, pa)
    assert machine.granule_table(0).state(idx) == GranuleState.NS
    assert machine.gpt.pas(idx) == Pas.SECURE
    _fails_unchanged(machine, cpu0, DELEGATE, pa, pa)
    assert machine.gpt.pas(idx) == Pas.SECURE
    assert machine.granule_table(0).holder(idx) == 0


def test_delegate_gran_gpt_realm(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """ACS gran_gpt (REALM): DELEGATE of an UNDELEGATED granule whose GPT entry is already Realm
    (made inconsistent on purpose): EL3 refuses -> RMI_ERROR_INPUT, footprint unchanged."""
    idx = 9
    pa = _pa(machine, idx)
    assert machine.gpt.transition(idx, Pas.NS, Pas.REALM)
    _fails_unchanged(machine, cpu0, DELEGATE, pa, pa)
    assert machine.granule_table(0).state(idx) == GranuleState.NS
    assert machine.gpt.pas(idx) == Pas.REALM


# -- RMI_GRANULE_DELEGATE: success ---------------------------------------------------------


def test_delegate_success(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """DELEGATE of an NS granule holding host bytes: SUCCESS (X1..X4 = 0), state
    DELEGATED, GPT Realm, contents zeroed, host access now faults, and no other granule's
    state, lock, PAS or contents changes."""
    idx = 11
    pa = _pa(machine, idx)
    neighbour = _pa(machine, idx + 1)
    machine.ns_write(pa, PATTERN)
    machine.ns_write(neighbour, PATTERN)
    before = snapshot(machine, pa, neighbour)

    assert cpu0.smc(DELEGATE, pa, X2, X3, X4) == DONE

    after = snapshot(machine, pa, neighbour)
    table = machine.granule_table(0)
    assert table.state(idx) == GranuleState.DELEGATED
    assert table.refcount(idx) == 0
    assert table.holder(idx) == 0
    assert machine.gpt.pas(idx) == Pas.REALM
    assert machine.memory.is_zero(idx)
    changed_words = [i for i, (a, b) in enumerate(zip(before.words, after.words)) if a != b]
    changed_pas = [i for i, (a, b) in enumerate(zip(before.gpt, after.gpt)) if a != b]
    assert changed_words == [idx]
    assert changed_pas == [idx]
    assert before.locks == after.locks
    assert [p for (p, h1), (_, h2) in zip(before.contents, after.contents) if h1 != h2] == [pa]
    assert machine.ns_read(neighbour, len(PATTERN)) == PATTERN
    with pytest.raises(GranuleProtectionFault):
        machine.ns_read(pa, 1)


def test_delegate_ignores_unused_registers(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """DELEGATE reads X1 only: junk in X2..X6 does not change the outcome, and X4 comes back as 0."""
    pa = _pa(machine, 13)
    assert cpu0.smc(DELEGATE, pa, X2, X3, X4, 0x55, 0x66) == DONE
    assert machine.granule_table(0).state(13) == GranuleState.DELEGATED


# -- RMI_GRANULE_UNDELEGATE: failure conditions in the spec's order ---------------------------


def test_undelegate_gran_align(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """ACS gran_align: UNDELEGATE of an unaligned PA inside a DELEGATED granule ->
    RMI_ERROR_INPUT; the granule stays DELEGATED, footprint unchanged."""
    pa = _delegate(machine, cpu0, 15)
    _fails_unchanged(machine, cpu0, UNDELEGATE, pa + 8, pa)
    _fails_unchanged(machine, cpu0, UNDELEGATE, pa + 0xFFF, pa)
    assert machine.granule_table(0).state(15) == GranuleState.DELEGATED
    assert machine.gpt.pas(15) == Pas.REALM


@pytest.mark.parametrize("where", BOUND_CASES)
def test_undelegate_gran_bound(machine: Machine, cpu0, where: str) -> None:  # type: ignore[no-untyped-def]
    """ACS gran_bound: UNDELEGATE of an aligned PA that is not delegable (MMIO, beyond the PA
    range, just past the end of DRAM, just below DRAM) -> RMI_ERROR_INPUT, footprint unchanged."""
    _delegate(machine, cpu0, 0)
    _delegate(machine, cpu0, _last_ns_idx(machine))
    _fails_unchanged(machine, cpu0, UNDELEGATE, _out_of_bounds_pa(machine, where))


def test_undelegate_gran_state_ns(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """ACS gran_state: UNDELEGATE of a granule that is NS (never delegated) -> RMI_ERROR_INPUT;
    it stays NS in the NS PAS and keeps the host's bytes."""
    pa = _pa(machine, 17)
    machine.ns_write(pa, PATTERN)
    _fails_unchanged(machine, cpu0, UNDELEGATE, pa, pa)
    assert machine.granule_table(0).state(17) == GranuleState.NS
    assert machine.gpt.pas(17) == Pas.NS
    assert machine.ns_read(pa, len(PATTERN)) == PATTERN


def test_undelegate_gran_state_secure(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """ACS gran_state: UNDELEGATE of a Secure-region DRAM granule (state UNDELEGATED) ->
    RMI_ERROR_INPUT without reaching EL3; the machine stays alive and nothing changes."""
    pa = _secure_pa(machine)
    _fails_unchanged(machine, cpu0, UNDELEGATE, pa, pa)
    assert machine.gpt.pas(_idx(machine, pa)) == Pas.SECURE
    assert not machine.dead


def test_undelegate_after_undelegate(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """ACS gran_state: a second UNDELEGATE of the same granule (now NS again) -> RMI_ERROR_INPUT."""
    pa = _delegate(machine, cpu0, 19)
    assert cpu0.smc(UNDELEGATE, pa) == (SUCCESS, 0, 0, 0, 0)
    _fails_unchanged(machine, cpu0, UNDELEGATE, pa, pa)


# -- RMI_GRANULE_UNDELEGATE: success and EL3 refusal ----------------------------------------


def test_undelegate_success(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """UNDELEGATE of a DELEGATED granule: SUCCESS (X4 = 0), state NS, GPT NS, the host reads
    zeros where it wrote a pattern before DELEGATE, and no other granule changes."""
    idx = 21
    pa = _pa(machine, idx)
    machine.ns_write(pa, PATTERN)
    _delegate(machine, cpu0, idx)
    before = snapshot(machine, pa)

    assert cpu0.smc(UNDELEGATE, pa, X2, X3, X4) == DONE

    after = snapshot(machine, pa)
    table = machine.granule_table(0)
    assert table.state(idx) == GranuleState.NS
    assert table.refcount(idx) == 0
    assert table.holder(idx) == 0
    assert machine.gpt.pas(idx) == Pas.NS
    assert machine.ns_read(pa, machine.granule_size) == bytes(machine.granule_size)
    assert [i for i, (a, b) in enumerate(zip(before.words, after.words)) if a != b] == [idx]
    assert [i for i, (a, b) in enumerate(zip(before.gpt, after.gpt)) if a != b] == [idx]
    assert before.locks == after.locks


def test_undelegate_wipes_contents(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """B4.3.6.3 gran_content: UNDELEGATE wipes the granule even if realm-side bytes were left
    in it (written directly into DRAM while DELEGATED): the host reads back zeros."""
    idx = 23
    pa = _delegate(machine, cpu0, idx)
    machine.memory.write(pa, PATTERN)
    assert not machine.memory.is_zero(idx)
    assert cpu0.smc(UNDELEGATE, pa) == (SUCCESS, 0, 0, 0, 0)
    assert machine.ns_read(pa, machine.granule_size) == bytes(machine.granule_size)


def test_round_trip_keeps_invariants(machine: Machine) -> None:
    """DELEGATE then UNDELEGATE of several granules, on different CPUs: the invariant checker
    is happy after each step, and the table ends as it started."""
    cpus = [machine.cpu(i) for i in range(machine.cpus)]
    start = snapshot(machine)
    assert invariants(machine).ok
    pas = [_pa(machine, i) for i in (0, 1, 100, _last_ns_idx(machine))]
    for n, pa in enumerate(pas):
        machine.ns_write(pa, PATTERN)
        assert cpus[n % len(cpus)].smc(DELEGATE, pa) == (SUCCESS, 0, 0, 0, 0)
    report = invariants(machine)
    assert report.ok, str(report)
    assert report.state_counts["DELEGATED"] == len(pas)
    for n, pa in enumerate(pas):
        assert cpus[(n + 1) % len(cpus)].smc(UNDELEGATE, pa) == (SUCCESS, 0, 0, 0, 0)
    report = invariants(machine)
    assert report.ok, str(report)
    assert "DELEGATED" not in report.state_counts
    assert start.diff(snapshot(machine)) == []


def test_undelegate_el3_refusal_is_fatal(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """UNDELEGATE when EL3 refuses (the GPT entry of the DELEGATED granule was moved back to NS
    behind the RMM's back, so GTSI_UNDELEGATE answers BAD_PAS): TF-RMM panics, so smc raises
    RmmInternalError naming the FID and the CPU, the machine is dead, and every later smc on
    any CPU raises too."""
    idx = 25
    pa = _delegate(machine, cpu0, idx)
    assert machine.gpt.transition(idx, Pas.REALM, Pas.NS)
    with pytest.raises(RmmInternalError) as info:
        cpu0.smc(UNDELEGATE, pa)
    assert f"{int(UNDELEGATE):#x}" in str(info.value)
    assert "CPU 0" in str(info.value)
    assert machine.dead
    with pytest.raises(RmmInternalError):
        cpu0.smc(RmiFid.RMI_VERSION, 0x10000)
    with pytest.raises(RmmInternalError):
        machine.cpu(1).smc(RmiFid.RMI_VERSION, 0x10000)
