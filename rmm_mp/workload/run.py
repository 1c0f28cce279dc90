"""Running a resolved workload on a fresh machine and producing its RunReport.

``run_workload`` is the whole sequence, in the parent process:

1. make the machine (trace rings only with a trace file), allocate the 2 MiB runs of every
   CPU's rtt-churn windows (first, while DRAM is in one piece) and the root run of every realm
   instance and ripas-churn realm (next; a lifecycle instance's owner keeps its run for every
   generation), build every realm instance of
   the file on CPU 0 with latency recording off and its lock counts left unpublished (so the
   build is not in CPU 0's figures, even when CPU 0's process never publishes its own), allocate
   the delegate-churn pools, and make the RunPlan every CPU gets and each CPU's own CpuPart
   (the lifecycle instances it owns);
2. run one CPU process per CPU (engine.cpu_main), with the progress bar; a timed run's CPUs
   stop themselves, and one still running well after the end, or (in any run) not yet at the
   start barrier long after the CPUs were started, is asked to stop (TimeUp), then killed and
   reported once run_cpus's grace time is over;
3. read the figures: latency histograms and lock statistics per CPU, the trace rings (to the
   trace file), each realm instance's outcome;
4. check the quiescent machine (rmm_mp.check.invariants), then tear everything down: drain the
   run queue, destroy every realm still built, free the pages the churn held, settle the
   delegate-churn balance; afterwards every granule must be NS again and the host's allocator
   empty (anything else is a problem in the report);
5. return the RunReport (render.py turns it into text, JSON, CSV, PNG).

When a CPU failed or the RMM crashed, nothing is torn down (a dead CPU may hold granule locks):
the report says what happened (the realms only a CPU that returned no result knew are listed
as not reported), and closing the machine unlinks its shared memory as always.
Ctrl-C stops the CPUs (rmm_mp.runtime) and the run is reported as interrupted. Before the CPUs
start (the build) and after they stop, Ctrl-C (SIGTERM too with sigterm_stops) ends the step
under way and skips the slow ones left (Interrupts); the report says what was not done
(RunReport.not_done). While it builds
and tears down realms the parent is at a quiescent point (hw.quiesce) between two instances, so
`rmm-mp check` can park it as it parks the CPUs.

This module owns the run sequence. It does not render anything; reading the realms' outcomes
at the end, the teardown and its leak checks are in aftermath.py.
"""

from __future__ import annotations

import dataclasses
import os
import platform as host_platform
import time
from dataclasses import dataclass
from typing import Any, Callable

from rmm_mp.check import invariants
from rmm_mp.el3.attest import AttestationKeys
from rmm_mp.host import NsAllocator, RunQueue
from rmm_mp.host.runqueue import OFF_ARRIVED
from rmm_mp.hw import segment
from rmm_mp.hw.quiesce import Participant
from rmm_mp.interrupts import Interrupts
from rmm_mp.machine import Machine
from rmm_mp.cpu_outcome import RunResult
from rmm_mp.printable import shown_line, shown_path
from rmm_mp import words
from rmm_mp.runtime import STARTUP_S, host_cores, oversubscription, run_cpus
from rmm_mp.stats import report as latency
from rmm_mp.stats.progress import Progress
from rmm_mp.stats.trace_export import dropped, write_trace
from rmm_mp.workload import programs, realms
from rmm_mp.workload.aftermath import finish, pa_names
from rmm_mp.workload.cpustate import WINDOW_GRANULES, CpuPart, CpuResult, RunPlan
from rmm_mp.workload.engine import cpu_main
from rmm_mp.workload.lost import unreported, unstarted_share
from rmm_mp.workload.report import RealmOutcome, RunReport, collect_locks
from rmm_mp.workload.resolve import (
    DELEGATE_PRIVATE, DELEGATE_SHARED, RIPAS_CHURN_HASH, RIPAS_CHURN_IPA_WIDTH, Workload, churn_targets, root_count,
)
from rmm_mp.workload.spec import RealmTemplate

