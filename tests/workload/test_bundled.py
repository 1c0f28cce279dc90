"""Every bundled workload (workloads/*.toml) runs briefly on its own platform and CPUs and comes
out clean: no CPU failure, every realm ok, no problem, invariants hold, teardown leaves every
granule NS, and its JSON report validates against docs/report-schema.json, its `host` object with exactly the facts the schema names. Runs are counted (--iterations), not timed, so what they do does not depend on the
machine's speed. The attestation storm's saved tokens each verify against their challenge.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from rmm_mp.attest.verify import verify_token
from rmm_mp.el3.attest import AttestationKeys
from rmm_mp.workload import programs, render, spec
from rmm_mp.workload.report import RunReport
from rmm_mp.workload.resolve import resolve
from rmm_mp.workload.run import RunOptions, run_workload

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "report-schema.json").read_text())
_helper = importlib.util.spec_from_file_location("schema_subset", ROOT / "tests" / "stats" / "schema_subset.py")
assert _helper is not None and _helper.loader is not None
schema_subset = importlib.util.module_from_spec(_helper)
_helper.loader.exec_module(schema_subset)

STEPS = {"quickstart": 150, "kvm-lifecycle": 300, "smp-realms": 120, "contention": 120,
         "attestation-storm": 200, "churn": 160, "delegate-churn": 1000}


def brief(name: str, tokens: str | None = None) -> RunReport:
    w = resolve(spec.load(name), iterations=STEPS[name])
    report = run_workload(w, RunOptions(progress=False, tokens_dir=tokens))
    assert report.ok, (report.failures, report.problems, [r for r in report.realms if not r.ok][:5])
    assert report.invariants is not None and report.invariants.ok
    assert set(report.counters) == set(range(w.cpus))
    for counters in report.counters.values():
        steps = sum(v for k, v in counters.items() if k.endswith(" steps") and not k.startswith("phase "))
        assert steps == STEPS[name], counters
    doc = json.loads(json.dumps(render.to_json(report)))
    assert schema_subset.errors(doc, SCHEMA) == []
    # The schema lets `host` carry further facts and requires only `cores`: a real run's host
    # object has exactly the facts the schema describes, none missing or unnamed.
    assert set(doc["host"]) == set(SCHEMA["properties"]["host"]["properties"]), sorted(doc["host"])
    return report


def test_every_bundled_workload_has_a_brief_run() -> None:
    """Every bundled workload has a step count in STEPS, and STEPS names no workload that is not
    bundled."""
    assert set(spec.bundled()) == set(STEPS)


@pytest.mark.parametrize("name", ["quickstart", "smp-realms", "contention", "churn", "delegate-churn"])
def test_bundled_workload_runs_clean(name: str) -> None:
    """A bundled workload run briefly comes out clean (see brief); those with realms ran them and made
    calls."""
    report = brief(name)
    if name != "delegate-churn":
        assert report.realms and report.total_calls > 0


def test_kvm_lifecycle_rebuilds_realms() -> None:
    """Each owner builds, runs and destroys its realms over and over: every instance is reported
    once (the five built before the run and every rebuild), whether torn down or still alive."""
    report = brief("kvm-lifecycle")
    destroyed = sum(c.get("realms destroyed", 0) for c in report.counters.values())
    built = sum(c.get("realms built", 0) for c in report.counters.values())
    assert destroyed >= 1 and len(report.realms) == 5 + built
    assert any(r.name.startswith("vm-v12[0]#") for r in report.realms)


def test_attestation_storm_saves_verifiable_tokens(tmp_path: Path) -> None:
    """Every token file verifies (platform key, signatures, binding) with the challenge the
    engine derived for its realm instance; one file per realm whose outcome names a token."""
    out = tmp_path / "tokens"
    report = brief("attestation-storm", str(out))
    files = sorted(os.listdir(out))
    assert files and len(files) == sum("token of" in r.detail for r in report.realms)
    assert report.tokens_saved == len(files)
    unwrapped = " ".join(line.strip() for line in render.format_report(report).splitlines())   # 118 columns
    assert f"Written: tokens {out} ({len(files):,} tokens)" in unwrapped
    key = AttestationKeys(resolve(spec.load("attestation-storm")).platform).platform_public_key_pem()
    for name in files:
        realm, index, generation = name.removesuffix(".cbor").rsplit("-", 2)
        challenge = programs.challenge(report.seed, realm, int(index), int(generation))
        result = verify_token((out / name).read_bytes(), key, expected_challenge=challenge)
        assert result.ok, (name, result.verdict, result.checks)


def test_a_token_that_does_not_verify_fails_its_realm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run verifies each token with the platform's key; given another platform's key (the
    TF-A FVP sample's), every token's platform signature fails. That is a failed realm whose
    detail names the check, not a crash: the run once raised TypeError here, calling the
    VerificationResult.verdict property."""
    from rmm_mp.el3 import attest

    wrong = (attest.data_dir() / "tf-a-fvp-sample" / "cca_platform.pub").read_bytes()
    monkeypatch.setattr(attest.AttestationKeys, "platform_public_key_pem", lambda self: wrong)
    w = resolve(spec.load("attestation-storm"), iterations=60)
    report = run_workload(w, RunOptions(progress=False))
    assert report.failures == () and not report.ok
    failed = [r for r in report.realms if "token" in r.detail and not r.ok]
    assert failed and all("the token does not verify (failed): platform signature:" in r.detail for r in failed)


def test_tokens_that_cannot_be_saved_are_a_report_file_error(tmp_path: Path) -> None:
    """The tokens directory goes away once the machine exists: every token write fails (in the
    CPU processes, or in the parent for realms still alive). The run is not lost and no CPU
    fails: the report counts the tokens not saved with the first reason, does not list the
    directory as written, and is not ok."""
    out = tmp_path / "tokens"
    w = resolve(spec.load("attestation-storm"), iterations=STEPS["attestation-storm"])
    report = run_workload(w, RunOptions(progress=False, tokens_dir=str(out)), on_machine=lambda m: out.rmdir())
    assert not report.failures and not report.ok and report.tokens_saved == 0
    assert "tokens" not in report.outputs
    [error] = report.output_errors
    assert error.startswith("could not save ") and f"tokens to {out} (the first: {out}/" in error
    assert error.endswith(": No such file or directory)")


def test_save_tokens_on_a_workload_without_attest_realms_says_none_were_saved(tmp_path: Path) -> None:
    """The directory exists afterwards but holds nothing, and the report says so instead of
    listing it as written."""
    out = tmp_path / "tokens"
    report = brief("delegate-churn", str(out))
    assert os.listdir(out) == [] and report.tokens_saved == 0
    # The line wraps at 118 columns (a long tmp_path): read it unwrapped.
    unwrapped = " ".join(line.strip() for line in render.format_report(report).splitlines())
    assert f"Written: tokens {out} (none: no realm running the attest guest obtained a token" in unwrapped
