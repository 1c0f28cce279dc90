"""Platform descriptions (rmm_mp/hw/platform.py, platform/*.toml; DESIGN.md section 3).

The bundled platforms load with the facts the suite relies on. Every kind of mistake in a
platform file is a ConfigError (a ValueError) whose message names the file, the line, the
dotted key, the bad value and what was expected. Bad files are made by editing one line of
platform/host.toml and written into tmp_path (the large platform is validated, never created).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from rmm_mp import Machine
from rmm_mp.abi.rmi import FeatureRegister0
from rmm_mp.hw import platform as plat
from rmm_mp.hw import segment
from rmm_mp.hw.platform import Platform, load
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.workload.fields import Fields

HOST_TOML = plat.platform_dir() / "host.toml"
GRANULE = 4096


def _fields(register: int) -> dict[str, int]:
    names = ("S2SZ", "LPA2", "SVE_EN", "SVE_VL", "NUM_BPS", "NUM_WPS", "PMU_EN", "PMU_NUM_CTRS",
             "HASH_SHA_256", "HASH_SHA_512", "GICV3_NUM_LRS", "MAX_RECS_ORDER")
    return {n: FeatureRegister0.field(register, n) for n in names}


# -- bundled platforms ---------------------------------------------------------------------------


def test_bundled_platform_names() -> None:
    """The package ships the host, fvp and large platforms."""
    assert {"host", "fvp", "large"} <= set(plat.bundled_platforms())


def test_host_platform() -> None:
    """host (DESIGN 3): 4 CPUs; >= 4096 DRAM granules in one bank; pa_bits 48; feature register
    0 with S2SZ 48, LPA2 off, SHA-256 and SHA-512, breakpoints 6 -> NUM_BPS 5, watchpoints 4 ->
    NUM_WPS 3; one MMIO region outside DRAM; one Secure region inside DRAM."""
    p = load("host")
    assert p.name == "host"
    assert p.cpus == 4
    assert p.pa_bits == 48
    assert p.dram.base % GRANULE == 0 and p.dram.size % GRANULE == 0
    assert p.granule_count == p.dram.size // GRANULE >= 4096
    f = p.features
    assert (f.breakpoints, f.watchpoints) == (6, 4)
    reg = _fields(f.register0())
    assert reg["S2SZ"] == 48
    assert reg["LPA2"] == 0
    assert reg["HASH_SHA_256"] == 1 and reg["HASH_SHA_512"] == 1
    assert reg["NUM_BPS"] == 5 >= 5
    assert reg["NUM_WPS"] == 3 >= 3
    assert len(p.mmio) == 1
    mmio = p.mmio[0]
    assert mmio.end <= p.dram.base or mmio.base >= p.dram.end
    assert mmio.end <= 1 << p.pa_bits
    assert len(p.secure) == 1
    secure = p.secure[0]
    assert p.dram.base <= secure.base and secure.end <= p.dram.end
    assert secure.base % GRANULE == 0 and secure.size % GRANULE == 0


def test_fvp_platform() -> None:
    """fvp: 8 CPUs, 256 MiB of DRAM, SVE with a 2048-bit vector length (SVE_VL 15)."""
    p = load("fvp")
    assert p.cpus == 8
    assert p.dram.size == 256 << 20
    reg = _fields(p.features.register0())
    assert (reg["SVE_EN"], reg["SVE_VL"]) == (1, 15)
    assert reg["S2SZ"] == 48


def test_large_platform_validates() -> None:
    """large: 64 CPUs, 4 GiB of DRAM (validated only; the suite never creates it)."""
    p = load("large")
    assert p.cpus == 64
    assert p.dram.size == 4 << 30
    assert p.granule_count == 1 << 20


@pytest.mark.parametrize("name", ["host", "fvp", "large"])
def test_json_round_trip(name: str) -> None:
    """Platform.to_json / from_json give back an equal Platform (machines store it in shared
    memory for attachers), including its feature register."""
    p = load(name)
    q = Platform.from_json(p.to_json())
    assert q == p
    assert q.features.register0() == p.features.register0()
    assert q.mmio == p.mmio and q.secure == p.secure


def test_load_by_path(tmp_path: Path) -> None:
    """A platform file given by path loads like the bundled one of the same content."""
    path = tmp_path / "copy.toml"
    path.write_text(HOST_TOML.read_text())
    p = load(path)
    assert p.source == str(path)
    assert Platform.from_json(p.to_json()).features == load("host").features


def test_unknown_platform_name() -> None:
    """An unknown platform name is a ConfigError naming the value and the known platforms."""
    with pytest.raises(ConfigError) as info:
        load("no-such-platform")
    assert "no-such-platform" in str(info.value) and "host" in str(info.value)
    assert "expected" in str(info.value)


def test_misspelt_platform_name_gets_a_suggestion() -> None:
    """A name close to a bundled one is answered with it, as workload names are."""
    with pytest.raises(ConfigError) as info:
        load("hots")
    assert 'did you mean "host"?' in str(info.value)


# -- bad files -----------------------------------------------------------------------------------

# (id, line pattern to replace (anchored at line start), replacement, dotted key, value as shown)
# The error's line is the replaced line unless the case says otherwise (see BAD_LINE below).
BAD = [
    ("missing-required-key", r"pmu = true\n", "", "features.pmu", "(missing)"),
    ("missing-region-base", r"base = 0x8000_0000\n", "", "dram.base", "(missing)"),
    ("unknown-top-level-key", r"pa_bits = 48\n", "pa_bits = 48\nbogus = 1\n", "bogus", "1"),
    ("unknown-feature-key", r"lpa2 = false\n", "lpa2 = false\nlpa3 = true\n", "features.lpa3", "true"),   # as TOML spells it
    ("wrong-type-cpus", r"cpus = 4", 'cpus = "four"', "cpus", "'four'"),
    ("wrong-type-bool", r"lpa2 = false", "lpa2 = 0", "features.lpa2", "0"),
    ("wrong-type-hashes", r'hash_algorithms = \["sha-256", "sha-512"\]', 'hash_algorithms = "sha-256"',
     "features.hash_algorithms", "'sha-256'"),
    ("breakpoints-1", r"breakpoints = 6", "breakpoints = 1", "features.breakpoints", "1"),
    ("breakpoints-65", r"breakpoints = 6", "breakpoints = 65", "features.breakpoints", "65"),
    ("watchpoints-1", r"watchpoints = 4", "watchpoints = 1", "features.watchpoints", "1"),
    ("gic-lrs-0", r"gic_list_registers = 4", "gic_list_registers = 0", "features.gic_list_registers", "0"),
    ("gic-lrs-17", r"gic_list_registers = 4", "gic_list_registers = 17", "features.gic_list_registers", "17"),
    ("pmu-counters-32", r"pmu_counters = 31", "pmu_counters = 32", "features.pmu_counters", "32"),
    # The counters were dropped without a word (the register says PMU_NUM_CTRS = 0), as
    # sve_vector_length is refused without sve.
    ("pmu-off-with-counters", r"pmu = true", "pmu = false", "features.pmu_counters", "31"),
    ("cpus-0", r"cpus = 4", "cpus = 0", "cpus", "0"),
    ("s2sz-above-pa-bits", r"pa_bits = 48", "pa_bits = 40", "features.s2sz", "48"),
    ("s2sz-52-without-lpa2", r"s2sz = 48", "s2sz = 52", "features.s2sz", "52"),
    ("pa-bits-47", r"pa_bits = 48", "pa_bits = 47", "pa_bits", "47"),
    ("pa-bits-float", r"pa_bits = 48", "pa_bits = 48.0", "pa_bits", "48.0"),       # == 48, but no width
    ("vmid-bits-float", r"vmid_bits = 8 ", "vmid_bits = 8.0 ", "features.vmid_bits", "8.0"),
    # Wrong types that were accepted: a region name that is no string, and a vector length of
    # 0.0 or false without SVE (both == 0, and the float went on into the machine's JSON).
    ("mmio-name-integer", r'name = "uart"', "name = 5", "mmio[0].name", "5"),
    ("sve-vl-float-without-sve", r"sve = false", "sve = false\nsve_vector_length = 0.0",
     "features.sve_vector_length", "0.0"),
    ("sve-vl-bool-without-sve", r"sve = false", "sve = false\nsve_vector_length = false",
     "features.sve_vector_length", "false"),
    ("unaligned-dram-base", r"base = 0x8000_0000", "base = 0x8000_0800", "dram.base", "2147485696 (0x80000800)"),
    ("unaligned-mmio-base", r"base = 0x1C09_0000", "base = 0x1C09_0100", "mmio[0].base", "470352128 (0x1c090100)"),
    # "1 MB" was here as no size; platform files now take the workload syntax, where it is 1 MiB.
    ("size-1-Mb-bits", r'size = "64 MiB"', 'size = "1 Mb"', "dram.size", "'1 Mb'"),
    ("size-negative", r'size = "64 MiB"', 'size = "-4 KiB"', "dram.size", "'-4 KiB'"),
    ("size-4097", r'size = "64 MiB"', "size = 4097", "dram.size", "4097 (0x1001)"),
    ("size-fullwidth-digits", r'size = "64 MiB"', 'size = "\uff16\uff14 MiB"', "dram.size", "'\uff16\uff14 MiB'"),
    ("mmio-overlaps-dram", r"base = 0x1C09_0000", "base = 0x83FF_0000", "mmio[0].base", "2214526976 (0x83ff0000)"),
    ("secure-outside-dram", r"base = 0x83F0_0000", "base = 0x9000_0000", "secure[0].base", "2415919104 (0x90000000)"),
    ("secure-straddles-dram-end", r"base = 0x83F0_0000", "base = 0x83FF_F000", "secure[0].base",
     "2214588416 (0x83fff000)"),
    ("region-past-pa-range", r'size = "64 KiB"', 'size = "256 TiB"', "mmio[0].size", "'256 TiB'"),
    ("dram-past-pa-range", r'size = "64 MiB"', 'size = "256 TiB"', "dram.size", "'256 TiB'"),
    # A base at or past 2^pa_bits was blamed on the size ("a size that keeps [base, base + size)
    # at or below 2^pa_bits"), which no size can do.
    ("mmio-base-past-pa-range", r"base = 0x1C09_0000", "base = 0x1_0000_0000_0000", "mmio[0].base",
     "281474976710656 (0x1000000000000)"),
    ("dram-base-past-pa-range", r"base = 0x8000_0000", "base = 0x1_0000_8000_0000", "dram.base",
     "281477124194304 (0x1000080000000)"),
    # More digits than int() converts (4300): its ValueError, with no file, line or key, was the
    # whole message of `rmm-mp platform show` (tomlnum.decimal).
    ("size-more-digits-than-int-converts", r'size = "64 MiB"', f'size = "{"9" * 5000} MiB"', "dram.size",
     f"'{'9' * 119}... (5,006 characters in all)"),   # too long to show whole: its start and length
    # More granules than the host allocator's bitmap holds: the file loaded, and `rmm-mp run`
    # made the machine and then failed with "AllocatorError: ... do not fit the host bitmap".
    ("dram-past-host-bitmap", r'size = "64 MiB"', 'size = "4100 MiB"', "dram.size", "'4100 MiB'"),
    ("secure-overlap", r"\[\[secure\]\].*\n", '[[secure]]\nbase = 0x83F8_0000\nsize = "64 KiB"\n\n[[secure]]\n',
     "secure[1].base", "2213543936 (0x83f00000)"),
    # Overlapping MMIO ranges loaded (only Secure ones were checked).
    ("mmio-overlap", r"\[\[mmio\]\].*\n", '[[mmio]]\nbase = 0x1C09_8000\nsize = "64 KiB"\n\n[[mmio]]\n',
     "mmio[1].base", "470351872 (0x1c090000)"),
    ("secure-leaves-no-ns-dram", r"base = 0x83F0_0000\nsize = .*", 'base = 0x8000_0000\nsize = "65024 KiB"',
     "secure[0].size", "'65024 KiB'"),
    ("bad-attestation-keys", r'keys = "seeds"', 'keys = "random"', "attestation.keys", "'random'"),
    ("seeds-missing", r"rak_seed = .*\n", "", "attestation.rak_seed", "(missing)"),
    ("empty-seed", r"platform_key_seed = .*", 'platform_key_seed = ""', "attestation.platform_key_seed", "''"),
]

# Where the error points when that is not the replaced line: a missing key points at its
# table's header.
BAD_LINE = {
    "missing-required-key": r"\[features\]",
    "missing-region-base": r"\[dram\]",
    "s2sz-above-pa-bits": r"s2sz = 48",
    "seeds-missing": r"\[attestation\]",
    "secure-overlap": r"base = 0x83F0_0000",
    "mmio-overlap": r"base = 0x1C09_0000",
    "secure-leaves-no-ns-dram": r'size = "65024 KiB"',
    "pmu-off-with-counters": r"pmu_counters = 31",
}


def _line_of(text: str, pattern: str) -> int:
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if re.match(pattern, line)]
    assert len(lines) == 1, f"pattern {pattern!r} matches lines {lines}"
    return lines[0]


def _write_bad(tmp_path: Path, pattern: str, replacement: str) -> tuple[Path, str]:
    text, n = re.subn(f"(?m)^{pattern}", replacement, HOST_TOML.read_text(), count=1)
    assert n == 1, f"pattern {pattern!r} not found in host.toml"
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path, text


@pytest.mark.parametrize("case, pattern, replacement, key, shown", BAD, ids=[b[0] for b in BAD])
def test_bad_platform_file(tmp_path: Path, case: str, pattern: str, replacement: str, key: str,
                           shown: str) -> None:
    """One mistake in an otherwise valid host.toml -> ConfigError (a ValueError) whose message
    contains 'file:line', 'dotted.key = bad value' and 'expected'; the attributes agree."""
    path, text = _write_bad(tmp_path, pattern, replacement)
    if case in BAD_LINE:
        line = _line_of(text, BAD_LINE[case])
    else:
        line = _line_of(text, re.escape(replacement.strip().split("\n")[-1]) if replacement else pattern)
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    message = str(err)
    assert isinstance(err, ValueError)
    assert f"{path}:{line}:" in message
    assert f"{key} = {shown}:" in message
    assert "expected" in message
    assert (err.source, err.key, err.line) == (str(path), key, line)


SIZE_SPELLINGS = ["64 MiB", "64M", "64m", "64MB", "64 MiB ", "65536K", "65536 KiB", "65536kB", "67108864"]


@pytest.mark.parametrize("spelling", SIZE_SPELLINGS)
def test_sizes_take_the_workload_files_syntax(tmp_path: Path, spelling: str) -> None:
    """dram.size written as a workload file's ram may be ("64M", "64MB", "65536K": binary units
    K to T in either case, B or iB after them optional) loads as 64 MiB, as the workload parser
    reads it too. Platform files took only "64 MiB"-style units, so a size copied from a
    workload file ("64M") was refused as no size at all."""
    path, _ = _write_bad(tmp_path, r'size = "64 MiB"', f'size = "{spelling}"')
    assert load(path).dram.size == 64 << 20
    assert Fields("", "w").size(spelling, "ram", GRANULE, 1 << 30) == 64 << 20


@pytest.mark.parametrize("spelling", ["64 Mb", "64mb", "64 mib", "64MIb", "64MIB", "64 mIB", "64 PiB", "64 megabytes",
                                      "0x4000000", "64 IB"])
def test_a_size_that_is_none_is_refused_alike_by_platform_and_workload_files(tmp_path: Path, spelling: str) -> None:
    """A string that is no size is refused by both parsers with the same "expected" text, which
    shows the syntax; one ending in a lower-case b (bits) says so, as "64mb" is no typo of
    "64MB" the parser could guess at; one whose unit has iB with an upper-case I says the i is
    lower-case, and "64MIb" is told both."""
    path, _ = _write_bad(tmp_path, r'size = "64 MiB"', f'size = "{spelling}"')
    with pytest.raises(ConfigError) as platform_err:
        load(path)
    with pytest.raises(ConfigError) as workload_err:
        Fields("", "w").size(spelling, "ram", GRANULE, 1 << 30)
    assert platform_err.value.key == "dram.size"
    expected = platform_err.value.expected
    assert expected == workload_err.value.expected
    assert '"4M", "512K" or "2 MiB"' in expected
    assert ("lower-case b" in expected) == spelling.endswith("b")
    assert ("i of iB is lower-case" in expected) == (spelling[-2:] in ("IB", "Ib") and spelling[-3] in "KMGTkmgt")


@pytest.mark.parametrize("pattern, added, key", [
    (r"cpus = 4", '"a[b]" = 1', '"a[b]"'),
    (r"cpus = 4", '"" = 1', '""'),
    (r"cpus = 4", '"a.b" = 1', '"a.b"'),
    (r"s2sz = 48", '"x[1]" = 1', 'features."x[1]"'),
    (r"base = 0x8000_0000", '"a.b" = 1', 'dram."a.b"'),
    (r'name = "uart"', '"q]" = 1', 'mmio[0]."q]"'),
    (r'keys = "seeds"', '"" = 1', 'attestation.""'),
], ids=["brackets", "empty", "dot", "brackets-in-features", "dot-in-dram", "bracket-in-mmio", "empty-in-attestation"])
def test_unknown_key_that_is_not_a_bare_key(tmp_path: Path, pattern: str, added: str, key: str) -> None:
    """An unknown key TOML allows only quoted (with brackets, a dot, or empty) is refused like
    any unknown key, named quoted as the file writes it, at its own line. "a[b]" = 1 used to end
    `rmm-mp run --platform` with a ValueError traceback (and `platform show` with the bare
    "invalid literal for int()"): finding the key's line read "[b]" as an array index."""
    path, text = _write_bad(tmp_path, pattern, f"{pattern.replace(chr(92), '')}\n{added}")
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    line = _line_of(text, re.escape(added))
    assert (err.key, err.value, err.line) == (key, 1, line), str(err)
    assert str(err).startswith(f"{path}:{line}: {key} = 1: expected no such key"), str(err)