TRACE_CAPACITY = 1 << 16
"""Records per CPU trace ring with --trace: the newest 65,536 events of each CPU (2 MiB each)."""


@dataclass(frozen=True)
class RunOptions:
    progress: bool | None = None
    """Progress bar: None = when stderr is a terminal."""
    recording: bool = True
    pin: bool = False
    trace_path: str | None = None
    tokens_dir: str | None = None
    context: str = "spawn"
    console: bool = False
    """Keep the guest output (console tail, last LOG records) of every realm read at the end of
    the run, not only of those that failed (--console)."""
    sigterm_stops: bool = False
    """Take SIGTERM as Ctrl-C from the realms' build to the end of the teardown (run_cpus while
    the CPUs run, Interrupts before and after), so the report is still made: `rmm-mp run` asks
    for it."""


OVERRUN_S = 5.0
"""How long past a timed run's end the parent waits before it asks the CPUs to stop, times
runtime.oversubscription (simulated CPUs per host core, 1 to 6)."""
GRACE_S = 10.0
"""How long CPUs asked to stop (TimeUp, Ctrl-C, a CPU's death) get before they are killed,
times runtime.oversubscription."""


class TimeUp:
    """run_cpus's on_tick verdict: "time is up" once ``startup`` seconds (STARTUP_S) have passed
    with some CPU not at the start barrier yet, for a timed run and a run bounded by steps
    (``seconds`` None) alike; for a timed run also once ``seconds`` and OVERRUN_S have passed
    since the parent saw every CPU at the barrier. None otherwise: a run bounded by steps, once
    every CPU has passed the barrier, waits for its CPUs (its length is not known in advance).

    The CPUs time themselves from the barrier and end between steps, so in a healthy run they
    are all gone by then. One still running is stuck (stopped with SIGSTOP, or spinning on a
    lock that is never released): asked to stop, it gets run_cpus's grace time and is then
    killed and reported, where without the request the run would wait for it for ever. The
    slack covers the last step of a CPU on an oversubscribed host and a CPU that saw the
    barrier later than the parent did (a stop between steps is harmless anyway). A CPU stuck
    before the barrier (stopped while it started up) held the others there, and the run, for
    ever: the CPUs at the barrier leave it when asked to stop, the stuck one is killed. That
    holds for a run of ``--iterations`` too, which used to have no bound at all and hung until
    Ctrl-C."""

    def __init__(self, seconds: float | None, arrived: Callable[[], bool], overrun: float = OVERRUN_S,
                 startup: float = STARTUP_S) -> None:
        self.seconds = seconds
        self.arrived = arrived
        self.overrun = overrun
        self.startup = startup
        self.since: float | None = None
        """The elapsed time at which the parent first saw every CPU arrived."""

    def __call__(self, elapsed: float) -> str | None:
        if self.since is None:
            if self.arrived():
                self.since = elapsed
            elif elapsed >= self.startup:
                return f"time is up (CPUs not all at the start barrier {self.startup:g} s after they were started)"
            return None
        if self.seconds is None:
            return None
        if elapsed - self.since >= self.seconds + self.overrun:
            return f"time is up (CPUs still running {self.overrun:g} s after the run's end)"
        return None


def ripas_template() -> RealmTemplate:
    """The realm every CPU doing ripas-churn builds for itself: ripas-loop, one REC, 2 MiB."""
    return RealmTemplate("", "ripas-churn", "ripas-loop", 1, 2 << 20, RIPAS_CHURN_IPA_WIDTH, RIPAS_CHURN_HASH, b"",
                         True, (), 1, False, None, "v12", programs.image(programs.RIPAS_LOOP, {}))


