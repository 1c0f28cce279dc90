"""What the parent does with a workload run's realms once the CPUs have stopped (run.py's step 4
and the trace's realm names of step 3).

    finish(...)     read every live instance's outcome (with its guest output), merge the
                    CPUs' finished and folded rows, count the tokens saved; then, on a
                    healthy machine, the teardown and its leak checks
    pa_names(live)  RD and REC PAs -> realm name for the trace, and from when each holds

The teardown drains the run queue, destroys every live realm, frees what the churn held and
what was set aside for the CPUs never started, settles the delegate-churn balance, and then
checks that every granule is NS again and the host's allocator empty. Each step runs under the
run's Interrupts: a signal ends the step under way and the rest is named as not done.

A signal that cuts a step between a granule lock and its unlock (even right after the lock's
compare-and-swap) leaves that lock held by this live process for good, so no later step may
wait for it: the parent would wait on itself for ever. Hence, after the CPUs' run, only two
kinds of step lock granules: each instance's read (as the host, Machine.ns_read of that
instance's own shared pages, which no other live instance has; reads go on after a signal)
and the teardown (as CPU 0; skipped once any step was cut, and the last step that locks at
all; a signal inside an RMM call also marks the machine crashed, which ends the host's waits).
A new post-run step that locks must keep this (tests/workload/test_aftermath_interrupt.py).

Split from run.py, which owns the run sequence and calls these after the CPUs' run. This
module must not start or stop CPU processes, read the CPUs' figures or render anything; it
touches the machine only from the parent, on CPU 0, at a quiescent point between instances.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from rmm_mp.check import invariants
from rmm_mp.host import HostError, NsAllocator, RunQueue, RunQueueError
from rmm_mp.host.churn import ChurnResult, settle
from rmm_mp.host.realm_entry import RUNNING
from rmm_mp.hw.quiesce import Participant
from rmm_mp.interrupts import Interrupts
from rmm_mp.machine import Machine
from rmm_mp import words
from rmm_mp.workload import realms
from rmm_mp.workload.cpustate import CpuResult, RunPlan
from rmm_mp.workload.lost import kept_to
from rmm_mp.workload.realms import Finished, Instance
from rmm_mp.workload.report import RealmOutcome
from rmm_mp.workload.resolve import Workload
from rmm_mp.workload.spec import RealmTemplate

if TYPE_CHECKING:
    from rmm_mp.machine import Cpu


def finish(machine: Machine, w: Workload, plan: RunPlan, live: list[Instance], finished: list[Finished],
            errors: realms.Errors, results: dict[int, CpuResult],
           pools: tuple[tuple[int, ...], dict[int, tuple[int, ...]]],
            healthy: bool, part: Participant, stop: Interrupts, console: bool = False,
            unstarted: tuple[list[int], int] = ([], 0), never_started: tuple[int, ...] = ()
            ) -> tuple[list[RealmOutcome], list[str], int, tuple[int, str] | None, list[str]]:
    """Outcomes of every instance (with their guest output when they failed, or, ``console``,
    for every live one), how many tokens were saved and (count, first reason) of
    those that could not be; then, on a healthy machine, the teardown and its checks. Last,
    what an interruption (``stop``) left undone. ``unstarted``: the granules set aside for the
    CPUs never started, and how many they were (lost.unstarted_share); ``never_started``: those
    CPUs, whose realms (every CPU that runs their vCPUs among them) are said not to have run."""
    problems: list[str] = []
    not_done: list[str] = []
    queue = RunQueue(machine)
    ended: list[tuple[Finished, bool]] = [(f, False) for f in finished]
    unread = 0
    turned_off = {key for r in results.values() for key in r.turned_off}
    for inst in live:
        template = w.realms[inst.realm] if inst.realm >= 0 else None

        def read(inst: Instance = inst, template: RealmTemplate | None = template) -> tuple[Finished, bool]:
            # Only a RUNNING realm was running: one its guest turned off (SYSTEM_OFF, SYSTEM_RESET)
            # with a vCPU still queued is not DONE yet (the teardown's drain ends that vCPU), but
            # it had ended, and its row says how. A CPU's private ripas-churn realm is never DONE
            # (it is never queued).
            running = queue.realm_state(inst.slot) == RUNNING or template is None
            return realms.finish(machine, queue, inst, template, platform_key=plan.platform_key,
                                 tokens_dir=plan.tokens_dir,
                                 turned_off=(inst.slot, inst.gen) in turned_off,
                                 output="all" if console else "failed"), running
        ok, item = stop.step(read, read=True)
        if ok:
            ended.append(item)
        else:
            unread += 1
    if unread:
        not_done.append(f"{unread} of {len(live)} live realm instances not read: interrupted ({stop.by})")
    folds: dict[tuple[int, bool], realms.Folded] = {}
    for cpu in sorted(results):
        for fold in results[cpu].folded:
            folds.setdefault((fold.realm, fold.ok),
                             realms.Folded(fold.realm, fold.name, fold.recs, fold.ok)).merge(fold)
    # Sorted by order, (template, instance, generation), the instance of a private realm being
    # its CPU; a template's folded rows come after its listed instances (ok first, then failed).
    rows = [(f.order, dataclasses.replace(
                realms.outcome(f, errors.of(f), running, _not_run(w, never_started, *f.order[:2])),
                cpus=kept_to(w, *f.order[:2])))
            for f, running in ended]
    rows += [((realm, 1 << 62, int(not ok)),
              dataclasses.replace(realms.folded_outcome(fold), cpus=kept_to(w, realm, 0)))
             for (realm, ok), fold in folds.items()]
    outcomes = [o for _, o in sorted(rows, key=lambda row: row[0])]
    saved = sum(1 for f, _ in ended if f.token_file) + sum(fold.tokens_saved for fold in folds.values())
    unsaved_reasons = [f.token_write_error for f, _ in ended if f.token_write_error]
    unsaved_count = len(unsaved_reasons) + sum(fold.unsaved for fold in folds.values())
    unsaved_reasons += [fold.unsaved_first for fold in folds.values() if fold.unsaved_first]
    unsaved = (unsaved_count, unsaved_reasons[0]) if unsaved_reasons else None
    if not healthy:
        return outcomes, problems, saved, unsaved, not_done

    def teardown() -> list[str]:
        cpu = machine.cpu(0)
        try:
            cpu.set_recording(False)
            return _teardown(cpu, w, live, results, pools, part, unstarted)
        except Exception as exc:    # the RMM crashed or refused a teardown step: a finding, not a crash
            return [f"teardown stopped: {type(exc).__name__}: {exc}"]
        finally:
            cpu.close()
    ok, found = stop.step(teardown)
    if ok:
        problems += found
    else:
        not_done.append(f"teardown not done: interrupted ({stop.by}); the leak checks after it were not made")
    return outcomes, problems, saved, unsaved, not_done


def _not_run(w: Workload, never_started: tuple[int, ...], realm: int, index: int) -> str:
    """Why an instance of template ``realm`` (``index``: its instance, or the CPU of a private
    ripas-churn realm) never ran, when every CPU that runs its vCPUs is one of ``never_started``
    (killed in its start-up); "" when one of them was started."""
    on = w.runs_on(realm) if 0 <= realm < len(w.realms) else (index,)
    if not never_started or not set(on) <= set(never_started):
        return ""
    if len(never_started) == w.cpus:
        return "the CPUs never started"
    return (f"{words.cpus(on)}, the only one to run its vCPUs, never started" if len(on) == 1
            else f"{words.cpus(on)}, the only ones to run its vCPUs, never started")


def _teardown(cpu: "Cpu", w: Workload, live: list[Instance], results: dict[int, CpuResult],
              pools: tuple[tuple[int, ...], dict[int, tuple[int, ...]]], part: Participant,
              unstarted: tuple[list[int], int] = ([], 0)) -> list[str]:
    """Drain the run queue, destroy every live realm, free what the churn held and what was set
    aside for the CPUs never started (``unstarted``: those granules, and how many CPUs), settle
    the delegate-churn balance; then check for leaks."""
    problems: list[str] = []
    machine = cpu.machine
    queue, alloc = RunQueue(machine), NsAllocator(machine, 0)
    realms.drain(queue, 0)
    for inst in live:
        part.point()
        try:
            realms.destroy(cpu, alloc, queue, inst)
            if inst.realm >= 0 and not w.realms[inst.realm].lifecycle and inst.host.roots_kept:
                # A resident realm's root run (run._prepare); lifecycle ones come back as leftovers.
                alloc.free(inst.host.rtt_base, inst.host.num_roots)
        except (HostError, RunQueueError) as exc:
            problems.append(f"tearing down {inst.name} failed: {exc}")
    for r in results.values():
        for pa in r.leftovers:
            alloc.free(pa)
    spare, never_started = unstarted
    for pa in spare:
        alloc.free(pa)
    shared, private = pools
    if shared:
        mine = tuple(pa for pool in private.values() for pa in pool)
        outs = [ChurnResult(c, *r.delegate) for c, r in results.items() if r.delegate is not None]
        # A CPU never started made no DELEGATE or UNDELEGATE: the counts that came are all there were.
        problems += settle(cpu, shared, mine, outs, complete=len(results) + never_started == w.cpus)
        for pa in shared + mine:
            alloc.free(pa)
    return problems + _leaks(machine, alloc)


def _leaks(machine: Machine, alloc: NsAllocator) -> list[str]:
    """After teardown every granule is NS and the host allocator holds nothing."""
    out = []
    report = invariants(machine)
    if not report.ok:
        out.append(f"after teardown: {report}")
    others = {k: v for k, v in report.state_counts.items() if k != "NS"}
    if others:
        out.append(f"after teardown granules are left in states {others}")
    stats = alloc.statistics()
    if stats.granules_in_use or stats.vmids_in_use:
        out.append(f"after teardown the host allocator still holds {stats.granules_in_use} granules and "
                   f"{stats.vmids_in_use} VMIDs")
    return out


def pa_names(live: list[Instance]) -> tuple[dict[int, str], dict[int, int]]:
    """RD and REC PAs -> realm name for the trace, for the realms alive at the end (resident
    ones for the whole run), and PA -> the time from which that name holds (the end of the
    realm's build). Realms torn down earlier are left out: their granules went back to the
    host and may since have been anything else; and before a live realm was built, its
    granules may have been another realm's (a lifecycle realm's earlier generation)."""
    names: dict[int, str] = {}
    since: dict[int, int] = {}
    for inst in live:
        names[inst.host.rd] = inst.name
        names.update((rec.rec, f"{inst.name} REC {n}") for n, rec in enumerate(inst.host.recs))
        since[inst.host.rd] = inst.built_ns
        since.update((rec.rec, inst.built_ns) for rec in inst.host.recs)
    return names, since