@pytest.mark.parametrize("pattern, added, key, hint", [
    (r"cpus = 4", "cpuz = 4", "cpuz", ' (did you mean "cpus"?)'),
    (r"s2sz = 48", "vmid_bit = 8", "features.vmid_bit", ' (did you mean "vmid_bits"?)'),
    (r"cpus = 4", "zzz = 4", "zzz", "")], ids=["top-level", "in-features", "nothing-close"])
def test_a_misspelt_key_is_named_with_the_key_meant(tmp_path: Path, pattern: str, added: str, key: str,
                                                   hint: str) -> None:
    """An unknown key one letter off a known one (`cpuz`, `features.vmid_bit`) is refused with
    "did you mean" the known key, as a workload file's is; one close to nothing without. A
    platform file's said only "no such key; known keys here: ..." (`rmm-mp platform show`)."""
    path, _ = _write_bad(tmp_path, pattern, f"{pattern}\n{added}")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert f"{key} = {added.split(' = ')[1]}: expected no such key{hint}; known keys here: " in str(info.value), \
        str(info.value)


def test_values_nested_deeper_than_the_parser_recurses(tmp_path: Path) -> None:
    """A description of arrays nested 3000 deep is a file error at its line, not tomllib's
    RecursionError (a traceback from `rmm-mp platform show` and `rmm-mp run --platform`)."""
    path, text = _write_bad(tmp_path, r"description = .*", "description = " + "[" * 3000 + "]" * 3000)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.key, info.value.line) == ("(file)", _line_of(text, r"description = \[")), str(info.value)
    assert str(info.value).startswith(f"{path}:{info.value.line}: (file) = 'arrays and inline tables nested 3000 "
                                      "deep': expected valid TOML"), str(info.value)


