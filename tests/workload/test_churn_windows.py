"""rtt-churn's 2 MiB windows over many lifecycle generations: a run the memory check accepts
does not run out of 2 MiB aligned runs of NS granules, however the realms' single granules
have spread over DRAM.

Each window is backed by one 2 MiB aligned run (so a full level-3 table can fold). These runs
used to be allocated when a window first filled a page and freed, granule by granule, with the
realm's teardown; after some generations the realms' single granules lay in every 2 MiB of DRAM
and the next window failed with OutOfGranules though a fifth of DRAM was free. The runs are now
allocated before anything else and kept by their CPU for the next window.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_mp.workload import spec
from rmm_mp.workload.resolve import resolve
from rmm_mp.workload.run import RunOptions, run_workload

pytestmark = pytest.mark.multiprocess

FRAGMENTING = """
description = "realms with many RECs rebuilt over and over, rtt-churn in each of them"
platform = "host"
cpus = 1
seed = 3
iterations = 4000
activities = { lifecycle = 2, rtt-churn = 4, run = 1 }

[[realm]]                           # short-lived and made of single granules: 32 RECs, 16 aux each
name = "big"
guest = "hello"
recs = 32
instances = 6
lifecycle = true

[[realm]]                           # lives long enough for its windows to fill
name = "vm"
guest = "ripas-loop"
recs = 16
instances = 9
constants = { RANGE = 0x80004000 }
lifecycle = true
lifetime = 60
"""


def test_windows_survive_fragmentation(tmp_path: Path) -> None:
    """One CPU and counted steps: the same calls every time. Before the fix this run's CPU
    raised OutOfGranules for a window's 2 MiB run with 3,281 granules free."""
    path = tmp_path / "fragmenting.toml"
    path.write_text(FRAGMENTING)
    report = run_workload(resolve(spec.load(str(path))), RunOptions(progress=False))
    assert not report.failures, report.failures
    assert report.ok, report.problems
    counters = report.counters[0]
    assert counters["realms built"] > 20 and counters["pages assigned"] > 0
