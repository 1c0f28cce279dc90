"""A stress run stopped through the machine's stop flag by something other than the run itself
(its caller's on_tick, another process attached to the machine): the report's ``ended``."""

from __future__ import annotations

from typing import Any

from rmm_mp.stress import StressConfig, run
from rmm_mp.stress import schedule as schedule_file
from rmm_mp.stress.findings import Finding


def _stopper(machines: list[Any], when: Any) -> Any:
    def tick(elapsed: float, seg: Any) -> None:
        if when(elapsed, seg) and not machines[0].control.stop_requested:
            machines[0].control.request_stop()
    return tick


def test_a_deterministic_run_stopped_by_the_flag_ends_stopped() -> None:
    """Stopped 200 steps in, far from its budget and its --seconds: "stopped", not "budget" (the
    CPUs stop between operations as at a spent budget, and the run said it had spent it)."""
    machines: list[Any] = []
    cfg = StressConfig(workload="tables", seed=4, schedule="random", steps=100_000_000, seconds=600, checkers=())
    report = run(cfg, on_tick=_stopper(machines, lambda _, seg: seg.step >= 200), on_machine=machines.append)
    assert report.ended == "stopped" and not report.interrupted, report.text()
    assert report.stopped_at is not None and report.steps < cfg.steps, report.text()
    assert "ended: stopped" in report.summary()
    assert report.to_json()["ended"] == "stopped"


def test_a_free_running_run_stopped_by_the_flag_ends_stopped() -> None:
    """Stopped once every CPU is at work, long before its --seconds: "stopped", not "time"."""
    machines: list[Any] = []
    cfg = StressConfig(workload="tables", seed=1, cpus=2, seconds=600, checkers=())
    report = run(cfg, on_tick=_stopper(machines, lambda _, seg: seg.ops(0) + seg.ops(1) >= 20),
                 on_machine=machines.append)
    assert report.ended == "stopped" and not report.interrupted, report.text()
    assert report.elapsed_s < 60, report.text()


def test_a_run_that_reaches_its_budget_still_ends_budget() -> None:
    """Nothing raised the flag: the run reached its budget, and says so."""
    cfg = StressConfig(workload="tables", seed=4, schedule="random", steps=300, seconds=600, checkers=())
    report = run(cfg)
    assert report.ended == "budget", report.text()


def test_a_replay_stopped_by_the_flag_is_no_reproduction() -> None:
    """A replay of a recording that found nothing, stopped by the flag before its end, proves
    nothing either way, as an interrupted one or one its time limit stopped."""
    cfg = StressConfig(workload="tables", seed=4, schedule="replay", steps=3000, seconds=600, checkers=(),
                       switches=((0, 0),))
    from rmm_mp.stress.report import StressReport
    stopped = StressReport(cfg, (), "stopped", 1.0, {0: 3}, steps=200, stopped_at=200)
    verdict = schedule_file.compare("s.json", (), stopped)
    assert verdict.verdict == "stopped" and not verdict.reproduced, verdict.text()
    assert verdict.text().startswith("replay stopped by its stop flag"), verdict.text()
    found = Finding("invariants", "x", "broken", None)
    stopped = StressReport(cfg, (found,), "finding", 1.0, {0: 3}, steps=200)
    assert schedule_file.compare("s.json", (found,), stopped).reproduced


def test_a_stopped_run_is_not_told_to_run_longer() -> None:
    """A run stopped from outside was cut short, as an interrupted one is: "give the run more
    --seconds or --steps" and "more --steps or --seconds may reach it" gave advice its length had no
    part in. Failed before "stopped" was taken as a cut-short end there (both hints were given)."""
    from rmm_mp.stress.report import StressReport
    cfg = StressConfig(workload="tables", inject=("data-create-rtt-before-rd",))
    idle = StressReport(cfg, (), "stopped", 1.0, {}).text()
    assert "nothing was tested" in idle and "give the run more" not in idle, idle
    some = StressReport(cfg, (), "stopped", 1.0, {0: 3}).text()
    assert "data-create-rtt-before-rd" in some and "may reach it" not in some, some


def test_the_command_fails_a_run_stopped_by_the_flag(monkeypatch: Any) -> None:
    """`rmm-mp stress` whose run is stopped through the flag from outside, 200 steps into a
    budget of 100,000,000, with no finding: it tested a sliver of what was asked, as an
    interrupted run did, so it exits 1 and says it was cut short, not a bare "no findings"
    (until 2026-11 it exited 0: a script took the stop for a clean pass of the whole budget)."""
    from click.testing import CliRunner
    from rmm_mp.stress import cli as stress_cli

    real_run = stress_cli.run

    def stopped_run(config: Any, **kwargs: Any) -> Any:
        machines: list[Any] = []
        announce = kwargs["on_machine"]

        def on_machine(machine: Any) -> None:
            machines.append(machine)
            announce(machine)
        return real_run(config, **{**kwargs, "on_machine": on_machine,
                                   "on_tick": _stopper(machines, lambda _, seg: seg.step >= 200)})

    monkeypatch.setattr(stress_cli, "run", stopped_run)
    res = CliRunner().invoke(stress_cli.stress, ["tables", "--seed", "4", "--schedule", "random",
                                                "--steps", "100000000", "--checkers", "none"])
    assert res.exit_code == 1, res.output
    assert "ended: stopped" in res.output, res.output
    assert "no findings, but the run was stopped from outside" in res.output, res.output