@pytest.mark.parametrize("escaped, index, code", [
    ("evil\\u001b]0;title\\u0007", 5, "001B"),
    ("two\\nlines", 4, "000A"),
    ("abc\\u202edcb", 4, "202E"),
], ids=["escape-sequence", "newline", "bidi-override"])
def test_description_with_a_character_that_is_not_printable(tmp_path: Path, escaped: str, index: int,
                                                             code: str) -> None:
    """`rmm-mp platform list` and `show` print the description as it is: one holding a control
    character or a bidi override is refused at its line, naming the character, and the
    message shows it escaped (it was accepted and printed raw)."""
    # re.subn reads backslashes in the replacement: doubled, they reach the file as written
    path, text = _write_bad(tmp_path, r"description = .*", f'description = "{escaped}"'.replace("\\", "\\\\"))
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert (err.key, err.line) == ("description", _line_of(text, r"description = ")), str(err)
    assert err.expected == f"one line of printable text (character {index}, U+{code}, is not printable)", str(err)
    assert str(err).isprintable(), str(err)


@pytest.mark.parametrize("pattern, replacement, expected", [
    (r"pa_bits = 48", "pa_bits = 47",
     "a physical address width ID_AA64MMFR0_EL1.PARange can encode: 32, 36, 40, 42, 44, 48 or 52"),
    (r'hash_algorithms = \["sha-256", "sha-512"\]', 'hash_algorithms = ["sha-384"]',
     "a non-empty list of distinct hash names, each 'sha-256' or 'sha-512'"),
    # A name given twice was refused with words it met ("each 'sha-256' or 'sha-512'").
    (r'hash_algorithms = \["sha-256", "sha-512"\]', 'hash_algorithms = ["sha-256", "sha-256"]',
     "a non-empty list of distinct hash names, each 'sha-256' or 'sha-512'"),
    (r'keys = "seeds"', 'keys = "random"', "one of 'seeds' or 'tf-a-fvp-sample'"),
], ids=["pa-bits", "hash-algorithms", "hash-algorithms-repeated", "attestation-keys"])
def test_choices_are_listed_as_text_not_python_sequences(tmp_path: Path, pattern: str, replacement: str,
                                                          expected: str) -> None:
    """A value outside a fixed set names the choices as text ('a, b or c', tomlsrc.choice_list,
    as workload and schedule errors do), not as Python's tuple or list repr ((32, 36, ...),
    ['sha-256', 'sha-512']); a hash list naming one twice is told the names must be distinct."""
    path, _ = _write_bad(tmp_path, pattern, replacement)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.expected == expected, str(info.value)


