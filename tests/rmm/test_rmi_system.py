"""RMI_VERSION (DEN0137 1.0-rel0 B4.3.23, chapter B2) and RMI_FEATURES (B4.3.4, B4.4.6).

rmm-mp supports exactly one interface revision, 1.0, so B2's outcomes reduce to: (a) a request
for 1.0 succeeds with lower = 1.0; (b) a request above 1.0 fails with lower = the highest
supported revision below it = 1.0; (c) a request below 1.0 fails with lower = higher = 1.0.
Higher is always 1.0.
"""

from __future__ import annotations

import pytest

from footprint import snapshot
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid, RmiStatus, pack_return

VERSION = RmiFid.RMI_VERSION
FEATURES = RmiFid.RMI_FEATURES
SUCCESS = pack_return(RmiStatus.RMI_SUCCESS)
ERROR_INPUT = pack_return(RmiStatus.RMI_ERROR_INPUT)
V1_0 = 0x10000
X4 = 0xABCD_EF01_2345_6789

# RmiFeatureRegister0 of platform/host.toml, assembled by hand from B4.4.6's field positions:
#   S2SZ 48                 bits 7:0    0x30
#   LPA2 0, SVE_EN 0, SVE_VL 0
#   NUM_BPS 6 - 1 = 5       bits 19:14  5 << 14  = 0x0000_0001_4000
#   NUM_WPS 4 - 1 = 3       bits 25:20  3 << 20  = 0x0000_0030_0000
#   PMU_EN 1                bit 26               = 0x0000_0400_0000
#   PMU_NUM_CTRS 31         bits 31:27  31 << 27 = 0x0000_F800_0000
#   HASH_SHA_256 1          bit 32               = 0x0001_0000_0000
#   HASH_SHA_512 1          bit 33               = 0x0002_0000_0000
#   GICV3_NUM_LRS 4 - 1 = 3 bits 37:34  3 << 34  = 0x000C_0000_0000
#   MAX_RECS_ORDER 10       bits 41:38  10 << 38 = 0x0280_0000_0000
HOST_FEATURE_REGISTER0 = 0x0000_028F_FC31_4030

# platform/fvp.toml: S2SZ 48, SVE_EN 1 (bit 9), SVE_VL 2048/128 - 1 = 15 (bits 13:10),
# NUM_BPS 15, NUM_WPS 15, PMU_EN 1, PMU_NUM_CTRS 31, SHA-256, SHA-512, GICV3_NUM_LRS 15,
# MAX_RECS_ORDER 10.
FVP_FEATURE_REGISTER0 = 0x0000_02BF_FCF3_FE30


def test_host_feature_register_literal_is_consistent() -> None:
    """The hand-written host literal above is the sum of its commented fields (guards the
    arithmetic of the expected value itself)."""
    fields = (48, 5 << 14, 3 << 20, 1 << 26, 31 << 27, 1 << 32, 1 << 33, 3 << 34, 10 << 38)
    assert sum(fields) == HOST_FEATURE_REGISTER0
    fvp = (48, 1 << 9, 15 << 10, 15 << 14, 15 << 20, 1 << 26, 31 << 27, 1 << 32, 1 << 33, 15 << 34, 10 << 38)
    assert sum(fvp) == FVP_FEATURE_REGISTER0


# -- RMI_VERSION ----------------------------------------------------------------------------


def test_version_1_0_succeeds(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """B2 outcome (a): request 1.0 (0x10000) -> RMI_SUCCESS, lower = higher = 0x10000, X3 = 0,
    X4 = 0; no footprint."""
    before = snapshot(machine)
    assert cpu0.smc(VERSION, V1_0, 0x22, 0x33, X4) == (SUCCESS, V1_0, V1_0, 0, 0)
    assert before.diff(snapshot(machine)) == []


@pytest.mark.parametrize(
    "request_version",
    [0x10001, 0x20000, 0x0, 0xFFFF_FFFF_FFFF_FFFF, 0x1_0001_0000],
    ids=["1.1 (outcome b)", "2.0 (outcome b)", "0.0 (outcome c)", "all-ones", "1.0 with bit 32 set"],
)
def test_version_other_request_fails(machine: Machine, cpu0, request_version: int) -> None:  # type: ignore[no-untyped-def]
    """B2 outcomes (b)/(c) with 1.0 the only supported revision: any request other than 1.0 ->
    RMI_ERROR_INPUT with lower = higher = 0x10000 (X3 = X4 = 0); no footprint."""
    before = snapshot(machine)
    assert cpu0.smc(VERSION, request_version, 0, 0, X4) == (ERROR_INPUT, V1_0, V1_0, 0, 0)
    assert before.diff(snapshot(machine)) == []


def test_version_on_every_cpu(machine: Machine) -> None:
    """RMI_VERSION answers the same on every CPU (no per-CPU handshake state)."""
    for i in range(machine.cpus):
        assert machine.cpu(i).smc(VERSION, V1_0) == (SUCCESS, V1_0, V1_0, 0, 0)
        assert machine.cpu(i).smc(VERSION, 0x20000) == (ERROR_INPUT, V1_0, V1_0, 0, 0)


def test_version_negative_argument_is_modulo_2_64(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """A request of -1 is stored as 0xFFFF_FFFF_FFFF_FFFF: RMI_ERROR_INPUT, lower = higher = 1.0."""
    assert cpu0.smc(VERSION, -1) == (ERROR_INPUT, V1_0, V1_0, 0, 0)


# -- RMI_FEATURES ---------------------------------------------------------------------------


def test_features_index0_host(machine: Machine, cpu0) -> None:  # type: ignore[no-untyped-def]
    """B4.3.4: index 0 returns RmiFeatureRegister0 of the host platform (literal computed from
    platform/host.toml), status SUCCESS, X2 = X3 = X4 = 0; no footprint."""
    before = snapshot(machine)
    assert cpu0.smc(FEATURES, 0, 0x22, 0x33, X4) == (SUCCESS, HOST_FEATURE_REGISTER0, 0, 0, 0)
    assert before.diff(snapshot(machine)) == []


@pytest.mark.parametrize("index", [1, 2, 0x100, 0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF])
def test_features_other_index_reads_zero(machine: Machine, cpu0, index: int) -> None:  # type: ignore[no-untyped-def]
    """B4.3.4 success condition 'index': index != 0 -> RMI_SUCCESS with value 0 (no failure
    conditions exist)."""
    assert cpu0.smc(FEATURES, index, 0x22, 0x33, X4) == (SUCCESS, 0, 0, 0, 0)


def test_features_index0_fvp() -> None:
    """B4.3.4 on the fvp platform: index 0 returns its feature register (SVE with VL 2048 bits,
    16 breakpoints/watchpoints/list registers), any other index 0."""
    with Machine.create("fvp", cpus=1) as m:
        cpu = m.cpu(0)
        assert cpu.smc(FEATURES, 0) == (SUCCESS, FVP_FEATURE_REGISTER0, 0, 0, 0)
        assert cpu.smc(FEATURES, 1) == (SUCCESS, 0, 0, 0, 0)
        assert cpu.smc(VERSION, V1_0) == (SUCCESS, V1_0, V1_0, 0, 0)


def test_features_same_on_every_cpu(machine: Machine) -> None:
    """Feature register 0 is a platform fact: every CPU reports the same value."""
    values = {machine.cpu(i).smc(FEATURES, 0)[1] for i in range(machine.cpus)}
    assert values == {HOST_FEATURE_REGISTER0}
