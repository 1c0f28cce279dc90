"""What the host offers a running realm besides memory: an MMIO device model and a host-call service.

Both keep their state in the realm's entry of the run queue's realm table (runqueue.py, fields
R_DEVICE, R_CONSOLE, R_RESULT, R_LOG), so whichever CPU handles an exit serves the access, and
the parent reads the outcome when the CPUs are done (``realm_status``).

Device window: DEVICE_OFFSET above the shared bit, that is unprotected IPA
2^(ipa_width-1) + 0x0900_0000, two 4 KiB register pages (offsets from the window):

    console (UART-like)   0x0000 DATA     W: append the low byte to the console; R: 0 (no input)
                          0x0008 STATUS   R: 1 (transmitter ready)
                          0x0010 COUNT    R: bytes written so far
    doorbell / counter    0x1000 RING     W: rings += 1 and LAST = the value; R: rings
                          0x1008 LAST     R: the value of the ring counted last (the two are
                                          updated as one, under the output lock; LAST has two
                                          cells, odd rings' and even rings', and the count,
                                          which selects the one read, moves last: a CPU killed
                                          inside a ring leaves the ring uncounted, as if never
                                          made, and LAST the value of the one counted last; a
                                          read, unlocked, reads the count again after the cell
                                          and retries if it moved)
                          0x1010 SCRATCH  R/W: a 64-bit register
                          0x1018 ID       R: DEVICE_ID ("RMMP")

Any other offset in the window reads as zero and ignores writes (RAZ/WI). A read returns the
register masked to the access size; the RMM puts it into the realm's register when the host
re-enters the REC with EMUL_MMIO (DEN0137 A4.2.3). The console keeps the last CONSOLE_BYTES
(1 KiB) bytes written, in a ring (the realm table's entry has room for no more); COUNT goes on
counting. The last bytes, not the first, since what a guest printed last is what says where it
stopped, and a guest that prints in a loop would otherwise show only its first lines.

Host calls (RSI_HOST_CALL, DEN0137 B5.3.4; the imm field selects the service; the results are
the gprs the host returns in RmiRecEnter, which the RMM copies back into RsiHostCall):

    1 LOG     append (REC index, X0..X3) to the realm's log (the last LOG_RECORDS, 24, are kept,
              in a ring, as the console's bytes are; both rings are appended to under the
              realm's output lock, _lock_output, a word after the report's naming its holder
              by pid and start time as a CPU binding does, 0 when free; a takeover of it from
              a dead holder marks the cells that holder may have half written, _mark_torn);
              gprs unchanged
    2 QUERY   X0 selects: 0 the number of vCPUs the host runs for the realm, 1 the realm's
              slot, 2 the device window's IPA, 3 the shared bit (the lowest unprotected IPA);
              the answer replaces X0 (all ones for an unknown selector)
    3 REPORT  X0 = result code (0 = pass), X1 = detail: becomes the realm's result; gprs unchanged.
              Made whole or not at all: the pair goes to the cell the last whole report is not
              in (odd reports beside the count, even ones at R_ALT) with _REPORT_WRITING set in
              the count, which then moves and clears it; a CPU killed inside leaves the last
              whole report readable and the bit set, which realm_status reports
    other     X0 = all ones

This module owns the device registers and the host-call services. It speaks no SMC.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rmm_mp.host.realm_entry import (
    CONSOLE_BYTES, COUNTERS, LOG_RECORD, LOG_RECORDS, REALM_ENDS, REALM_STATES, R_ALT, R_CONSOLE, R_DEVICE, R_END,
    R_LOG, R_RD, R_RECS, R_RESULT, R_STATE, R_TORN, R_VCPUS, VCPU_BYTES, VCPU_ENDS, VCPU_STATES, VF_END, VF_STATE)
from rmm_mp.host.runqueue import MAX_VCPUS
from rmm_mp.hw import process
from rmm_mp.hw.cpuarea import binding_ended, binding_word
from rmm_mp.hw.granule import backoff

if TYPE_CHECKING:
    from rmm_mp.host.realm import HostRealm
    from rmm_mp.host.runqueue import RunQueue

DEVICE_OFFSET = 0x0900_0000
DEVICE_SIZE = 0x2000
CONSOLE, DOORBELL = 0x0000, 0x1000
CONSOLE_DATA, CONSOLE_STATUS, CONSOLE_COUNT = 0x00, 0x08, 0x10
DOORBELL_RING, DOORBELL_LAST, DOORBELL_SCRATCH, DOORBELL_ID = 0x1000, 0x1008, 0x1010, 0x1018
DEVICE_ID = 0x524D_4D50
_D_CONSOLE, _D_RINGS, _D_LAST, _D_SCRATCH = 0, 8, 16, 24

HOST_CALL_LOG, HOST_CALL_QUERY, HOST_CALL_REPORT = 1, 2, 3
QUERY_VCPUS, QUERY_SLOT, QUERY_DEVICE, QUERY_SHARED_BIT = 0, 1, 2, 3
ALL_ONES = (1 << 64) - 1


def device_base(realm: "HostRealm") -> int:
    """IPA of the device window of ``realm``."""
    return realm.par_size + DEVICE_OFFSET


def mmio(queue: "RunQueue", slot: int, offset: int, write: bool, size_log2: int, value: int) -> int:
    """Emulate one access at ``offset`` in the device window; returns the value a read loads."""
    view = queue.view
    base = queue.realm_offset(slot)
    dev = base + R_DEVICE
    if write:
        if offset == CONSOLE_DATA:
            # Under the realm's output lock, the byte before the count (_lock_output says why).
            _lock_output(view, base)
            try:
                n = view.load_u64(dev + _D_CONSOLE)
                view.store_u8(base + R_CONSOLE + n % CONSOLE_BYTES, value & 0xFF)
                view.store_u64(dev + _D_CONSOLE, n + 1)
            finally:
                view.store_u64(base + _OUTPUT_LOCK, 0)
        elif offset == DOORBELL_RING:
            # LAST is the value of the ring counted last: the store and the count under the output
            # lock, as one step. Unlocked, two vCPUs ringing at once on two CPUs could store their
            # values in one order and count in the other, leaving LAST the earlier ring's value.
            # The value goes to the cell of the ring's count, not the one read now: a CPU killed
            # between the two stores would otherwise leave LAST the value of a ring never counted.
            _lock_output(view, base)
            try:
                n = view.load_u64(dev + _D_RINGS)
                view.store_u64(_last_cell(base, n + 1), value)
                view.store_u64(dev + _D_RINGS, n + 1)
            finally:
                view.store_u64(base + _OUTPUT_LOCK, 0)
        elif offset == DOORBELL_SCRATCH:
            view.store_u64(dev + _D_SCRATCH, value)
        return 0
    if offset == CONSOLE_STATUS:
        result = 1
    elif offset == CONSOLE_COUNT:
        result = view.load_u64(dev + _D_CONSOLE)
    elif offset == DOORBELL_RING:
        result = view.load_u64(dev + _D_RINGS)
    elif offset == DOORBELL_LAST:
        # Unlocked, as a read of RINGS is: the count selects the cell, and the count is read again
        # after it. Only a ring two counts on writes the cell again, and it does so only once the
        # count has moved past the one read: an unchanged count means the cell held ring n's value.
        # Read once, a reader held up between the two loads could return a ring's value stored by
        # a CPU killed before it counted it (one ring made whole and one begun meanwhile).
        rings = view.load_u64(dev + _D_RINGS)
        while True:
            result = view.load_u64(_last_cell(base, rings))
            again = view.load_u64(dev + _D_RINGS)
            if again == rings:
                break
            rings = again
    elif offset == DOORBELL_SCRATCH:
        result = view.load_u64(dev + _D_SCRATCH)
    elif offset == DOORBELL_ID:
        result = DEVICE_ID
    else:
        result = 0
    return result & ((1 << (8 << size_log2)) - 1)


def host_call(queue: "RunQueue", slot: int, rec: int, imm: int, gprs: "tuple[int, ...]") -> list[int]:
    """Serve host call ``imm`` of REC ``rec``; returns the 31 gprs to hand back (``gprs``: the
    31 values of the exit, each in 0..2^64-1). host_call_raw with the registers as ints."""
    return list(_GPRS.unpack(host_call_raw(queue, slot, rec, imm, _GPRS.pack(*gprs))))


def host_call_raw(queue: "RunQueue", slot: int, rec: int, imm: int, gprs: bytes) -> bytes:
    """Serve host call ``imm`` of REC ``rec`` with the registers as the run page holds them
    (``gprs``: exit.gprs, 248 bytes, X0 first, each little-endian); returns the 248 bytes of
    enter.gprs. The run loop passes the exit's bytes in and writes the answer out as it is: a
    service reads only the registers it uses (at most X0..X3) and answers with the exit's bytes
    themselves (LOG, REPORT) or with a new X0 before the exit's X1..X30 (QUERY, an unknown
    service), so the 31 registers are never made into ints and back."""
    queue.count(slot, "host_calls")
    if imm == HOST_CALL_QUERY:          # first: the round-trip benchmark's call, it needs no base
        return _X0.pack(_query(queue, slot, _X0.unpack_from(gprs)[0])) + gprs[8:]
    base = queue.realm_offset(slot)
    view = queue.view
    if imm == HOST_CALL_LOG:
        _lock_output(view, base)           # the record before the count, as a console byte
        try:
            n = view.load_u64(base + R_LOG)
            # (REC index, X0..X3): X0..X3 are the first 32 bytes of gprs, copied as they are.
            _LOG_RECORD.pack_into(queue.buf, base + R_LOG + 8 + LOG_RECORD * (n % LOG_RECORDS), rec, gprs[:32])
            view.store_u64(base + R_LOG, n + 1)
        finally:
            view.store_u64(base + _OUTPUT_LOCK, 0)
        return gprs
    if imm == HOST_CALL_REPORT:
        code, detail = _X0_X1.unpack_from(gprs)
        # Two RECs of a realm may report at once, on two CPUs: the code and the detail are one
        # report, so they are stored under the output lock (else a reader could see one REC's
        # code with the other's detail, which no order of the two reports gives). A CPU killed
        # between the two stores would leave such a pair all the same, had it a single cell:
        # the pair goes to the cell that the last whole report is not in, and the count, which
        # selects the cell a reader reads, moves last.
        _lock_output(view, base)
        try:
            n = view.load_u64(base + R_RESULT) & ~_REPORT_WRITING
            view.store_u64(base + R_RESULT, n | _REPORT_WRITING)
            cell = _report_cell(base, n + 1)
            view.store_u64(cell, code)
            view.store_u64(cell + 8, detail)
            view.store_u64(base + R_RESULT, n + 1)
        finally:
            view.store_u64(base + _OUTPUT_LOCK, 0)
        return gprs
    return _ALL_ONES_X0 + gprs[8:]


_GPRS = struct.Struct("<31Q")
_X0 = struct.Struct("<Q")
_X0_X1 = struct.Struct("<2Q")
_LOG_RECORD = struct.Struct("<Q32s")
"""A LOG record: the REC index, then X0..X3 as the exit's bytes (the same bytes as "<5Q")."""
_ALL_ONES_X0 = _X0.pack(ALL_ONES)


