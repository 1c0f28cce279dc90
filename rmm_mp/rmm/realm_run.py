"""A REC's run: what happens between REC entry and REC exit (DEN0137 1.0-rel0 A4.2, A4.3, A4.4).

RMI_REC_ENTER (handlers/rmi_rec.py) owns the host-side part: the checks, the REC's running
reference, and writing the RmiRecExit this module returns into the host's run page. This module
owns the realm side, holding no lock:

1. entry completions that depend on the previous exit (A4.2.2, A4.2.3): an emulated MMIO read
   (the host's value into the register, PC past the access) or write (PC past it), an SEA the
   host asks to inject, the RIPAS change response (X0..X2), the host call results (copied back
   into the RsiHostCall structure, X0 = SUCCESS);
2. execution: the guest interpreter runs the REC's code through stage 2 (stage2.Stage2Bus) for
   at most the machine's time slice of instructions; SMCs go to rsi_dispatch (RSI and PSCI),
   HVC takes an undefined-instruction exception in the realm, WFI/WFE exit when the host traps
   them (an untrapped WFI sleeps until an interrupt: an IRQ exit), and aborts are classified:
   an access to an IPA out of range, to a protected IPA whose RIPAS is EMPTY, or through an
   unprotected mapping to memory outside the NS PAS takes an SEA inside the realm; an access to
   unassigned RAM or to a DESTROYED IPA exits with a non-emulatable data abort; an access to an
   unprotected IPA exits with an emulatable one (ISV, access size, direction; the value of a
   write in gprs[0]); an instruction fetch from anything but protected RAM takes an SEA, or exits
   for unassigned RAM and DESTROYED;
3. the exit: the REC's registers are saved in its granule (any CPU may resume it), the abort
   syndrome kept only when it was emulatable (post-rel0 fix 303ee028), and the RmiRecExit fields
   returned with the GIC state (gic.gic_exit_state).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rmm_mp.abi.psci import rec_index_to_mpidr_el1
from rmm_mp.abi.rmi import FeatureRegister0
from rmm_mp.abi.rsi import RsiResponse, RsiRipas, RsiStatus
from rmm_mp.abi.structs import RSI_HOST_CALL, RmiRecEnterFlags, RmiRecExitReason
from rmm_mp.guest import interpreter
from rmm_mp.guest.interpreter import ABORT, HVC, IL, SLICE, SMC, WFE, WFI, Fault, GuestState
from rmm_mp.guest.isa import INSTRUCTION_SIZE
from rmm_mp.hw.trace import KIND_REC_RUN
from rmm_mp.rmm import gic, stage2
from rmm_mp.rmm.realm_call import RAM, Exit, RealmCall, lock_realm_page, stage2_abort_exit
from rmm_mp.rmm.realm_desc import OFF_TLB_GENERATION, Rd
from rmm_mp.rmm.rec_desc import Rec
from rmm_mp.rmm.rsi_dispatch import handle_smc
from rmm_mp.stats.calls import EXIT_BASE

if TYPE_CHECKING:
    from rmm_mp.rmm.cpu import RmmCpu

_EXIT_SYNC = int(RmiRecExitReason.RMI_EXIT_SYNC)
_EXIT_IRQ = int(RmiRecExitReason.RMI_EXIT_IRQ)
_EMUL_MMIO, _INJECT_SEA = int(RmiRecEnterFlags.EMUL_MMIO), int(RmiRecEnterFlags.INJECT_SEA)
_TRAP_WFI, _TRAP_WFE = int(RmiRecEnterFlags.TRAP_WFI), int(RmiRecEnterFlags.TRAP_WFE)
_RIPAS_RESPONSE = int(RmiRecEnterFlags.RIPAS_RESPONSE)

EC_WFX, EC_IABT_LOW, EC_IABT_CUR, EC_DABT_LOW, EC_DABT_CUR = 0x01, 0x20, 0x21, 0x24, 0x25
ESR_ISV = 1 << 24
ESR_SF = 1 << 15
ESR_WNR = 1 << 6
FSC_TRANSLATION, FSC_PERMISSION, FSC_SEA = 0x04, 0x0C, 0x10
MPIDR_RES1 = 1 << 31
_SEA_REASONS = frozenset({stage2.OUT_OF_RANGE, stage2.EMPTY, stage2.NS_GPF})
_EMULATABLE = frozenset({stage2.UNMAPPED_NS, stage2.PERMISSION})


def run_rec(rmm: "RmmCpu", rec: Rec, rd: Rd, enter: dict[str, Any]) -> dict[str, Any]:
    """Run ``rec`` until it exits; returns the RmiRecExit fields (the rest are zero).

    Args:
        rmm: the CPU running the REC.
        rec: the REC, owned through its running reference (refcount 1, lock not held).
        rd: its realm's RD, alive while the reference is held.
        enter: RmiRecEnter as REC_ENTER read and validated it.
    """
    start = time.perf_counter_ns()
    state = GuestState(rec.gprs(), rec.pc, rec.pstate,
                       [*rec.sysregs(), rec_index_to_mpidr_el1(rec.rec_idx) | MPIDR_RES1])
    call = RealmCall(rmm, rec, rd, rmm.memory.base + (rd.idx << 12), state, rec.s2ctx(), enter["flags"])
    out = _complete_entry(call, enter) or _execute(call)
    _save(rec, state)
    num_lrs = FeatureRegister0.field(rmm.features0, "GICV3_NUM_LRS")
    fields = {**out.fields, **gic.gic_exit_state(enter["gicv3_hcr"], enter["gicv3_lrs"], num_lrs)}
    recorder, tracer = rmm.el3.recorder, rmm.el3.tracer
    if recorder is not None or tracer is not None:
        elapsed = time.perf_counter_ns() - start
        if recorder is not None:
            recorder.record(EXIT_BASE + fields["exit_reason"], elapsed, 0, elapsed, 0, False)
        if tracer is not None:
            tracer.record(KIND_REC_RUN, fields["exit_reason"], start, elapsed, rmm.memory.base + (rec.idx << 12))
    return fields


def _save(rec: Rec, state: GuestState) -> None:
    rec.set_gprs(state.x[:31])
    rec.pc = state.pc
    rec.pstate = (rec.pstate & ~(0xF << 28)) | (state.nzcv << 28)
    rec.set_sysregs(state.sysregs[:4])


# -- 1. entry completions ---------------------------------------------------------------------

def _complete_entry(call: RealmCall, enter: dict[str, Any]) -> Exit | None:
    rec, state, flags = call.rec, call.state, call.enter_flags
    esr, _, _ = rec.last_exit()
    if esr & ESR_ISV:
        register, size_log2, ipa = rec.pending_abort()
        if flags & _INJECT_SEA:
            state.take_exception((EC_DABT_CUR << 26) | IL | FSC_SEA, ipa)
        elif flags & _EMUL_MMIO:
            if not esr & ESR_WNR and register != 31:
                state.x[register] = enter["gprs"][0] & ((1 << (8 << size_log2)) - 1)
            state.pc += INSTRUCTION_SIZE
    rec.set_last_exit(0, 0, 0)
    _complete_ripas(call)
    if rec.host_call_pending:
        return _complete_host_call(call, enter)
    return None


def _complete_ripas(call: RealmCall) -> None:
    """RSI_IPA_STATE_SET's results (B5.3.6): X1 = the first IPA not changed, X2 = the response."""
    base, top, addr, value, _ = call.rec.ripas_request()
    if top == 0:
        return
    reject = value == RsiRipas.RSI_RAM and addr != top and call.enter_flags & _RIPAS_RESPONSE
    x = call.state.x
    x[0], x[1], x[2] = RsiStatus.RSI_SUCCESS, addr, RsiResponse.RSI_REJECT if reject else RsiResponse.RSI_ACCEPT
    call.rec.set_ripas_request(0, 0, 0, 0, 0)


