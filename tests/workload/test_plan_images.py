"""What the parent sends each CPU process of a workload run (rmm_mp/workload/run.py): the plan
holds the images only of the realms the CPUs rebuild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rmm_mp.workload import run as run_module
from rmm_mp.workload import spec
from rmm_mp.workload.resolve import resolve
from rmm_mp.workload.run import RunOptions, run_workload


def test_the_plan_sent_to_the_cpus_holds_no_resident_realm_image(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with a resident realm and a lifecycle realm: the plan handed to the CPU processes
    carries the lifecycle realm's image (its owner rebuilds it) and not the resident one's (the
    parent built it before the run), and the run is fine. Before, every image went to every CPU
    process, which held it twice (pickled and unpickled): a 144 MiB guest made each CPU
    process 310 MiB."""
    sent: list[Any] = []
    real = run_module.run_cpus

    def recording(*args: Any, **kwargs: Any) -> Any:
        sent.append(kwargs["args"])
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_cpus", recording)
    path = tmp_path / "w.toml"
    path.write_text('iterations = 3\nactivities = { run = 1, lifecycle = 1 }\n'
                    '[[realm]]\nname = "resident"\nguest = "hello"\n'
                    '[[realm]]\nname = "again"\nguest = "hello"\nlifecycle = true\n')
    w = resolve(spec.load(path), cpus=1)
    report = run_workload(w, RunOptions(progress=False))
    assert report.ok, report
    (plan, _parts), = sent
    assert [len(t.image) > 0 for t in plan.realms] == [False, True]
    assert all(t.image for t in w.realms)       # the parent's templates keep theirs (report, describe)
