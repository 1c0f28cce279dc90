"""REC exit handling, as Linux KVM's handle_rme_exit does it (kvm-client.md section 1.3).

``handle_exit`` gets the RmiRecExit of one REC_ENTER and decides three things: what the next
entry carries (RmiRecEnter flags and, when they matter, gprs), and what becomes of the vCPU
(back in the run queue, off, or done). By exit reason (DEN0137 A4.3, B4.4.17):

    SYNC, data abort (EC 0x24) whose fault status is no translation, access flag or permission
          fault (a granule protection fault, DFSC 0x28: the page behind an unprotected mapping
          is no longer in the NS PAS, A5.2.6): the vCPU fails wherever the IPA lies, as KVM's
          kvm_handle_guest_abort fails KVM_RUN with -EFAULT ("Unsupported FSC"). An external
          abort (DFSC 0x10 and the other SEA codes) fails it too, where KVM takes it first
          (kvm_handle_guest_sea, a virtual SError) and re-enters; the RMM model never exits with
          one (docs/deviations.md).
    SYNC, data abort at an unprotected IPA (the IPA's top bit set, as KVM tells them
          apart; the syndrome cannot: a non-emulatable abort there has ISV clear, A4.3.4.3). In
          the device window (devices.py) an access with ISV is emulated: a write is applied, a
          read's value goes in enter.gprs[0], and the next entry sets EMUL_MMIO; one without ISV
          gets INJECT_SEA (no register to emulate: KVM's io_mem_abort injects a data abort into
          a realm's vCPU then). In a range the realm's entry declares shared, a zeroed NS page
          is mapped there (map_unprotected) and the access retried, with or without ISV.
          Anywhere else: INJECT_SEA.
    SYNC, data abort at a protected IPA (unassigned RAM, a DESTROYED entry, or the
          buffer of an RSI call): fault_in (DELEGATE + DATA_CREATE_UNKNOWN, RTTs created
          lazily). A lost race (DATA_CREATE_UNKNOWN finds the entry assigned: another vCPU
          mapped it) re-enters; if the entry turns out to be DESTROYED (RMI_RTT_READ_ENTRY),
          the vCPU fails, since no page can be given there. A DELEGATE of the fault's fresh
          page that fails is no race but an RMM bug: HostError.
          An IPA outside the realm's RAM fails the vCPU (no memslot: KVM has no page for it),
          whatever RIPAS the realm gave it.
    SYNC, WFx: re-enter. SYNC, anything else (an instruction abort included): the vCPU fails,
          as KVM reports an internal error.
    IRQ, FIQ: re-enter.
    PSCI: CPU_ON -> RMI_PSCI_COMPLETE(caller, target, SUCCESS) and the target vCPU started, or
          DENIED for a REC the host does not run (RunQueue.add_realm's ``vcpus``); AFFINITY_INFO ->
          PSCI_COMPLETE(SUCCESS) (the RMM answers ON or OFF); CPU_OFF -> the vCPU goes off;
          CPU_SUSPEND -> re-enter; SYSTEM_OFF / SYSTEM_RESET -> the realm is marked off and the
          vCPU done (the others drain).
    RIPAS_CHANGE: RMI_RTT_SET_RIPAS from the REC's progress until the top or the end of the
          realm's RAM, creating RTTs down to find_map_level on (ERROR_RTT, level) as KVM does;
          for EMPTY, the private pages of each completed chunk are destroyed (DATA_DESTROY +
          UNDELEGATE). A change that cannot complete (an entry without RIPAS, DESTROYED without
          the realm's permission, or an IPA outside the realm's RAM) stops there; for RAM the
          next entry says REJECT (RIPAS_RESPONSE). EMPTY cannot be rejected (A5.4): an EMPTY
          request that starts outside RAM fails the vCPU. A SUCCESS whose output top is not in
          (base, requested top] (B4.3.21) is no answer of a correct RMM: HostError.
    HOST_CALL: the host-call service (devices.py); its gprs go in enter.gprs.
    SERROR, anything else: the vCPU fails.

Every handler counts what it did in the realm's counters (realm_entry.COUNTERS); rtts_created
counts the tables made for faults, shared pages and RIPAS changes alike.

A status a correct RMM cannot return raises HostError; RmmInternalError passes through. A vCPU
failure is the realm's doing (what it asked cannot be served): the vCPU ends with an error
message and the others go on.

This module owns the exit policy. It speaks SMC only.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from rmm_mp.abi.psci import PsciFid, PsciReturn, mpidr_el1_to_rec_index
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.abi.structs import RMI_REC_EXIT, Layout, RmiRecEnterFlags, RmiRecExitReason, RmiRipas
from rmm_mp.host import devices
from rmm_mp.host.realm import (
    ERROR_RTT, GRANULE, PAGE_LEVEL, SUCCESS, HostError, HostRealm, create_rtt_levels, find_map_level, index,
    map_non_secure, map_protected, release_granule, status,
)
from rmm_mp.host.realm_teardown import split_block
from rmm_mp.host.realm_entry import END_SYSTEM_OFF, END_SYSTEM_RESET
from rmm_mp.host.runqueue import MAX_VCPUS

if TYPE_CHECKING:
    from rmm_mp.host.nsalloc import NsAllocator
    from rmm_mp.host.runqueue import RunQueue
    from rmm_mp.machine import Cpu

REQUEUE, STOP, END = 0, 1, 2
"""What becomes of the vCPU: back in the queue, off (PSCI CPU_OFF), or done."""

_E = RmiRecExitReason
EXIT_SYNC, EXIT_IRQ, EXIT_FIQ, EXIT_PSCI = int(_E.RMI_EXIT_SYNC), int(_E.RMI_EXIT_IRQ), int(_E.RMI_EXIT_FIQ), \
    int(_E.RMI_EXIT_PSCI)
EXIT_RIPAS_CHANGE, EXIT_HOST_CALL = int(_E.RMI_EXIT_RIPAS_CHANGE), int(_E.RMI_EXIT_HOST_CALL)
EMUL_MMIO, INJECT_SEA = int(RmiRecEnterFlags.EMUL_MMIO), int(RmiRecEnterFlags.INJECT_SEA)
RIPAS_RESPONSE = int(RmiRecEnterFlags.RIPAS_RESPONSE)
RIPAS_EMPTY, RIPAS_RAM, RIPAS_DESTROYED = int(RmiRipas.EMPTY), int(RmiRipas.RAM), int(RmiRipas.DESTROYED)
PSCI_COMPLETE, SET_RIPAS = int(F.RMI_PSCI_COMPLETE), int(F.RMI_RTT_SET_RIPAS)
DATA_DESTROY, READ_ENTRY = int(F.RMI_DATA_DESTROY), int(F.RMI_RTT_READ_ENTRY)
UNMAP_UNPROTECTED = int(F.RMI_RTT_UNMAP_UNPROTECTED)
PSCI_SUCCESS, PSCI_DENIED = int(PsciReturn.PSCI_SUCCESS), int(PsciReturn.PSCI_DENIED) & ((1 << 64) - 1)
_P = PsciFid
CPU_ON = frozenset({int(_P.PSCI_CPU_ON), int(_P.PSCI_CPU_ON_SMC32)})
AFFINITY_INFO = frozenset({int(_P.PSCI_AFFINITY_INFO), int(_P.PSCI_AFFINITY_INFO_SMC32)})
CPU_SUSPEND = frozenset({int(_P.PSCI_CPU_SUSPEND), int(_P.PSCI_CPU_SUSPEND_SMC32)})
CPU_OFF, SYSTEM_OFF, SYSTEM_RESET = int(_P.PSCI_CPU_OFF), int(_P.PSCI_SYSTEM_OFF), int(_P.PSCI_SYSTEM_RESET)
EC_WFX, EC_DABT_LOW = 0x01, 0x24
ESR_ISV, ESR_WNR = 1 << 24, 1 << 6
FSC_TYPE, FSC_GPF = 0x3C, 0x28
_RESOLVABLE_FSC = frozenset({0x04, 0x08, 0x0C})
"""Fault status types (DFSC without the level) of the data aborts KVM resolves: translation,
access flag and permission faults. KVM also re-enters after an SEA, which this host fails (the
RMM model makes no SEA exit)."""


def _exit_struct(layout: Layout) -> struct.Struct:
    """The RmiRecExit fields the host reads, in one struct (offsets from ``layout``, RMI_REC_EXIT
    or a raw() form of it)."""
    fmt, pos = "<", 0
    for name in ("exit_reason", "esr", "far", "hpfar", "gprs", "ripas_base", "ripas_top", "ripas_value", "imm"):
        fld = layout.fields[name]
        fmt += f"{fld.offset - pos}x" if fld.offset > pos else ""
        fmt += f"{fld.count}{fld.fmt}" if fld.count > 1 else fld.fmt
        pos = fld.offset + fld.size
    return struct.Struct(fmt)


EXIT = _exit_struct(RMI_REC_EXIT)
"""Unpacks to (exit_reason, esr, far, hpfar, gprs[0..30], ripas_base, ripas_top, ripas_value, imm)."""
EXIT_RAW = _exit_struct(RMI_REC_EXIT.raw("gprs"))
"""EXIT with gprs as their 248 bytes (Layout.raw): the same fields at the same offsets, unpacking
to (exit_reason, esr, far, hpfar, gprs, ripas_base, ripas_top, ripas_value, imm)."""
X_REASON, X_ESR, X_FAR, X_HPFAR, X_GPRS, X_RIPAS_BASE, X_RIPAS_TOP, X_RIPAS_VALUE, X_IMM = 0, 1, 2, 3, 4, 35, 36, 37, 38
HPFAR_FIPA = ((1 << 44) - 1) & ~0xF
"""HPFAR_EL2.FIPA, bits [43:4]."""

Outcome = tuple[int, int, "tuple[int, ...] | list[int] | None", str]
"""(REQUEUE / STOP / END, enter flags, enter gprs or None, error message: non-empty = the vCPU fails)."""
_AGAIN: Outcome = (REQUEUE, 0, None, "")


class ExitContext:
    """What the exit handlers of one CPU process work with."""

    __slots__ = ("cpu", "smc", "alloc", "queue", "machine")

    def __init__(self, cpu: "Cpu", alloc: "NsAllocator", queue: "RunQueue") -> None:
        self.cpu = cpu
        self.smc = cpu.smc
        self.alloc = alloc
        self.queue = queue
        self.machine = cpu.machine


def handle_exit(h: ExitContext, vcpu: int, ex: tuple[int, ...]) -> Outcome:
    """Decide what follows the exit ``ex`` (EXIT.unpack of the run page) of ``vcpu``."""
    reason = ex[X_REASON]
    slot = vcpu // MAX_VCPUS
    if reason == EXIT_HOST_CALL:
        return REQUEUE, 0, devices.host_call(h.queue, slot, vcpu % MAX_VCPUS, ex[X_IMM], ex[X_GPRS:X_GPRS + 31]), ""
    if reason == EXIT_IRQ or reason == EXIT_FIQ:
        return _AGAIN
    realm = h.queue.realm(slot)
    if reason == EXIT_SYNC:
        return _sync(h, slot, realm, ex)
    if reason == EXIT_PSCI:
        return _psci(h, vcpu, realm, ex)
    if reason == EXIT_RIPAS_CHANGE:
        return _ripas_change(h, vcpu, realm, ex[X_RIPAS_BASE], ex[X_RIPAS_TOP], ex[X_RIPAS_VALUE])
    return END, 0, None, f"exit reason {reason} (SError or unknown): the host cannot continue the vCPU"


# -- SYNC --------------------------------------------------------------------------------------

def _sync(h: ExitContext, slot: int, realm: HostRealm, ex: tuple[int, ...]) -> Outcome:
    esr = ex[X_ESR]
    ec = esr >> 26 & 0x3F
    # HPFAR_EL2.FIPA holds IPA[51:12] at [43:4]; the low bits and bit 63 (NS, FEAT_RME) are not
    # part of the IPA, and KVM takes the field alone.
    page = (ex[X_HPFAR] & HPFAR_FIPA) << 8
    if ec == EC_DABT_LOW and esr & FSC_TYPE not in _RESOLVABLE_FSC:
        return END, 0, None, _unsupported_fsc(esr, page)
    if ec == EC_DABT_LOW and page >= realm.par_size:
        # FAR holds the offset in the page only for an emulatable abort (ISV set); else it is 0.
        return _unprotected(h, slot, realm, page | (ex[X_FAR] & 0xFFF), esr, ex[X_GPRS])
    if ec == EC_DABT_LOW:
        return _protected(h, slot, realm, page)
    if ec == EC_WFX:
        return _AGAIN
    return END, 0, None, f"SYNC exit with ESR {esr:#x} (EC {ec:#x}) at IPA {page:#x}: not a fault the host resolves"


def _unsupported_fsc(esr: int, page: int) -> str:
    """Why a data abort the host cannot resolve fails the vCPU (KVM: "Unsupported FSC", -EFAULT).
    Mapping a page there again, the shared-page path's answer to a translation fault, would fail
    (the IPA is mapped) and re-enter for ever."""
    dfsc = esr & 0x3F
    if dfsc == FSC_GPF:
        return (f"data abort at IPA {page:#x} with DFSC {dfsc:#x}, a granule protection fault: the PA "
                f"behind the unprotected mapping is not in the Non-secure PAS (delegated, or Secure)")
    return (f"data abort at IPA {page:#x} with DFSC {dfsc:#x}: not a translation, access flag or permission "
            f"fault, which the host cannot resolve")


def _protected(h: ExitContext, slot: int, realm: HostRealm, ipa: int) -> Outcome:
    """A protected IPA without a page: back it (KVM realm_map_protected, 4 KiB) if it lies in the
    realm's RAM. Outside it no memory backs the IPA (KVM finds no memslot there and fails the
    vCPU), even where the realm made the RIPAS RAM: backing it would let a guest take NS memory
    without bound, beyond what the run's memory bound counts for it."""
    q = h.queue
    q.count(slot, "faults")
    ram_base, ram_size = realm.ram
    if not ram_base <= ipa < ram_base + ram_size:
        return END, 0, None, (f"data abort at IPA {ipa:#x}, outside the realm's RAM [{ram_base:#x}, "
                              f"{ram_base + ram_size:#x}): no memory backs it")
    pa, made = map_protected(h.cpu, h.alloc, realm, ipa)
    if made:
        q.count(slot, "rtts_created", made)
    if pa is not None:
        return _AGAIN
    x0, _, _, _, ripas = h.smc(READ_ENTRY, realm.rd, ipa, PAGE_LEVEL)
    if x0 == SUCCESS and ripas == RIPAS_DESTROYED:
        return END, 0, None, f"data abort at IPA {ipa:#x}, whose RIPAS is DESTROYED: no page can be given there"
    q.count(slot, "fault_races")    # another vCPU backed the page first
    return _AGAIN