_OUTPUT_LOCK = R_RESULT + 24
"""A host lock word beside the report (count, code, detail): 0 free, else the holder's process
as a CPU binding names it (hw.cpuarea.binding_word): its pid in bits [31:0] and its start time
in 10 ms units in bits [63:32], so that a holder whose pid was reused is seen as gone."""


_REPORT_WRITING = 1 << 63
"""Set in the report count while a REPORT stores its pair. A reader holds the output lock, so
it finds the bit set only when the REPORT's CPU was killed inside: that report is lost."""


def _report_cell(base: int, k: int) -> int:
    """Where report ``k`` (counted from 1; 0: none yet, a zero cell) keeps its (code, detail)."""
    return base + R_RESULT + 8 if k & 1 else base + R_ALT


def _last_cell(base: int, k: int) -> int:
    """Where ring ``k`` of the doorbell (counted from 1; 0: none yet, a zero cell) keeps its value."""
    return base + R_DEVICE + _D_LAST if k & 1 else base + R_ALT + 16


def _lock_output(view: Any, base: int) -> bool:
    """Take the realm's output lock (the caller frees it: a store of 0 to its word), which
    serialises every append to its guest output (a console byte, a LOG record, a REPORT, a
    doorbell ring) and the
    reading of it (realm_status); returns whether it was taken over from a holder process that
    is gone (killed inside; a zombie counts as gone, hw.process.alive), so that a run's report
    never waits on a dead CPU.

    The console and the LOG are rings, and the vCPUs of a realm print from several CPUs at once.
    They used to reserve a position with an atomic add and write the item after it, unlocked: a
    CPU stalled between the two (preempted by the OS) while the other CPUs appended a whole ring
    more wrote its old item over the newest one, which was lost, and two LOG records written to
    one cell at once could be torn. Under the lock an append writes the item, then moves the
    count, so the kept items are always the newest ones, in count order. It costs a console byte
    or a LOG record a compare-and-swap, a store (the lock word's) and a call more, about 0.3 us
    (0.5 us for a record), on the MMIO and host-call exits only: a function and try/finally, as
    a context manager cost 3 us more; the REC-entry path of a realm that does not print is
    untouched.

    The holder is named by pid and start time (_OUTPUT_LOCK): named by its pid alone, a holder
    killed inside whose pid the OS gave to a new process looked alive for ever, and every CPU
    then waited on the lock for ever."""
    me = _own_word or _own_lock_word()
    holder = view.cas_u64(base + _OUTPUT_LOCK, 0, me)
    if holder == 0:
        return False
    return _await_output(view, base, me, holder)