def _complete_host_call(call: RealmCall, enter: dict[str, Any]) -> Exit | None:
    """Copy the host's gprs back into RsiHostCall; if the page is gone, report it first."""
    ipa = call.rec.host_call_ipa
    page = lock_realm_page(call, ipa)
    if page.kind == RAM:
        offset = page.pa - call.rmm.memory.base + (ipa & 0xFFF)
        RSI_HOST_CALL.pack_into(call.rmm.memory.buf, offset, "gprs", enter["gprs"])
        page.release()
    elif page.kind != "empty":
        return stage2_abort_exit(ipa, page.level)
    call.rec.host_call_pending = False
    call.state.x[0] = RsiStatus.RSI_SUCCESS
    return None


# -- 2. execution ---------------------------------------------------------------------------

def _execute(call: RealmCall) -> Exit:
    rmm, state = call.rmm, call.state
    tlb = rmm.tlb
    bus = stage2.Stage2Bus(rmm, call.ctx, tlb)
    generation = (call.rd.idx << 12) + OFF_TLB_GENERATION
    budget = rmm.time_slice
    while budget > 0:
        tlb.enter(call.rd_pa, generation)
        try:
            event = interpreter.run(state, bus, budget)
        finally:
            tlb.leave()
        # A fault taken before any instruction completes still uses time: a realm whose vector
        # is unmapped faults for ever, as on hardware, until its time slice ends.
        budget -= max(1, event.executed)
        kind = event.kind
        if kind == SLICE:
            break
        if kind == SMC:
            call.extra["budget"] = budget   # token signing spends the slice too
            out = handle_smc(call)
            budget = call.extra["budget"]
            if out is None or out.advance_pc:
                state.pc += INSTRUCTION_SIZE
            if out is not None:
                return out
        elif kind == HVC:
            state.take_exception(IL)  # EC 0: unknown reason (an HVC a realm cannot make)
        elif kind == WFI or kind == WFE:
            state.pc += INSTRUCTION_SIZE
            if call.enter_flags & (_TRAP_WFI if kind == WFI else _TRAP_WFE):
                return Exit({"exit_reason": _EXIT_SYNC, "esr": (EC_WFX << 26) | (kind == WFE)})
            if kind == WFI:  # the PE sleeps until an interrupt, which the host takes
                break
        elif kind == ABORT:
            assert event.fault is not None
            out = _abort(call, event.fault)
            if out is not None:
                return out
    return Exit({"exit_reason": _EXIT_IRQ})


