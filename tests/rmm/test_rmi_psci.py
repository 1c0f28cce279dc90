"""RMI_PSCI_COMPLETE (DEN0137 1.0-rel0 B4.3.7, B3.27; rsi-attest.md section 2).

One test per failure condition in the order of the spec's table (ACS
test/command/cmd_psci_complete/rmi_psci_complete_data.h), each asserting the exact X0, X1..X3 = 0,
X4 = 0 and an unchanged footprint (granule states, refcounts, locks, GPT, and the contents of
both RECs); then the success cases of B4.3.7.3 and an invariant check.

Until realms execute, the realm's side of the PSCI exchange is set white-box: the calling REC's
pending request (Rec.psci_pending = the PSCI FID, as the REC's PSCI exit will leave it) and its
saved X0..X3 (FID, target MPIDR in MPIDR_EL1 form, entry point, context id).
"""

from __future__ import annotations

import pytest

from footprint import snapshot
from rmi_helpers import F, INPUT, SUCCESS, Realm, Rmi
from rmm_mp import Machine
from rmm_mp.check import invariants
from rmm_mp.abi.psci import mpidr_el1_to_rec_index
from rmm_mp.rmm.rec_desc import PSTATE_EL1H_DAIF_MASKED, Rec

X4 = 0x4444_5555_6666_7777
U64 = (1 << 64) - 1
CPU_ON, CPU_ON_32 = 0xC400_0003, 0x8400_0003
AFFINITY_INFO, AFFINITY_INFO_32 = 0xC400_0004, 0x8400_0004
PSCI_SUCCESS, PSCI_NOT_SUPPORTED, PSCI_INVALID_PARAMS = 0, -1 & U64, -2 & U64
PSCI_DENIED, PSCI_ALREADY_ON = -3 & U64, -4 & U64
ON, OFF = 0, 1
ENTRY, CONTEXT = 0x8000_4000, 0xC0FF_EE00
TARGET_GPRS = (7, 7, 7, 7, 7, 7, 7, 7)


def _mpidr_el1(index: int) -> int:
    """MPIDR_EL1 of REC ``index``: Aff0[3:0], Aff1[15:8], Aff2[23:16], Aff3[39:32]."""
    return (index & 0xF) | ((index >> 4) & 0xFF) << 8 | ((index >> 12) & 0xFF) << 16 | ((index >> 20) & 0xFF) << 32


def _idx(m: Machine, pa: int) -> int:
    return (pa - m.dram_base) // m.granule_size


def _data_granule(t: Rmi, realm: Realm) -> int:
    """A DATA granule mapped at IPA 0 of the NEW ``realm`` (RTTs made, DATA_CREATE unmeasured)."""
    t.rtts(realm, 0, 3)
    data = t.delegate()
    assert t.smc(F.RMI_DATA_CREATE, realm.rd, data, 0, t.ns_page(b"data"), 0)[0] == SUCCESS
    return data


def _rec(m: Machine, pa: int) -> Rec:
    return Rec(m.memory, _idx(m, pa))


def _refcount_add(m: Machine, pa: int, delta: int) -> None:
    """White-box: mark a REC running (its REC_ENTER's reference) or idle again."""
    m.granule_table(0).refcount_add(_idx(m, pa), delta)


def _ok(m: Machine) -> None:
    report = invariants(m)
    assert report.ok, str(report)


