"""The host's run loop: every CPU process takes runnable vCPUs from the shared run queue, enters
each once (RMI_REC_ENTER) and handles its exit, like a KVM vCPU thread that may run anywhere.

One step of ``run_loop`` (KVM kvm_rec_pre_enter / kvm_rec_enter / handle_rme_exit):

1. take a vCPU from the run queue (RunQueue.take: it is now RUNNING here and nowhere else);
   a vCPU whose realm went off is done at once (it drains);
2. REC_ENTER(rec, run page). The run page's enter half already holds what this entry needs: the
   CPU that handled the previous exit, wherever it ran, wrote it. (ERROR_REALM, 1) is the
   expected race with another vCPU's SYSTEM_OFF or SYSTEM_RESET and ends this vCPU (the realm's
   end reason comes from that vCPU's exit); (ERROR_REALM, 0) (a realm never activated) fails
   the vCPU; ERROR_REC right after a spurious wake-up (a CPU_ON that the RMM answered
   ALREADY_ON while this vCPU turned itself off, whether the start found it still RUNNING or
   already OFF) means the REC is off, and so is the vCPU; any other failure raises HostError;
3. read the exit half, count the exit (per CPU and reason, in the run queue's area), decide
   with exits.handle_exit, write the next entry's flags (and gprs when they matter) into the
   run page, and put the vCPU back in the queue, turn it off, or end it. A host call, the
   commonest exit, takes a shorter way to the same result: its registers go from the exit
   half through devices.host_call_raw to the enter half as bytes, never unpacked into ints.

The loop ends when no realm is live (every registered realm DONE), the machine's stop flag is
set, or the step budget (REC entries on this CPU) is spent; it returns a LoopSummary. When the
queue is empty but realms are live (their vCPUs run on other CPUs) it yields, then sleeps
briefly, so idle CPU processes leave the cores to busy ones. With LoopPlan.gather the loops of
several CPU processes wait for each other before taking a vCPU (spawned processes start seconds
apart; without it the first one would run a small realm alone). Before each step (and while it
gathers) the loop is at a quiescent point (hw.quiesce): it parks there while `rmm-mp check`
inspects the machine.

``run_realms`` registers realms, runs the loop on N CPU processes (rmm_mp.runtime.run_cpus) and
collects what each CPU and each realm did.

This module owns the loop and its records. It speaks SMC only.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER
from rmm_mp.host.devices import RealmStatus, host_call_raw, realm_status
from rmm_mp.host.exits import EXIT_HOST_CALL, EXIT_RAW, REQUEUE, STOP, ExitContext, handle_exit
from rmm_mp.host.nsalloc import NsAllocator
from rmm_mp.host.realm import ERROR_REALM, ERROR_REC, SUCCESS, HostError, HostRealm
from rmm_mp.host.realm_entry import END_NONE, RUNNING, VEND_DRAINED, VEND_ERROR, VEND_RACE, VEND_SYSTEM_OFF
from rmm_mp.host.runqueue import EXIT_SLOTS, MAX_CPUS, MAX_VCPUS, OFF_ARRIVED, OFF_EXITS, RunQueue
from rmm_mp.hw.quiesce import Participant
from rmm_mp.cpu_outcome import CpuFailure
from rmm_mp.runtime import STARTUP_S, oversubscription, run_cpus

if TYPE_CHECKING:
    from rmm_mp.machine import Cpu, Machine

REC_ENTER = int(RmiFid.RMI_REC_ENTER)
FAILED_ENTRY = EXIT_SLOTS - 1
"""Exit-count slot of REC_ENTERs that did not run the realm."""
_ENTER_FULL = struct.Struct("<Q504x31Q")   # RmiRecEnter flags at 0x000 and gprs at 0x200
_ENTER_FLAGS = struct.Struct("<Q")
_ENTER_GPRS = struct.Struct("<31Q")
_GPRS_OFFSET = RMI_REC_ENTER.offset("gprs")
_ENTER_FLAGS_0_AND_GPRS = struct.Struct(f"<Q{_GPRS_OFFSET - 8}x{31 * 8}s")   # flags, then gprs as bytes

_SYSTEM_OFF_RACE = ERROR_REALM | 1 << 8
_REALM_NEW = ERROR_REALM
_YIELDS_BEFORE_SLEEP = 32
_IDLE_SLEEP_S = 0.0002


def _padded(gprs: "tuple[int, ...] | list[int]") -> "tuple[int, ...] | list[int]":
    """enter.gprs: the values given, then zeros up to 31."""
    return gprs if len(gprs) == 31 else [*gprs, *[0] * (31 - len(gprs))]


@dataclass(frozen=True)
class LoopPlan:
    """What run_loop does on each CPU.

    Attributes:
        budget: REC entries this CPU makes at most (None: no limit).
        gather: wait until this many CPU loops have started (counted in the run queue's header,
            which run_realms resets) before taking a vCPU, so that CPU processes that spawn at
            different times share the work from the start; 0 for no barrier.
    """

    budget: int | None = None
    gather: int = 0

    def __post_init__(self) -> None:
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, int)
                                        or self.budget < 0):
            raise ValueError(f"LoopPlan.budget = {self.budget!r}: expected a number of REC entries >= 0, or None")
        if isinstance(self.gather, bool) or not isinstance(self.gather, int) or not 0 <= self.gather <= MAX_CPUS:
            raise ValueError(f"LoopPlan.gather = {self.gather!r}: expected a number of CPU loops in 0..{MAX_CPUS}")


@dataclass(frozen=True)
class LoopSummary:
    """What one CPU's run loop did.

    Attributes:
        exits: REC exits it handled per RmiRecExitReason (0 SYNC .. 6 SERROR), then REC_ENTERs
            that did not run the realm.
        ended: "done" (no realm live), "stop" (the stop flag) or "budget".
        errors: one line per vCPU that failed on this CPU (exits.py says which exits do).
    """

    cpu: int
    entries: int
    exits: tuple[int, ...]
    ended: str
    idle_polls: int
    elapsed_ns: int
    errors: tuple[str, ...] = ()


class RunLoop:
    """One CPU's run-loop state: ``queue.take(cpu.id)`` then ``step(vcpu)`` is one iteration of
    run_loop (tools drive it directly to time single steps). ``serve``: the run queues it takes
    vCPUs from (RunQueue's ``serve``; queue 0 by default)."""

    def __init__(self, cpu: "Cpu", serve: "Sequence[int]" = (0,)) -> None:
        if cpu.id >= MAX_CPUS:
            raise ValueError(f"CPU {cpu.id}: the run queue counts exits for CPUs 0..{MAX_CPUS - 1}")
        # The CPU handle's own check (Cpu.check_usable, smc_u64's test) before the shared queue is
        # touched: a forked child (or a closed handle) would zero the CPU's exit counts below and,
        # in run_loop, take a vCPU it can never enter, leaving it RUNNING for ever.
        cpu.check_usable()
        self.cpu = cpu
        self.queue = RunQueue(cpu.machine, serve)
        self.ctx = ExitContext(cpu, NsAllocator.for_cpu(cpu), self.queue)
        self.exits = [0] * EXIT_SLOTS
        self.entries = 0
        self.errors: list[str] = []
        self._exit_counts = OFF_EXITS + cpu.id * 64
        # The run page's copies go straight to this process's host NsAccess, not through
        # Machine.ns_unpack / ns_write: step's REC_ENTER before them raises (cpu_handle) on a
        # closed machine or in a forked child, the cases the wrappers' checks are for.
        self._ns = cpu.machine.ns_access()
        # The CPU's line shows this loop's exits: an earlier loop's figures would stay for
        # every reason this one has not counted yet.
        for reason in range(EXIT_SLOTS):
            self.queue.view.store_u64(self._exit_counts + 8 * reason, 0)

    def step(self, vcpu: int) -> None:
        """One REC_ENTER of ``vcpu`` and its exit handling."""
        q, cpu, ns = self.queue, self.cpu, self._ns
        slot = vcpu // MAX_VCPUS
        if q.realm_state(slot) != RUNNING:
            # The CPU handle's own check (Cpu.check_usable) before the only change to the shared
            # queue made ahead of REC_ENTER: a forked child stepping its parent's loop would end
            # a draining vCPU. Every later change follows REC_ENTER, which refuses such a child.
            cpu.check_usable()
            q.end(vcpu, VEND_DRAINED)
            return
        rec, run = q.vcpu_pages(vcpu)
        x0 = cpu.smc_u64(REC_ENTER, rec, run)[0]      # rec, run: u64 words of the run queue
        self.entries += 1
        if x0 != SUCCESS:
            q.count(slot, "entries")
            self._count(FAILED_ENTRY)
            self._entry_failed(vcpu, rec, run, x0)
            return
        # Counts the entry too and clears the woken mark: one call where three cost about 1,200
        # instructions more of a round trip.
        q.ran_on(vcpu, cpu.id)
        # EXIT's bytes with gprs as one 248-byte string, unpacked in place under the lock: no
        # 1.5 KiB copy, and a host call's registers stay bytes (see below).
        reason, esr, far, hpfar, gprs_raw, ripas_base, ripas_top, ripas_value, imm = \
            ns.unpack(run + REC_EXIT_OFFSET, EXIT_RAW)
        if reason == EXIT_HOST_CALL:
            # _count(EXIT_HOST_CALL) written out: a call less on every host call
            n = self.exits[EXIT_HOST_CALL] = self.exits[EXIT_HOST_CALL] + 1
            q.view.store_u64(self._exit_counts + 8 * EXIT_HOST_CALL, n)
            # handle_exit's answer to a host call, from the exit's bytes: the service reads the
            # registers it needs, and its answer goes to enter.gprs as 248 bytes (flags 0).
            # Unpacking the 39 words of EXIT and packing 31 answers back cost about 7,000
            # instructions of a 334,000-instruction round trip (docs/performance.md).
            answer = host_call_raw(q, slot, vcpu % MAX_VCPUS, imm, gprs_raw)
            if q.enter_flags(vcpu) == 0:
                ns.write(run + _GPRS_OFFSET, answer)
            else:
                ns.write(run, _ENTER_FLAGS_0_AND_GPRS.pack(0, answer))
                q.set_enter_flags(vcpu, 0)
            q.requeue(vcpu)
            return
        self._count(reason)
        ex = (reason, esr, far, hpfar, *_ENTER_GPRS.unpack(gprs_raw), ripas_base, ripas_top, ripas_value, imm)
        action, flags, gprs, error = handle_exit(self.ctx, vcpu, ex)     # ex: what EXIT.unpack gives
        if gprs is not None:
            if len(gprs) != 31:     # a host call's answer has all 31: no _padded call then
                gprs = _padded(gprs)
            # Only the registers the RMM reads back change; the flags are written with them
            # when they change (the run page keeps the last ones: RunQueue.enter_flags).
            if flags == q.enter_flags(vcpu):
                ns.write(run + _GPRS_OFFSET, _ENTER_GPRS.pack(*gprs))
            else:
                ns.write(run, _ENTER_FULL.pack(flags, *gprs))
                q.set_enter_flags(vcpu, flags)
        elif flags != q.enter_flags(vcpu):
            ns.write(run, _ENTER_FLAGS.pack(flags))
            q.set_enter_flags(vcpu, flags)
        if error:
            self._fail(vcpu, error)
        elif action == REQUEUE:
            q.requeue(vcpu)
        elif action == STOP:
            q.stop(vcpu)
        else:                   # END: the vCPU turned its realm off
            q.end(vcpu, VEND_SYSTEM_OFF)

    def _count(self, reason: int) -> None:
        """Count an exit here and in this CPU's line of the run queue's exit counts."""
        if reason > FAILED_ENTRY:
            reason = FAILED_ENTRY
        n = self.exits[reason] = self.exits[reason] + 1
        self.queue.view.store_u64(self._exit_counts + 8 * reason, n)

    def _entry_failed(self, vcpu: int, rec: int, run: int, x0: int) -> None:
        q = self.queue
        if x0 == _SYSTEM_OFF_RACE:
            # SYSTEM_OFF or SYSTEM_RESET: the exit of the vCPU that called it says which (that
            # vCPU is still running here or on another CPU, so the realm is not done before).
            q.system_off(vcpu // MAX_VCPUS, END_NONE)
            q.end(vcpu, VEND_RACE)
        elif x0 == _REALM_NEW:
            self._fail(vcpu, "REC_ENTER returned ERROR_REALM: the realm is NEW (not activated)")
        elif x0 == ERROR_REC and q.take_woken(vcpu):
            q.stop(vcpu)
        else:
            raise HostError(REC_ENTER, (rec, run), x0, f"vCPU {vcpu} runs on no other CPU, its realm is active, "
                                                       f"and it is runnable with no PSCI request pending")

    def _fail(self, vcpu: int, error: str) -> None:
        self.errors.append(f"realm slot {vcpu // MAX_VCPUS} REC {vcpu % MAX_VCPUS}: {error}")
        self.queue.end(vcpu, VEND_ERROR)


def run_loop(cpu: "Cpu", plan: LoopPlan = LoopPlan()) -> LoopSummary:
    """Run vCPUs from the machine's run queue on ``cpu`` until no realm is live, the stop flag
    is set or ``plan.budget`` entries are made (a CPU target for rmm_mp.runtime.run_cpus, or
    called in-process)."""
    loop = RunLoop(cpu)
    control = cpu.machine.control
    queue = loop.queue
    budget = plan.budget
    idle = yields = 0
    start = time.perf_counter_ns()
    with Participant(control) as part:
        if plan.gather:
            queue.view.fetch_add_u64(OFF_ARRIVED, 1)
            while queue.view.load_u64(OFF_ARRIVED) < plan.gather and not control.stop_requested:
                part.point()
                time.sleep(_IDLE_SLEEP_S)
        while True:
            part.point()
            if control.stop_requested:
                ended = "stop"
                break
            if budget is not None and loop.entries >= budget:
                ended = "budget"
                break
            vcpu = queue.take(cpu.id)
            if vcpu is None:
                if queue.live_realms == 0:
                    ended = "done"
                    break
                idle += 1
                yields += 1
                if yields < _YIELDS_BEFORE_SLEEP:
                    os.sched_yield()
                else:
                    time.sleep(_IDLE_SLEEP_S)
                continue
            yields = 0
            loop.step(vcpu)
    return LoopSummary(cpu.id, loop.entries, tuple(loop.exits), ended, idle, time.perf_counter_ns() - start,
                       tuple(loop.errors))


def exit_counts(queue: RunQueue, cpu: int) -> tuple[int, ...]:
    """REC exits per RmiRecExitReason (0..6) that CPU ``cpu``'s current run loop handled, then
    failed entries (as published by the loop after every exit; a new RunLoop starts at 0)."""
    return tuple(queue.view.load_u64(OFF_EXITS + cpu * 64 + 8 * r) for r in range(EXIT_SLOTS))


# -- several realms on N CPU processes ---------------------------------------------------------------

@dataclass(frozen=True)
class RunSummary:
    """What run_realms produced: per CPU, per realm, and how the run ended."""

    slots: tuple[int, ...]
    loops: dict[int, LoopSummary]
    realms: tuple[RealmStatus, ...]
    failures: tuple[CpuFailure, ...]
    elapsed_s: float
    stopped_by: str = ""
    exits: tuple[int, ...] = field(default=(0,) * EXIT_SLOTS)
    """REC exits per reason over all CPUs (then failed entries)."""
    not_started: tuple[int, ...] = ()
    """The CPUs a Ctrl-C or SIGTERM found still starting up (RunResult.not_started): neither in
    ``loops`` nor in ``failures``, they ran nothing."""

    @property
    def ok(self) -> bool:
        """No CPU failed or was never started, every realm is DONE and no vCPU failed."""
        return (not self.failures and not self.not_started and all(r.state == "DONE" for r in self.realms)
                and not any(s.errors for s in self.loops.values()))


GRACE_S = 10.0
"""How long run_realms's CPUs get to return once asked to stop before they are killed."""


def run_realms(machine: "Machine", realms: Sequence[HostRealm], cpus: int | Sequence[int] | None = None, *,
               budget: int | None = None, vcpus: int | None = None, timeout_s: float | None = None,
               context: str = "spawn", startup_s: float | None = None) -> RunSummary:
    """Register ``realms`` in the run queue and run them on CPU processes until they are done.

    The caller must not hold the CPUs bound (close its handles first). Afterwards the realms are
    still registered: destroy each (destroy_realm), then give its pages back with
    RunQueue.release_realm(alloc, slot). A run stopped by ``budget`` or ``timeout_s`` may leave
    a realm not DONE (vCPUs still queued), which release_realm refuses: end those first
    (RunQueue.take and RunQueue.end, as rmm_mp.workload.realms.drain does).

    Args:
        cpus: how many CPU processes (CPUs 0..N-1), or which CPU ids (default: all); they
            start taking vCPUs together (LoopPlan.gather).
        budget: REC entries per CPU at most (LoopPlan.budget).
        vcpus: RECs per realm the host runs (RunQueue.add_realm); default all.
        timeout_s: ask the CPUs to stop after this many seconds.
        context: "spawn" or "forkserver" (rmm_mp.runtime.run_cpus).
        startup_s: ask the CPUs to stop if they are not all at the start barrier this many
            seconds after they were started (default runtime.STARTUP_S times
            runtime.oversubscription, as `rmm-mp run`), with or without ``timeout_s``. A CPU
            stopped (SIGSTOP) or stuck while it started up held the others at the barrier, and
            the call, for ever; now the run ends with stopped_by saying so, and that CPU is
            killed GRACE_S later and listed in failures. (A CPU that dies before the barrier
            already stopped the run, as any CPU's death does.)

    Raises:
        CapacityError if the realms do not fit the run queue; ValueError for bad arguments.
    """
    ids = list(range(machine.cpus)) if cpus is None else list(range(cpus)) if isinstance(cpus, int) else list(cpus)
    plan = LoopPlan(budget, gather=len(ids))
    queue = RunQueue(machine)
    alloc = NsAllocator(machine, 0)
    slots = tuple(queue.add_realm(alloc, realm, vcpus=vcpus) for realm in realms)
    queue.view.store_u64(OFF_ARRIVED, 0)
    bound = STARTUP_S * oversubscription(len(ids)) if startup_s is None else startup_s
    arrived = queue.view.load_u64
    gathered = False

    def at_barrier(elapsed: float) -> str | None:
        """Stop the run once ``bound`` has passed with some CPU not at the start barrier."""
        nonlocal gathered
        if not gathered:
            gathered = arrived(OFF_ARRIVED) >= len(ids)
            if not gathered and elapsed >= bound:
                return f"time is up (CPUs not all at the start barrier {bound:g} s after they were started)"
        return None
    result = run_cpus(machine, run_loop, ids, args=(plan,), context=context, timeout_s=timeout_s,
                      on_tick=at_barrier, grace_s=GRACE_S)
    loops: dict[int, LoopSummary] = dict(result.results)
    exits = tuple(sum(loop.exits[r] for loop in loops.values()) for r in range(EXIT_SLOTS))
    return RunSummary(slots, loops, tuple(realm_status(queue, s) for s in slots), result.failures,
                      result.elapsed_s, result.stopped_by, exits, result.not_started)