_GONE_LOOK_EVERY = 64
"""Tries of a wait for the output lock between two looks at its holder's process (a /proc read,
too dear for every try): the first at the end of the spins, at most 32 ms apart once the wait
sleeps."""


def _await_output(view: Any, base: int, me: int, holder: int) -> bool:
    """The output lock's contended path (_lock_output): wait for ``holder`` to free it, backing
    off as a granule lock's waiter does (hw.granule.backoff); every _GONE_LOOK_EVERY tries, take
    it over if the holder's process is gone. The lock is held for a few stores, but a holder
    stopped (SIGSTOP) or descheduled inside holds it for as long: the wait used to look at the
    holder's process and call sleep(0) on every try, so it burnt a host core meanwhile."""
    tries = 0
    while True:
        tries += 1
        if tries % _GONE_LOOK_EVERY == 0 and _holder_gone(holder) \
                and view.cas_u64(base + _OUTPUT_LOCK, holder, me) == holder:
            _mark_torn(view, base)
            return True
        backoff(tries)
        holder = view.cas_u64(base + _OUTPUT_LOCK, 0, me)
        if holder == 0:
            return False


_own_word = 0
"""This process's output-lock word, once made (0: not yet; a forked child starts again)."""


def _own_lock_word() -> int:
    """This process's output-lock word, made once per process: making it (own_start_ms and
    binding_word) costs about 0.3 us, which each console byte would otherwise pay again."""
    global _own_word
    _own_word = binding_word(os.getpid(), process.own_start_ms())
    return _own_word


