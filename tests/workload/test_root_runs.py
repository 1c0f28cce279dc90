"""Root RTT runs: a realm's starting-level tables are up to 16 concatenated granules, one run
aligned to their number (RMI_REALM_CREATE rtt_base, rtt_num_start). A run the memory check
accepts must find such a run for every build, not just enough single granules.

The run allocates one root run per realm instance (and per CPU's ripas-churn realm) before any
realm, largest first, and a lifecycle instance's owner builds every generation on the same run
(run._prepare, cpustate.Host.build). The memory check counts, per run size, the aligned slots
of the platform's NS DRAM (resolve.root_slots). Before, each build allocated its run: on a
platform with a Secure granule in most 64 KiB blocks the check accepted realms whose roots
found no run (OutOfGranules with 479 granules free), and a rebuild on a fragmented allocator
could fail the same way.

Everything here runs in this process: the parent's preparation and CPU 0's plan, no CPU process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cpu0_run import run_cpu0

from rmm_mp import Machine
from rmm_mp.host.nsalloc import NsAllocator, OutOfGranules
from rmm_mp.hw import platform as platforms
from rmm_mp.hw.quiesce import Participant
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.workload import cpustate, run, spec
from rmm_mp.workload import resolve as resolving
from rmm_mp.workload.resolve import Workload, resolve
from rmm_mp.workload.realms import Finished

ROOT = Path(__file__).resolve().parents[2]
DRAM_BASE = 0x8000_0000
BLOCK = 0x10000
"""64 KiB: 16 granules, the largest root run."""
CLEAN_BLOCKS = 2
"""Blocks of the sprinkled platform with no Secure granule: the first two."""


def sprinkled_platform(tmp_path: Path) -> Path:
    """The host platform with 2 MiB of DRAM and a 4 KiB Secure range at the start of every
    64 KiB block but the first two: room for hundreds of granules, for two runs of 16."""
    text = (ROOT / "platform" / "host.toml").read_text()
    text = text.replace('name = "host"', 'name = "sprinkled"').replace('size = "64 MiB"', 'size = "2 MiB"')
    head, tail = text.split("[[secure]]", 1)
    tail = tail[tail.index("[features]"):]
    secure = "".join(f'[[secure]]\nname = "s{k}"\nbase = {DRAM_BASE + k * BLOCK:#x}\nsize = "4 KiB"\n\n'
                     for k in range(CLEAN_BLOCKS, 32))
    path = tmp_path / "sprinkled.toml"
    path.write_text(head + secure + tail)
    return path


def workload(tmp_path: Path, instances: int, ipa_width: int, lifecycle: bool = False) -> Workload:
    sprinkled_platform(tmp_path)
    path = tmp_path / "w.toml"
    path.write_text(f'platform = "sprinkled.toml"\ncpus = 1\niterations = 20\n'
                    f'activities = {{ {"lifecycle" if lifecycle else "run"} = 1 }}\n\n'
                    f'[[realm]]\nname = "vm"\nguest = "hello"\nipa_width = {ipa_width}\ninstances = {instances}\n'
                    f'lifecycle = {"true" if lifecycle else "false"}\n')
    return resolve(spec.load(str(path)))


def test_root_slots_count_aligned_runs_without_secure_granules(tmp_path: Path) -> None:
    """On the sprinkled platform: 2 blocks of 64 KiB without a Secure granule, and 30 with one
    at their start, which leaves in each of these 1 aligned slot of 8 granules, 3 of 4, 7 of
    2 and 15 of 1; the host platform's 1 MiB Secure range takes 16 of its 1,024 blocks."""
    plat = platforms.load(str(sprinkled_platform(tmp_path)))
    assert [resolving.root_slots(plat, s) for s in (16, 8, 4, 2, 1)] == [2, 4 + 30, 8 + 90, 16 + 210, 32 * 16 - 30]
    host = platforms.load("host")
    assert resolving.root_slots(host, 16) == 1024 - 16


def test_root_runs_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    """Three 43-bit realms (16 roots each) fit the sprinkled platform's memory bound, but only
    two aligned runs of 16 exist: refused, naming the instances and the count of runs. Two
    fit, and so do three 40-bit realms (2 roots each). Before, three were accepted."""
    assert workload(tmp_path, CLEAN_BLOCKS, 43).realms[0].instances == CLEAN_BLOCKS
    with pytest.raises(ConfigError) as info:
        workload(tmp_path, CLEAN_BLOCKS + 1, 43)
    message = str(info.value)
    assert "realm[0].instances = 3" in message
    assert "48 granules are in runs of 16 or more, and the platform has 2 runs of 16 aligned to 16" in message
    assert workload(tmp_path, CLEAN_BLOCKS + 1, 40).realms[0].instances == CLEAN_BLOCKS + 1


@pytest.mark.parametrize("lifecycle", [False, True])
def test_accepted_root_runs_are_found(tmp_path: Path, lifecycle: bool) -> None:
    """The two 43-bit realms the check accepts on the sprinkled platform are built: their runs
    are taken before any single granule (an RD took the first clean block before, and the
    second realm's roots found none)."""
    w = workload(tmp_path, CLEAN_BLOCKS, 43, lifecycle)
    with Machine.create(w.platform, 1) as m, Participant(m.control) as part:
        plan, parts, _ = run._prepare(m, w, run.RunOptions(progress=False), part)
        built = plan.resident + parts[0].owned
        assert len(built) == CLEAN_BLOCKS
        assert all(i.host.roots_kept and i.host.rtt_base % BLOCK == 0 for i in built)
        assert len(dict(parts[0].roots)) == (CLEAN_BLOCKS if lifecycle else 0)


def test_rebuild_on_a_fragmented_allocator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One 43-bit lifecycle realm on the host platform, its owner CPU 0 run in this process for
    40 steps; after each teardown the test takes single granules so that no aligned 64 KiB block
    of DRAM is free (as realms' single granules spread over DRAM can leave it: 15 of every 16
    granules stay free). The owner rebuilds on the root run it kept; before, the rebuild raised
    OutOfGranules."""
    path = tmp_path / "w.toml"
    path.write_text('cpus = 1\niterations = 40\nactivities = { lifecycle = 1 }\n\n'
                    '[[realm]]\nname = "vm"\nguest = "hello"\nipa_width = 43\nlifecycle = true\n')
    w = resolve(spec.load(str(path)))
    with Machine.create(w.platform, 1, time_slice=w.time_slice) as m:
        alloc = NsAllocator(m, 0)
        real_reap = cpustate.Host.reap

        def reap_then_fragment(self: cpustate.Host, key: tuple[int, int]) -> Finished:
            done = real_reap(self, key)
            taken = []
            while True:
                try:
                    taken.append(alloc.alloc())
                except OutOfGranules:
                    break
            for pa in taken:
                if pa % BLOCK:
                    alloc.free(pa)
            with pytest.raises(OutOfGranules):
                alloc.alloc(16, 16)
            return done

        monkeypatch.setattr(cpustate.Host, "reap", reap_then_fragment)
        result = run_cpu0(m, w)
    assert result.counters["realms destroyed"] >= 2
    assert result.counters["realms built"] >= 2
