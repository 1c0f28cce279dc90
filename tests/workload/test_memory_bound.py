"""The memory check counts the protected pages a bundled guest can have backed: its image's and
its data pages', not the RAM between them (programs.backed_pages, resolve.realm_granules).

It counted min_ram's extent instead, from the RAM base to the end of the last page the guest
uses: 1 MiB plus a few pages for ripas-loop, smp-boot and ripas-flip, 2 MiB + 4 KiB (up to the
shared copy, which lands in NS pages) for attest. A random search of workloads at the bound
found runs that used 7 % of the bound (attest realms); a platform that would have held the run
many times over refused it.

The run here is CPU 0's plan in this process, after the parent's preparation (no CPU process),
with the allocator's use followed at every allocation: it must stay within the bound.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cpu0_run import run_cpu0

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.cpu_handle import Cpu
from rmm_mp.host.nsalloc import NsAllocator
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.workload import programs, run, spec
from rmm_mp.workload.resolve import MAX_AUX, Workload, _memory, realm_granules, resolve, ripas_granules, root_count

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("guest, recs, beyond", [
    ("hello", 1, 0), ("measure", 1, 0), ("attest", 1, 2), ("smp-boot", 4, 4), ("ripas-flip", 1, 4),
    ("ripas-loop", 2, 8),
])
def test_backed_pages_are_the_image_and_the_data_pages(guest: str, recs: int, beyond: int) -> None:
    """Each bundled guest with its default constants: the image's granules plus the pages it
    uses beyond it (attest: its 2 token buffer granules; smp-boot: one per REC; ripas-flip: 4;
    ripas-loop: 4 per REC); for those with pages beyond the image, far fewer than the extent
    min_ram gives (at least 1 MiB)."""
    text = programs.guest_text(guest)
    image = len(programs.image(text, {}))
    assert programs.backed_pages(guest, recs, image, text) == -(-image // 4096) + beyond
    assert programs.min_ram(guest, recs, image, text) >= (1 << 20 if beyond else image)


def run_with_peak(monkeypatch: pytest.MonkeyPatch, w: Workload) -> tuple[Any, int]:
    """CPU 0 runs workload ``w`` on a fresh machine; its result and the most NS granules the
    host's allocator held at once."""
    peak = 0
    real_alloc = NsAllocator.alloc

    def alloc(self: NsAllocator, count: int = 1, align: int = 1) -> int:
        nonlocal peak
        pa = real_alloc(self, count, align)
        peak = max(peak, self.in_use)
        return pa

    monkeypatch.setattr(NsAllocator, "alloc", alloc)
    with Machine.create(w.platform, 1, time_slice=w.time_slice) as m:
        result = run_cpu0(m, w)
    return result, peak


def small_platform(tmp_path: Path) -> None:
    """`host` with 4 MiB of DRAM and no Secure range: 1,024 granules, 960 above the reserve."""
    text = (ROOT / "platform" / "host.toml").read_text()
    text = text.replace('name = "host"', 'name = "small"').replace('size = "64 MiB"', 'size = "4 MiB"')
    head, tail = text.split("[[secure]]", 1)
    (tmp_path / "small.toml").write_text(head + tail[tail.index("[features]"):])


WORKLOAD = """platform = "small.toml"
cpus = 1
iterations = 600
activities = { run = 4, ripas-churn = 1 }

[[realm]]
name = "att"
guest = "attest"
ram = "3M"
instances = 6

[[realm]]
name = "loop"
guest = "ripas-loop"
recs = 2
constants = { WORK = 50 }
"""


