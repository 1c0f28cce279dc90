"""`rmm-mp explore --inject BUG` says when no pair explored reached the bug's code, as `rmm-mp
stress` says it of a run: a clean verdict then says nothing of the bug."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from rmm_mp.stress.explore_cli import explore as explore_command


def test_a_bug_no_pair_reached_is_named(tmp_path: Path) -> None:
    """rtt-create-vs-rtt-create makes no REC_DESTROY, so rd-refcount-plain-rmw (which replaces
    its handler) never runs: the output ends by saying so, and the JSON's bug_calls gives 0; the
    exit status stays the verdict (0). It said "every one serial" alone, which a reviewer read
    as the bug tested and not found (found by a lock-protocol reviewer's probe)."""
    out = tmp_path / "e.json"
    res = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "--inject", "rd-refcount-plain-rmw",
                                               "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == (
        "injected rd-refcount-plain-rmw never ran: no pair's call explored here reached the RMI_REC_DESTROY handler "
        "(a setup's calls are not explored), so this tested nothing of the bug"), res.output
    assert json.loads(out.read_text())["bug_calls"] == {"rd-refcount-plain-rmw": 0}


def test_a_bug_a_pair_reached_is_not_named(tmp_path: Path) -> None:
    """A bug whose code ran gets no such line, and its calls are counted in the JSON."""
    out = tmp_path / "e.json"
    res = CliRunner().invoke(explore_command, ["rtt-create-vs-rtt-create", "rtt-destroy-vs-undelegate-table",
                                               "--inject", "walk-unlock-parent-first", "--json", str(out)])
    assert "never ran" not in res.output, res.output
    assert res.output.splitlines()[-1].startswith("2 pairs explored: "), res.output
    assert json.loads(out.read_text())["bug_calls"]["walk-unlock-parent-first"] > 0


def test_a_bug_only_a_setup_reached_is_named(tmp_path: Path) -> None:
    """data-destroy-vs-rtt-destroy's setup makes RTT_CREATEs, its two calls none: the calls of
    rtt-create-parent-released-early were all in the setups, where nothing races them, so the bug
    is named as never ran and bug_calls gives 0. Counted with the setups (26 calls), the verdict
    "every one serial" came alone, read as the bug raced and not found (found in review)."""
    out = tmp_path / "e.json"
    res = CliRunner().invoke(explore_command, ["data-destroy-vs-rtt-destroy", "--inject",
                                               "rtt-create-parent-released-early", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1].startswith("injected rtt-create-parent-released-early never ran: "), res.output
    assert json.loads(out.read_text())["bug_calls"] == {"rtt-create-parent-released-early": 0}



def test_a_bugs_calls_from_both_of_a_pairs_threads_are_all_counted() -> None:
    """A pair's two calls run in two threads, each counting a call: a read, then a write.
    Interleaved (both read 0, then both write 1), one call was lost from bug_calls: the count
    holds a lock across the two (the read is held up here until the other thread has counted)."""
    import threading

    from rmm_mp.stress import explore
    from rmm_mp.stress.explore_cli import pair_counter

    class Slow(dict[str, int]):
        def get(self, key: str, default: int = 0) -> int:     # type: ignore[override]
            value = super().get(key, default)
            reading.set()
            release.wait(0.5)       # the other thread's count would land here without the lock
            return value

    calls: dict[str, int] = Slow()
    count = pair_counter(calls)
    reading, release = threading.Event(), threading.Event()

    def side(name: str) -> None:
        explore._current.side = name       # as a pair's call thread is (explore._run_call)
        count("bug")

    threads = [threading.Thread(target=side, args=(n,)) for n in "ab"]
    threads[0].start()
    reading.wait(5)
    threads[1].start()
    release.set()
    for t in threads:
        t.join(5)
    assert calls["bug"] == 2, calls
    count("bug")                        # a setup's call (no pair's thread): not counted
    assert calls["bug"] == 2, calls
