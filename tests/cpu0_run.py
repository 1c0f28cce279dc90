"""Running a resolved workload's CPU 0 in the test's own process: the parent's preparation
(run._prepare, as `rmm-mp run` does it) and then CPU 0's engine loop, on a machine the caller
made. For tests that watch or patch what happens inside a CPU (allocator peaks, fragmentation,
flush timing), which a spawned CPU process would hide."""

from __future__ import annotations

from typing import Any, Callable

from rmm_mp import Machine
from rmm_mp.hw.quiesce import Participant
from rmm_mp.workload import engine, run
from rmm_mp.workload.resolve import Workload


def run_cpu0(m: Machine, w: Workload, after: Callable[[Any], None] | None = None) -> Any:
    """Prepare ``w`` on ``m``, run CPU 0's part of it here and return its CpuResult; ``after``
    gets the CPU handle before it is closed (to flush or read its statistics)."""
    with Participant(m.control) as part:
        plan, parts, _ = run._prepare(m, w, run.RunOptions(progress=False), part)
    cpu = m.cpu(0)
    try:
        result = engine.cpu_main(cpu, plan, *run._own_args(w, parts)[0])
        if after is not None:
            after(cpu)
        return result
    finally:
        cpu.close()
