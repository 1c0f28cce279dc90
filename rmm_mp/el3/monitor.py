"""EL3 of one CPU: SMC routing and the world switch between Non-secure and Realm.

From the Normal world (host) an SMC with an RMI function ID (SMC64, function numbers
0x150..0x18F, the SMCCC SVE hint bit 16 ignored; the ID is W0, so X0 bits [63:32] are ignored
as SMCCC specifies) is forwarded to the RMM with X0 = W0; every other ID gets SMC_UNKNOWN from
EL3 with X1..X4 as the caller left them (TF-A's SMC_RET1 writes X0 only).

A forwarded call follows TF-A's RMMD:
  1. save the Non-secure context (X0..X7) in this CPU's shared area;
  2. load the Realm context: X0 = FID, X1..X7 = the Non-secure X1..X7;
  3. enter the RMM, which runs the command and ends with SMC RMM_RMI_REQ_COMPLETE whose
     X1..X5 are the RMI results X0..X4 (here: the RMM entry point returns those five values);
  4. save the Realm context (X0 = REQ_COMPLETE, X1..X5 = results);
  5. restore the Non-secure context with X0..X4 = the results; X5..X7 keep their values.

From the Realm world (the RMM) EL3 serves the RMM-EL3 interface: GTSI delegate/undelegate and
the attestation services (el3.attest). These return to the Realm world without a switch.

Each forwarded call is timed: its total and the lock wait the RMM reported, and on a sample of
calls its split into EL3 (everything outside the RMM) and the RMM handler;
``smc_from_ns_untimed`` is the same entry without the clock, for a CPU that neither records
latency nor traces. A Python exception escaping the RMM is an RMM crash:
the machine is marked dead and the caller gets RmmInternalError (Ctrl-C inside the RMM also
marks it dead, and reaches the caller as it is).

``smc_from_ns_published`` is the same entry that also publishes the call (FID, X1..X6, a count
of calls started) in the CPU's shared area, for watchdogs and reports of other processes; the
stress tool makes it the CPU's entry point (Cpu._enter), so that ordinary runs pay nothing.

This module owns the switch and routing. It must not touch RMM state.
"""

from __future__ import annotations

import struct
import time
from typing import Protocol

from rmm_mp.abi.el3 import RmmEl3Fid, RmmEl3Status
from rmm_mp.abi.rmi import RMI_FID_BASE, RMI_FID_LAST
from rmm_mp.abi.smccc import SMC_UNKNOWN, SMCCC_SVE_HINT, U64_MASK
from rmm_mp.el3.attest import AttestationService
from rmm_mp.el3.gtsi import Gtsi
from rmm_mp.hw.control import Control
from rmm_mp.hw.cpuarea import (
    CALL, LOCK_CLASS, LOCK_STATS, OFF_CALL, OFF_CALLS_STARTED, OFF_LOCK_CLASSES, OFF_LOCK_STATS, OFF_NS_CTX,
    OFF_REALM_CTX,
)
from rmm_mp.hw.faults import RmmInternalError
from rmm_mp.hw.granule import CLASSES, LockStats
from rmm_mp.hw.trace import KIND_RMI, Tracer
from rmm_mp.stats.calls import RMI_UNUSED_SLOT
from rmm_mp.stats.histogram import Recorder

_CTX8 = struct.Struct("<8Q")
_CTX6 = struct.Struct("<6Q")
_RESULT5 = struct.Struct("<5Q")
_X0 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_W0_NO_SVE_HINT = 0xFFFF_FFFF & ~SMCCC_SVE_HINT
SPLIT_EVERY = 16
"""One RMI call in about this many has its EL3 / RMM split measured (a power of two)."""
_SPLIT_MASK = SPLIT_EVERY - 1

Result = tuple[int, int, int, int, int]

_REQ_COMPLETE = int(RmmEl3Fid.RMM_RMI_REQ_COMPLETE)
_GTSI_DELEGATE = int(RmmEl3Fid.RMM_GTSI_DELEGATE)
_GTSI_UNDELEGATE = int(RmmEl3Fid.RMM_GTSI_UNDELEGATE)
_GET_REALM_KEY = int(RmmEl3Fid.RMM_ATTEST_GET_REALM_KEY)
_GET_PLAT_TOKEN = int(RmmEl3Fid.RMM_ATTEST_GET_PLAT_TOKEN)
_E_RMM_UNK = int(RmmEl3Status.E_RMM_UNK)


class RmmEntry(Protocol):
    """The RMM as EL3 sees it: takes X0..X6 of an RMI call, returns REQ_COMPLETE's X1..X5."""

    def __call__(self, fid: int, x1: int, x2: int, x3: int, x4: int, x5: int, x6: int) -> Result: ...


