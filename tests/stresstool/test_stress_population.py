"""The stress population scales with the CPUs (stress.population.guest_names): two guest realms
per CPU beyond 4 (up to 48), so a `running` run on more CPUs than 4 finds vCPUs to enter rather
than an empty run queue; runs on up to 4 CPUs, workloads that run no guest, and the replay of a schedule
file written before the change (version 1: population 1) keep the four guests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rmm_mp.stress import StressConfig, run
from rmm_mp.stress import schedule as schedule_file
from rmm_mp.stress.ops import WORKLOADS
from rmm_mp.host.runqueue import MAX_REALMS
from rmm_mp.stress.population import FIRST_GUESTS, GUESTS_PER_CPU, MAX_GUESTS, POPULATION, guest_names

RUNNING = tuple(WORKLOADS["running"])


@pytest.mark.parametrize("cpus", [2, 3, 4])
def test_up_to_four_cpus_keep_the_four_guests(cpus: int) -> None:
    """2 to 4 CPUs, every workload: the four guests of before, in their order (so the figures
    docs/stress.md gives for those runs, and their schedule files, hold)."""
    for workload, weights in WORKLOADS.items():
        assert guest_names(cpus, tuple(weights)) == FIRST_GUESTS, workload


@pytest.mark.parametrize("cpus", [5, 6, 8, 16, MAX_GUESTS // GUESTS_PER_CPU])
def test_guests_per_cpu_beyond_four(cpus: int) -> None:
    """5 to MAX_GUESTS / GUESTS_PER_CPU CPUs, `running`, `realms` and `mixed`: GUESTS_PER_CPU
    guests per CPU, the four kinds in turn from the first, so that CPU i (which owns guest i mod
    CPUs) owns that many and its `guest-tables` has realms to work on, and the vCPUs (smp-boot
    has 3) number at least 3 per CPU."""
    for workload in ("running", "realms", "mixed"):
        names = guest_names(cpus, tuple(WORKLOADS[workload]))
        assert len(names) == GUESTS_PER_CPU * cpus, workload
        assert names[:4] == FIRST_GUESTS and all(names[i] == FIRST_GUESTS[i % 4] for i in range(len(names)))
        owned = [sum(1 for i in range(len(names)) if i % cpus == cpu) for cpu in range(cpus)]
        assert owned == [GUESTS_PER_CPU] * cpus
        assert sum(3 if n == "smp-boot" else 1 for n in names) >= 3 * cpus


def test_guests_stop_at_the_cap() -> None:
    """More CPUs than MAX_GUESTS / GUESTS_PER_CPU (up to the 64 a run may have): MAX_GUESTS
    guests, no more (the host run queue has room for 54 realms); every CPU up to MAX_GUESTS
    still owns one."""
    assert len(guest_names(MAX_GUESTS // GUESTS_PER_CPU + 1, RUNNING)) == MAX_GUESTS
    assert len(guest_names(MAX_GUESTS, RUNNING)) == MAX_GUESTS
    assert len(guest_names(64, RUNNING)) == MAX_GUESTS
    assert MAX_GUESTS <= MAX_REALMS


@pytest.mark.parametrize("workload", ["tables", "rtts", "lifecycle"])
def test_workloads_without_guests_keep_the_four(workload: str) -> None:
    """A workload that neither enters vCPUs nor works on guest tables, on 16 CPUs: the four
    guests (more would only lengthen its start-up)."""
    assert guest_names(16, tuple(WORKLOADS[workload])) == FIRST_GUESTS


def test_population_one_keeps_the_four() -> None:
    """Population 1 (the replay of a version-1 schedule file) on 8 CPUs: the four guests that
    version built at any CPU count; an unknown population is refused, naming it."""
    assert guest_names(8, RUNNING, 1) == FIRST_GUESTS
    assert len(guest_names(8, RUNNING, POPULATION)) == 16
    with pytest.raises(ValueError, match="population = 3: expected one of 1, 2"):
        guest_names(8, RUNNING, 3)
    with pytest.raises(ValueError, match="population = 0: expected one of 1, 2"):
        StressConfig(population=0)


OLD_RECORDING: dict[str, Any] = {
    "format": "rmm-mp-schedule", "version": 1,
    "config": {"workload": "running", "cpus": 6, "seed": 4, "steps": 150, "pct_depth": 3, "time_slice": 400,
               "quiescent_every": 0, "guests": True, "strategy": "random", "inject": [],
               "checkers": ["lockdep", "ownership", "invariants", "watchdog"]},
    "switches": [
    [0, 5], [1, 4], [2, 3], [3, 2], [4, 3], [6, 4], [7, 2], [8, 4], [9, 1], [10, 2], [11, 5], [12, 3], [14,
    2], [15, 5], [16, 0], [18, 2], [20, 1], [21, 4], [22, 5], [24, 0], [29, 2], [30, 0], [31, 1], [32, 2],
    [33, 4], [34, 2], [35, 3], [36, 0], [38, 3], [39, 2], [42, 5], [43, 3], [46, 2], [47, 3], [48, 2], [49,
    5], [50, 1], [51, 3], [53, 4], [54, 0], [56, 5], [57, 1], [58, 0], [59, 4], [60, 0], [61, 2], [62, 1],
    [63, 3], [64, 0], [65, 2], [66, 3], [67, 2], [68, 1], [69, 2], [71, 0], [72, 3], [73, 4], [74, 1], [76,
    0], [77, 1], [78, 2], [79, 0], [80, 1], [81, 3], [82, 2], [83, 1], [85, 0], [86, 2], [88, 4], [89, 3],
    [90, 5], [91, 2], [92, 5], [93, 2], [94, 4], [95, 2], [98, 1], [99, 0], [101, 1], [102, 4], [103, 3],
    [104, 5], [105, 0], [106, 2], [107, 5], [108, 0], [109, 4], [110, 2], [111, 1], [112, 3], [113, 1],
    [114, 3], [115, 0], [116, 5], [117, 4], [118, 2], [119, 5], [120, 0], [121, 2], [122, 1], [124, 0],
    [125, 4], [126, 5], [127, 3], [128, 0], [129, 2], [130, 1], [131, 2], [132, 3], [133, 2], [134, 3],
    [136, 5], [138, 0], [139, 2], [140, 1], [141, 3], [143, 4], [146, 3], [147, 1], [148, 4], [149, 2],
    [150, 5], [151, 1], [154, 2], [155, 5], [156, 1], [157, 5], [158, 0], [159, 1], [160, 0], [161, 4],
    [162, 3], [163, 4], [165, 3], [166, 0], [167, 5], [168, 1], [169, 2], [170, 5], [171, 1], [173, 4],
    [174, 2], [175, 4], [176, 2], [177, 4], [178, 0], [179, 4], [181, 0], [182, 2], [183, 4], [184, 0],
    [185, 5], [186, 0], [189, 5], [191, 2], [193, 4], [195, 5], [196, 2], [197, 5], [198, 0], [199, 2],
    [200, 0], [201, 4], [202, 0], [203, 5], [204, 0], [205, 2], [206, 0], [208, 5], [210, 2], [212, 0],
    [213, 5], [214, 0], [215, 2], [217, 5], [218, 0], [222, 4], [223, 5], [224, 4], [226, 5], [227, 4],
    [228, 5], [229, 0], [230, 4], [231, 0], [232, 4], [233, 5], [234, 4], [235, 5], [237, 4], [238, 0],
    [239, 4], [240, 0], [243, 4], [244, 5], [247, 4]],
    "result": {"steps": 255, "preemptions": 189, "findings": []},
}
"""What `rmm-mp stress running --cpus 6 --seed 4 --schedule random --steps 150` saved before the
population scaled (schedule file version 1, four guests on 6 CPUs)."""


def test_schedule_file_records_the_population() -> None:
    """A version-1 file (no `population` key) loads as population 1; a version-2 file must name
    its population (a missing key, or one the tool does not know, is refused naming
    config.population and what was expected), and loads as the one it names."""
    assert schedule_file.parse(OLD_RECORDING, "old.json").config.population == 1
    new = copy.deepcopy(OLD_RECORDING)
    new["version"] = 2
    with pytest.raises(ValueError, match=r"new.json: config.population = \(missing\): expected a value"):
        schedule_file.parse(new, "new.json")
    new["config"]["population"] = 2
    assert schedule_file.parse(new, "new.json").config.population == 2
    new["config"]["population"] = 3
    with pytest.raises(ValueError, match=r"new.json: config.population = 3: expected the stress population"):
        schedule_file.parse(new, "new.json")
    v1_extra = copy.deepcopy(OLD_RECORDING)
    v1_extra["config"]["population"] = 2
    with pytest.raises(ValueError, match="population"):
        schedule_file.parse(v1_extra, "old.json")


@pytest.mark.multiprocess
def test_old_recording_replays_as_it_ran() -> None:
    """The replay of OLD_RECORDING, saved by the version that built four guests on 6 CPUs, takes
    the recorded steps and preemptions: it builds that population again. Built with more guests
    (one per CPU, in a first draft of the change) it took 275 steps and 193 preemptions instead
    of 255 and 189. Saved again, the file
    is of version 3 (2 before it recorded its segment directory) and names population 1."""
    report = run(schedule_file.replay_config(OLD_RECORDING, seconds=120))
    assert report.ok, report.text()
    assert (report.steps, report.preemptions) == (255, 189)
    assert report.counts.get("guest-tables-idle", 0) > 0        # CPUs 4 and 5 own no guest
    again = schedule_file.to_json(report)
    assert again["version"] == 3 and again["config"]["population"] == 1


@pytest.mark.multiprocess
def test_six_cpus_find_vcpus_to_run() -> None:
    """`running` on 6 CPUs, deterministic (random, seed 3, 3000 steps): under a tenth of the
    operations are idle (an empty run queue, or a `guest-tables` with no guest of its own), and
    no CPU's `guest-tables` is idle. With the four guests of before, 126 of 203 were."""
    report = run(StressConfig(workload="running", cpus=6, seed=3, schedule="random", steps=3000, seconds=120))
    assert report.ok, report.text()
    c = report.counts
    operations = sum(report.ops.values())
    idle = c.get("vcpu-idle", 0) - c.get("relaunch", 0) + c.get("guest-tables-idle", 0)
    assert operations > 0 and idle / operations < 0.1, (idle, operations, c)
    assert c.get("guest-tables-idle", 0) == 0 and c.get("rec-enter", 0) > 0