def run_workload(w: Workload, options: RunOptions = RunOptions(),
                 on_machine: Callable[[Machine], None] | None = None) -> RunReport:
    """Run ``w`` (already resolved and checked) on a new machine; see the module docstring."""
    if options.tokens_dir is not None:
        os.makedirs(options.tokens_dir, exist_ok=True)
    ids = list(range(w.cpus))
    report: RunReport | None = None
    close_failed = False
    try:
        with Machine.create(w.platform, w.cpus, time_slice=w.time_slice,
                            trace_capacity=TRACE_CAPACITY if options.trace_path else 0) as machine:
            if on_machine is not None:
                on_machine(machine)
            with Interrupts(options.sigterm_stops) as stop:
                report = _run(machine, w, options, ids, stop)
                # Closed while the guard still holds: a signal as the segments go is only noted,
                # where after the guard it raised out of here (Ctrl-C) or killed the process
                # (SIGTERM) and the report was lost.
                report, close_failed = closed(report, machine)
    except Exception:
        # The with's own close after a close that failed in closed(): it may fail the same way
        # again, and the report already says so.
        if report is None or not close_failed:
            raise
    return interrupted_after_run(report, stop.by)


def closed(report: RunReport, machine: Machine) -> tuple[RunReport, bool]:
    """``report`` once ``machine`` is closed. A close that raised (its segments' unlink refused,
    a handle that would not close) used to escape from run_workload and the whole report was
    lost with it: the run's figures and checks are complete by then, so the report is kept,
    the segments are unlinked once more (segment.unlink_parts) and the report says what
    happened. A warning when no segment is left (nothing leaked; the result stands); a problem,
    so the run is not OK, when some are, naming them: they hold the platform's DRAM in
    /dev/shm until removed. The machine is closed all the same (Machine.close finishes a close
    whose unlink failed), so the exit hook does not try it again; the reaper, which still has
    the paths, does as the process ends."""
    try:
        machine.close()
        return report, False
    except Exception as exc:    # anything: the report must come out all the same
        failure = f"{type(exc).__name__}: {exc}"
    try:
        segment.unlink_parts(machine.name)
    except OSError:
        pass    # what is still there is listed below
    left = [path for path in (segment.segment_path(machine.name, part) for part in segment.PARTS)
            if os.path.lexists(path)]
    if not left:
        return dataclasses.replace(report, close_warnings=(
            f"closing the machine after the run failed ({failure}); its shared memory was removed all the same, "
            f"and every figure and check above was made before",)), True
    return dataclasses.replace(report, problems=report.problems + (
        f"closing the machine after the run failed ({failure}) and {words.count(len(left), 'shared memory file')} "
        f"of it {'is' if len(left) == 1 else 'are'} left: {', '.join(map(shown_path, left))}; this process's "
        f"reaper tries {'it' if len(left) == 1 else 'them'} again as the process ends, and `rmm-mp clean` removes "
        f"what it could not",)), True


def interrupted_after_run(report: RunReport, by: str) -> RunReport:
    """``report`` marked interrupted after the run when a signal ``by`` came too late for _run
    to see it (as the machine closed)."""
    if not by or report.interrupted:
        return report
    return dataclasses.replace(report, interrupted=True,
                               host={**report.host, "stopped_by": f"interrupted after the run ({by})"})


