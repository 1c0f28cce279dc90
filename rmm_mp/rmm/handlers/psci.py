"""PSCI from a realm (DEN0137 B6, rsi-attest.md section 2): the RMM emulates PSCI 1.1 for RECs.

Answered inside the RMM: PSCI_VERSION, PSCI_FEATURES, SMCCC_VERSION, AFFINITY_INFO about the
caller itself, and every function the RMM does not support (NOT_SUPPORTED). Answered, then
reported to the host as a notification (REC exit PSCI, no RMI_PSCI_COMPLETE expected):
CPU_SUSPEND, CPU_OFF (the REC stops being runnable), SYSTEM_OFF and SYSTEM_RESET (the realm
becomes SYSTEM_OFF). Left pending until the host's RMI_PSCI_COMPLETE: CPU_ON and AFFINITY_INFO
about another REC; the exit shows the host the function and the target REC's MPIDR only (its
canonical affinity fields, whatever other bits the realm set in X1).

The SMC32 forms (0x84..) take their arguments in W1..W3: SMCCC's 32-bit convention ignores bits
63:32 of the argument registers, as TF-A's PSCI and KVM (kvm_psci_narrow_to_32bit) do. TF-RMM
rel0 reads all 64 bits (docs/deviations.md).
"""

from __future__ import annotations

import struct

from rmm_mp.abi.psci import (
    PSCI_VERSION_1_1, SMCCC_VERSION_1_2, AffinityInfo, PsciFid, PsciReturn, mpidr_el1_to_rec_index,
    rec_index_to_mpidr_el1, u64,
)
from rmm_mp.abi.smccc import FID_SMC64
from rmm_mp.abi.structs import RmiRecExitReason
from rmm_mp.rmm.realm_call import Exit, RealmCall
from rmm_mp.rmm.realm_desc import RealmState
from rmm_mp.rmm.granule_state import GranuleState

F = PsciFid
_EXIT_PSCI = int(RmiRecExitReason.RMI_EXIT_PSCI)
_FID_TARGET = struct.Struct("<2Q")
"""gprs[0..1] of a PSCI exit as their bytes: Exit carries gprs as RmiRecExit's bytes (RMI_REC_EXIT_RAW)."""
_SUCCESS = u64(PsciReturn.PSCI_SUCCESS)
_NOT_SUPPORTED = u64(PsciReturn.PSCI_NOT_SUPPORTED)
_INVALID_PARAMETERS = u64(PsciReturn.PSCI_INVALID_PARAMETERS)
_ALREADY_ON = u64(PsciReturn.PSCI_ALREADY_ON)
_INVALID_ADDRESS = u64(PsciReturn.PSCI_INVALID_ADDRESS)
_W = 0xFFFF_FFFF

SUPPORTED = frozenset(int(f) for f in (
    F.PSCI_VERSION, F.PSCI_CPU_SUSPEND_SMC32, F.PSCI_CPU_SUSPEND, F.PSCI_CPU_OFF, F.PSCI_CPU_ON_SMC32,
    F.PSCI_CPU_ON, F.PSCI_AFFINITY_INFO_SMC32, F.PSCI_AFFINITY_INFO, F.PSCI_SYSTEM_OFF,
    F.PSCI_SYSTEM_RESET, F.PSCI_FEATURES, F.SMCCC_VERSION))
"""What PSCI_FEATURES reports as implemented."""

LOCK_SEQUENCES = {
    "PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET": ("the RD, while the realm state becomes SYSTEM_OFF",
                                           "the realm's CPU holds no lock when the call starts; the RD alone"),
    "every other PSCI call": ("none (a request is kept in the calling REC, owned through the running reference)",
                              "takes no lock"),
}


def _notify(fid: int, target: int = 0) -> Exit:
    """The PSCI exit: the host sees the function ID (and a target MPIDR), nothing else."""
    return Exit({"exit_reason": _EXIT_PSCI, "gprs": _FID_TARGET.pack(fid, target)})


