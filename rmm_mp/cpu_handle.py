"""A CPU handle: one simulated CPU bound to this process (DESIGN.md section 3, ``Machine.cpu``).

The handle wires that CPU's layers together (EL3 monitor, RMM, TLB, latency recorder, trace
ring) and is the host's entry to EL3: ``Cpu.smc`` checks the registers and enters the monitor.
Binding is a word in the CPU's shared area (``claim``); a forked child may not use its parent's
handles, which is what the fork generation, counted here, tells apart.

This module owns the CPU handle, its binding and the fork generation. It must not hold RMM logic
or manage the machine's segments (machine.py does).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NoReturn

from rmm_mp.abi.smccc import U64_MASK
from rmm_mp.el3.attest import AttestationKeys, AttestationService
from rmm_mp.el3.gtsi import Gtsi
from rmm_mp.el3.monitor import Monitor
from rmm_mp.hw import cpuarea, trace
from rmm_mp.hw.control import OFF_DEAD
from rmm_mp.hw.cpuarea import CpuArea
from rmm_mp.hw.faults import CpuBusyError, MachineError, RmmInternalError
from rmm_mp.hw.granule import cpu_owner
from rmm_mp.hw.memory import CpuLockWaiter, NsAccess
from rmm_mp.hw.platform import Platform
from rmm_mp.hw.tlb import Tlb
from rmm_mp.rmm.cpu import RmmCpu
from rmm_mp.stats.calls import RSI_BASE
from rmm_mp.stats.histogram import Recorder

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

_S64_MIN = -(1 << 63)
_U64_MAX = U64_MASK
_MAX_ARGS = 6


_fork_generation = 0


def fork_generation() -> int:
    """How many forks this process is removed from the one that started (0 in an unforked
    process): a handle or machine made at another generation belongs to a parent."""
    return _fork_generation


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


class Cpu:
    """A simulated CPU bound to this process: host-side entry to EL3 through ``smc``."""

    __slots__ = ("machine", "id", "granules", "area", "monitor", "rmm", "recorder", "tracer", "tlb", "_word",
                 "_generation", "_closed", "_dead", "_enter")

    def __init__(self, machine: Machine, cpu: int, area: CpuArea, word: int) -> None:
        self.machine = machine
        self.id = cpu
        self.area = area
        self._word = word
        self._generation = _fork_generation
        self._closed = False
        plat = machine.platform
        self.granules = machine.granule_table(cpu_owner(cpu))
        views = machine._views
        # A lock its dead holder never releases must not keep this CPU from stopping a run.
        self.granules.waiter = CpuLockWaiter(machine.control, views["cpus"], machine._area_size, machine.cpus, cpu)
        self.tlb = Tlb(cpu, views["ctl"], views["cpus"], views["dram"], machine._area_size, machine.cpus)
        self.tlb.count_out_dead_holder()
        self.monitor = Monitor(cpu, area.buf, machine.control,
                               Gtsi(machine.gpt, plat.dram.base, plat.granule_count, self.tlb),
                               AttestationService(attestation_keys(plat)))
        self.monitor.lock_stats = self.granules.stats
        # The area's lock figures are this handle's from its binding on (its LockStats start at
        # 0): an earlier handle's, such as `rmm-mp run`'s set-up on CPU 0, must not stand for
        # those of a CPU process that dies before it first publishes (docs/latency.md, Flushing).
        self.monitor.publish_lock_stats()
        ns = NsAccess(machine.memory, self.granules, machine.gpt)
        self.rmm = RmmCpu(cpu, self.granules, machine.memory, ns, self.monitor, machine._features0, machine.control,
                          plat, machine.gpt, self.tlb, machine.control.time_slice)
        self.monitor.rmm = self.rmm.rmi_entry()
        self.recorder: Recorder | None = Recorder(area.stats_region(), RSI_BASE)
        self.monitor.recorder = self.recorder
        self.tracer: trace.Tracer | None = None
        self._dead = machine.control.view.load_u32
        self._enter = self.monitor.smc_from_ns

    def smc(self, fid: int, *args: int) -> tuple[int, int, int, int, int]:
        """Issue an SMC from the Normal world on this CPU; returns exactly (X0, X1, X2, X3, X4).

        Args:
            fid: X0, the function ID.
            args: X1..X6; missing registers are 0. Each value is an int in [-2^63, 2^64),
                stored modulo 2^64.

        Raises:
            TypeError / ValueError for a bad register value; RmmInternalError if the RMM has
            crashed (now or earlier, on any CPU); MachineError if the handle is unusable here.
        """
        if self._generation != _fork_generation or self._closed:
            self._unusable()
        if self._dead(OFF_DEAD):
            raise RmmInternalError(self.machine.control.dead_reason())
        n = len(args)
        if n > _MAX_ARGS:
            raise TypeError(f"smc takes X1..X6 (at most 6 registers after the FID); got {n}")
        regs = (fid, *args)
        for value in regs:
            if value.__class__ is not int or value < 0 or value > _U64_MAX:
                regs = _normalise(regs)
                break
        return self._enter(*regs, *_PAD[n])

    def smc_u64(self, fid: int, x1: int, x2: int) -> tuple[int, int, int, int, int]:
        """smc(fid, x1, x2) for a caller whose three values are already ints in [0, 2^64) (the run
        loop's REC_ENTER: a constant and two words of the run queue's shared area), so there is
        nothing to normalise: the same checks of the handle and the same EL3 entry, without the
        argument tuple, the check of each value and the call through ``*args`` (about 4,700
        instructions of a REC round trip on CPython 3.11, docs/performance.md)."""
        if self._generation != _fork_generation or self._closed:
            self._unusable()
        if self._dead(OFF_DEAD):
            raise RmmInternalError(self.machine.control.dead_reason())
        return self._enter(fid, x1, x2, 0, 0, 0, 0)

    def set_recording(self, enabled: bool) -> None:
        """Switch latency recording on this CPU on or off (it is on by default)."""
        if enabled and self.recorder is None:
            self.recorder = Recorder(self.area.stats_region(), RSI_BASE)
        elif not enabled and self.recorder is not None:
            self.recorder.flush(0)
            self.recorder.release()
            self.recorder = None
        self.monitor.recorder = self.recorder
        self._select_entry()

    def _select_entry(self) -> None:
        """Enter EL3 through its untimed entry while nothing on this CPU uses the clock. An
        entry the stress tool put in place (a wrapper) is left alone: it calls the timed one."""
        monitor = self.monitor
        if self._enter == monitor.smc_from_ns or self._enter == monitor.smc_from_ns_untimed:
            timed = self.recorder is not None or self.tracer is not None
            self._enter = monitor.smc_from_ns if timed else monitor.smc_from_ns_untimed

    def set_tracing(self, enabled: bool) -> None:
        """Switch this CPU's trace ring on or off (off by default; needs trace_capacity > 0).

        While on, every RMI call, RSI/PSCI call, REC run and contended lock wait on this CPU
        appends a record (hw.trace); the ring keeps the newest ``trace_capacity`` of them.
        """
        if enabled and self.tracer is None:
            self.tracer = trace.Tracer(self.machine.trace_region(self.id), self.machine.trace_capacity)
        elif not enabled and self.tracer is not None:
            self.tracer.release()
            self.tracer = None
        self.monitor.tracer = self.tracer
        self.granules.tracer = self.tracer
        self._select_entry()

    def flush_statistics(self) -> None:
        """Publish this CPU's latency histograms and lock statistics to shared memory now."""
        if self.recorder is not None:
            self.recorder.flush(0)
        self.monitor.publish_lock_stats()

    def check_usable(self) -> None:
        """Raise MachineError, as an SMC through this handle would, if the handle is closed or
        this is a forked child of the process that bound it: for a caller that changes shared
        state on the CPU's behalf before its first SMC (the host run loop). smc and smc_u64 make
        the same test written out, a call less on every SMC."""
        if self._generation != _fork_generation or self._closed:
            self._unusable()

    def _unusable(self) -> None:
        if self._closed:
            raise MachineError(f"CPU {self.id} handle is closed")
        # The binding word names the process that bound this handle; the machine's creator pid
        # is another process's for an attached machine, and a forked child clears it.
        raise MachineError(f"CPU {self.id} handle belongs to process {self._word & 0xFFFF_FFFF}; "
                           f"a forked child must Machine.attach({self.machine.name!r}) and bind its own CPU")

    def close(self) -> None:
        """Release the binding (kept, naming this process until it ends, when realm code still
        runs on the CPU: a close from another thread or a signal handler). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._generation == _fork_generation:
            self.flush_statistics()
            # Realm code runs between tlb.enter and a leave in a finally (realm_run._execute), so
            # only a close from a signal handler (machine_exit's SIGTERM close_all) or another
            # thread finds the CPU counted in, and the code it interrupted may go on executing
            # realm code with its cached translations. Neither counted out (that code may be in
            # leave itself: counted out twice) nor unbound: a released binding reads as ended, so
            # other CPUs' invalidations went on without that code's sync, and the next binder
            # counted it out (count_out_dead_holder) while it ran. Kept, the binding names this
            # live process, which holds the CPU until it ends (then it is a dead holder's).
            if not self.tlb.counted_in:
                self.area.release_binding(self._word)
        if self.recorder is not None:
            self.recorder.release()
            self.recorder = None
        if self.tracer is not None:
            self.set_tracing(False)
        self.area.release()
        self.machine._handles.pop(self.id, None)

    def __repr__(self) -> str:
        return f"<Cpu {self.id} of {self.machine.name}>"


_PAD = tuple((0,) * (_MAX_ARGS - n) for n in range(_MAX_ARGS + 1))


def _normalise(regs: tuple[object, ...]) -> tuple[int, ...]:
    """Check register values and reduce them modulo 2^64 (the slow path of Cpu.smc)."""
    out = []
    for index, value in enumerate(regs):
        if not isinstance(value, int) or isinstance(value, bool):
            _bad_register(index, value)
        value = int(value)  # an IntEnum such as RmiFid
        if not _S64_MIN <= value <= _U64_MAX:
            _bad_register(index, value)
        out.append(value & _U64_MAX)
    return tuple(out)


_attestation_keys: dict[str, AttestationKeys] = {}


def attestation_keys(plat: Platform) -> AttestationKeys:
    """The platform's attestation material, derived once per process (it never changes)."""
    key = plat.to_json()
    if key not in _attestation_keys:
        _attestation_keys[key] = AttestationKeys(plat)
    return _attestation_keys[key]