def test_dram_smaller_than_1_mib_without_secure_ranges(tmp_path: Path) -> None:
    """512 KiB of DRAM and no [[secure]] table: refused at dram.size (a KeyError on the missing
    secure list escaped before)."""
    text = HOST_TOML.read_text()
    start = text.index("[[secure]]")
    text = text[:start] + text[text.index("\n[", start + 1) + 1:]
    path = tmp_path / "tiny.toml"
    path.write_text(text.replace('size = "64 MiB"', 'size = "512 KiB"'))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == "dram.size" and "at least 1 MiB of DRAM" in str(info.value)


@pytest.mark.parametrize("base, key", [("0x1_0000_0000_0000", "dram.base"), ("0xFFFF_FFE0_0000", "dram.size")],
                         ids=["dram-at-2^48", "dram-across-2^48"])
def test_dram_above_48_bit_pa_is_refused(tmp_path: Path, base: str, key: str) -> None:
    """pa_bits = 52 with DRAM at or across 2^48: without FEAT_LPA2 (lpa2 must be false) a realm
    can use no PA at or above 2^48 (DEN0137 A3.1.2: RTT_CREATE, DATA_CREATE ... fail), so no realm
    could be built there. Refused when loaded, naming the DRAM key; before, the file loaded, a
    REALM_CREATE succeeded and the first RTT_CREATE failed with RMI_ERROR_INPUT."""
    text = HOST_TOML.read_text().replace("pa_bits = 48", "pa_bits = 52")
    text = text.replace("base = 0x8000_0000", f"base = {base}").replace("[[secure]]", "[[unused]]")
    text = text[:text.index("[[unused]]")] + text[text.index("[features]"):]
    path = tmp_path / "high.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == key and "2^48" in str(info.value) and "lpa2" in str(info.value)
    below = text.replace(f"base = {base}", "base = 0xFFFF_FC00_0000")       # ends exactly at 2^48
    path.write_text(below)
    assert load(path).dram.end == 1 << 48


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    """A TOML syntax error -> ConfigError naming the file, the line of the error (from the
    parser, said once), the parser's reason and column, and 'expected valid TOML'."""
    path, text = _write_bad(tmp_path, r"cpus = 4", "cpus = = 4")
    line = _line_of(text, r"cpus = = 4")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: (file) = ")      # as every other mistake reads
    assert f"line {line}" not in message and " at column " in message
    assert message.endswith(": expected valid TOML")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    """A platform file with a Latin-1 byte -> ConfigError naming the file, the line and column
    of the byte and 'expected UTF-8 text' (not a UnicodeDecodeError naming nothing)."""
    text = HOST_TOML.read_text()
    line = _line_of(text, r'name = "host"')
    path = tmp_path / "latin1.toml"
    path.write_bytes(re.sub(r'(?m)^name = "host"', 'name = "h\xf4st"', text, count=1).encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert (err.source, err.line, err.key) == (str(path), line, "(file)")
    assert str(err) == f"{path}:{line}: (file) = 'byte 0xf4 at line {line}, column 10': expected UTF-8 text (a " \
                       "platform file is UTF-8)"


def test_file_that_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError while reading (say EACCES, which root never sees) is a ConfigError naming the
    file and the system's reason, not a traceback."""
    from rmm_mp.hw import tomlsrc
    path = tmp_path / "locked.toml"
    path.write_text(HOST_TOML.read_text())

    def refuse(file: Path, limit: int) -> bytes:
        raise PermissionError(13, "Permission denied", str(file))
    monkeypatch.setattr(tomlsrc, "read_at_most", refuse)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == f"{path}: (file) = '{path}': expected a platform file that can be read (Permission denied)"


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark before host.toml's text: the same platform."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + HOST_TOML.read_bytes())
    assert dataclasses.replace(load(path), source=str(HOST_TOML)) == load(HOST_TOML)


def test_locate_finds_dotted_keys() -> None:
    """Keys written dotted (features.s2sz = 48 at the top level, or base.x inside [[mmio]]) are
    found on their own line, in the right element of an array of tables; plain keys as before."""
    from rmm_mp.hw.tomlsrc import locate
    text = ('name = "p"\nfeatures.s2sz = 48\nfeatures . "lpa2" = false\n[[mmio]]\nbase = 1\n[[mmio]]\nbase = 2\n'
            '[attestation]\nkeys.seed = "x"\n')
    assert locate(text, "features.s2sz") == 2
    assert locate(text, "features.lpa2") == 3
    assert locate(text, "features") == 2
    assert locate(text, "mmio[0].base") == 5
    assert locate(text, "mmio[1].base") == 7
    assert locate(text, "attestation.keys.seed") == 9
    assert locate(text, "attestation") == 8
    assert locate(text, "name") == 1
    assert locate(text, "absent") is None


def test_locate_skips_multi_line_strings_and_reads_literal_keys() -> None:
    """As in workload files (tests/workload/test_spec.py): a multi-line description holding
    "[features]" and "s2sz = 1" is no table, 'pmu' = true is the key pmu, and only \\n ends a
    line."""
    from rmm_mp.hw.tomlsrc import locate
    text = 'description = """\n[features]\ns2sz = 1\n"""\nname = "a\u2028b"\n[features]\ns2sz = 48\n\'pmu\' = true\n'
    assert locate(text, "features.s2sz") == 7
    assert locate(text, "features.pmu") == 8
    assert locate(text, "features") == 6


def test_dotted_feature_key_names_its_line(tmp_path: Path) -> None:
    """A [features] table written as dotted keys at the top level: the bad value's own line."""
    text = HOST_TOML.read_text()
    body = re.search(r"(?ms)^\[features\][^\n]*\n(.*?)^\[", text)
    assert body is not None
    dotted = "".join(f"features.{line}\n" for line in body.group(1).splitlines() if re.match(r"\w+\s*=", line))
    text = text.replace(body.group(0)[:-1], "").replace("\n[dram]", "\n" + dotted + "[dram]", 1)
    text = text.replace("features.s2sz = 48", "features.s2sz = 99")
    path = tmp_path / "dotted.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.key, info.value.line) == ("features.s2sz", _line_of(text, "features.s2sz = 99"))


def test_missing_file(tmp_path: Path) -> None:
    """A path to a file that does not exist -> ConfigError naming the path."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value) and "expected" in str(info.value)


@pytest.mark.parametrize("written", ["/abs/dir/fvp.toml", "./fvp.toml", "no/such/FVP.toml", "sub/fvp"])
def test_a_missing_platform_path_with_a_directory_has_no_bundled_hint(written: str) -> None:
    """A path written with its directory (/abs/dir/fvp.toml, ./fvp.toml) that names no file is
    "no such file" alone, from hw.platform.resolve and so from load and Machine.create as from
    the command line: the hint (write fvp) is for a bare name written as a file, and read as if
    the directory were ignored. Only the CLI's call sites had the rule."""
    expected = "a regular platform file that exists (no such file)"
    for call in (plat.resolve, load):
        with pytest.raises(ConfigError) as info:
            call(written)
        assert (info.value.value, info.value.expected) == (written, expected), str(info.value)
    before = {m.prefix for m in segment.list_machines() if m.creator_pid == os.getpid()}
    with pytest.raises(ConfigError) as info:
        Machine.create(written, cpus=1)
    assert info.value.expected == expected, str(info.value)
    assert {m.prefix for m in segment.list_machines() if m.creator_pid == os.getpid()} == before


@pytest.mark.parametrize("written", ["fvp.toml", "FVP.toml"])
def test_a_missing_bare_platform_file_name_names_the_bundled_platform(written: str) -> None:
    """A bare name written as a file (fvp.toml, in any capitals) keeps the hint, from the API too."""
    with pytest.raises(ConfigError) as info:
        Machine.create(written, cpus=1)
    assert info.value.expected == ("a regular platform file that exists (no such file; "
                                   "for the bundled platform, write fvp)"), str(info.value)


def test_bad_file_is_rejected_before_create(tmp_path: Path) -> None:
    """Machine.create with a bad platform file raises the ConfigError and creates nothing."""
    path, text = _write_bad(tmp_path, r"pa_bits = 48", "pa_bits = 47")
    line = text.splitlines().index("pa_bits = 47") + 1
    before = {m.prefix for m in segment.list_machines() if m.creator_pid == os.getpid()}
    with pytest.raises(ConfigError) as info:
        Machine.create(path, cpus=1)
    # The refusal is the one planted, not any ConfigError (an unreadable path would be one too).
    assert (info.value.line, info.value.key, info.value.value) == (line, "pa_bits", 47), str(info.value)
    after = {m.prefix for m in segment.list_machines() if m.creator_pid == os.getpid()}
    assert after == before


def _many_mmio(count: int) -> str:
    return "".join(f"[[mmio]]\nbase = {0x1000_0000 + i * GRANULE:#x}\nsize = {GRANULE}\n" for i in range(count))


@pytest.mark.parametrize("key, old, new, shown", [
    ("description", 'description = "', 'description = "' + "x" * 30_000, "(30"),
    ("attestation.rak_seed", 'rak_seed = "', 'rak_seed = "' + "s" * 30_000, "(30"),
    ("mmio", "[[mmio]]", _many_mmio(800) + "[[mmio]]", "(801 regions)"),
], ids=["description", "rak-seed", "mmio"])
def test_platform_too_long_for_the_control_block(tmp_path: Path, key: str, old: str, new: str, shown: str) -> None:
    """A platform longer than the control block's PLATFORM_MAX bytes as JSON (a 30,000-character
    description or seed, 801 MMIO regions) is refused when loaded, naming the longest value by
    its length. Before, it loaded (`rmm-mp platform show` said nothing) and Machine.create (so
    `rmm-mp run`) failed with a ValueError traceback from Control.initialise."""
    path = tmp_path / "long.toml"
    path.write_text(HOST_TOML.read_text().replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == key
    assert f"{key} = {shown}" in str(info.value) and "control block" in str(info.value)
    assert info.value.line is not None


def test_platform_just_fitting_the_control_block_creates(tmp_path: Path) -> None:
    """The limit is the control block's: a platform whose JSON is one byte short of it loads
    and makes a machine."""
    from rmm_mp.hw.control import PLATFORM_MAX
    path = tmp_path / "long.toml"
    text = HOST_TOML.read_text()
    path.write_text(text)
    size = len(load(path).to_json().encode())
    path.write_text(text.replace('description = "', 'description = "' + "x" * (PLATFORM_MAX - size - 1), 1))
    with Machine.create(path, cpus=1) as machine:
        assert len(machine.platform.to_json().encode()) == PLATFORM_MAX - 1


def test_dram_at_pa_0_runs_a_realm_whose_rd_is_at_pa_0() -> None:
    """A platform whose DRAM starts at PA 0 (as on many SoCs) is valid, and a realm whose RD is
    the granule at PA 0 runs: after REC_ENTER returns, the CPU no longer counts as executing
    realm code (control OFF_EXECUTING is 0 again). Before, hw.tlb published the RD's PA, 0, as
    "executing nothing": leave() skipped the count, which stayed at 1, and every later TLB
    invalidation of that realm waited for each idle CPU (their word reads 0 too), forever."""
    from realm_guests import Guest
    from rmm_mp.hw.control import OFF_EXECUTING
    host = load("host")
    dram0 = dataclasses.replace(host, dram=plat.Region(0, 64 << 20), secure=(plat.Region(0x3F0_0000, 1 << 20),))
    with Machine.create(dram0, cpus=1) as machine:
        guest = Guest.build(machine, "done:\n    wfi\n    b done\n")
        assert guest.realm.rd == 0      # the allocator's first granule: the case under test
        x0, exit_ = guest.enter()
        assert (x0, exit_["exit_reason"]) == (0, 1)     # SUCCESS, an IRQ exit at the WFI
        assert machine.control.view.load_u64(OFF_EXECUTING) == 0


def test_many_regions_are_checked_for_overlap_in_one_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 disjoint MMIO ranges, the last overlapping the first: the overlap is found naming
    both, and the check reads a region's end a few times per region, not once per pair. Before,
    every pair was compared, and a 1 MiB file of 30,000 ranges took a minute to be refused (as
    too long for the control block, a check that comes after)."""
    reads = 0
    end = plat.Region.end

    def counted(self: plat.Region) -> int:
        nonlocal reads
        reads += 1
        return end.fget(self)  # type: ignore[misc]

    monkeypatch.setattr(plat.Region, "end", property(counted))
    count = 2000
    ranges = "".join(f"[[mmio]]\nbase = {0x1000_0000 + i * 2 * GRANULE:#x}\nsize = {GRANULE}\n" for i in range(count))
    ranges += f"[[mmio]]\nbase = 0x1000_0000\nsize = {GRANULE}\n"
    path = tmp_path / "many.toml"
    path.write_text(re.sub(r"(?ms)^\[\[mmio\]\].*?(?=^\[\[secure\]\])", ranges + "\n", HOST_TOML.read_text(), count=1))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == f"mmio[{count}].base", str(info.value)
    assert "does not overlap mmio[0] [0x10000000, 0x10001000)" in str(info.value)
    assert reads < 20 * count


def _my_segments() -> set[str]:
    """The segment directory's entries of machines this test process made: other xdist
    workers make and remove theirs in the same directory meanwhile (the whole listing compared
    failed in CI when another worker's machine appeared between the two looks)."""
    mine = f"{segment.NAME_PREFIX}{os.getpid()}-"
    return {name for name in os.listdir(segment.SHM_DIR) if name.startswith(mine)}


@pytest.mark.parametrize("change, key, expected", [
    ({"dram": plat.Region((1 << 48) - (32 << 20), 64 << 20), "pa_bits": 52}, "dram.size",
     "DRAM below 2^48 = 0x1000000000000: without FEAT_LPA2"),
    ({"secure": (plat.Region(0x1000_0000, 1 << 20),)}, "secure[0].base", "a Secure range inside DRAM"),
    ({"cpus": 0}, "cpus", "the number of CPUs, an integer in 1..256"),
    ({"rec_time_slice": 0}, "rec_time_slice", "exits with IRQ, an integer in 1..1,000,000,000"),
    ({"dram": (0x8000_0000, 64 << 20)}, "dram", "a table with keys base and size"),
])
def test_machine_create_checks_a_platform_object_as_the_loader_does(change: dict[str, object], key: str,
                                                                    expected: str) -> None:
    """Machine.create of a Platform object built in Python (dataclasses.replace of `host`) that
    no platform file could describe: DRAM past 2^48, a Secure range outside DRAM, 0 CPUs, a REC
    time slice of 0 (its range's bound grouped, 1..1,000,000,000, as the tool's other numbers are), DRAM
    that is no Region. Each is the loader's ConfigError (a ValueError) for the key, from
    "Platform object 'host'", and no shared memory is made. Before, the object was used as it
    was, though the docstring promised a ValueError for an invalid platform: the machine was
    made (cpus = 0 and the tuple failed later, with another error)."""
    bad = dataclasses.replace(load("host"), **change)  # type: ignore[arg-type]
    before = _my_segments()
    with pytest.raises(ConfigError) as info:
        with Machine.create(bad, cpus=1):
            pass
    assert info.value.key == key and expected in info.value.expected, str(info.value)
    assert str(info.value).startswith("Platform object 'host': ")
    assert _my_segments() == before


def test_machine_create_can_skip_the_checks_for_a_test_platform() -> None:
    """check_platform=False makes a machine on a Platform object the loader refuses (DRAM
    straddling 2^48, rmi_helpers.dram_across_2_48, what the *_bound2 tests need); the default
    refuses it, and a loaded platform passes the checks unchanged."""
    from rmi_helpers import dram_across_2_48
    with pytest.raises(ConfigError):
        Machine.create(dram_across_2_48(), cpus=1)
    with Machine.create(dram_across_2_48(), cpus=1, check_platform=False) as m:
        assert m.platform.dram.end > 1 << 48
    for name in plat.bundled_platforms():
        assert plat.check(load(name)) == load(name)


def test_machine_create_refuses_an_unaligned_dram_base_even_unchecked() -> None:
    """check_platform=False still refuses a DRAM base that is not 4 KiB aligned, before any
    segment is made: GranuleTable.find / find_lock / lock_two and the realm calls' locked walk
    test an address on its offset from the base, which agrees with the PA test (aligned, in
    [base, end)) only for an aligned base. Such a machine was made, and the two tests disagreed
    on it: find(base) named granule 0, which the PA test refused as unaligned, and find(base +
    0x800) refused the aligned PA that the PA test took for granule 0."""
    bad = dataclasses.replace(load("host"), dram=plat.Region(0x8000_0800, 64 << 20), secure=())
    before = _my_segments()
    with pytest.raises(ValueError, match="dram.base = 0x80000800"):
        with Machine.create(bad, cpus=1, check_platform=False):
            pass
    assert _my_segments() == before


def test_region_name_that_is_not_printable(tmp_path: Path) -> None:
    """A region's name, which `rmm-mp platform show` prints, is one line of printable text as
    the description is: an escape sequence there is refused at its line, naming the key
    mmio[0].name; a printable one is kept in the Region (it was dropped on loading)."""
    path, text = _write_bad(tmp_path, r'name = "uart"', 'name = "ua\\\\u001b[2Jrt"')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.key, info.value.line) == ("mmio[0].name", _line_of(text, r'name = "ua')), str(info.value)
    assert info.value.expected == "one line of printable text (character 3, U+001B, is not printable)"
    assert load("host").mmio[0].name == "uart" and load("host").secure[0].name == "tzc-carveout"


def _inline_regions(tmp_path: Path, regions: str) -> tuple[Path, str]:
    """host.toml with its [[mmio]] and [[secure]] tables replaced by ``regions`` (written inline,
    before [dram]), saved as inline.toml: the file and its text."""
    text = re.sub(r"(?ms)^\[\[(mmio|secure)\]\].*?(?=^\[[a-z])", "", HOST_TOML.read_text())
    text = text.replace("[dram]", f"{regions}\n\n[dram]", 1)
    path = tmp_path / "inline.toml"
    path.write_text(text)
    return path, text


@pytest.mark.parametrize("regions, key", [
    ('mmio = [{ name = "uart", base = 0x1C09_0100, size = "64 KiB" }]', "mmio[0].base"),
    ("mmio = [5]", "mmio[0]"),
    ('mmio = [{ base = 0x1C09_0000, size = "64 KiB" },\n        { base = 0x1C09_8000, size = "64 KiB" }]',
     "mmio[1].base"),
    ('mmio = [{ base = 0x1C09_0000, size = "64 KiB" }]\nsecure = [{ base = 0x83F0_0000 }]', "secure[0].size"),
], ids=["unaligned", "not-a-table", "overlap", "missing-size"])
def test_region_array_written_inline_names_its_line(tmp_path: Path, regions: str, key: str) -> None:
    """[[mmio]] and [[secure]] written as an inline array of inline tables (`mmio = [{ base =
    ..., size = ... }]`, TOML the loader accepts) with a mistake in one element: the error names
    the line where the array is set (it gave no line at all: only [[mmio]] headers were
    looked for), as a missing key's error names its table's header."""
    path, text = _inline_regions(tmp_path, regions)
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    array = key.split("[")[0]
    assert (err.key, err.line) == (key, _line_of(text, rf"{array} = \[")), str(err)
    assert str(err).startswith(f"{path}:{err.line}: {key} = "), str(err)


def test_a_file_name_with_a_control_character_is_shown_escaped(tmp_path: Path) -> None:
    """A mistake in a platform file whose path holds ESC (a directory named by a paste, say)
    names the file as a TOML string with the escape ("...\\u001B[2J.../bad.toml":LINE), as
    values are shown: printed raw, ESC [2J cleared the terminal and the rest of the path was
    not what the message said. A printable path is shown as it is."""
    odd = tmp_path / "a\x1b[2Jb"
    odd.mkdir()
    path, text = _write_bad(odd, r"cpus = 4", "cpus = 0")
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\x1b" not in message, repr(message)
    assert message.startswith(f'"{tmp_path}/a\\u001B[2Jb/bad.toml":{_line_of(text, "cpus = 0")}: cpus = 0: '), message
    assert info.value.source == str(path)       # the attribute is the path itself
    plain, _ = _write_bad(tmp_path, r"cpus = 4", "cpus = 0")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(plain))}:\d+: cpus = 0: "):
        load(plain)