def _unprotected(h: ExitContext, slot: int, realm: HostRealm, ipa: int, esr: int, value: int) -> Outcome:
    """A data abort at an unprotected IPA: the device model, a shared page, or an SEA."""
    q = h.queue
    offset = ipa - realm.par_size - devices.DEVICE_OFFSET
    if 0 <= offset < devices.DEVICE_SIZE and esr & ESR_ISV:
        write = bool(esr & ESR_WNR)
        q.count(slot, "mmio_writes" if write else "mmio_reads")
        result = devices.mmio(q, slot, offset, write, esr >> 22 & 3, value)
        return REQUEUE, EMUL_MMIO, None if write else (result,), ""
    page = ipa & ~(GRANULE - 1)
    if any(base <= page < base + size for base, size in q.shared_ranges(slot)):
        return _map_shared(h, slot, realm, page)
    q.count(slot, "sea_injected")
    return REQUEUE, INJECT_SEA, None, ""


def _map_shared(h: ExitContext, slot: int, realm: HostRealm, page: int) -> Outcome:
    """Back a shared IPA with a zeroed NS page (KVM realm_map_non_secure); the page is the
    realm entry's until release_realm."""
    ns = h.alloc.alloc()
    h.machine.ns_write(ns, bytes(GRANULE))
    mapped, made = map_non_secure(h.cpu, h.alloc, realm, page, ns)
    if made:
        h.queue.count(slot, "rtts_created", made)
    if not mapped:
        h.alloc.free(ns)            # another vCPU mapped it first
        return _AGAIN
    if not h.queue.add_shared_page(slot, page, ns):
        x0 = h.smc(UNMAP_UNPROTECTED, realm.rd, page, PAGE_LEVEL)[0]
        if x0 != SUCCESS:
            raise HostError(UNMAP_UNPROTECTED, (realm.rd, page, PAGE_LEVEL), x0, "this CPU has just mapped it")
        h.alloc.free(ns)
        return END, 0, None, f"shared page at IPA {page:#x}: the realm table's list of shared pages is full"
    h.queue.count(slot, "shared_maps")
    return _AGAIN


