"""RMI_PSCI_COMPLETE (DEN0137 1.0-rel0 B4.3.7; PSCI flows D1.4): the host's answer to a realm's
PSCI_CPU_ON or PSCI_AFFINITY_INFO naming another REC of the same realm.

The realm's request is left in the calling REC by its PSCI exit (rsi-attest.md section 2): the
PSCI function ID in Rec.psci_pending (0 = none), the target MPIDR in the saved X1 (MPIDR_EL1
form, Aff3 at [39:32]), and for CPU_ON the entry point and context id in the saved X2 and X3.
The completion writes the PSCI result into the caller's X0 (X1..X3 zero) and clears the request;
a successful CPU_ON resets the target REC and makes it runnable.

Both RECs are locked (external granules, address order). The caller must not be running: a
running REC cannot have a pending request, so that is the spec's `pending` failure (ERROR_INPUT,
as TF-RMM). The target may be running; then only its constant fields (owner, index) and its
refcount are read, and it counts as on.

Where rmm-mp follows the specification against TF-RMM rel0 (docs/deviations.md):
- CPU_ON with status DENIED for a target already on is a `status` failure (B3.27
  PsciReturnCodePermitted) and changes nothing; rel0 returns ERROR_INPUT but still completes the
  caller with ALREADY_ON.
- A successful CPU_ON zeroes the target's X1..X30 (B4.3.7.3 on_success); rel0 sets X0 only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmm_mp.abi.psci import AffinityInfo, PsciFid, PsciReturn, mpidr_el1_to_rec_index
from rmm_mp.abi.smccc import to_u64
from rmm_mp.hw.faults import RmmInternalError
from rmm_mp.rmm.errors import RmiError
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.rec_desc import GPRS, PSTATE_EL1H_DAIF_MASKED, Rec

if TYPE_CHECKING:
    from rmm_mp.hw.granule import Granule
    from rmm_mp.rmm.cpu import RmmCpu

REC = GranuleState.REC

PSCI_CPU_ON = frozenset({int(PsciFid.PSCI_CPU_ON), int(PsciFid.PSCI_CPU_ON_SMC32)})
PSCI_AFFINITY_INFO = frozenset({int(PsciFid.PSCI_AFFINITY_INFO), int(PsciFid.PSCI_AFFINITY_INFO_SMC32)})
PSCI_SUCCESS = int(PsciReturn.PSCI_SUCCESS)
PSCI_DENIED = to_u64(PsciReturn.PSCI_DENIED)
PSCI_ALREADY_ON = to_u64(PsciReturn.PSCI_ALREADY_ON)
AFFINITY_ON, AFFINITY_OFF = int(AffinityInfo.ON), int(AffinityInfo.OFF)

LOCK_SEQUENCES = {
    "RMI_PSCI_COMPLETE": ("the calling and the target REC in ascending address order",
                          "two externals in address order (rule 2)"),
}
FAILURE_CONDITIONS = {
    # lock_two refuses equal addresses first, then either address that is not a granule, then
    # locks in address order checking each state: calling_state and target_state in that order.
    "RMI_PSCI_COMPLETE": ("alias", "calling_align", "calling_bound", "target_align", "target_bound",
                          "calling_state", "target_state", "pending", "owner", "target", "status"),
}


def _cpu_on(caller: Rec, target: Rec, target_on: bool, status: int) -> int:
    """The CPU_ON result for the caller; resets the target on SUCCESS (B4.3.7.3 on_success)."""
    if status not in (PSCI_SUCCESS, PSCI_DENIED) or (target_on and status == PSCI_DENIED):
        raise RmiError.input()
    if target_on:
        return PSCI_ALREADY_ON
    if status == PSCI_DENIED:
        return PSCI_DENIED
    target.set_gprs([caller.gpr(3)] + [0] * (GPRS - 1))
    target.pc = caller.gpr(2)
    target.pstate = PSTATE_EL1H_DAIF_MASKED
    target.runnable = True
    return PSCI_SUCCESS


def _complete(rmm: "RmmCpu", calling_g: "Granule", target_g: "Granule", status: int) -> None:
    """pending, owner, target, status; then the caller's result. Caller holds both REC locks."""
    if calling_g.refcount != 0:
        raise RmiError.input()
    caller, target = Rec(rmm.memory, calling_g.idx), Rec(rmm.memory, target_g.idx)
    fid = caller.psci_pending
    if fid == 0 or caller.owner_rd != target.owner_rd:
        raise RmiError.input()
    if mpidr_el1_to_rec_index(caller.gpr(1)) != target.rec_idx:
        raise RmiError.input()
    # A running target (refcount 1) is on; its runnable flag belongs to the CPU running it.
    target_on = target_g.refcount != 0 or target.runnable
    if fid in PSCI_CPU_ON:
        result = _cpu_on(caller, target, target_on, status)
    elif fid in PSCI_AFFINITY_INFO:
        if status != PSCI_SUCCESS:
            raise RmiError.input()
        result = AFFINITY_ON if target_on else AFFINITY_OFF
    else:
        raise RmmInternalError(f"CPU {rmm.cpu}: REC {calling_g.addr:#x} has PSCI request {fid:#x} pending, "
                               "which is neither CPU_ON nor AFFINITY_INFO")
    caller.set_gprs((result, 0, 0, 0))
    caller.psci_pending = 0


def rmi_psci_complete(rmm: "RmmCpu", calling_addr: int, target_addr: int, status: int) -> None:
    """Complete the calling REC's pending PSCI request that names the target REC.

    Until realms execute, a pending request exists only when set white-box (tests write
    Rec.psci_pending and the saved X1..X3 directly); the realm's PSCI exit sets them later.
    """
    pair = rmm.granules.lock_two(calling_addr, REC, target_addr, REC)
    if pair is None:
        raise RmiError.input()
    calling_g, target_g = pair
    try:
        _complete(rmm, calling_g, target_g, status)
    finally:
        calling_g.unlock()
        target_g.unlock()