def _run(machine: Machine, w: Workload, options: RunOptions, ids: list[int], stop: Interrupts) -> RunReport:
    # The parent builds and tears down realms on CPU 0: a participant in pauses while it does.
    def prepare() -> tuple[RunPlan, tuple[CpuPart, ...], tuple[tuple[int, ...], dict[int, tuple[int, ...]]]]:
        with Participant(machine.control) as part:
            return _prepare(machine, w, options, part)
    def not_started(when: str) -> RunReport:
        # The trace is written here, not by the command with the other files: named as not
        # written, as after a signal later on, rather than left out without a word.
        skipped = [f"could not write the trace to {options.trace_path}: interrupted ({stop.by})"] \
            if options.trace_path else []
        report = _report(machine, w, options, RunResult({}, (), True, 0.0, f"interrupted before the run ({stop.by})"),
                         {}, {}, {},
                         (), [], None, skipped, [f"the CPUs were not started: interrupted ({stop.by}) {when}",
                                                 *(shown_line(note) for note in stop.notes),
                                                 f"invariants not checked: interrupted ({stop.by})",
                                                 f"teardown not done: interrupted ({stop.by})"], 0)
        return dataclasses.replace(report, not_started=tuple(ids))
    built, prepared = stop.step(prepare)
    not_done: list[str] = []
    if not built:
        return not_started("while the realms were built")
    plan, parts, pools = prepared
    resident = plan.resident
    machine.control.view.store_u64(OFF_ARRIVED, 0)
    arrived = machine.control.view.load_u64
    bar = Progress(machine, ids, w.seconds, enabled=options.progress,
                   started=lambda: arrived(OFF_ARRIVED) >= len(ids), counted=options.recording,
                   ready=lambda: arrived(OFF_ARRIVED))
    slack = oversubscription(len(ids))
    time_up = TimeUp(w.seconds, lambda: arrived(OFF_ARRIVED) >= len(ids), OVERRUN_S * slack, STARTUP_S * slack)
    t0 = time.perf_counter_ns()

    def tick(elapsed: float) -> str | None:
        bar.tick(elapsed)
        return time_up(elapsed)

    started = False
    load: dict[str, list[float]] = {}

    def run() -> RunResult:
        nonlocal started
        started = True
        try:
            _note_load(load, LOAD_KEYS[0])
            done = run_cpus(machine, cpu_main, ids, args=(plan,), own_args=_own_args(w, parts),
                            context=options.context, on_tick=tick, grace_s=GRACE_S * slack, pin=options.pin,
                            tracing=options.trace_path is not None, sigterm_stops=options.sigterm_stops,
                            on_end=stop.run_over)
            stop.passing = False    # from here on a signal is the work after the run's
            return done
        finally:
            stop.passing = False
            _note_load(load, LOAD_KEYS[1])
            bar.close()
    ran, result = stop.passthrough(run)
    if not started:     # a signal noted after the build, before the CPUs' run: as one during it
        bar.close()
        return not_started("after the realms were built")
    if not ran:
        # The signal escaped run_cpus before it held Ctrl-C and SIGTERM (from then on it takes
        # them itself and returns its result, the run's end included), or it came while the CPU
        # processes were started and was raised once they were killed: either way no CPU had its
        # go, so none ran: reported as CPUs not started, not as CPUs that returned no result
        # (which made a realm of theirs FAILED). A signal in _note_load, before run_cpus, is
        # told the same way, though no process was being started yet.
        return not_started("as their processes were being started")
    results: dict[int, CpuResult] = dict(result.results)
    if result.stopped_by == f"interrupted ({result.interrupted_by})" and not result.failures \
            and len(results) == len(ids) and not any(r.stopped for r in results.values()):
        # The signal came while a CPU process was still live, but every CPU had reached the end
        # of its plan (its time or steps; it was sending its result or exiting): the run was not
        # cut short, and "stopped before its end" beside a complete run's figures misled.
        result = dataclasses.replace(result, stopped_by=f"interrupted after the run ({result.interrupted_by})")
    # After the run, each step reads or checks the stopped machine; an interruption skips the rest.
    # The figures are read of the CPUs that were started only: a CPU never started has none, and
    # an empty row of its own read as a CPU that ran and made no call.
    unstarted = result.not_started
    started_ids = [cpu for cpu in ids if cpu not in unstarted]
    ok, stats = stop.step(lambda: latency.collect(machine, started_ids), read=True)
    if not ok:
        stats = {}
        not_done.append(f"latency figures not read: interrupted ({stop.by})")
    ok, locks = stop.step(lambda: collect_locks(machine, started_ids), read=True)
    if not ok:
        locks = {}
        not_done.append(f"lock figures not read: interrupted ({stop.by})")
    outputs: dict[str, str] = {}
    # CPUs a Ctrl-C or SIGTERM killed in their start-up did nothing: their lifecycle instances
    # are still the parent's generation #0, torn down with the others, and what was set aside
    # for them is freed after the teardown. They are neither CPUs that reported nor lost ones.
    if unstarted:
        not_done.append(words.never_started(unstarted, result.interrupted_by))
    unstarted_owned, unstarted_pages = unstarted_share(w, parts, unstarted)
    live = list(resident) + [i for r in results.values() for i in r.live] + unstarted_owned
    finished = [f for r in results.values() for f in r.finished]
    output_errors: list[str] = []
    trace_dropped: dict[int, int] = {}
    trace_left_out: dict[int, int] = {}
    if options.trace_path:
        names, named_from = pa_names(live)
        trace_path = options.trace_path

        def trace() -> str:
            try:
                # A CPU that returned no result may have been killed as it wrote a record.
                written = write_trace(machine, ids, trace_path,
                                      min((r.started_ns for r in results.values()), default=t0), names, named_from,
                                      killed=[cpu for cpu in ids if cpu not in results])
                trace_left_out.update(written.left_out)
                return ""
            except OSError as exc:  # checked before the run; a disk can still fill up meanwhile
                return exc.strerror or str(exc)
        ok, trouble = stop.step(trace)
        if ok and not trouble:
            outputs["trace"] = trace_path
            trace_dropped = {cpu: n for cpu in ids if (n := dropped(machine, cpu))}
        else:
            output_errors.append(f"could not write the trace to {shown_path(trace_path)}: "
                                 + (trouble or f"interrupted ({stop.by})"))
    errors = realms.Errors()
    for r in results.values():
        for slot, gen, message in r.errors:
            errors.add(slot, gen, message)
    healthy = not result.failures and not machine.dead
    checked = None
    if healthy:
        ok, checked = stop.step(lambda: invariants(machine))
        if not ok:
            not_done.append(f"invariants not checked: interrupted ({stop.by})")
    problems: list[str] = []
    if machine.dead:
        problems.append(f"the RMM crashed: {machine.dead_reason}")
    with Participant(machine.control) as part:
        outcomes, teardown_problems, tokens_saved, unsaved, undone = finish(
            machine, w, plan, live, finished, errors, results, pools, healthy, part, stop, options.console,
            (unstarted_pages, len(unstarted)), unstarted)
    not_done += undone
    lost_outcomes, lost_tokens, lost_unsaved = unreported(machine, w, parts,
                                                           [cpu for cpu in ids if cpu not in results
                                                            and cpu not in unstarted])
    outcomes += lost_outcomes
    tokens_saved += lost_tokens     # files in --save-tokens' directory all the same
    if lost_unsaved:
        # Why they were not written was in the results that never came: only how many is known.
        count, cpus = sum(lost_unsaved.values()), sorted(lost_unsaved)
        why = (f"why is not known: CPU{'s' if len(cpus) > 1 else ''} {', '.join(map(str, cpus))} "
               f"returned no result")
        unsaved = (unsaved[0] + count, unsaved[1]) if unsaved else (count, why)
    if options.tokens_dir is not None and (tokens_saved or not unsaved):
        outputs["tokens"] = options.tokens_dir
    if unsaved:                                  # only ever with a tokens_dir to save them in
        output_errors.append(f"could not save {unsaved[0]} of {unsaved[0] + tokens_saved} tokens to "
                             f"{shown_path(options.tokens_dir or '')} (the first: {unsaved[1]})")
    problems += teardown_problems
    if healthy and ran and len(results) + len(unstarted) < len(ids):
        problems.append(f"only {len(results)} of {len(ids) - len(unstarted)} CPUs reported back"
                        + (f" ({len(unstarted)} more never started)" if unstarted else ""))
    if stop.by and not result.interrupted:
        result = dataclasses.replace(result, interrupted=True, stopped_by=f"interrupted after the run ({stop.by})")
    report = _report(machine, w, options, result, stats, locks, outputs, tuple(outcomes), problems, checked,
                     output_errors, not_done, tokens_saved, load)
    if trace_dropped:
        report = dataclasses.replace(report, trace_dropped=trace_dropped, trace_capacity=machine.trace_capacity)
    if trace_left_out:
        report = dataclasses.replace(report, trace_left_out=trace_left_out)
    return report