# -- PSCI ----------------------------------------------------------------------------------------

def _psci(h: ExitContext, vcpu: int, realm: HostRealm, ex: tuple[int, ...]) -> Outcome:
    fid = ex[X_GPRS] & 0xFFFF_FFFF
    slot = vcpu // MAX_VCPUS
    if fid in CPU_ON or fid in AFFINITY_INFO:
        return _psci_complete(h, vcpu, realm, fid, ex[X_GPRS + 1])
    if fid == CPU_OFF:
        return STOP, 0, None, ""
    if fid in CPU_SUSPEND:
        return _AGAIN
    if fid == SYSTEM_OFF or fid == SYSTEM_RESET:
        h.queue.system_off(slot, END_SYSTEM_OFF if fid == SYSTEM_OFF else END_SYSTEM_RESET)
        return END, 0, None, ""
    raise HostError("RMI_REC_ENTER", (realm.recs[vcpu % MAX_VCPUS].rec,), SUCCESS,
                    f"a PSCI exit for function {fid:#x}, which the RMM answers without exiting")


def _psci_complete(h: ExitContext, vcpu: int, realm: HostRealm, fid: int, mpidr: int) -> Outcome:
    """CPU_ON or AFFINITY_INFO naming another REC of the realm (the RMM checked that it exists)."""
    q = h.queue
    slot = vcpu // MAX_VCPUS
    target = mpidr_el1_to_rec_index(mpidr)
    if target >= len(realm.recs):
        raise HostError("RMI_REC_ENTER", (realm.recs[vcpu % MAX_VCPUS].rec,), SUCCESS,
                        f"a PSCI exit naming MPIDR {mpidr:#x} (REC {target}); the realm has {len(realm.recs)} RECs")
    tv = slot * MAX_VCPUS + target
    # DENIED only for a REC the host never runs: the RMM refuses DENIED for a target that is on
    # (B3.27), and a vCPU that is done may still be runnable in the RMM (its realm went off).
    answer = PSCI_DENIED if fid in CPU_ON and target >= q.offered(slot) else PSCI_SUCCESS
    caller, callee = realm.recs[vcpu % MAX_VCPUS].rec, realm.recs[target].rec
    x0 = h.smc(PSCI_COMPLETE, caller, callee, answer)[0]
    if x0 != SUCCESS:
        raise HostError(PSCI_COMPLETE, (caller, callee, answer), x0,
                        "the caller has this request pending and is not running; the target is its realm's REC")
    if fid in AFFINITY_INFO:
        q.count(slot, "affinity_info")
    elif answer == PSCI_SUCCESS:
        q.count(slot, "cpu_on")
        q.start(tv, maybe_on=True)      # False for a vCPU that is done: it stays done
    else:
        q.count(slot, "cpu_on_denied")
    return _AGAIN