class Psci:
    """A realm with REC 0 (runnable, the caller) and RECs 1 and 2 (not runnable, with X0..X7 = 7)."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.t = Rmi(machine)
        self.realm: Realm = self.t.realm()
        self.caller = self.t.rec(self.realm, pc=0x100)
        self.target = self.t.rec(self.realm, runnable=False, gprs=TARGET_GPRS)
        self.third = self.t.rec(self.realm, runnable=False, gprs=TARGET_GPRS)

    def request(self, fid: int = CPU_ON, target_index: int = 1, mpidr: int | None = None,
                rec: int | None = None) -> None:
        """White-box: leave the caller as a PSCI exit for ``fid`` naming ``target_index`` would."""
        caller = _rec(self.m, self.caller if rec is None else rec)
        caller.psci_pending = fid
        caller.set_gprs((fid, _mpidr_el1(target_index) if mpidr is None else mpidr, ENTRY, CONTEXT, 0x44))

    def call(self, status: int, caller: int | None = None, target: int | None = None) -> tuple[int, ...]:
        return self.t.smc(F.RMI_PSCI_COMPLETE, self.caller if caller is None else caller,
                          self.target if target is None else target, status, X4)

    def fails(self, status: int = PSCI_SUCCESS, caller: int | None = None, target: int | None = None,
              more: tuple[int, ...] = ()) -> None:
        pas = (self.caller, self.target, self.third, self.realm.rd, *more)
        before = snapshot(self.m, *pas)
        assert self.call(status, caller, target) == (INPUT, 0, 0, 0, 0)
        assert before.diff(snapshot(self.m, *pas)) == []


def _bad(m: Machine, where: str) -> int:
    return {"mmio": m.mmio_regions[0][0], "beyond-pa": 1 << m.pa_bits,
            "past-dram": m.dram_base + m.granule_count * m.granule_size}[where]


BOUND = ["mmio", "beyond-pa", "past-dram"]


# -- failure conditions --------------------------------------------------------------------------

def test_psci_complete_alias(machine: Machine) -> None:
    """ACS alias: calling_rec == target_rec (the caller names itself) -> RMI_ERROR_INPUT,
    footprint unchanged."""
    p = Psci(machine)
    p.request(target_index=0)
    p.fails(target=p.caller)
    _ok(machine)


def test_psci_complete_calling_align(machine: Machine) -> None:
    """ACS calling_align (CALLING_UNALIGNED) -> RMI_ERROR_INPUT, footprint unchanged."""
    p = Psci(machine)
    p.request()
    p.fails(caller=p.caller + 8)
    _ok(machine)


@pytest.mark.parametrize("where", BOUND)
def test_psci_complete_calling_bound(machine: Machine, where: str) -> None:
    """ACS calling_bound (CALLING_DEV_MEM, CALLING_OUT_OF_PERMITTED_PA) -> RMI_ERROR_INPUT."""
    p = Psci(machine)
    p.request()
    p.fails(caller=_bad(machine, where))
    _ok(machine)


@pytest.mark.parametrize("kind", ["undelegated", "delegated", "rd", "rtt", "data", "rec_aux"])
def test_psci_complete_calling_state(machine: Machine, kind: str) -> None:
    """ACS calling_state (CALLING_GRAN_STATE_UNDELEGATED/DELEGATED/RD/RTT/DATA, plus REC_AUX): the
    calling granule is not a REC -> RMI_ERROR_INPUT, footprint unchanged."""
    p = Psci(machine)
    p.request()
    pa = {"undelegated": p.t.ns_page(), "delegated": p.t.delegate(), "rd": p.realm.rd, "rtt": p.realm.roots[0],
          "data": _data_granule(p.t, p.realm) if kind == "data" else 0, "rec_aux": p.realm.recs[0][1][0]}[kind]
    p.fails(caller=pa, more=(pa,))
    _ok(machine)


def test_psci_complete_target_align(machine: Machine) -> None:
    """ACS target_align (TARGET_UNALIGNED) -> RMI_ERROR_INPUT, footprint unchanged."""
    p = Psci(machine)
    p.request()
    p.fails(target=p.target + 0x800)
    _ok(machine)


@pytest.mark.parametrize("where", BOUND)
def test_psci_complete_target_bound(machine: Machine, where: str) -> None:
    """ACS target_bound (TARGET_DEV_MEM, TARGET_OUT_OF_PERMITTED_PA) -> RMI_ERROR_INPUT."""
    p = Psci(machine)
    p.request()
    p.fails(target=_bad(machine, where))
    _ok(machine)


@pytest.mark.parametrize("kind", ["undelegated", "delegated", "rd", "rtt", "data", "rec_aux"])
def test_psci_complete_target_state(machine: Machine, kind: str) -> None:
    """ACS target_state (TARGET_GRAN_STATE_UNDELEGATED/DELEGATED/RD/RTT/DATA, plus REC_AUX): the
    target granule is not a REC -> RMI_ERROR_INPUT, footprint unchanged."""
    p = Psci(machine)
    p.request()
    pa = {"undelegated": p.t.ns_page(), "delegated": p.t.delegate(), "rd": p.realm.rd, "rtt": p.realm.roots[0],
          "data": _data_granule(p.t, p.realm) if kind == "data" else 0, "rec_aux": p.realm.recs[1][1][15]}[kind]
    p.fails(target=pa, more=(pa,))
    _ok(machine)


def test_psci_complete_pending(machine: Machine) -> None:
    """ACS pending (NO_PSCI_REQUEST): the caller has no PSCI request pending -> RMI_ERROR_INPUT,
    footprint unchanged, even though its X1 names the target."""
    p = Psci(machine)
    p.request()
    _rec(machine, p.caller).psci_pending = 0
    p.fails()
    _ok(machine)


def test_psci_complete_pending_caller_running(machine: Machine) -> None:
    """pending, as TF-RMM checks it: the caller is running (refcount 1, white-box), so it cannot
    have a request the host may complete -> RMI_ERROR_INPUT (not RMI_ERROR_REC), footprint
    unchanged; the same call succeeds once the caller is idle again."""
    p = Psci(machine)
    p.request()
    _refcount_add(machine, p.caller, 1)
    p.fails()
    _refcount_add(machine, p.caller, -1)
    assert p.call(PSCI_SUCCESS)[0] == SUCCESS
    _ok(machine)


def test_psci_complete_owner(machine: Machine) -> None:
    """ACS owner (TARGET_OTHER_OWNER): the target REC belongs to another realm (with the same
    index as the caller's X1 names) -> RMI_ERROR_INPUT, footprint unchanged."""
    p = Psci(machine)
    other = p.t.realm()
    p.t.rec(other)
    foreign = p.t.rec(other, runnable=False)
    p.request(target_index=1)
    p.fails(target=foreign, more=(foreign, other.rd))
    _ok(machine)


@pytest.mark.parametrize("mpidr", [
    pytest.param(_mpidr_el1(2), id="another-rec-of-the-realm"),
    pytest.param(_mpidr_el1(1) | 1 << 32, id="aff3-set"),
    pytest.param(_mpidr_el1(1) | 1 << 8, id="aff1-set"),
])
def test_psci_complete_target(machine: Machine, mpidr: int) -> None:
    """ACS target (TARGET_OTHER_MPIDR): the MPIDR in the caller's X1 does not name the target
    REC (it names REC 2, or has Aff3 [39:32] or Aff1 set) -> RMI_ERROR_INPUT, unchanged."""
    p = Psci(machine)
    p.request(mpidr=mpidr)
    p.fails()
    _ok(machine)


@pytest.mark.parametrize("fid, status, target_runnable", [
    pytest.param(CPU_ON, PSCI_NOT_SUPPORTED, False, id="acs-cpu-on-not-supported"),
    pytest.param(CPU_ON, PSCI_ALREADY_ON, False, id="cpu-on-already-on"),
    pytest.param(CPU_ON, PSCI_INVALID_PARAMS, True, id="cpu-on-invalid-params"),
    pytest.param(CPU_ON, 1, False, id="cpu-on-positive"),
    pytest.param(CPU_ON, PSCI_DENIED, True, id="cpu-on-denied-target-on"),
    pytest.param(AFFINITY_INFO, PSCI_DENIED, False, id="affinity-info-denied"),
    pytest.param(AFFINITY_INFO, PSCI_NOT_SUPPORTED, True, id="affinity-info-not-supported"),
])
def test_psci_complete_status(machine: Machine, fid: int, status: int, target_runnable: bool) -> None:
    """ACS status (STATUS_NOT_PERMITTED): PsciReturnCodePermitted (B3.27) is false -> RMI_ERROR_INPUT
    with nothing changed: CPU_ON allows SUCCESS always and DENIED only for a target that is not
    on; AFFINITY_INFO allows SUCCESS only. (For DENIED with the target on, TF-RMM rel0 also
    returns RMI_ERROR_INPUT but completes the caller with ALREADY_ON; the spec's failure changes
    nothing.)"""
    p = Psci(machine)
    if target_runnable:
        _rec(machine, p.target).runnable = True
    p.request(fid)
    p.fails(status)
    _ok(machine)


def test_psci_complete_status_target_running(machine: Machine) -> None:
    """status: a running target (refcount 1, white-box) counts as on even when not runnable, so
    CPU_ON with DENIED is not permitted -> RMI_ERROR_INPUT, unchanged."""
    p = Psci(machine)
    p.request()
    _refcount_add(machine, p.target, 1)
    p.fails(PSCI_DENIED)
    _refcount_add(machine, p.target, -1)
    _ok(machine)


# -- success -------------------------------------------------------------------------------------

def _caller_done(m: Machine, p: Psci, result: int) -> None:
    """B4.3.7.3 pending and args: the request is cleared, X0 = result, X1..X3 = 0, X4.. kept."""
    caller = _rec(m, p.caller)
    assert caller.psci_pending == 0
    assert caller.gprs()[:5] == (result, 0, 0, 0, 0x44)


@pytest.mark.parametrize("fid", [CPU_ON, CPU_ON_32])
def test_psci_complete_cpu_on_success(machine: Machine, fid: int) -> None:
    """B4.3.7.3 on_success: CPU_ON with SUCCESS for a target that is not runnable: SUCCESS (X4
    kept); the target is reset (PC = caller's X2, X0 = caller's X3, X1..X30 zero, PSTATE EL1h
    with DAIF masked, runnable); the caller gets PSCI_SUCCESS; REC 2 and all granule states are
    unchanged; the target can then be entered."""
    p = Psci(machine)
    target = _rec(machine, p.target)
    target.pstate = 0x3C4      # not the reset PSTATE, to see the reset happen
    p.request(fid)
    untouched = snapshot(machine, p.third, p.realm.rd)

    assert p.call(PSCI_SUCCESS) == (SUCCESS, 0, 0, 0, 0)

    assert (target.pc, target.runnable, target.pstate) == (ENTRY, True, PSTATE_EL1H_DAIF_MASKED)
    assert target.gprs() == (CONTEXT,) + (0,) * 30
    assert target.psci_pending == 0
    _caller_done(machine, p, PSCI_SUCCESS)
    assert untouched.diff(snapshot(machine, p.third, p.realm.rd)) == []
    assert p.t.smc(F.RMI_REALM_ACTIVATE, p.realm.rd)[0] == SUCCESS
    run = p.t.ns_page()
    assert p.t.smc(F.RMI_REC_ENTER, p.target, run)[0] == SUCCESS
    _ok(machine)


def test_psci_complete_cpu_on_denied(machine: Machine) -> None:
    """B4.3.7.3 status: CPU_ON with DENIED for a target that is not on: SUCCESS; the caller gets
    PSCI_DENIED (-3 as 64 bits) and the target is unchanged (still not runnable)."""
    p = Psci(machine)
    p.request()
    before = snapshot(machine, p.target)
    assert p.call(PSCI_DENIED) == (SUCCESS, 0, 0, 0, 0)
    _caller_done(machine, p, PSCI_DENIED)
    assert before.diff(snapshot(machine, p.target)) == []
    assert not _rec(machine, p.target).runnable
    _ok(machine)


@pytest.mark.parametrize("how", ["runnable", "running"])
def test_psci_complete_cpu_on_already_on(machine: Machine, how: str) -> None:
    """B4.3.7.3 on_already: CPU_ON with SUCCESS for a target that is already on (runnable, or
    running on another CPU: refcount 1, white-box): SUCCESS, the caller gets PSCI_ALREADY_ON and
    the target is not touched."""
    p = Psci(machine)
    if how == "runnable":
        _rec(machine, p.target).runnable = True
    else:
        _refcount_add(machine, p.target, 1)
    p.request()
    before = snapshot(machine, p.target)
    assert p.call(PSCI_SUCCESS) == (SUCCESS, 0, 0, 0, 0)
    _caller_done(machine, p, PSCI_ALREADY_ON)
    assert before.diff(snapshot(machine, p.target)) == []
    if how == "running":
        _refcount_add(machine, p.target, -1)
    _ok(machine)


@pytest.mark.parametrize("fid", [AFFINITY_INFO, AFFINITY_INFO_32])
@pytest.mark.parametrize("how, result", [("off", OFF), ("runnable", ON), ("running", ON)])
def test_psci_complete_affinity_info(machine: Machine, fid: int, how: str, result: int) -> None:
    """B4.3.7.3 affinity_on / affinity_off: AFFINITY_INFO with SUCCESS: the caller gets ON (0)
    for a runnable or running target, OFF (1) otherwise; the target is not touched."""
    p = Psci(machine)
    if how == "runnable":
        _rec(machine, p.target).runnable = True
    elif how == "running":
        _refcount_add(machine, p.target, 1)
    p.request(fid)
    before = snapshot(machine, p.target)
    assert p.call(PSCI_SUCCESS) == (SUCCESS, 0, 0, 0, 0)
    _caller_done(machine, p, result)
    assert before.diff(snapshot(machine, p.target)) == []
    if how == "running":
        _refcount_add(machine, p.target, -1)
    _ok(machine)


def test_psci_complete_mpidr_el1_form(machine: Machine) -> None:
    """The caller's X1 is an MPIDR_EL1 value: bits outside the affinity fields (RES1 bit 31, MT
    bit 24, Aff0[7:4]) do not change the REC it names; a second completion of the same request
    fails (pending cleared) and the caller can be entered again once its realm is active."""
    p = Psci(machine)
    p.request(AFFINITY_INFO, mpidr=_mpidr_el1(1) | 1 << 31 | 1 << 24 | 0xF0)
    assert p.call(PSCI_SUCCESS)[0] == SUCCESS
    _caller_done(machine, p, OFF)
    p.fails()
    assert p.t.smc(F.RMI_REALM_ACTIVATE, p.realm.rd)[0] == SUCCESS
    assert p.t.smc(F.RMI_REC_ENTER, p.caller, p.t.ns_page())[0] == SUCCESS
    _ok(machine)


@pytest.mark.parametrize("index", [0, 1, 15, 16, 0x12345, (1 << 28) - 1])
def test_mpidr_el1_to_rec_index(index: int) -> None:
    """mpidr_el1_to_rec_index inverts the MPIDR_EL1 encoding (Aff3 at [39:32]) for indices up to
    2^28 - 1, and ignores the non-affinity bits."""
    mpidr = _mpidr_el1(index)
    assert mpidr_el1_to_rec_index(mpidr) == index
    assert mpidr_el1_to_rec_index(mpidr | 1 << 31 | 1 << 30 | 1 << 24 | 0xF0 | 0xFF << 40) == index
