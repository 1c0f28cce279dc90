"""Platform files a user may get wrong, found by an audit of the loader (rmm_mp/hw/platform.py):
each error names the key that holds the mistake, with its value and what was expected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rmm_mp.hw import platform as plat
from rmm_mp.hw.tomlsrc import ConfigError

HOST_TOML = plat.platform_dir() / "host.toml"


def _load_edited(tmp_path: Path, pattern: str, replacement: str) -> plat.Platform:
    text, n = re.subn(pattern, replacement, HOST_TOML.read_text(), count=1, flags=re.M)
    assert n == 1, pattern
    path = tmp_path / "edited.toml"
    path.write_text(text)
    return plat.load(path)


def test_a_name_too_long_for_the_control_block_is_named(tmp_path: Path) -> None:
    """A platform whose 30,000-character name makes its JSON too long for the control block is
    refused naming `name` and its length. Before, the name was not among the values the check
    weighed, and the error blamed the 75-character description, which was fine."""
    with pytest.raises(ConfigError) as info:
        _load_edited(tmp_path, r'^name = "host"', 'name = "' + "h" * 30_000 + '"')
    assert info.value.key == "name", str(info.value)
    assert "name = (30000 characters)" in str(info.value) and "control block" in str(info.value)
    assert info.value.line == 7



@pytest.mark.parametrize("pattern, replacement, expected", [
    (r'^base = 0x83F0_0000\nsize = "1 MiB"', 'base = 0x83F0_0000\nsize = "2 MiB"',
     "secure[0].base = 2213543936 (0x83f00000): expected a Secure range inside DRAM [0x80000000, 0x84000000); "
     "it is [0x83f00000, 0x84100000) with its size"),
    (r'^base = 0x1C09_0000\nsize = "64 KiB"', 'base = 0x7FFF_0000\nsize = "128 KiB"',
     "mmio[0].base = 2147418112 (0x7fff0000): expected an MMIO range outside DRAM [0x80000000, 0x84000000); "
     "it is [0x7fff0000, 0x80010000) with its size"),
], ids=["secure-past-dram-end", "mmio-into-dram"])
def test_a_range_crossing_the_edge_of_dram_is_shown_with_its_end(tmp_path: Path, pattern: str, replacement: str,
                                                                 expected: str) -> None:
    """A Secure range that starts in DRAM and runs past its end, or an MMIO range that starts
    below DRAM and runs into it, is refused showing the range its size gives it. Before, the
    error showed the base alone, an address on the right side of DRAM's edge, and the expected
    text then read as if that address were the mistake."""
    with pytest.raises(ConfigError) as info:
        _load_edited(tmp_path, pattern, replacement)
    assert expected in str(info.value)
    assert info.value.line is not None


@pytest.mark.parametrize("replacement, shown, expected", [
    ('base = "0x8000_0000"', "dram.base = '0x8000_0000'",
     'an integer such as 0x8000_0000, not a string: write the address without quotes'),
    ("base = 2147483648.0", "dram.base = 2147483648.0", "an integer such as 0x8000_0000"),
    ("base = -4096", "dram.base = -4096", "an address of 0 or more"),
], ids=["string", "float", "negative"])
def test_a_base_that_is_no_address_is_told_what_an_address_is(tmp_path: Path, replacement: str, shown: str,
                                                               expected: str) -> None:
    """A region base written as a string (a hex address in quotes, as a size may be written), or
    as a negative number, was told it was not "a 4 KiB-aligned physical address": -4096 and "0x0"
    are 4 KiB-aligned as numbers, so the expectation named the wrong mistake."""
    with pytest.raises(ConfigError) as info:
        _load_edited(tmp_path, r"^base = 0x8000_0000", replacement)
    assert f"{shown}: expected" in str(info.value), str(info.value)
    assert expected in str(info.value), str(info.value)
    assert info.value.line == 14 and info.value.key == "dram.base"


@pytest.mark.parametrize("key_line, written, expected", [
    (r"^breakpoints = 6", "NUM_BPS = 5", "NUM_BPS is the register field: write the count, breakpoints = 6"),
    (r"^watchpoints = 4", "num_wps = 3", "NUM_WPS is the register field: write the count, watchpoints = 4"),
    (r"^gic_list_registers = 4", "gicv3_num_lrs = 3",
     "GICV3_NUM_LRS is the register field: write the count, gic_list_registers = 4"),
    (r"^pmu_counters = 31", "pmu_num_ctrs = 31", "PMU_NUM_CTRS is the register field: write pmu_counters = 31"),
    (r"^pmu = true", "pmu_en = true", "PMU_EN is the register field: write pmu = true"),
    (r"^sve = false", "sve_en = false", "SVE_EN is the register field: write sve = false"),
    (r"^sve = false", "sve = true\nsve_vl = 3",
     "SVE_VL is the register field: write the length in bits, sve_vector_length = 512"),
    (r'^hash_algorithms = \["sha-256", "sha-512"\]', 'hash_sha_256 = true',
     'HASH_SHA_256 is the register field: write the list of hashes, hash_algorithms = ["sha-256"]'),
], ids=["NUM_BPS", "num_wps", "gicv3_num_lrs", "pmu_num_ctrs", "pmu_en", "sve_en", "sve_vl", "hash_sha_256"])
def test_a_feature_written_by_its_register_field_name_is_told_the_key(tmp_path: Path, key_line: str, written: str,
                                                                       expected: str) -> None:
    """An SoC team reading RmiFeatureRegister0 (B4.4.6; docs/platforms.md lists each key's field)
    may write a field's name and its encoding: NUM_BPS = 5 for 6 breakpoints. That was "no such
    key" with no key named (or a suggestion alone, pmu_counters for pmu_num_ctrs, with no word of
    the count the key takes where the field holds count - 1)."""
    with pytest.raises(ConfigError) as info:
        _load_edited(tmp_path, key_line, written)
    assert "no such key" in str(info.value) and expected in str(info.value), str(info.value)


@pytest.mark.parametrize("key_line, written, expected, not_said", [
    (r'^hash_algorithms = \["sha-256", "sha-512"\]', 'hash_algorithms = ["sha-512"]\nhash_sha_256 = false',
     'write the list of hashes, hash_algorithms, without "sha-256"', '["sha-256"]'),
    (r"^breakpoints = 6", "NUM_BPS = 100", "write the count, breakpoints = ... (2..64)", "= 101"),
    (r"^breakpoints = 6", "NUM_BPS = 0", "write the count, breakpoints = ... (2..64)", "= 1;"),
    (r"^gic_list_registers = 4", "gicv3_num_lrs = 16", "gic_list_registers = ... (1..16)", "= 17"),
    (r"^sve = false", "sve = true\nsve_vl = 16", "sve_vector_length = ... (a multiple of 128 in 128..2048)",
     "2176"),
    (r"^pmu_counters = 31", "pmu_num_ctrs = 40", "write pmu_counters = ... (0..31)", "= 40;"),
    (r"^pmu = true", "pmu_en = 1", "PMU_EN is the register field: write pmu = true", "true or false"),
    (r"^s2sz = (\d+)", r"S2SZ = \1", "S2SZ is the register field: write s2sz = ", "no such key;"),
    (r"^lpa2 = false", "LPA2 = 0", "LPA2 is the register field: write lpa2 = false", "no such key;"),
    (r"^lpa2 = false", "LPA2 = true", "LPA2 is the register field: write lpa2 = ... (false only)", "no such key;"),
    (r"^\[features\]", "[features]\nMAX_RECS_ORDER = 3", "MAX_RECS_ORDER is the register field: write "
     "max_recs_order = 3", "no such key;"),
    (r"^\[features\]", "[features]\nVMID_BITS = 16", '(did you mean "vmid_bits"?)', "no such key;"),
], ids=["hash_false", "bps_100", "bps_0", "lrs_16", "sve_vl_16", "ctrs_40", "pmu_en_1", "S2SZ", "LPA2_0",
        "LPA2_true", "MAX_RECS_ORDER", "VMID_BITS"])
def test_a_register_field_hint_names_no_value_the_key_refuses(tmp_path: Path, key_line: str, written: str,
                                                               expected: str, not_said: str) -> None:
    """The register field hint told hash_sha_256 = false to write hash_algorithms = ["sha-256"]
    (the opposite), NUM_BPS = 100 to write breakpoints = 101 (refused: 2..64), and said nothing
    (not even a suggestion: difflib minds case) for S2SZ, LPA2 and MAX_RECS_ORDER, the fields
    whose key is their name in lower case."""
    with pytest.raises(ConfigError) as info:
        _load_edited(tmp_path, key_line, written)
    assert expected in str(info.value) and not_said not in str(info.value), str(info.value)