@pytest.mark.parametrize("written, parsed", [("4.000000000000000001", "4.0"), ("1e400", "inf"), ("-1e-400", "-0.0")])
def test_a_float_is_refused_as_its_line_writes_it(tmp_path: Path, written: str, parsed: str) -> None:
    """`cpus = 1e400` (and a float that reads as another number) is refused naming the value as
    the file writes it, not as tomllib read it: the error said `cpus = inf`, `cpus = 4.0` and
    `cpus = -0.0`, values nobody wrote (tomlnum.TypedFloat)."""
    path, _ = _write_bad(tmp_path, r"cpus = \d+", f"cpus = {written}")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert f"cpus = {written}: expected" in str(info.value), str(info.value)
    assert repr(float(info.value.value)) == parsed      # the value is the number read, shown as written


@pytest.mark.parametrize("regions, shown", [
    ('mmio = [\n  { base = 1e400, size = "64 KiB" },\n]', "mmio[0].base = 1e400: expected"),
    ('mmio = [{ base = 0x1C09_0000, size = "64 KiB", x = 1e-400, at = 00:00:00 }]',
     "mmio[0].x = 1e-400: expected no such key"),
    ('mmio = [\n  { base = 0x1C09_0000, size = "64 KiB", x = [1e-400, 0.0] },\n]',
     "mmio[0].x = [1e-400, 0.0]: expected no such key"),
    ('mmio = [\n  { base = 0x1C09_0000, size = [\n    1e-400,\n    -0.0,\n  ] },\n]',
     "mmio[0].size = [1e-400, -0.0]: expected a size"),
], ids=["float-below-the-key-line", "beside-a-time", "two-readings", "multi-line-array"])
def test_a_float_in_a_region_array_is_shown_as_written(tmp_path: Path, regions: str, shown: str) -> None:
    """A float in a region array written inline is named as written: when the error's line (the
    `mmio = [` line: the key's own has no header to find) holds no number at all, when a time on
    it holds an 00 that reads as 0.0 too, and inside an array that is the refused value. A
    rescan of that line found nothing or two numbers, and showed the float read (inf, 0.0)."""
    path, text = _inline_regions(tmp_path, regions)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert f"inline.toml:{_line_of(text, 'mmio = ')}: {shown}" in str(info.value), str(info.value)