# -- RIPAS change --------------------------------------------------------------------------------

def _ripas_change(h: ExitContext, vcpu: int, realm: HostRealm, base: int, top: int, value: int) -> Outcome:
    """RTT_SET_RIPAS over [base, top) (KVM kvm_complete_ripas_change), as far as the realm's RAM
    reaches: the host backs nothing outside it, and the tables a change there would need are
    not in the memory the run counts for the realm (a guest changing every 2 MiB of its IPA
    space would exhaust NS memory), so it stops at the end of RAM, or at base when base lies
    outside RAM. An EMPTY request cannot be rejected (A5.4), so one that starts outside RAM
    fails the vCPU: answering it ACCEPT without progress would send a guest that follows A5.4
    round its RSI_IPA_STATE_SET loop for ever."""
    q, smc = h.queue, h.smc
    slot = vcpu // MAX_VCPUS
    rec = realm.recs[vcpu % MAX_VCPUS].rec
    q.count(slot, "ripas_changes")
    ram_base, ram_size = realm.ram
    end = min(top, ram_base + ram_size) if ram_base <= base < ram_base + ram_size else base
    if end == base and value == RIPAS_EMPTY:
        return END, 0, None, (f"RIPAS change to EMPTY of [{base:#x}, {top:#x}) starts outside the realm's RAM "
                              f"[{ram_base:#x}, {ram_base + ram_size:#x}): this host changes RIPAS only inside "
                              f"RAM, and an EMPTY request cannot be rejected")
    addr = base
    last_error: tuple[int, int] | None = None
    while addr < end:
        x0, done = smc(SET_RIPAS, realm.rd, rec, addr, end)[:2]
        if x0 == SUCCESS:
            # B4.3.21: base < top <= the requested top. Taken on trust, no progress would call
            # for ever, and a top past the request would DATA_DESTROY pages the realm kept.
            if not addr < done <= end:
                raise HostError(SET_RIPAS, (realm.rd, rec, addr, end), x0,
                                f"progress lies in ({addr:#x}, {end:#x}], X1 is {done:#x}")
            if value == RIPAS_EMPTY:
                _destroy_private(h, slot, realm, addr, done)
            addr = done
            continue
        if status(x0) != ERROR_RTT:
            raise HostError(SET_RIPAS, (realm.rd, rec, addr, end), x0,
                            "the REC has this request pending, is not running and the range is its own")
        level = index(x0)
        if level >= PAGE_LEVEL or (addr, level) == last_error:
            break       # an entry without RIPAS, or DESTROYED without the realm's permission
        last_error = (addr, level)
        made = create_rtt_levels(h.cpu, h.alloc, realm, addr, level, max(level + 1, find_map_level(realm, addr, end)))
        q.count(slot, "rtts_created", made)
    if addr < top:
        if value == RIPAS_RAM:
            q.count(slot, "ripas_rejects")      # the entry's RIPAS_RESPONSE is REJECT
        return REQUEUE, RIPAS_RESPONSE if value == RIPAS_RAM else 0, None, ""
    return _AGAIN


def _destroy_private(h: ExitContext, slot: int, realm: HostRealm, start: int, end: int) -> None:
    """DATA_DESTROY + UNDELEGATE every private page in [start, end), now RIPAS EMPTY (KVM
    realm_unmap_private_range); an assigned block there is split first."""
    ipa = start
    while ipa < end:
        x0, pa, top = h.smc(DATA_DESTROY, realm.rd, ipa)[:3]
        if x0 == SUCCESS:
            release_granule(h.cpu, h.alloc, pa)
            h.queue.count(slot, "ripas_destroyed")
        elif status(x0) == ERROR_RTT and top == ipa and index(x0) < PAGE_LEVEL:
            split_block(h.cpu, h.alloc, realm, ipa, index(x0))
            continue
        elif status(x0) != ERROR_RTT:
            raise HostError(DATA_DESTROY, (realm.rd, ipa), x0, "the IPA is protected and aligned")
        ipa = top if top > ipa else ipa + GRANULE
