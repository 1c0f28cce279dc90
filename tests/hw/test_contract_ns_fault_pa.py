"""Where a GranuleProtectionFault says an access failed when the access both runs into a granule
outside the Non-secure PAS and past the end of DRAM: its ``pa`` is the first byte that fails the
check (faults.py), the non-NS granule before the end, not the end of DRAM.

Found by an outside author's probe of the public API: on the `host` platform DRAM ends in the
Secure region, so a long access from NS DRAM reaches both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_mp import GranuleProtectionFault, Machine
from rmm_mp.abi.rmi import RmiFid


def _accesses(m: Machine) -> list[tuple[str, object]]:
    return [("ns_read", lambda pa, n: m.ns_read(pa, n)), ("ns_write", lambda pa, n: m.ns_write(pa, bytes(n)))]


def test_an_access_through_the_secure_region_past_dram_names_the_region() -> None:
    """From NS DRAM through the Secure region at the end of `host`'s DRAM and one byte past the
    end: the fault is at the region's base; starting inside the region, at the access's start."""
    with Machine.create("host", cpus=1) as m:
        end = m.dram_base + m.granule_count * m.granule_size
        base, size = m.secure_regions[0]
        assert base + size == end       # the layout the test is about
        for name, access in _accesses(m):
            with pytest.raises(GranuleProtectionFault) as through:
                access(base - 16, end + 1 - (base - 16))   # type: ignore[operator]
            assert through.value.pa == base, name
            with pytest.raises(GranuleProtectionFault) as inside:
                access(base + 100, end + 1 - (base + 100))  # type: ignore[operator]
            assert inside.value.pa == base + 100, name
            with pytest.raises(GranuleProtectionFault) as whole:
                access(m.dram_base, m.granule_count * m.granule_size + 1)   # type: ignore[operator]
            assert whole.value.pa == base, name


def test_an_access_through_a_delegated_granule_past_dram_names_the_granule() -> None:
    """A delegated granule before the end is the first failing byte too; once it is undelegated
    again the same access faults in the Secure region, and with NS DRAM only up to the end, at
    the end."""
    with Machine.create("host", cpus=1) as m:
        end = m.dram_base + m.granule_count * m.granule_size
        realm = m.dram_base + 7 * m.granule_size
        cpu = m.cpu(0)
        assert cpu.smc(RmiFid.RMI_GRANULE_DELEGATE, realm)[0] == 0
        for name, access in _accesses(m):
            with pytest.raises(GranuleProtectionFault) as fault:
                access(m.dram_base + 8, end - m.dram_base)     # type: ignore[operator]
            assert fault.value.pa == realm, name
            assert "REALM" in fault.value.reason, name
        assert cpu.smc(RmiFid.RMI_GRANULE_UNDELEGATE, realm)[0] == 0
        with pytest.raises(GranuleProtectionFault) as secure:
            m.ns_read(m.dram_base + 8, end - m.dram_base)
        assert secure.value.pa == m.secure_regions[0][0]


def test_an_access_past_dram_through_ns_granules_only_faults_at_the_end(tmp_path: Path) -> None:
    """The case the docstring above names but `host` cannot show (its DRAM ends in Secure): on a
    platform whose Secure region is not at the end, an access from NS DRAM past the end faults
    at the end of DRAM; one that crosses the Secure region first faults at the region."""
    source = (Path(__file__).resolve().parents[2] / "platform" / "host.toml").read_text()
    assert "base = 0x83F0_0000" in source
    toml = tmp_path / "secure-low.toml"
    toml.write_text(source.replace('name = "host"', 'name = "secure-low"').replace("base = 0x83F0_0000",
                                                                                   "base = 0x8100_0000"))
    with Machine.create(toml, cpus=1) as m:
        end = m.dram_base + m.granule_count * m.granule_size
        base, size = m.secure_regions[0]
        assert base + size < end
        for name, access in _accesses(m):
            with pytest.raises(GranuleProtectionFault) as past:
                access(end - 16, 17)     # type: ignore[operator]
            assert past.value.pa == end and "past the end of DRAM" in past.value.reason, name
            with pytest.raises(GranuleProtectionFault) as through:
                access(base - 16, end + 1 - (base - 16))     # type: ignore[operator]
            assert through.value.pa == base and "SECURE" in through.value.reason, name
