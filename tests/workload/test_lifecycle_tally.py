"""The lifecycle tally a CPU publishes in its shared area as it goes (hw.cpuarea, 0x800;
workload.cpustate.Host.publish), which the parent reads for a CPU that returned no result: what
it says at each point where the CPU's process could be killed.

The CPU is CPU 0 of a one-CPU workload run in this process, so that a teardown can be cut off
where a kill could land (a patched step raising)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_mp import Machine
from rmm_mp.hw.quiesce import Participant
from rmm_mp.workload import engine, realms, run, spec
from rmm_mp.workload.resolve import resolve


class _Killed(BaseException):
    """Stands for the CPU process's death at the point where it is raised."""


def test_a_saved_token_is_counted_before_the_rest_of_its_teardown(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An attest instance's token is written to --save-tokens' directory when the instance's
    guest is read (realms.finish); the destroy of its RECs, RTTs and RD follows (dozens of SMCs).
    A death in that destroy (here: it raises) leaves the file in the directory, and the tally must
    already count it: the parent adds a dead CPU's tallied tokens to the report's count of the
    files. The count used to be published after the destroy, so this file went uncounted."""
    def destroy_cut_off(*args: object, **kwargs: object) -> None:
        raise _Killed()
    monkeypatch.setattr(realms, "destroy", destroy_cut_off)
    path = tmp_path / "w.toml"
    path.write_text('cpus = 1\niterations = 200\nactivities = { attest = 1 }\n'
                    '[[realm]]\nname = "att"\nguest = "attest"\nram = "3M"\nlifecycle = true\n')
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    w = resolve(spec.load(str(path)))
    with Machine.create(w.platform, 1, time_slice=w.time_slice) as m:
        with Participant(m.control) as part:
            plan, parts, _ = run._prepare(m, w, run.RunOptions(progress=False, tokens_dir=str(tokens)), part)
        cpu = m.cpu(0)
        try:
            with pytest.raises(_Killed):
                engine.cpu_main(cpu, plan, *run._own_args(w, parts)[0])
            built, ok, failed, saved = cpu.area.lifecycle_tally(1)[0]
        finally:
            cpu.close()
    files = sorted(p.name for p in tokens.iterdir())
    assert len(files) == 1, files
    assert (built, ok, failed) == (0, 0, 0), "the instance cut off in its teardown is not one torn down"
    assert saved == len(files), f"{len(files)} token file(s) written, {saved} counted in the tally"


def test_the_tally_has_an_entry_for_every_realm_a_cpu_can_own() -> None:
    """A CPU's tally entries are indexed by the lifecycle instances it owns, each a realm of the
    run queue's realm table: the tally must have room for the whole table, or a CPU owning more
    instances than entries would raise inside publish_lifecycle in the middle of a run. Only a
    docstring tied the two figures together."""
    from rmm_mp.host.runqueue import MAX_REALMS
    from rmm_mp.hw.cpuarea import LIFECYCLE_KEYS
    assert MAX_REALMS <= LIFECYCLE_KEYS, (MAX_REALMS, LIFECYCLE_KEYS)