def _forward(call: RealmCall, fid: int, index: int) -> Exit:
    """Leave ``fid`` pending on the caller and exit naming REC ``index`` by its MPIDR affinity
    fields alone (A4.3.7: sanitised parameters). X1 may carry bits the index ignores (bit 31,
    MT, Aff0[7:4]); a host that finds the vCPU by exact affinity, as KVM's kvm_mpidr_to_vcpu
    does, would not find it and never call RMI_PSCI_COMPLETE (docs/deviations.md)."""
    call.rec.psci_pending = fid
    return _notify(fid, rec_index_to_mpidr_el1(index))


def handle_psci(call: RealmCall, fid: int) -> "tuple[int, ...] | Exit":
    """A PSCI call ``fid`` (W0) from the running REC; returns X0.. or an exit."""
    x = call.state.x
    if not fid & FID_SMC64:
        # SMC32: the arguments are W1..W3. Narrowed in place, as KVM does: RMI_PSCI_COMPLETE
        # reads CPU_ON's entry point and context id from the saved X2 and X3, and the realm
        # never sees the narrowed values (every answer and every completion zeroes X1..X3;
        # after SYSTEM_OFF / SYSTEM_RESET the REC never runs again).
        x[1] &= _W
        x[2] &= _W
        x[3] &= _W
    if fid == F.PSCI_VERSION:
        return (PSCI_VERSION_1_1,)
    if fid == F.SMCCC_VERSION:
        return (SMCCC_VERSION_1_2,)
    if fid == F.PSCI_FEATURES:
        return (_SUCCESS if x[1] & _W in SUPPORTED else _NOT_SUPPORTED,)
    if fid in (F.PSCI_CPU_SUSPEND, F.PSCI_CPU_SUSPEND_SMC32):
        x[0:4] = [_SUCCESS, 0, 0, 0]    # the result record: X0 = SUCCESS, X1..X3 zero
        return _notify(fid)
    if fid == F.PSCI_CPU_OFF:
        call.rec.runnable = False
        x[0:4] = [_SUCCESS, 0, 0, 0]
        return _notify(fid)
    if fid in (F.PSCI_SYSTEM_OFF, F.PSCI_SYSTEM_RESET):
        rd_g = call.rmm.granules.lock_known(call.rd.idx, GranuleState.RD)
        call.rd.set_state(RealmState.SYSTEM_OFF)
        rd_g.unlock()
        return _notify(fid)
    if fid in (F.PSCI_CPU_ON, F.PSCI_CPU_ON_SMC32):
        return _cpu_on(call, fid)
    if fid in (F.PSCI_AFFINITY_INFO, F.PSCI_AFFINITY_INFO_SMC32):
        return _affinity_info(call, fid)
    return (_NOT_SUPPORTED,)


def _target(call: RealmCall, mpidr: int) -> int:
    """REC index named by an MPIDR_EL1 value, or -1 if the realm has no such REC."""
    index = mpidr_el1_to_rec_index(mpidr)
    return index if index < call.rd.rec_count else -1


def _cpu_on(call: RealmCall, fid: int) -> "tuple[int, ...] | Exit":
    """X1 target MPIDR, X2 entry point, X3 context id."""
    x = call.state.x
    if not call.ctx.in_par(x[2]):
        return (_INVALID_ADDRESS,)
    index = _target(call, x[1])
    if index < 0:
        return (_INVALID_PARAMETERS,)
    if index == call.rec.rec_idx:
        return (_ALREADY_ON,)
    return _forward(call, fid, index)


def _affinity_info(call: RealmCall, fid: int) -> "tuple[int, ...] | Exit":
    """X1 target MPIDR, X2[31:0] lowest affinity level (only 0 is supported).

    B6.3.1: lowest_affinity_level is X2[31:0] and X2[63:32] SBZ, so junk in the upper half does
    not make target_bound fail (TF-RMM rel0 and rsi-attest.md section 2 test all of X2;
    docs/deviations.md)."""
    x = call.state.x
    index = _target(call, x[1])
    if x[2] & _W != 0 or index < 0:
        return (_INVALID_PARAMETERS,)
    if index == call.rec.rec_idx:
        return (int(AffinityInfo.ON),)
    return _forward(call, fid, index)
