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
   an access to an IPA outside the realm's IPA space takes a level-0 address size fault inside
   the realm (A5.2.8: stage 1 is off); an access to a protected IPA whose RIPAS is EMPTY, or
   through an unprotected mapping to a PA outside DRAM, takes an SEA there; an access to
   unassigned RAM or to a DESTROYED IPA exits with a non-emulatable data abort, one through an
   unprotected mapping to DRAM outside the NS PAS with a granule protection fault (EC and DFSC
   0x28 only); any other access to an unprotected IPA exits with an emulatable one (ISV, access
   size, direction; the value of a write in gprs[0]), or a non-emulatable one for an ldp/stp,
   whose syndrome has no ISV (EC, IL and the fault status code only); an instruction fetch
   inside the IPA space from anything but protected RAM takes an SEA, or exits for unassigned
   RAM and DESTROYED;
3. the exit: the REC's registers are saved in its granule (any CPU may resume it), the syndrome
   the host saw kept for every abort exit (EMUL_MMIO on the next entry needs it to have ISV:
   only an emulatable one has, as after TF-RMM's post-rel0 fix 303ee028), and for any data abort
   at an unprotected IPA the access syndrome and IPA that INJECT_SEA (and EMUL_MMIO) complete on
   the next entry; the RmiRecExit fields returned with the GIC state (gic.gic_exit_state_raw).
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING, Any

from rmm_mp.abi.psci import rec_index_to_mpidr_el1
from rmm_mp.abi.rsi import RsiResponse, RsiRipas, RsiStatus
from rmm_mp.abi.structs import RSI_HOST_CALL_RAW, RmiRecEnterFlags, RmiRecExitReason
from rmm_mp.guest import interpreter
from rmm_mp.guest.interpreter import ABORT, HVC, IL, PAIR_SIZE_LOG2, SLICE, SMC, WFE, WFI, Fault, GuestState
from rmm_mp.guest.isa import INSTRUCTION_SIZE
from rmm_mp.hw import points
from rmm_mp.hw.trace import KIND_REC_RUN
from rmm_mp.rmm import gic, stage2
from rmm_mp.rmm.realm_call import (
    EMPTY, RAM, RSI_RESULT_REGS, RSI_ZEROS, Exit, RealmCall, lock_realm_page, set_rsi_results, stage2_abort_exit,
)
from rmm_mp.rmm.memo import BoundedMemo
from rmm_mp.rmm.realm_desc import OFF_TLB_GENERATION, Rd, count_exception
from rmm_mp.rmm.rec_desc import (
    H_HOST_CALL, H_IDX, H_OWNER, H_LAST_ESR, H_LAST_FAR, H_LAST_HPFAR, H_RIPAS_ADDR, H_RIPAS_TOP, H_RIPAS_VALUE,
    R_GPRS, R_HOST_CALL, R_PC, R_PSTATE, R_S2, R_SYSREGS, SYSREGS, Rec, s2ctx_memo,
)
from rmm_mp.rmm.rsi_dispatch import handle_smc
from rmm_mp.stats.calls import EXIT_BASE

if TYPE_CHECKING:
    from rmm_mp.rmm.cpu import RmmCpu

_EXIT_SYNC = int(RmiRecExitReason.RMI_EXIT_SYNC)
_EXIT_IRQ = int(RmiRecExitReason.RMI_EXIT_IRQ)
_EMUL_MMIO, _INJECT_SEA = int(RmiRecEnterFlags.EMUL_MMIO), int(RmiRecEnterFlags.INJECT_SEA)
_TRAP_WFI, _TRAP_WFE = int(RmiRecEnterFlags.TRAP_WFI), int(RmiRecEnterFlags.TRAP_WFE)
_RIPAS_RESPONSE = int(RmiRecEnterFlags.RIPAS_RESPONSE)
assert RsiStatus.RSI_SUCCESS == 0, "a host call completes by zeroing X0..X16"
_HOST_CALL_GPRS = RSI_HOST_CALL_RAW.fields["gprs"].struct     # the 31 registers as their bytes
_HOST_CALL_GPRS_OFFSET = RSI_HOST_CALL_RAW.offset("gprs")
_Q = struct.Struct("<Q")

EC_WFX, EC_IABT_LOW, EC_IABT_CUR, EC_DABT_LOW, EC_DABT_CUR = 0x01, 0x20, 0x21, 0x24, 0x25
ESR_ISV = 1 << 24
ESR_SF = 1 << 15
ESR_WNR = 1 << 6
ESR_EA = 1 << 9
"""ISS.EA of an abort: set in every SEA taken to a realm (spec A5.2.7), as TF-RMM's calc_esr_idabort does."""
FSC_ADDRESS_SIZE, FSC_TRANSLATION, FSC_PERMISSION, FSC_SEA = 0x00, 0x04, 0x0C, 0x10
FSC_GPF = 0x28
"""DFSC of a granule protection fault not on a translation table walk (FEAT_RME): what ESR_EL2
holds when a stage-2 output address fails the granule protection check (TF-RMM's
ESR_EL2_ABORT_FSC_GPF)."""
MPIDR_RES1 = 1 << 31
_new_state = object.__new__
_SEA_REASONS = frozenset({stage2.EMPTY, stage2.NS_NO_MEMORY})
_EMULATABLE = frozenset({stage2.UNMAPPED_NS, stage2.PERMISSION})


def run_rec(rmm: "RmmCpu", rec: Rec, rd: Rd, enter: dict[str, Any],
            v: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Run ``rec`` until it exits; returns the RmiRecExit fields (the rest are zero), gprs and
    gicv3_lrs as their bytes (RMI_REC_EXIT_RAW packs them).

    Args:
        rmm: the CPU running the REC.
        rec: the REC, owned through its running reference (refcount 1, lock not held).
        rd: its realm's RD, alive while the reference is held.
        enter: RmiRecEnter as REC_ENTER read (RMI_REC_ENTER_RAW: gprs and gicv3_lrs as their
            bytes) and validated it.
        v: rec.run_state() if the caller read it since the REC last changed (REC_ENTER reads it
            under the REC's lock for its checks); read here if None.
    """
    recorder, tracer = rmm.el3.recorder, rmm.el3.tracer
    start = time.perf_counter_ns() if recorder is not None or tracer is not None else 0
    if v is None:
        v = rec.run_state()
    # This CPU's RealmCall and GuestState (RmmCpu.realm_call), every field set anew below: no
    # value of an earlier entry, or of one that raised, survives into this one.
    call = rmm.realm_call
    if call is None:
        call = rmm.realm_call = RealmCall(rmm, rec, rd, 0, _new_state(GuestState), Rec.s2ctx_of(v))
    # GuestState(gprs, pc, pstate, sysregs) without its __init__, which pads short lists (the
    # REC's words always have X0..X30 and the four saved system registers; MPIDR_EL1 is the
    # fifth). New lists: the interpreter writes them in place; the entry's are kept, unchanged,
    # so that the exit rewrites only a block the run changed (Rec.save_context).
    state = call.state
    entry_x = [*v[R_GPRS:R_PC], 0]      # x[31]: the zero register
    state.x = entry_x.copy()
    state.pc = v[R_PC]
    state.nzcv = (v[R_PSTATE] >> 28) & 0xF
    entry_sysregs = [*v[R_SYSREGS:R_SYSREGS + SYSREGS], _mpidr_cache[v[H_IDX]]]
    state.sysregs = entry_sysregs.copy()
    call.rec = rec
    call.rd = rd
    call.rd_pa = v[H_OWNER]       # rd's PA, as the REC names its RD
    call.ctx = s2ctx_memo[v[R_S2:R_S2 + 4]]        # Rec.s2ctx_of(v)
    call.enter_flags = enter["flags"]
    call.extra.clear()
    if v[H_LAST_ESR] or v[H_LAST_FAR] or v[H_LAST_HPFAR] or v[H_RIPAS_TOP]:
        _complete_entry(call, enter, v)
    out = _execute(call, enter["gprs"] if v[H_HOST_CALL] else None, v)
    rec.save_context(state.x, state.pc, (v[R_PSTATE] & ~(0xF << 28)) | (state.nzcv << 28), state.sysregs,
                     entry_x, entry_sysregs)
    fields = out.fields
    fields.update(_gic_cache[(rmm.num_lrs, enter["gicv3_hcr"], enter["gicv3_lrs"])])   # gic.gic_exit_state_raw memoised
    if start:
        elapsed = time.perf_counter_ns() - start
        if recorder is not None:
            # record(slot, elapsed, 0, 0, False) for an EL3-free slot (Recorder.el3_free_from)
            recorder.appends[EXIT_BASE + fields["exit_reason"]](elapsed)
        if tracer is not None:
            tracer.record(KIND_REC_RUN, fields["exit_reason"], start, elapsed, rmm.memory.base + (rec.idx << 12))
    return fields


_CACHE_MAX = 1024
_mpidr_cache: BoundedMemo[int, int] = BoundedMemo(lambda rec_index: rec_index_to_mpidr_el1(rec_index) | MPIDR_RES1,
                                                  _CACHE_MAX)
"""REC index -> MPIDR_EL1 as its realm reads it (a pure function; run_rec subscripts it)."""
_gic_cache: BoundedMemo[tuple[int, int, bytes], dict[str, Any]] = BoundedMemo(
    lambda key: gic.gic_exit_state_raw(key[1], key[2], key[0]), _CACHE_MAX)
"""(num_lrs, hcr, lrs as their bytes) -> gic.gic_exit_state_raw: a host re-enters with the same
GIC state entry after entry, and the answer depends on nothing else. Callers copy it (run_rec
subscripts it)."""


# -- 1. entry completions ---------------------------------------------------------------------

def _complete_entry(call: RealmCall, enter: dict[str, Any], head: tuple[int, ...]) -> None:
    """The completions of A4.2.2 and A4.2.3 that need no realm memory (MMIO, SEA, RIPAS), when
    the last exit left a syndrome or a RIPAS request (``head``: Rec.run_state()); the host
    call's results are copied in _execute, where realm memory is reached."""
    rec, state, flags = call.rec, call.state, call.enter_flags
    esr = head[H_LAST_ESR]
    # A4.2.3 keys INJECT_SEA to a data abort at an unprotected IPA, ISV or not (an ldp/stp's has
    # none), as TF-RMM's complete_sea_insertion does: EC and the IPA of the saved HPFAR, which
    # holds IPA[51:12] at bits [43:4]. EMUL_MMIO reaches here only after an emulatable one
    # (rec_mmio in rmi_rec.py), whose syndrome has ISV.
    if (esr >> 26) & 0x3F == EC_DABT_LOW and not call.ctx.in_par(head[H_LAST_HPFAR] << 8):
        iss, ipa = rec.pending_abort()
        if flags & _INJECT_SEA:
            _take_exception(call, _data_sea_esr(iss), ipa)
        elif flags & _EMUL_MMIO and iss & ESR_ISV:
            register, size_log2 = (iss >> 16) & 31, (iss >> 22) & 3
            if not iss & ESR_WNR and register != 31:
                state.x[register] = _Q.unpack_from(enter["gprs"])[0] & ((1 << (8 << size_log2)) - 1)
            state.pc += INSTRUCTION_SIZE
    if esr or head[H_LAST_FAR] or head[H_LAST_HPFAR]:
        rec.set_last_exit(0, 0, 0)
    if head[H_RIPAS_TOP]:
        _complete_ripas(call, head)


def _complete_ripas(call: RealmCall, head: tuple[int, ...]) -> None:
    """RSI_IPA_STATE_SET's results (B5.3.6): X1 = the first IPA not changed, X2 = the response."""
    top, addr, value = head[H_RIPAS_TOP], head[H_RIPAS_ADDR], head[H_RIPAS_VALUE]
    reject = value == RsiRipas.RSI_RAM and addr != top and call.enter_flags & _RIPAS_RESPONSE
    x = call.state.x
    set_rsi_results(x, (RsiStatus.RSI_SUCCESS, addr, RsiResponse.RSI_REJECT if reject else RsiResponse.RSI_ACCEPT))
    call.rec.set_ripas_request(0, 0, 0, 0, 0)


def _complete_host_call(call: RealmCall, gprs: bytes, generation: int, head: tuple[int, ...]) -> Exit | None:
    """Copy the host's gprs (RmiRecEnter's bytes) back into RsiHostCall (B5.3.4), counted in as
    executing the realm; if the page is gone, report it first (returning the exit, counted out).
    ``head``: Rec.run_state(), whose R_HOST_CALL words say where rsi_host_call found the structure.

    While the realm's TLB generation is the one rsi_host_call read before its locked walk, the
    mapping that walk found is still in place (realm_call.py, "one walk per host call"), and
    since this CPU is counted in, a DATA_DESTROY that unmaps the page now cannot finish (nor
    wipe the page) before this CPU's next sync point, after the copy. Otherwise the page is
    looked up again with the locked walk, counted out (no lock is taken counted in), and the
    CPU counts itself in again unless it returns the exit.
    """
    rmm, rec = call.rmm, call.rec
    memory = rmm.memory
    ipa, pa, seen = head[R_HOST_CALL], head[R_HOST_CALL + 1], head[R_HOST_CALL + 2]
    if memory.view.load_u64(generation) == seen:    # type: ignore[union-attr]
        _HOST_CALL_GPRS.pack_into(memory.buf, pa - memory.base + (ipa & 0xFFF) + _HOST_CALL_GPRS_OFFSET, gprs)
    else:
        rmm.tlb.leave()
        page = lock_realm_page(call, ipa)
        if page.kind == RAM:
            _HOST_CALL_GPRS.pack_into(memory.buf, page.pa - memory.base + (ipa & 0xFFF) + _HOST_CALL_GPRS_OFFSET,
                                      gprs)
            page.release()
        elif page.kind != EMPTY:
            return stage2_abort_exit(ipa, page.level)
        rmm.tlb.enter(call.rd_pa, generation)
    rec.clear_host_call()
    call.state.x[:RSI_RESULT_REGS] = RSI_ZEROS     # X0 = RSI_SUCCESS, no outputs (set_rsi_results)
    return None


# -- 2. execution ---------------------------------------------------------------------------

def _execute(call: RealmCall, host_call_gprs: bytes | None, head: tuple[int, ...]) -> Exit:
    """Run the REC's code for its time slice; ``host_call_gprs`` are the host's results of a
    pending host call (RmiRecEnter's bytes), copied in first where ``head`` (Rec.run_state())
    says the call's structure is."""
    rmm, state = call.rmm, call.state
    tlb = rmm.tlb
    ctx = call.ctx
    buses = rmm.buses       # the CPU's bus for this stage 2, made once (RmmCpu.buses)
    bus = buses.get(id(ctx))
    if bus is None:
        if len(buses) >= _CACHE_MAX:
            buses.clear()
        bus = buses[id(ctx)] = stage2.Stage2Bus(rmm, ctx, tlb)
    generation = (call.rd.idx << 12) + OFF_TLB_GENERATION
    budget = rmm.time_slice
    while True:
        # Outside tlb.enter/leave: a CPU parked here by the stress tool's scheduler must not
        # count as executing the realm, or another CPU's TLB wait would stall on it.
        if points.hook is not None:
            points.hook(points.REC_RUN, call.rd_pa)
        tlb.enter(call.rd_pa, generation)
        try:
            if host_call_gprs is not None:
                out = _complete_host_call(call, host_call_gprs, generation, head)
                host_call_gprs = None
                if out is not None:
                    return out
            event = interpreter.run(state, bus, budget)
        finally:
            tlb.leave()     # a no-op if the completion has left already
        # An abort stops the interpreter before its instruction counts; counted here, it makes
        # an SEA the realm takes one instruction of the slice, as the interpreter counts the
        # exceptions it takes itself (misaligned, undefined), wherever it stands in the run. A
        # realm whose vector is unmapped so faults for ever, as on hardware, until the slice ends.
        kind = event.kind
        budget -= event.executed + (kind == ABORT)
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
            _take_exception(call, IL)  # EC 0: unknown reason (an HVC a realm cannot make)
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
        if budget <= 0:
            break
    return Exit({"exit_reason": _EXIT_IRQ})


def _take_exception(call: RealmCall, esr: int, far: int = 0) -> None:
    """The realm takes a synchronous exception the RMM decided on (an SEA, an HVC's undefined
    instruction, an address size fault), counted in its RD for the run report as the interpreter
    counts those it takes itself (realm_desc.count_exception): only this rare path pays for it."""
    call.state.take_exception(esr, far)
    # The RMM's memory always has its atomic view: Machine, the one place that builds a
    # PhysicalMemory, passes one (the type allows None, as at the host call's generation above).
    count_exception(call.rmm.memory.view, call.rd.idx << 12)  # type: ignore[arg-type]


def _abort(call: RealmCall, fault: Fault) -> Exit | None:
    """Classify a stage-2 fault: an exception inside the realm (None) or an exit to the host.

    The ESR a host sees is sanitised (A4.3.4.3): EC and the fault status code (translation or
    permission fault at the level the walk stopped, or a GPF) always; ISV, SAS, SF and WnR only for an
    emulatable abort at an unprotected IPA; IL only for a non-emulatable one there (an ldp/stp,
    whose ESR_EL2 has ISV clear and so IL set: IL is RES1 for a data abort without ISV).
    """
    reason, ipa, state = fault.reason, fault.ipa, call.state
    if reason == stage2.OUT_OF_RANGE:
        # A5.2.8: with stage 1 off, an access outside the realm's IPA space is a stage 1 level 0
        # address size fault, taken to the realm (no SEA: EA clear; ISV is 0 at EL1).
        ec = EC_IABT_CUR if fault.fetch else EC_DABT_CUR
        _take_exception(call, (ec << 26) | IL | (ESR_WNR if fault.write else 0) | FSC_ADDRESS_SIZE, ipa)
        return None
    level = fault.level
    protected = call.ctx.in_par(ipa)
    if fault.fetch:
        if not protected or reason in _SEA_REASONS:
            _take_exception(call, (EC_IABT_CUR << 26) | IL | ESR_EA | FSC_SEA, ipa)
            return None
        return _exit_abort(call, (EC_IABT_LOW << 26) | (FSC_TRANSLATION + level), ipa, 0)
    iss = _access_iss(fault)
    if reason in _SEA_REASONS:
        _take_exception(call, _data_sea_esr(iss), ipa)
        return None
    if reason == stage2.NS_GPF:
        # A GPF on the output address of an unprotected mapping (the host delegated the NS page,
        # or mapped a Secure one) is a Data Abort taken to R-EL2, so a REC exit due to Data
        # Abort (A4.3.4's table; A5.2.6, A5.2.9: the realm gets an SEA only when the host injects
        # one), as in TF-RMM rel0's handle_data_abort. No emulatable abort (A4.3.4.3 names only
        # a translation or permission fault): EC and DFSC only, far and gprs[0] zero, so
        # EMUL_MMIO fails; the access syndrome is kept for an INJECT_SEA.
        call.rec.set_pending_abort(iss, ipa)
        return _exit_abort(call, (EC_DABT_LOW << 26) | FSC_GPF, ipa, 0)
    if reason not in _EMULATABLE:
        return _exit_abort(call, (EC_DABT_LOW << 26) | (FSC_TRANSLATION + level), ipa, 0)
    fsc = (FSC_PERMISSION if reason == stage2.PERMISSION else FSC_TRANSLATION) + level
    call.rec.set_pending_abort(iss, ipa)
    if not iss & ESR_ISV:
        # A4.3.4.3: at an unprotected IPA an access whose ESR_EL2 has ISV clear (an ldp/stp) is
        # a Non-emulatable Data Abort: exit.esr = EC, IL, SET, FnV, EA (the last three 0 here)
        # and DFSC; no ISV, SAS, SF or WnR, far and gprs[0] zero (no emulatable abort exit).
        return _exit_abort(call, (EC_DABT_LOW << 26) | IL | fsc, ipa, 0)
    # The emulatable exit's esr: the access syndrome without SRT (A4.3.4.3 does not pass it on).
    esr = (EC_DABT_LOW << 26) | (iss & ~(31 << 16)) | fsc
    value = state.x[fault.register] & ((1 << (8 << fault.size_log2)) - 1) if fault.write else 0
    return _exit_abort(call, esr, ipa, ipa & 0xFFF, _Q.pack(value))


def _access_iss(fault: Fault) -> int:
    """The ISS bits that describe a data access in its ESR_EL2: ISV, SAS (the size), SF (64-bit
    register), SRT (the register) and WnR for a single-register load or store; WnR alone for an
    ldp/stp, whose syndrome has ISV clear (ISS [23:14] are RES0 then, WnR still valid)."""
    wnr = ESR_WNR if fault.write else 0
    if fault.size_log2 == PAIR_SIZE_LOG2:
        return wnr
    return (ESR_ISV | (fault.size_log2 << 22) | (fault.register << 16) | (ESR_SF if fault.size_log2 == 3 else 0)
            | wnr)


def _data_sea_esr(iss: int) -> int:
    """ESR_EL1 of an SEA the realm takes for a data access (RIPAS EMPTY, an unprotected mapping
    to a PA outside DRAM, or the host's INJECT_SEA) whose access syndrome is ``iss``
    (_access_iss). TF-RMM (calc_esr_idabort) copies the stage-2 syndrome of the access and
    replaces only EC (taken at the current EL), the fault status code (SEA), FnV and S1PTW, and
    sets EA (A5.2.7), so the realm still learns what the access's ESR_EL2 said: ISV, the size,
    the register and WnR, or WnR alone for an ldp/stp."""
    return (EC_DABT_CUR << 26) | IL | iss | ESR_EA | FSC_SEA


def _exit_abort(call: RealmCall, esr: int, ipa: int, far: int, gprs: bytes = b"") -> Exit:
    """A SYNC exit for a stage-2 abort; the REC keeps the syndrome for the next entry. ``gprs``:
    the exit's registers as their bytes (a write's value in gprs[0]; the rest zero)."""
    hpfar = (ipa >> 8) & ~0xF
    call.rec.set_last_exit(esr, far, hpfar)
    return Exit({"exit_reason": _EXIT_SYNC, "esr": esr, "far": far, "hpfar": hpfar, "gprs": gprs},
                advance_pc=False)