def _report(machine: Machine, w: Workload, options: RunOptions, result: RunResult,
            stats: dict[int, Any], locks: dict[int, Any], outputs: dict[str, str], outcomes: tuple[RealmOutcome, ...],
            problems: list[str], checked: Any, output_errors: list[str], not_done: list[str],
            tokens_saved: int, load: dict[str, list[float]] | None = None) -> RunReport:
    results: dict[int, CpuResult] = dict(result.results)
    elapsed = _window(results) or result.elapsed_s
    return RunReport(
        workload=w.name, source=w.file.source, platform=w.platform.name, cpus=w.cpus, seed=w.seed,
        seconds=w.seconds, iterations=w.iterations, elapsed_s=elapsed, latency_recorded=options.recording,
        stats=stats, locks=locks, usage=dict(result.usage), host_cores=len(host_cores()), pinned=options.pin,
        counters={cpu: dict(sorted(results[cpu].counters.items())) for cpu in sorted(results)},
        realms=outcomes, failures=result.failures, problems=tuple(problems), invariants=checked,
        interrupted=result.interrupted, outputs=outputs,
        host={**_host_facts(machine, w, result.stopped_by), **(load or {})},
        window_cpu_s={cpu: results[cpu].cpu_ns / 1e9 for cpu in sorted(results)}, tokens_saved=tokens_saved,
        output_errors=output_errors, not_done=tuple(not_done), cpu_warnings=dict(result.warnings),
        not_started=tuple(result.not_started))


