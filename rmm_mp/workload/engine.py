"""The CPU target of a workload run: one CPU process follows its seeded plan, phase by phase.

``cpu_main(cpu, plan, part, *images)`` (run by rmm_mp.runtime.run_cpus in each CPU process) makes
its CpuJob from the common RunPlan, its own CpuPart and the guest images of the lifecycle realms it
owns instances of, waits at a start barrier until every CPU process has started (spawned processes start up to
seconds apart; the phases are timed from the moment all have arrived), then for each phase picks
an activity per step (plan.Chooser), runs one unit of it and counts it, until the stop flag is
set, the phase's time is up (phases are timed from the common start, so CPUs change phase
together) or its step count is done (counted per CPU). It returns a CpuResult. Between steps (and
at the barrier) it is at a quiescent point (hw.quiesce): it parks there while `rmm-mp check`
inspects the machine.

With ``recording`` off the CPU does not record latency (Cpu.set_recording(False)). With it on,
each step is recorded too, in the HOST slot of its activity (HOST_RUN, HOST_RTT_CHURN ...):
time.perf_counter_ns around the step, every SMC, REC run and host-side action in it included
(the recorder's flushes in it left out: they are measuring's work).

This module owns the per-CPU run sequence. It speaks SMC only (through the activities).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable

from rmm_mp.host.churn import SHARED_DELEGATED
from rmm_mp.host.runqueue import OFF_ARRIVED
from rmm_mp.hw.quiesce import Participant
from rmm_mp.workload.activities import Lifecycle, RipasChurn, Run
from rmm_mp.workload.churning import DELEGATE_COUNTERS, DelegateChurn, MapShared, RttChurn
from rmm_mp.workload.cpustate import CpuJob, CpuPart, CpuResult, Host, RunPlan
from rmm_mp.workload.plan import Chooser
from rmm_mp.workload.report import HOST_SLOTS
from rmm_mp.workload.spec import phase_ends

if TYPE_CHECKING:
    from rmm_mp.machine import Cpu

_BARRIER_SLEEP_S = 0.0002

FACTORIES: dict[str, Callable[[Host], object]] = {
    "run": Run,
    "lifecycle": lambda h: Lifecycle(h, attest=False),
    "attest": lambda h: Lifecycle(h, attest=True),
    "rtt-churn": RttChurn,
    "ripas-churn": RipasChurn,
    "map-shared": MapShared,
    "delegate-churn": DelegateChurn,
}


def cpu_main(cpu: "Cpu", plan: RunPlan, own: CpuPart, *images: bytes) -> CpuResult:
    """Run this CPU's part of the workload (a CPU target for rmm_mp.runtime.run_cpus): the plan
    every CPU gets, then this CPU's own args (run._own_args): its part and the guest images of
    the lifecycle realms it rebuilds."""
    control = cpu.machine.control
    with Participant(control) as part:
        part.point()
        return _run(cpu, plan.job(cpu.id, own, images), part)


def _run(cpu: "Cpu", job: CpuJob, part: Participant) -> CpuResult:
    if not job.recording:
        cpu.set_recording(False)
    host = Host(cpu, job)
    names = {name for phase in job.phases for name, _ in phase.weights[cpu.id]}
    units = {name: FACTORIES[name](host).unit for name in sorted(names)}  # type: ignore[attr-defined]
    control = cpu.machine.control
    view = host.queue.view
    view.fetch_add_u64(OFF_ARRIVED, 1)
    while view.load_u64(OFF_ARRIVED) < job.cpus and not control.stop_requested:
        part.point()
        time.sleep(_BARRIER_SLEEP_S)
    started = time.perf_counter_ns()
    cpu_started = time.process_time_ns()
    # Each timed phase ends at the running sum of the lengths, rounded once (spec.phase_ends), so
    # the last ends at the run's length as `workloads show` counts it.
    ends = phase_ends(p.seconds or 0.0 for p in job.phases)     # a counted phase: no end used
    counts = host.counters
    stopped = False
    for i, phase in enumerate(job.phases):
        chooser = Chooser(job.seed, cpu.id, phase.name, phase.weights[cpu.id])
        limit = phase.iterations
        timed = phase.seconds is not None
        deadline = started + ends[i] if timed else started
        done = 0
        while not control.stop_requested:
            part.point()
            if timed:
                if time.perf_counter_ns() >= deadline:
                    break
            elif done >= limit:  # type: ignore[operator]
                break
            name = chooser.next()
            recorder = cpu.recorder
            if recorder is None:
                units[name]()
            else:
                flushed = recorder.flush_ns
                t0 = time.perf_counter_ns()
                units[name]()
                t1 = time.perf_counter_ns()
                # The recorder's flush (about 0.4 ms, every 50 ms, at the end of an RMI call of
                # the step) is measuring's work, not the step's: it is left out.
                # el3 0, not None: a step has no EL3 part (None would have the recorder estimate
                # one from the RMI calls' samples, as for an RMI slot with none sampled).
                recorder.record(HOST_SLOTS[name], t1 - t0 - (recorder.flush_ns - flushed), 0, 0, False)
            counts[f"{name} steps"] += 1
            done += 1
        else:
            stopped = True      # the stop flag, not the phase's limit, ended its steps
        if job.phase_counts:
            counts[f"phase {phase.name} steps"] += done
        if control.stop_requested:
            stopped = stopped or i < len(job.phases) - 1    # phases left undone
            break
    ended = time.perf_counter_ns()
    cpu_ns = time.process_time_ns() - cpu_started
    if host.delegate is not None:
        counts.update(dict(zip(DELEGATE_COUNTERS, host.delegate[SHARED_DELEGATED:], strict=True)))
    if part.parked_s:
        # Time the CPU spent parked while `rmm-mp check` inspected the machine: it is in the
        # run's elapsed time, so the report says how much.
        counts["ms parked for checks"] = math.ceil(part.parked_s * 1000)
    return host.result(started, ended, cpu_ns, stopped)
