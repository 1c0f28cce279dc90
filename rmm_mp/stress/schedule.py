"""Schedule files: everything needed to replay a deterministic stress run exactly.

A schedule file is JSON:

    {"format": "rmm-mp-schedule", "version": 1,
     "config": {"workload": ..., "cpus": ..., "seed": ..., "strategy": ..., "steps": ...,
                "pct_depth": ..., "inject": [...], "checkers": [...], "time_slice": ...,
                "quiescent_every": ..., "guests": ...},
     "switches": [[step, cpu], ...],
     "result": {"steps": ..., "preemptions": ..., "findings": [...]}}

``switches`` lists every context switch of the run: after schedule point ``step`` CPU ``cpu``
runs (step 0: the first CPU). The seed still matters on replay: it drives the operations each
CPU draws. ``result`` is the recorded outcome a replay is compared with.

This module owns the format. It must not run anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.findings import Finding
from rmm_mp.stress.report import StressReport

FORMAT = "rmm-mp-schedule"
VERSION = 1
_KEYS = ("workload", "cpus", "seed", "steps", "pct_depth", "time_slice", "quiescent_every", "guests")


def to_json(report: StressReport) -> dict[str, Any]:
    cfg = report.config
    config = {k: getattr(cfg, k) for k in _KEYS}
    config.update(strategy=cfg.schedule, inject=list(cfg.inject), checkers=list(cfg.checkers))
    return {"format": FORMAT, "version": VERSION, "config": config,
            "switches": [list(s) for s in report.schedule],
            "result": {"steps": report.steps, "preemptions": report.preemptions,
                       "findings": [f.to_json() for f in report.findings]}}


def write(report: StressReport, path: "str | Path") -> Path:
    """Write ``report``'s schedule (a deterministic run's) to ``path``."""
    if not report.config.deterministic:
        raise ValueError("only a deterministic run (--schedule random or pct) has a schedule to write")
    out = Path(path)
    out.write_text(json.dumps(to_json(report), indent=1) + "\n", encoding="utf-8")
    return out


def read(path: "str | Path") -> dict[str, Any]:
    """Load and check a schedule file; ValueError naming what is wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable schedule file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"{path}: not an {FORMAT} file of version {VERSION}")
    switches = data.get("switches")
    if not isinstance(switches, list) or not all(isinstance(s, list) and len(s) == 2 for s in switches):
        raise ValueError(f"{path}: 'switches' must be a list of [step, cpu] pairs")
    return data


def replay_config(data: dict[str, Any], **overrides: Any) -> StressConfig:
    """The StressConfig that replays a loaded schedule file."""
    c = data["config"]
    fields = {k: c[k] for k in _KEYS if k in c}
    fields.update(inject=tuple(c.get("inject", ())), checkers=tuple(c.get("checkers", ())), schedule="replay",
                  switches=tuple((int(s), int(cpu)) for s, cpu in data["switches"]))
    fields.update(overrides)
    return StressConfig(**fields)


def recorded_findings(data: dict[str, Any]) -> tuple[Finding, ...]:
    return tuple(Finding.from_json(f) for f in data.get("result", {}).get("findings", ()))
