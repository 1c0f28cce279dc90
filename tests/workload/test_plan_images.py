"""What the parent sends each CPU process of a workload run (rmm_mp/workload/run.py): the plan
every CPU gets holds no guest image; a lifecycle realm's goes, as a CPU's own args, only to the
CPUs owning one of its instances (the ones that rebuild it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rmm_mp import Machine
from rmm_mp.hw.quiesce import Participant
from rmm_mp.workload import run as run_module
from rmm_mp.workload import spec
from rmm_mp.workload.resolve import resolve
from rmm_mp.workload.run import RunOptions, run_workload


def _image_bytes(args: tuple[Any, ...], image: bytes) -> int:
    """How many of ``args``' bytes objects are ``image`` (its bytes, whichever copy)."""
    return sum(1 for a in args if isinstance(a, bytes) and a == image)


def test_the_plan_sent_to_the_cpus_holds_no_resident_realm_image(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with a resident realm and a lifecycle realm: the plan handed to every CPU process
    carries neither image (the parent built the resident one before the run), the lifecycle
    realm's owner gets that one's as its own args, and the run is fine. Before, every image
    went to every CPU process, which held it twice (pickled and unpickled): a 144 MiB guest
    made each CPU process 310 MiB."""
    sent: list[Any] = []
    real = run_module.run_cpus

    def recording(*args: Any, **kwargs: Any) -> Any:
        sent.append((kwargs["args"], kwargs["own_args"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_cpus", recording)
    path = tmp_path / "w.toml"
    path.write_text('iterations = 3\nactivities = { run = 1, lifecycle = 1 }\n'
                    '[[realm]]\nname = "resident"\nguest = "hello"\n'
                    '[[realm]]\nname = "again"\nguest = "hello"\nlifecycle = true\n')
    w = resolve(spec.load(path), cpus=1)
    report = run_workload(w, RunOptions(progress=False))
    assert report.ok, report
    ((plan,), own), = sent
    assert [len(t.image) for t in plan.realms] == [0, 0]
    assert _image_bytes(own[0], w.realms[1].image) == 1
    assert all(t.image for t in w.realms)       # the parent's templates keep theirs (report, describe)


def test_a_cpu_owning_no_instance_of_a_lifecycle_realm_gets_no_image_of_it(tmp_path: Path) -> None:
    """A lifecycle realm with 1 instance on 4 CPUs (plus an attest one, whose image each
    generation assembles anew): only its owner's own args carry its image, which its job puts
    back into the template; the other three CPUs' args and the plan every CPU gets carry no
    byte of it (nor of the attest realm's). Before, the plan held every lifecycle image and
    went to every CPU."""
    path = tmp_path / "w.toml"
    path.write_text('iterations = 3\nactivities = { run = 1, lifecycle = 1, attest = 1 }\n'
                    '[[realm]]\nname = "again"\nguest = "hello"\nlifecycle = true\n'
                    '[[realm]]\nname = "att"\nguest = "attest"\nram = "3M"\nlifecycle = true\n')
    w = resolve(spec.load(path), cpus=4)
    image = w.realms[0].image
    with Machine.create(w.platform, 4, time_slice=w.time_slice) as m:
        with Participant(m.control) as part:
            plan, parts, _ = run_module._prepare(m, w, RunOptions(progress=False), part)
    assert [len(t.image) for t in plan.realms] == [0, 0]
    own = run_module._own_args(w, parts)
    owner = w.owner(0, 0)
    assert owner is not None
    for c in range(4):
        assert _image_bytes(own[c], image) == (1 if c == owner else 0), f"CPU {c}"
        assert not any(isinstance(a, bytes) and a == w.realms[1].image for a in own[c]), f"CPU {c}: attest image"
        job = plan.job(c, own[c][0], own[c][1:])
        assert job.realms[0].image == (image if c == owner else b""), f"CPU {c}"