def _bad_register(index: int, value: object) -> NoReturn:
    name = "fid (X0)" if index == 0 else f"X{index}"
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} = {value!r}: expected an int in [-2^63, 2^64)")
    raise ValueError(f"{name} = {value:#x}: expected an int in [-2^63, 2^64)")


def claim(area: CpuArea, cpu: int, pid: int, word: int) -> None:
    """Take CPU ``cpu``'s binding for this process, reclaiming it from a dead holder."""
    while True:
        current = area.binding()
        if current == 0:
            if area.claim(0, word):
                return
            continue
        holder = current & 0xFFFF_FFFF
        if current == word:
            # With no start time in the word (this process could not read its own), a dead
            # process with this pid that could not either wrote the same word.
            raise CpuBusyError(cpu, pid, own=True, unsure=word >> 32 == 0)
        # Our pid with another start time is a dead process whose pid this one reuses: it falls
        # through to the liveness check below, which finds it gone. A holder that could not read
        # its own start time (start part 0) is judged by its pid alone, and one that cannot be
        # looked at lives: a CPU is never taken from a live process.
        if not cpuarea.binding_ended(current):
            # Our pid in another word is not this process, but one whose end could not be seen:
            # "end that process" would name this one.
            raise CpuBusyError(cpu, holder, unsure=holder == pid)
        if area.claim(current, word):
            return