def _forget_own_word() -> None:
    global _own_word
    _own_word = 0


os.register_at_fork(after_in_child=_forget_own_word)


def _holder_gone(word: int) -> bool:
    """Whether the process an output-lock word names is gone: not running (a zombie is not), or
    its pid now names a process with another start time (hw.cpuarea.binding_ended: a start part
    of 0, a holder that could not read its own start time, leaves the pid alone to decide; a
    process that cannot be looked at lives)."""
    return binding_ended(word)


def _mark_torn(view: Any, base: int) -> None:
    """Record, for every later reader, which ring cells the dead holder may have half written.

    Whoever takes the lock over (an appender as much as a reader) does not know what the dead
    holder was appending, so both rings' next cells are suspect: the LOG's at its count, the
    console's at its count. The counts are kept (+ 1, as 0 means no takeover) in R_TORN: a cell
    is suspect only while its ring's count still equals the recorded one, since the next append
    to that ring writes that very cell whole (under the lock) and moves the count past it. So
    the marks need no clearing, and the appends' common path no extra step; a reader compares
    (realm_status). Held under the lock just taken over, so no append runs meanwhile."""
    view.store_u64(base + R_TORN, view.load_u64(base + R_LOG) + 1)
    view.store_u64(base + R_TORN + 8, view.load_u64(base + R_DEVICE + _D_CONSOLE) + 1)


def _query(queue: "RunQueue", slot: int, selector: int) -> int:
    if selector == QUERY_VCPUS:
        return queue.offered(slot)
    if selector == QUERY_SLOT:
        return slot
    if selector == QUERY_DEVICE:
        return device_base(queue.realm(slot))
    if selector == QUERY_SHARED_BIT:
        return queue.realm(slot).par_size
    return ALL_ONES


# -- reading the outcome -------------------------------------------------------------------------

@dataclass(frozen=True)
class LogRecord:
    """One LOG host call: which REC logged, and X0..X3 of its RsiHostCall."""

    rec: int
    values: tuple[int, int, int, int]


