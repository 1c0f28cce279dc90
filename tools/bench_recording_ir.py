#!/usr/bin/env python3
"""What latency recording costs a workload in executed instructions, counted by valgrind.

tools/bench_run.py (a) times a 1-CPU workload with recording on and off; on a shared host that
figure moves by one or two points from one invocation to the next. The number of instructions
the CPU process executes does not move at all: this tool runs the same workload (quickstart by
default, --iterations steps on 1 CPU, --seed) under valgrind's callgrind, once per variant, and
prints the CPU process's instruction count (Ir) and how far each variant is above "off", as a
share of the instructions the steps themselves take with recording off (the CPU process's count
minus that of a 1-step run, which is start-up: imports, the start barrier, the end):

    on        latency recording as `rmm-mp run` does it
    off       recording off (`--no-latency`): no clock read per call
    noflush   on, but Recorder.flush only empties the pending arrays (no histogram work)
    norecord  noflush, and Recorder.record does nothing (sampled, failed or waiting calls)
    noappend  norecord, and the plain-call appends do nothing: what is left over "off" is the
              clock reads and the timed paths' own control flow

An instruction count is not a time: it leaves out cache misses and branch mispredictions, which
recording adds too. It says where recording's work is, deterministically, so that a change to
the recorder can be judged without the host's noise; the time target stays bench_run.py's.

Under valgrind the code runs some 50 to 80 times slower, and the recorder flushes every 50 ms
of wall time, so it would flush that many times more often per call than in a native run. The
flush interval is therefore set to 50 ms x --slowdown in every variant (through a
sitecustomize.py the tool writes into a temporary directory on PYTHONPATH, since the CPU
process is spawned; the variants' no-op parts are installed the same way).

    python tools/bench_recording_ir.py [--iterations 1000] [--variants on,off] [--json FILE]

Needs valgrind (with callgrind) on PATH; exits 2 without it, and 2 (after printing and writing
the figures) if a variant did other work than "off" (different activity counters).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from benchlib import RUN_FAILED, check_json, host_info, measurement_failed, tool_main, write_json

VARIANTS = ("on", "off", "noflush", "norecord", "noappend")

_SITECUSTOMIZE = '''\
import os
_variant = os.environ.get("RMM_MP_IR_VARIANT")
if _variant:
    import rmm_mp.stats.histogram as _h
    _h.FLUSH_INTERVAL_NS = int(os.environ["RMM_MP_IR_FLUSH_NS"])
    if _variant in ("noflush", "norecord", "noappend"):
        def _flush(self, now_ns):
            for pending in self.pending:
                del pending[:]
            self.next_flush = now_ns + _h.FLUSH_INTERVAL_NS
        _h.Recorder.flush = _flush
    if _variant in ("norecord", "noappend"):
        _h.Recorder.record = lambda self, *args: None
    if _variant == "noappend":
        _init = _h.Recorder.__init__
        def _nop(value):
            pass
        def _init_noappend(self, region):
            _init(self, region)
            self.appends = [_nop] * len(self.appends)
        _h.Recorder.__init__ = _init_noappend
'''


def _child(workload: str, iterations: int, seed: int, recording: bool) -> None:
    """The process valgrind runs: one workload run on 1 CPU."""
    from rmm_mp.workload import spec
    from rmm_mp.workload.resolve import resolve
    from rmm_mp.workload.run import RunOptions, run_workload

    w = resolve(spec.load(workload), cpus=1, iterations=iterations, seed=seed)
    report = run_workload(w, RunOptions(progress=False, recording=recording))
    print(json.dumps({"ok": report.ok, "counters": {str(k): v for k, v in report.counters.items()}}))


def _cpu_process_ir(out_dir: str) -> int:
    """Ir of the CPU process: the spawned child that is not the resource tracker."""
    for path in glob.glob(os.path.join(out_dir, "cg.*")):
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
        cmd = re.search(r"^cmd:(.*)$", head, re.MULTILINE)
        if cmd is None or "spawn_main" not in cmd.group(1):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1])
    measurement_failed(f"no callgrind output of a spawned CPU process in {out_dir}")


def measure(variant: str, args: argparse.Namespace, site: str, iterations: int | None = None) -> dict[str, Any]:
    iterations = args.iterations if iterations is None else iterations
    with tempfile.TemporaryDirectory(prefix="rmm-mp-ir-") as out_dir:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")])),
               "RMM_MP_IR_VARIANT": variant, "RMM_MP_IR_FLUSH_NS": str(50_000_000 * args.slowdown)}
        # The machine's reaper (rmm_mp.hw.reaper) is left untraced: it is no CPU process, and
        # traced it would write its output after the run, racing the directory's removal.
        cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--trace-children-skip-by-arg=*rmm-mp reaper*",
               f"--callgrind-out-file={out_dir}/cg.%p", sys.executable, os.path.abspath(__file__), "--child",
               args.workload, str(iterations), str(args.seed), "off" if variant == "off" else "on"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            measurement_failed(f"valgrind run of variant {variant} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if not result["ok"]:
            measurement_failed(f"variant {variant}: the workload did not run clean")
        return {"ir": _cpu_process_ir(out_dir), "counters": result["counters"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        workload, iterations, seed, mode = argv[1:5]
        _child(workload, int(iterations), int(seed), mode == "on")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", default="quickstart", help="bundled workload or path (default quickstart)")
    ap.add_argument("--iterations", type=int, default=1000,
                    help="steps of the 1 CPU, at least 2 (default 1,000; a 1-step run is the start-up measured)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the run (default 1)")
    ap.add_argument("--variants", default="on,off,noflush,norecord,noappend",
                    help=f"comma-separated, from {', '.join(VARIANTS)} (default all five); 'off' is always "
                         "measured")
    ap.add_argument("--slowdown", type=int, default=80,
                    help="flush interval under valgrind = 50 ms x this (default 80)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = ap.parse_args(argv)
    check_json(ap, args.json)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    # The start-up is a 1-step run: with --iterations 1 the steps' count, the shares' divisor,
    # would be the difference of two runs of the same thing.
    if unknown or args.iterations < 2 or args.slowdown < 1:
        ap.error(f"--variants = {args.variants!r}: expected names from {', '.join(VARIANTS)}; "
                 "--iterations at least 2, --slowdown at least 1")
    if "off" not in variants:
        variants.append("off")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: this tool counts instructions with callgrind", file=sys.stderr)
        return 2
    info = host_info()
    print(f"host: {info}")
    print(f"{args.workload}, 1 CPU, {args.iterations} steps, seed {args.seed}, flush every "
          f"{50 * args.slowdown} ms of valgrind time")
    with tempfile.TemporaryDirectory(prefix="rmm-mp-ir-site-") as site:
        with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as f:
            f.write(_SITECUSTOMIZE)
        figures = {v: measure(v, args, site) for v in variants}
        fixed = measure("off", args, site, iterations=1)["ir"]
    off = figures["off"]["ir"]
    steps = off - fixed
    same = all(f["counters"] == figures["off"]["counters"] for f in figures.values())
    print(f"  start-up and one step, recording off: {fixed:,} instructions; the other steps: {steps:,}")
    for v in variants:
        ir = figures[v]["ir"]
        figures[v]["over_off_pct"] = round((ir - off) / steps * 100, 3)
        print(f"  {v:9s} {ir:>15,} instructions  {ir - off:>+13,}  ({(ir - off) / steps * 100:+.2f} % of the "
              f"steps' instructions with recording off)")
    print(f"  the same work in every variant (activity counters): {'yes' if same else 'NO'}")
    if args.json:
        write_json(args.json, {"benchmark": "bench_recording_ir", "host": info, "options": vars(args),
                               "workload": args.workload, "iterations": args.iterations, "seed": args.seed,
                               "slowdown": args.slowdown, "same_work": same, "fixed_ir": fixed, "steps_ir": steps,
                               "variants": figures})
    # Variants that did other work than "off" compare different runs: a failed measurement (status
    # 2), not a missed target (there is none), though the figures are printed and written.
    return 0 if same else RUN_FAILED


if __name__ == "__main__":
    tool_main(main)
