"""tools/bench_recording_ir.py without valgrind: its child run, the variants its sitecustomize
installs, and how it finds the CPU process's count among callgrind's files. (A run under
valgrind takes minutes; docs/performance.md has its figures.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))     # the tool imports benchlib from its own folder
try:
    import bench_recording_ir as tool  # noqa: E402
finally:
    sys.path.remove(str(TOOLS))

PROBE = """
from rmm_mp.stats import histogram as h
r = h.Recorder(memoryview(bytearray(h.REGION_BYTES)))
r.record(3, 1000, 100, 0, False)
r.appends[4](2000)
pending = [len(r.pending[3]), len(r.pending[4])]
r.flush(1)
print(h.FLUSH_INTERVAL_NS, pending, h.read_slot(r._shared.cast("B"), 3).count + h.read_slot(r._shared.cast("B"), 4).count)
"""


@pytest.mark.parametrize("variant, pending, flushed", [
    ("on", [1, 1], 2), ("off", [1, 1], 2),          # "off" is RunOptions(recording=False); the recorder is untouched
    ("noflush", [1, 1], 0), ("norecord", [0, 1], 0), ("noappend", [0, 0], 0),
])
def test_sitecustomize_installs_each_variant(tmp_path: Path, variant: str, pending: list[int], flushed: int) -> None:
    """Each variant's no-op parts are in place in a new Python process, and the flush interval is
    the one given; without the variable nothing is changed."""
    (tmp_path / "sitecustomize.py").write_text(tool._SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
           "RMM_MP_IR_VARIANT": variant, "RMM_MP_IR_FLUSH_NS": "12345"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split(None, 1)[0] == "12345"
    assert out.strip().endswith(f"{pending} {flushed}"), out
    del env["RMM_MP_IR_VARIANT"]
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "50000000 [1, 1] 2"


def test_child_runs_the_workload_and_reports_its_work() -> None:
    """The process the tool runs under valgrind: one short 1-CPU run that ends clean and prints
    its activity counters as JSON on its last line (the tool compares them between variants)."""
    proc = subprocess.run([sys.executable, str(TOOLS / "bench_recording_ir.py"), "--child", "delegate-churn", "20",
                           "1", "on"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] is True and result["counters"]["0"]


def test_cpu_process_count_is_the_spawned_childs(tmp_path: Path) -> None:
    """Of callgrind's files (the tool's child, the resource tracker, the CPU process), the CPU
    process's: spawn_main on its command line, not the resource tracker's."""
    files = {
        "cg.100": ("python bench_recording_ir.py --child quickstart 10 1 on", 900),
        "cg.101": ("python -c from multiprocessing.resource_tracker import main;main(3)", 5),
        "cg.102": ("python -B -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=9) "
                   "--multiprocessing-fork", 4321),
    }
    for name, (cmd, ir) in files.items():
        (tmp_path / name).write_text(f"version: 1\ncreator: callgrind-3.19.0\ncmd:{cmd}\nevents: Ir\n"
                                     f"fn=(1) main\n1 {ir}\nsummary: {ir}\ntotals: {ir}\n")
    assert tool._cpu_process_ir(str(tmp_path)) == 4321
    os.remove(tmp_path / "cg.102")
    with pytest.raises(SystemExit):
        tool._cpu_process_ir(str(tmp_path))


def test_main_prints_each_variant_over_off_and_writes_its_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The tool end to end without valgrind (a run under it takes minutes): 'off' is measured
    even when not asked for, each variant's count is printed over 'off' as a share of the
    steps' instructions (the count of the run less that of a 1-step run), and the JSON holds
    those figures; a variant that did other work than 'off' is a failed measurement: the figures
    are still printed and written, and the tool ends with status 2 (docs/performance.md: 1 would
    read as a missed target, and this tool has none)."""
    counts = {("on", 1000): 1_100, ("off", 1000): 1_000, ("off", 1): 200}
    work = {"on": {"0": {"steps": 1000}}, "off": {"0": {"steps": 1000}}}

    def fake_measure(variant, args, site, iterations=None):  # type: ignore[no-untyped-def]
        n = args.iterations if iterations is None else iterations
        return {"ir": counts[(variant, n)], "counters": work[variant]}

    monkeypatch.setattr(tool.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(tool, "measure", fake_measure)
    out = tmp_path / "ir.json"
    assert tool.main(["--variants", "on", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "the other steps: 800" in text and "+12.50 % of the steps' instructions" in text, text
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["steps_ir"] == 800 and figures["same_work"] is True
    assert set(figures["variants"]) == {"on", "off"} and figures["variants"]["on"]["over_off_pct"] == 12.5
    work["on"] = {"0": {"steps": 999}}
    out.unlink()
    assert tool.main(["--variants", "on", "--json", str(out)]) == 2
    assert "same work in every variant (activity counters): NO" in capsys.readouterr().out
    assert json.loads(out.read_text(encoding="utf-8"))["same_work"] is False


def test_without_valgrind_the_tool_ends_with_status_2(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """As its --help and docs/performance.md say: no valgrind on PATH, status 2, nothing run."""
    monkeypatch.setattr(tool.shutil, "which", lambda name: None)
    monkeypatch.setattr(tool, "measure", lambda *a, **k: pytest.fail("measured without valgrind"))
    assert tool.main([]) == 2
    assert "valgrind is not installed" in capsys.readouterr().err