def _abort(call: RealmCall, fault: Fault) -> Exit | None:
    """Classify a stage-2 fault: an SEA inside the realm (None) or an exit to the host.

    The ESR a host sees is sanitised (A4.3.4): EC and the fault status code (translation or
    permission fault at the level the walk stopped) always; ISV, SAS, SF and WnR only for an
    emulatable abort at an unprotected IPA; never IL.
    """
    reason, ipa, state = fault.reason, fault.ipa, call.state
    level = fault.level
    protected = call.ctx.in_par(ipa)
    if fault.fetch:
        if not protected or reason in _SEA_REASONS:
            state.take_exception((EC_IABT_CUR << 26) | IL | FSC_SEA, ipa)
            return None
        return _exit_abort(call, (EC_IABT_LOW << 26) | (FSC_TRANSLATION + level), ipa, 0)
    if reason in _SEA_REASONS:
        state.take_exception((EC_DABT_CUR << 26) | IL | FSC_SEA, ipa)
        return None
    if reason not in _EMULATABLE:
        return _exit_abort(call, (EC_DABT_LOW << 26) | (FSC_TRANSLATION + level), ipa, 0)
    fsc = (FSC_PERMISSION if reason == stage2.PERMISSION else FSC_TRANSLATION) + level
    esr = ((EC_DABT_LOW << 26) | ESR_ISV | (fault.size_log2 << 22) | (ESR_SF if fault.size_log2 == 3 else 0)
           | (ESR_WNR if fault.write else 0) | fsc)
    call.rec.set_pending_abort(fault.register, fault.size_log2, ipa)
    value = state.x[fault.register] & ((1 << (8 << fault.size_log2)) - 1) if fault.write else 0
    return _exit_abort(call, esr, ipa, ipa & 0xFFF, (value,))


def _exit_abort(call: RealmCall, esr: int, ipa: int, far: int, gprs: tuple[int, ...] = ()) -> Exit:
    """A SYNC exit for a stage-2 abort; the REC keeps the syndrome for the next entry."""
    hpfar = (ipa >> 8) & ~0xF
    call.rec.set_last_exit(esr, far, hpfar)
    return Exit({"exit_reason": _EXIT_SYNC, "esr": esr, "far": far, "hpfar": hpfar, "gprs": gprs},
                advance_pc=False)
