"""docs/workloads.md stays true: every TOML example in it is a valid workload, and every key
and activity the code accepts, and every realm counter the report shows, is documented there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rmm_mp.workload import spec
from rmm_mp.workload.fields import ACTIVITIES
from rmm_mp.workload.resolve import resolve

DOC = Path(__file__).resolve().parents[2] / "docs" / "workloads.md"
TEXT = DOC.read_text()
EXAMPLES = re.findall(r"```toml\n(.*?)```", TEXT, re.S)


def test_the_doc_has_examples() -> None:
    """docs/workloads.md holds at least five TOML examples for the next test to validate."""
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("n", range(len(EXAMPLES)))
def test_every_toml_example_validates(n: int, tmp_path: Path) -> None:
    """Each TOML example of docs/workloads.md, written to a file, loads and resolves to a workload with
    phases and CPUs."""
    path = tmp_path / f"example{n}.toml"
    path.write_text(EXAMPLES[n])
    w = resolve(spec.load(str(path)))
    assert w.phases and w.cpus >= 1


def test_every_key_and_activity_is_documented() -> None:
    """Every top-level, realm, group and phase key and every activity the code accepts appears in
    docs/workloads.md in backquotes."""
    for key in spec.TOP_KEYS + spec.REALM_KEYS + spec.GROUP_KEYS + spec.PHASE_KEYS + ACTIVITIES:
        assert f"`{key}`" in TEXT or f"`[[{key}]]`" in TEXT, key


def test_every_realm_counter_is_documented() -> None:
    """Every per-realm counter the host keeps (runqueue.COUNTERS, shown in the report's realm
    table) appears in docs/workloads.md in backquotes, so a reader can look up what it counts."""
    from rmm_mp.host.runqueue import COUNTERS

    missing = [name for name in COUNTERS if f"`{name}`" not in TEXT]
    assert missing == []