@pytest.mark.parametrize("version", [4, 0, True, "2"])
def test_an_unknown_version_is_refused_naming_it(version: object) -> None:
    """A schedule file of the right format but a version this rmm-mp does not read (4, as a
    newer rmm-mp might write; 0; true, which equals 1 in Python; the string "2"): refused with
    the file's name, the key, the value as the file spells it and the versions read. It said
    only "not an rmm-mp-schedule file of version 1 or 2", which named no value and called a
    newer file no schedule file at all."""
    new = copy.deepcopy(OLD_RECORDING)
    new["version"] = version
    shown = {True: "true", "2": "'2'"}.get(version, str(version))     # type: ignore[call-overload]
    with pytest.raises(ValueError, match=rf"^s.json: version = {shown}: expected 1, 2 or 3, the versions of the "
                                         r"rmm-mp-schedule format this rmm-mp reads \(a later one is a newer "
                                         r"rmm-mp's file\)$"):
        schedule_file.parse(new, "s.json")
    with pytest.raises(ValueError, match=r"^s.json: not an rmm-mp-schedule file$"):
        schedule_file.parse({"format": "other", "version": 1}, "s.json")


def test_the_json_report_names_the_population() -> None:
    """The --json report says which population ran: 2 for a run of today's tool, 1 for a replay
    of a schedule file saved before population 2 (its config says so), where nothing in the
    report told the two apart."""
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.report import StressReport
    assert StressReport(StressConfig(), (), "time", 1.0, {0: 1}).to_json()["population"] == 2
    old = StressConfig(schedule="random", steps=50, population=1)
    assert StressReport(old, (), "budget", 1.0, {0: 1}).to_json()["population"] == 1


def test_guest_specs_assemble_the_guests_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU relaunching a finished guest asks population.guest_specs for its spec: three calls
    (the population's build and two relaunches) assemble each guest program at most once in the
    process, not all four at every call (each relaunch read and assembled all four, 9 to 14 ms
    of CPU time, for the one spec it used), and hand back the same image; the mapping is
    read-only, so no caller can change the specs the others get."""
    from rmm_mp.stress import population

    loads: list[str] = []
    real = population.load_guest

    def counting(name: str, **constants: int) -> bytes:
        loads.append(name)
        return real(name, **constants)

    monkeypatch.setattr(population, "load_guest", counting)
    first = population.guest_specs()
    assert population.guest_specs()["attest"] is first["attest"]
    assert population.guest_specs()["smp-boot"].image == first["smp-boot"].image
    assert len(loads) <= len(FIRST_GUESTS) and len(set(loads)) == len(loads)
    with pytest.raises(TypeError):
        first["attest"] = first["measure"]  # type: ignore[index]