class Monitor:
    """EL3 running on one CPU."""

    __slots__ = ("cpu", "buf", "control", "rmm", "gtsi", "attest", "recorder", "tracer", "lock_stats", "_clock",
                 "_started")

    def __init__(self, cpu: int, area_buf: memoryview, control: Control, gtsi: Gtsi,
                 attest: AttestationService | None = None) -> None:
        self.cpu = cpu
        self.buf = area_buf
        self.control = control
        self.gtsi = gtsi
        self.attest = attest
        self.rmm: RmmEntry | None = None
        self.recorder: Recorder | None = None
        self.tracer: Tracer | None = None
        self.lock_stats = LockStats()
        self._clock = time.perf_counter_ns
        self._started = 0

    def smc_from_ns(self, fid: int, x1: int, x2: int, x3: int, x4: int, x5: int, x6: int) -> Result:
        """An SMC from the Normal world; arguments are already 64-bit values."""
        clock = self._clock
        t0 = clock()
        buf = self.buf
        _CTX8.pack_into(buf, OFF_NS_CTX, fid, x1, x2, x3, x4, x5, x6, 0)
        # SMCCC passes the function ID in W0: bits [63:32] of X0 are not part of it.
        decoded = fid & _W0_NO_SVE_HINT
        rmm = self.rmm
        if not RMI_FID_BASE <= decoded <= RMI_FID_LAST or rmm is None:
            _X0.pack_into(buf, OFF_NS_CTX, SMC_UNKNOWN)  # TF-A's SMC_RET1: X0 only
            return (SMC_UNKNOWN, x1, x2, x3, x4)
        w0 = fid & 0xFFFF_FFFF      # once: the RMM's X0 here and below
        # Enter the Realm world: X0 = FID, X1..X7 = the Non-secure X1..X7.
        _CTX8.pack_into(buf, OFF_REALM_CTX, w0, x1, x2, x3, x4, x5, x6, 0)
        lock_stats = self.lock_stats
        wait0 = lock_stats.wait_ns
        recorder = self.recorder
        # The EL3 / RMM split costs two more clock reads, so it is measured on a sample: the
        # calls whose start time is a multiple of SPLIT_EVERY ns, and the first call of each
        # flush interval. The recorder estimates the others' (docs/latency.md).
        split = recorder is not None and (not t0 & _SPLIT_MASK or t0 > recorder.next_flush)
        t1 = clock() if split else 0
        try:
            result = rmm(w0, x1, x2, x3, x4, x5, x6)
            t2 = clock() if split else 0
            # RMM_RMI_REQ_COMPLETE: Realm X1..X5 carry the results; EL3 restores the Non-secure
            # context with X0..X4 = those results (X5..X7 keep the caller's values). Inside the
            # try: a result that is not five 64-bit values is the RMM's bug, not the caller's.
            r0, r1, r2, r3, r4 = result
            _CTX6.pack_into(buf, OFF_REALM_CTX, _REQ_COMPLETE, r0, r1, r2, r3, r4)
            _RESULT5.pack_into(buf, OFF_NS_CTX, r0, r1, r2, r3, r4)
        except BaseException as exc:
            self._escape(fid, (x1, x2, x3, x4, x5, x6), exc)
            raise
        t3 = clock()
        slot = (decoded & 0xFFFF) - 0x150     # calls.rmi_slot, without a call
        if slot > RMI_UNUSED_SLOT:
            slot = RMI_UNUSED_SLOT
        if recorder is not None:
            if split or r0 or lock_stats.wait_ns != wait0:
                recorder.record(slot, t3 - t0, (t1 - t0) + (t3 - t2) if split else None, lock_stats.wait_ns - wait0,
                                r0 != 0)
            else:
                recorder.appends[slot](t3 - t0)     # all that record does for such a call
            if t3 > recorder.next_flush:
                recorder.flush(t3)
                self.publish_lock_stats()
                # After t3, so no call's figure has it; a host step around this call leaves it out.
                recorder.flush_ns += clock() - t3
        if self.tracer is not None:
            self.tracer.record(KIND_RMI, slot, t0, t3 - t0, x1)
        return result

    def smc_from_ns_untimed(self, fid: int, x1: int, x2: int, x3: int, x4: int, x5: int, x6: int) -> Result:
        """smc_from_ns without the clock: the CPU's entry while it neither records latency nor
        traces (Cpu.set_recording, Cpu.set_tracing), so that `--no-latency` measures a run
        that reads no clock per call. The same steps as smc_from_ns, written out again
        because a shared helper would add a Python call to the timed path."""
        buf = self.buf
        _CTX8.pack_into(buf, OFF_NS_CTX, fid, x1, x2, x3, x4, x5, x6, 0)
        rmm = self.rmm
        if not RMI_FID_BASE <= fid & _W0_NO_SVE_HINT <= RMI_FID_LAST or rmm is None:
            _X0.pack_into(buf, OFF_NS_CTX, SMC_UNKNOWN)
            return (SMC_UNKNOWN, x1, x2, x3, x4)
        w0 = fid & 0xFFFF_FFFF
        _CTX8.pack_into(buf, OFF_REALM_CTX, w0, x1, x2, x3, x4, x5, x6, 0)
        try:
            result = rmm(w0, x1, x2, x3, x4, x5, x6)
            r0, r1, r2, r3, r4 = result
            _CTX6.pack_into(buf, OFF_REALM_CTX, _REQ_COMPLETE, r0, r1, r2, r3, r4)
            _RESULT5.pack_into(buf, OFF_NS_CTX, r0, r1, r2, r3, r4)
        except BaseException as exc:
            self._escape(fid, (x1, x2, x3, x4, x5, x6), exc)
            raise
        return result

    def smc_from_ns_published(self, fid: int, x1: int, x2: int, x3: int, x4: int, x5: int, x6: int) -> Result:
        """smc_from_ns, publishing the call in the shared area first (cpuarea OFF_CALL: in_call
        stays 1 if the RMM crashes, so the report names the call the CPU died in)."""
        buf = self.buf
        CALL.pack_into(buf, OFF_CALL, 1, fid, x1, x2, x3, x4, x5, x6)
        self._started += 1
        _X0.pack_into(buf, OFF_CALLS_STARTED, self._started)
        result = self.smc_from_ns(fid, x1, x2, x3, x4, x5, x6)
        _U32.pack_into(buf, OFF_CALL, 0)
        return result

    def publish_lock_stats(self) -> None:
        """Copy this CPU's lock counters (overall and per class) into its shared area."""
        s = self.lock_stats
        LOCK_STATS.pack_into(self.buf, OFF_LOCK_STATS, s.contended, s.wait_ns, s.max_wait_ns, s.max_wait_idx & U64_MASK)
        for cls in range(CLASSES):
            LOCK_CLASS.pack_into(self.buf, OFF_LOCK_CLASSES + 32 * cls, s.acquired[cls], s.contended_by_class[cls],
                                 s.wait_by_class[cls], s.max_wait_by_class[cls])

    def _escape(self, fid: int, args: tuple[int, ...], exc: BaseException) -> None:
        """An exception left the RMM: mark the machine dead, and turn an Exception into
        RmmInternalError. Ctrl-C or an exit inside a handler (which leaves its locks and state
        half done) also kills the machine, and the caller re-raises it as it is."""
        reason = self._crash(fid, args, exc)
        if isinstance(exc, Exception):
            raise RmmInternalError(reason) from exc

    def _crash(self, fid: int, args: tuple[int, ...], exc: BaseException) -> str:
        """Mark the machine dead (EL3 treats a crashed RMM as gone on every CPU); return why."""
        shown = ", ".join(f"{a:#x}" for a in args)
        if isinstance(exc, RmmInternalError):
            reason = f"RMM bug on CPU {self.cpu} in FID {fid:#x}({shown}): {exc}"
        elif isinstance(exc, Exception):
            reason = f"RMM crashed on CPU {self.cpu} in FID {fid:#x}({shown}): {type(exc).__name__}: {exc}"
        else:
            reason = f"interrupted ({type(exc).__name__}) inside the RMM on CPU {self.cpu} in FID {fid:#x}({shown})"
        self.control.mark_dead(reason)
        return reason

    def smc_from_realm(self, fid: int, x1: int = 0, x2: int = 0, x3: int = 0) -> tuple[int, int, int]:
        """An SMC from the RMM to EL3 (RMM-EL3 interface); returns (X0, X1, X2), X0 signed.

        The attestation calls address EL3's shared buffer by offset (attest.AttestationService).
        """
        if fid == _GTSI_DELEGATE:
            return self.gtsi.delegate(x1), 0, 0
        if fid == _GTSI_UNDELEGATE:
            return self.gtsi.undelegate(x1), 0, 0
        if fid == _GET_REALM_KEY and self.attest is not None:
            return (*self.attest.get_realm_key(x1, x2, x3), 0)
        if fid == _GET_PLAT_TOKEN and self.attest is not None:
            return self.attest.get_platform_token(x1, x2, x3)
        return _E_RMM_UNK, 0, 0