def _prepare(machine: Machine, w: Workload, options: RunOptions, part: Participant
             ) -> tuple[RunPlan, tuple[CpuPart, ...], tuple[tuple[int, ...], dict[int, tuple[int, ...]]]]:
    """Allocate the rtt-churn windows' runs, build every instance and the delegate-churn pools
    on CPU 0 (recording off, lock counts not published); the plan."""
    cpu = machine.cpu(0)
    try:
        cpu.set_recording(False)
        alloc, queue = NsAllocator(machine, 0), RunQueue(machine)
        # First, while DRAM is in one piece: the 2 MiB aligned runs of rtt-churn's windows, one
        # per realm a CPU may churn, which it keeps for the run. Allocated when a window first
        # needed one, they failed once the realms' single granules had spread over every 2 MiB.
        backings = {c: tuple(alloc.alloc(WINDOW_GRANULES, WINDOW_GRANULES) for _ in range(churn_targets(w, c)))
                    for c in range(w.cpus) if w.uses("rtt-churn", c)}
        # Next, still from DRAM in one piece: the root run of every realm instance and of each
        # CPU's ripas-churn realm; a lifecycle instance's owner keeps its run for every
        # generation. Taken when needed, a run of up to 16 granules aligned to 16 could be
        # missing though the memory check counts each realm's roots: once single
        # granules lay in every 64 KiB of DRAM, or on a platform with a Secure granule in each.
        # Largest first, so the runs pack without gaps (resolve.root_slots).
        keys = [((r, i), t) for r, t in enumerate(w.realms) for i in range(t.instances)]
        keys += [((-1, c), ripas_template()) for c in range(w.cpus) if w.uses("ripas-churn", c)]
        roots: dict[tuple[int, int], int] = {}
        for key, t in sorted(keys, key=lambda kt: -root_count(kt[1])):
            roots[key] = alloc.alloc(root_count(t), root_count(t))
        built = []
        for r, t in enumerate(w.realms):
            for index in range(t.instances):
                part.point()
                built.append(realms.build(cpu, alloc, queue, t, r, index, 0, w.seed, rtt_base=roots.get((r, index)),
                                          run_queue=w.queue_of(r)))
        shared: tuple[int, ...] = ()
        private: dict[int, tuple[int, ...]] = {}
        if w.uses("delegate-churn"):
            shared = tuple(alloc.alloc() for _ in range(DELEGATE_SHARED))
            private = {c: tuple(alloc.alloc() for _ in range(DELEGATE_PRIVATE))
                       for c in range(w.cpus) if w.uses("delegate-churn", c)}
    finally:
        # Closing a handle publishes its lock counts to its CPU's area (Cpu.flush_statistics):
        # the build's would stand there as CPU 0's own until CPU 0's process first publishes,
        # and for ever when it never does (killed in its start-up, or dying before it binds).
        # Some 200 acquisitions of the quickstart's build showed so in the lock table of a run
        # whose CPUs were never started. Zero counts are published instead.
        cpu.monitor.lock_stats.reset()
        cpu.close()
    platform_key = AttestationKeys(w.platform).platform_public_key_pem() if any(t.attest for t in w.realms) else None
    ripas = ripas_template() if w.uses("ripas-churn") else None
    resident = tuple(i for i in built if not w.realms[i.realm].lifecycle)
    # The plan is pickled to every CPU process, which unpickles a copy of it: no image (up to
    # 1 GiB each) goes in it. Sent, one cost each CPU process twice its size (a 144 MiB guest
    # made every CPU 310 MiB), and a workload the memory check accepts (4 GiB of images on
    # 'large', 64 CPUs) could not start. The parent has built every resident instance, and no
    # CPU reads its image; a lifecycle realm's image goes only to the CPUs owning one of its
    # instances (CpuPart.images, _own_args), which rebuild it; an attest realm's to none, as
    # realms.build assembles each generation's image anew with its challenge.
    templates = tuple(dataclasses.replace(t, image=b"") for t in w.realms)
    plan = RunPlan(w.seed, w.cpus, w.phases, templates, resident, shared, ripas, options.recording, options.tokens_dir,
                   platform_key, phase_counts=bool(w.file.phases), queues=w.queues)
    parts = tuple(CpuPart(tuple(i for i in built if w.owner(i.realm, i.index) == c), private.get(c, ()),
                          backings.get(c, ()),
                          tuple((k, pa) for k, pa in roots.items()
                                if (w.owner(*k) if k[0] >= 0 else k[1]) == c), w.served_by(c),
                          tuple(r for r, t in enumerate(w.realms) if t.lifecycle and not t.attest
                                and any(w.owner(r, i) == c for i in range(t.instances))))
                  for c in range(w.cpus))
    return plan, parts, (shared, private)