@dataclass(frozen=True)
class RealmStatus:
    """A snapshot of one realm's entry in the realm table (read without stopping the CPUs)."""

    slot: int
    rd: int
    state: str
    end: str
    vcpu_states: tuple[str, ...]
    vcpu_ends: tuple[str, ...]
    counters: dict[str, int]
    console: bytes
    """The last CONSOLE_BYTES bytes the guest wrote to its console (device[0] counts them all)."""
    device: tuple[int, int, int, int]
    """(console bytes written, doorbell rings, last doorbell value, scratch register)."""
    reports: int
    """REPORT host calls made whole (one cut short by a killed CPU is not counted)."""
    result: tuple[int, int]
    """(code, detail) of the last REPORT host call made whole; code 0 is a pass."""
    log: tuple[LogRecord, ...]
    """The last LOG_RECORDS LOG host calls, oldest first (log_count counts them all)."""
    log_count: int
    shared_pages: tuple[tuple[int, int], ...]
    """(IPA, NS PA) of every page the host mapped at an unprotected IPA of the realm."""
    report_cut_short: bool = False
    """A REPORT after the last whole one was cut short: the CPU serving it was killed while it
    stored the pair. What the guest reported last is unknown (``result`` is the one before)."""

    @property
    def passed(self) -> bool:
        """The realm reported at least once, its last report was a pass, and no later report
        was cut short (which may have said anything)."""
        return self.reports > 0 and self.result[0] == 0 and not self.report_cut_short


def realm_status(queue: "RunQueue", slot: int) -> RealmStatus:
    """What the realm in ``slot`` did so far, from its entry in the realm table."""
    base = queue.realm_offset(slot)
    view, buf = queue.view, queue.buf
    vcpus = [base + R_VCPUS + i * VCPU_BYTES for i in range(min(view.load_u32(base + R_RECS), MAX_VCPUS))]
    # The output as one snapshot: no append is half done while the lock is held.
    _lock_output(view, base)
    try:
        written, rings, _, scratch = struct.unpack_from("<4Q", buf, base + R_DEVICE)
        device = (written, rings, view.load_u64(_last_cell(base, rings)), scratch)
        report_word = view.load_u64(base + R_RESULT)
        reports = report_word & ~_REPORT_WRITING
        code, detail = struct.unpack_from("<2Q", buf, _report_cell(base, reports))
        log_count = view.load_u64(base + R_LOG)
        torn_log, torn_console = struct.unpack_from("<2Q", buf, base + R_TORN)
        # Both are rings (mmio, host_call): the oldest kept item is at count % size once they wrapped.
        records = [struct.unpack_from("<5Q", buf, base + R_LOG + 8 + LOG_RECORD * (i % LOG_RECORDS))
                   for i in range(max(0, log_count - LOG_RECORDS), log_count)]
        ring = bytes(buf[base + R_CONSOLE:base + R_CONSOLE + CONSOLE_BYTES])
    finally:
        view.store_u64(base + _OUTPUT_LOCK, 0)
    console = ring[:written] if written <= CONSOLE_BYTES else \
        ring[written % CONSOLE_BYTES:] + ring[:written % CONSOLE_BYTES]
    # A CPU killed inside an append wrote (part of) the next item but did not count it: in a full
    # ring, that cell is the oldest kept item's, which is left out by every reader while no
    # append to that ring has overwritten it since (_mark_torn; whoever took the lock over).
    if torn_log == log_count + 1 and log_count >= LOG_RECORDS:
        records = records[1:]
    if torn_console == written + 1 and written >= CONSOLE_BYTES:
        console = console[1:]
    return RealmStatus(
        slot=slot, rd=view.load_u64(base + R_RD), state=REALM_STATES[view.load_u32(base + R_STATE)],
        end=REALM_ENDS[view.load_u32(base + R_END)],
        vcpu_states=tuple(VCPU_STATES[view.load_u32(v + VF_STATE)] for v in vcpus),
        vcpu_ends=tuple(VCPU_ENDS[view.load_u32(v + VF_END)] for v in vcpus),
        counters={name: queue.counter(slot, name) for name in COUNTERS},
        console=console,
        device=device, reports=reports, result=(code, detail),
        log=tuple(LogRecord(r[0], (r[1], r[2], r[3], r[4])) for r in records), log_count=log_count,
        shared_pages=queue.shared_pages(slot), report_cut_short=bool(report_word & _REPORT_WRITING))