def test_attest_and_ripas_loop_realms_fit_by_their_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Six attest realms, a ripas-loop realm with 2 RECs and CPU 0's ripas-churn realm on 4 MiB
    of DRAM: accepted (the bound is 2.0 MiB; counting min_ram's extent it was 16.4 MiB, refused),
    and when CPU 0 runs 600 steps (the attest realms get their tokens, the ripas-loop RECs and
    the ripas-churn realm fault their pages in and give them back) the host's allocator never
    holds more than the bound."""
    small_platform(tmp_path)
    path = tmp_path / "w.toml"
    path.write_text(WORKLOAD)
    w = resolve(spec.load(str(path)))
    need = _memory(w)[0]
    assert need <= 1024 - 64
    # 40 attest realms do not fit: the check still bounds the run.
    path.write_text(WORKLOAD.replace("instances = 6", "instances = 40"))
    with pytest.raises(ConfigError):
        resolve(spec.load(str(path)))
    result, peak = run_with_peak(monkeypatch, w)
    assert not result.errors
    assert result.counters["ripas-churn entries"] > 50 and result.counters["REC entries"] > 300
    assert 0 < peak <= need


FLIP = """platform = "small.toml"
cpus = 1
iterations = 200
activities = { run = 1 }

[[realm]]
name = "f"
guest = "ripas-flip"
ipa_width = 40
instances = 25
"""


def test_the_bound_counts_each_realms_own_root_rtts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """25 40-bit ripas-flip realms on 4 MiB of DRAM (960 granules above the reserve): each
    is counted with its 2 root RTTs (37 granules, 925 in all), so the file is accepted; it was
    refused when every realm counted 16 roots (51 granules, 1,275 in all). The same realms at
    43 bits have 16 roots each and are refused. A realm's count differs between IPA widths by
    exactly their difference in roots. CPU 0 then builds the 14 realms and runs them for 200
    steps, and the host's allocator never holds more than the bound."""
    small_platform(tmp_path)
    path = tmp_path / "w.toml"
    path.write_text(FLIP)
    w = resolve(spec.load(str(path)))
    need, parts = _memory(w)
    assert parts["realms"] == 25 * 37 and need == 925
    per_width = {}
    for width, roots in ((40, 2), (42, 8), (43, 16)):
        path.write_text(FLIP.replace("ipa_width = 40", f"ipa_width = {width}").replace("instances = 25", "instances = 1"))
        t = spec.load(str(path)).realms[0]
        assert root_count(t) == roots
        per_width[width] = realm_granules(t)
    assert per_width[42] - per_width[40] == 6 and per_width[43] - per_width[40] == 14
    path.write_text(FLIP.replace("ipa_width = 40", "ipa_width = 43"))
    with pytest.raises(ConfigError, match="would need up to 5.0 MiB"):
        resolve(spec.load(str(path)))
    result, peak = run_with_peak(monkeypatch, w)
    assert not result.errors
    assert result.counters["REC entries"] >= 25
    assert 0 < peak <= need



def test_a_ripas_churn_realm_counts_its_own_two_root_rtts() -> None:
    """The realm each CPU doing ripas-churn builds (run.ripas_template: ripas-loop, one REC,
    40 bits) has 2 root RTTs, and resolve.ripas_granules counts those 2: RD, roots, the REC with
    its aux granules and run page, ripas-loop's image and REC 0's 4 pages, and 8 tables, 36
    granules. It counted 16 roots (50 granules), 14 a CPU never has, and no test saw it."""
    t = run.ripas_template()
    assert root_count(t) == 2
    pages = programs.backed_pages("ripas-loop", 1, len(t.image))
    assert ripas_granules() == 1 + 2 + (2 + MAX_AUX) + pages + 8 == 36

HELLO = """platform = "small.toml"
cpus = 1
iterations = 300
activities = { run = 1 }

[[realm]]
name = "h"
guest = "hello"
instances = 33
"""


def test_guests_that_never_touch_their_unprotected_alias_count_no_shared_pages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hello, measure, smp-boot and ripas-loop address only their image and their pages in RAM,
    so their realms count no shared pages and no unprotected tables: a hello realm is its RD, 2
    roots, its REC with aux granules and run page, its image and 5 tables (29 granules, 34 fewer
    than with 16 shared pages and 18 tables); a guest file still counts those 34. 33 hello realms on 4 MiB of DRAM (957 of 960 granules) are accepted, where they were
    refused at 2,079; CPU 0 runs them and the host's allocator never holds more than the bound."""
    small_platform(tmp_path)
    path = tmp_path / "w.toml"
    path.write_text(HELLO)
    w = resolve(spec.load(str(path)))
    t = w.realms[0]
    assert realm_granules(t) == 1 + 2 + 18 + t.backed + 5 == 29
    assert _memory(w)[0] == 33 * 29
    assert [programs.shares_pages(g) for g in ("hello", "measure", "smp-boot", "ripas-loop")] == [False] * 4
    assert programs.shares_pages("attest") and programs.shares_pages("ripas-flip")
    assert programs.shares_pages(str(tmp_path / "guest.s"))
    # The same realm running a guest file: all of its 2 MiB of RAM, and the 34 again (16 pages,
    # the most the host backs, and their tables).
    assert realm_granules(replace(t, guest=str(tmp_path / "guest.s"), shared=None)) == 29 - t.backed + 512 + 34
    result, peak = run_with_peak(monkeypatch, w)
    assert not result.errors
    assert result.counters["REC entries"] >= 33
    assert 0 < peak <= 33 * 29


ATTEST = """platform = "small.toml"
cpus = 1
iterations = 1500
activities = { run = 1 }

[[realm]]
name = "att"
guest = "attest"
ram = "3M"
instances = 24
"""


def test_an_attest_realm_counts_the_shared_pages_of_its_token_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """attest touches the unprotected alias of its RAM only to copy its token (at most
    TOKEN_BUFFER_SIZE bytes from SHARED_OFFSET): 1 shared page at the default, page-aligned
    SHARED_OFFSET, 2 at an unaligned one, each with a table (and 2 above them), not 16 pages and
    18 tables as it counted, 30 granules too many. 24 attest realms on 4 MiB of DRAM (35
    granules each, 840 of 960) are accepted, where they were refused at 65 each (1,560); CPU 0
    runs them until each has copied its token, and the host's allocator never holds more than
    the bound."""
    small_platform(tmp_path)
    path = tmp_path / "w.toml"
    path.write_text(ATTEST)
    w = resolve(spec.load(str(path)))
    t = w.realms[0]
    assert programs.shared_pages("attest") == t.shared == 1
    assert realm_granules(t) == 35 and _memory(w)[0] == 24 * 35
    path.write_text(ATTEST.replace('ram = "3M"', 'ram = "3M"\nconstants = { SHARED_OFFSET = 0x200008 }'))
    unaligned = spec.load(str(path)).realms[0]
    assert unaligned.shared == 2 and realm_granules(unaligned) == 35 + 2
    maps = [0]
    real_smc = Cpu.smc

    def smc(self: Cpu, fid: int, *args: int) -> tuple[int, int, int, int, int]:
        out = real_smc(self, fid, *args)
        maps[0] += fid == RmiFid.RMI_RTT_MAP_UNPROTECTED and out[0] == 0
        return out

    monkeypatch.setattr(Cpu, "smc", smc)
    result, peak = run_with_peak(monkeypatch, w)
    assert not result.errors
    assert maps == [24]             # each realm's token copy, on its one shared page
    assert 0 < peak <= 24 * 35