def _own_args(w: Workload, parts: tuple[CpuPart, ...]) -> dict[int, tuple[Any, ...]]:
    """Each CPU's own args after the plan (run_cpus' own_args, engine.cpu_main): its CpuPart
    and the guest images of the realms it names (CpuPart.images), each the parent's own bytes
    object, which run_cpus sends as it is (not pickled, nor copied per owner)."""
    return {c: (part, *(w.realms[r].image for r in part.images)) for c, part in enumerate(parts)}


def _window(results: dict[int, CpuResult]) -> float:
    """Seconds from the first CPU's start to the last CPU's end (the spawn time excluded)."""
    if not results:
        return 0.0
    return (max(r.ended_ns for r in results.values()) - min(r.started_ns for r in results.values())) / 1e9


LOAD_KEYS = ("load_start", "load_end")
"""The host facts _note_load adds, before and after the CPUs' run."""


def _note_load(load: dict[str, list[float]], key: str) -> None:
    """The host's 1, 5 and 15-minute load averages now, as ``load[key]`` (nothing where the OS
    cannot tell): with the host's cores in the report, what tells a run that shared its cores
    with other work (docs/latency.md)."""
    try:
        load[key] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass


def _host_facts(machine: Machine, w: Workload, stopped_by: str) -> dict[str, Any]:
    return {"machine": host_platform.machine(), "python": host_platform.python_version(),
            "host_cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "time_slice": machine.control.time_slice, "phases": ", ".join(p.name for p in w.phases),
            "overrides": " ".join(w.overrides), "stopped_by": stopped_by}
