"""Lock-correctness stress testing (`rmm-mp stress`): workloads racing on shared realms, the
checkers that watch them, deterministic schedules that replay, and a catalog of injected bugs.

    run(StressConfig(...)) -> StressReport     one stress run (stress.runner)
    StressConfig, StressReport, Finding        options, result, one problem
    BUGS                                       the bug-injection catalog (stress.bugs)
    WORKLOADS                                  the bundled workloads (stress.ops)

docs/stress.md explains the checkers, reports, replay and shrinking.
"""

from rmm_mp.stress.bugs import BUGS
from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.findings import Finding
from rmm_mp.stress.ops import WORKLOADS
from rmm_mp.stress.report import StressReport
from rmm_mp.stress.runner import run

__all__ = ["run", "StressConfig", "StressReport", "Finding", "BUGS", "WORKLOADS"]
