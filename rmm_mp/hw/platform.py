"""Platform descriptions: what simulated hardware a machine has.

A platform is a TOML file (platform/NAME.toml in the repository, shipped in the package as
rmm_mp/platforms/). Loading validates every key before anything is created; an error names the
file, the line (of the key, or of its table when the key is missing, or of the array a region
written inline is in; none for a missing top-level key), the key, the value and what was
expected (ConfigError, a ValueError). A key TOML allows only quoted (``"a[b]" = 1``, ``"" = 1``)
is named quoted, as the file writes it.
A Platform object built in Python gets the same checks through ``check`` (Machine.create calls
it), as the file it would be.

Counts versus encodings: the file states breakpoints, watchpoints and GIC list registers as
counts, as a board description would; RMI_FEATURES reports them "minus one"
(FeatureRegister0.NUM_BPS = breakpoints - 1). The SVE vector length is given in bits.

This module owns the schema and the derived feature register (the [features] keys' ranges and
the register fields' names for them are rmm_mp.hw.feature_keys'). It must not create memory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rmm_mp.abi.rmi import FeatureRegister0
from rmm_mp.hw.control import HOST_GRANULES_BYTES, PLATFORM_MAX
from rmm_mp.hw.feature_keys import BOUNDS, accepted, accepts, register_field_hint
from rmm_mp.hw.tomlnum import int_range, size_expected, size_value
from rmm_mp.hw.tomlparse import loads as toml_loads
from rmm_mp.hw.tomlsrc import (MISSING, ConfigError, bundled_dir, bundled_names, find_toml, key_part, key_path_parts,
                                locate)
from rmm_mp.hw.tomlsrc import choice_list, read_source, suggestion, top_level_hint
from rmm_mp.printable import not_one_printable_line

GRANULE_SIZE = 4096
PA_WIDTHS = (32, 36, 40, 42, 44, 48, 52)
"""Physical address widths ID_AA64MMFR0_EL1.PARange can report."""
MIN_NS_DRAM = 1 << 20
"""DRAM the Secure ranges must leave to the Non-secure PAS: below it no host could build a realm."""
REALM_PA_BITS = 48
"""Without FEAT_LPA2 (not modelled) a realm can use no PA at or above 2^48 (DEN0137 A3.1.2)."""
MAX_DRAM_GRANULES = HOST_GRANULES_BYTES * 8
"""DRAM granules the host's shared allocator can track (one bit each in the control block):
more DRAM would pass here and then fail the first CPU's NsAllocator, after the machine is made."""
HASH_NAMES = ("sha-256", "sha-512")
KEY_SOURCES = ("seeds", "tf-a-fvp-sample")
_TOP_KEYS = frozenset({"name", "description", "cpus", "pa_bits", "dram", "mmio", "secure", "features", "attestation",
                       "rec_time_slice"})

_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def size_text(size: int) -> str:
    """``size`` bytes exactly, in the largest unit that divides it (4,097 granules are
    "16,388 KiB", not a rounded "16 MiB"): what `rmm-mp platform list` and `show` print."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        scale = _UNITS[unit]
        if size and size % scale == 0:
            return f"{size // scale:,} {unit}"
    return f"{size:,} bytes"


@dataclass(frozen=True)
class Region:
    """A physical address range [base, base + size), and the name the file gives it (for the
    reader: `rmm-mp platform show` prints it)."""

    base: int
    size: int
    name: str = ""

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, pa: int) -> bool:
        return self.base <= pa < self.base + self.size


@dataclass(frozen=True)
class Features:
    """What RMI_FEATURES index 0 reports, as counts (see the module docstring)."""

    s2sz: int
    lpa2: bool
    sve: bool
    sve_vector_length: int
    pmu: bool
    pmu_counters: int
    breakpoints: int
    watchpoints: int
    hash_algorithms: tuple[str, ...]
    gic_list_registers: int
    max_recs_order: int
    vmid_bits: int = 16

    def register0(self) -> int:
        """RmiFeatureRegister0 (DEN0137 B4.4.6) for these features."""
        return FeatureRegister0.encode(
            s2sz=self.s2sz,
            lpa2=int(self.lpa2),
            sve_en=int(self.sve),
            sve_vl=(self.sve_vector_length // 128 - 1) if self.sve else 0,
            num_bps=self.breakpoints - 1,
            num_wps=self.watchpoints - 1,
            pmu_en=int(self.pmu),
            pmu_num_ctrs=self.pmu_counters if self.pmu else 0,
            hash_sha_256=int("sha-256" in self.hash_algorithms),
            hash_sha_512=int("sha-512" in self.hash_algorithms),
            gicv3_num_lrs=self.gic_list_registers - 1,
            max_recs_order=self.max_recs_order,
        )


@dataclass(frozen=True)
class Attestation:
    """Where the platform's attestation keys come from (used by EL3's attestation service)."""

    keys: str
    rak_seed: str = ""
    platform_key_seed: str = ""


@dataclass(frozen=True)
class Platform:
    """A validated platform description."""

    name: str
    source: str
    description: str
    cpus: int
    pa_bits: int
    dram: Region
    mmio: tuple[Region, ...]
    secure: tuple[Region, ...]
    features: Features
    attestation: Attestation
    rec_time_slice: int = 10_000
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def granule_count(self) -> int:
        return self.dram.size // GRANULE_SIZE

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Platform":
        raw = json.loads(text)
        return cls(
            name=raw["name"],
            source=raw["source"],
            description=raw["description"],
            cpus=raw["cpus"],
            pa_bits=raw["pa_bits"],
            dram=Region(**raw["dram"]),
            mmio=tuple(Region(**r) for r in raw["mmio"]),
            secure=tuple(Region(**r) for r in raw["secure"]),
            features=Features(**{**raw["features"], "hash_algorithms": tuple(raw["features"]["hash_algorithms"])}),
            attestation=Attestation(**raw["attestation"]),
            rec_time_slice=raw["rec_time_slice"],
        )


def platform_dir() -> Path:
    """The directory of bundled platform files (installed package or source checkout)."""
    return bundled_dir("platforms", "platform")


def bundled_platforms() -> list[str]:
    return bundled_names(platform_dir())


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """Find a platform by bundled name or by path; ConfigError (a ValueError) if neither."""
    return find_toml(name_or_path, platform_dir(), "platform", "platform", "platform")


def load(name_or_path: str | os.PathLike[str]) -> Platform:
    """Load and validate a platform; every problem raises ConfigError before anything is built."""
    path = resolve(name_or_path)
    return parse(read_source(path, "platform"), str(path))


def parse(text: str, source: str) -> Platform:
    """Validate TOML ``text`` read from ``source`` (used in messages)."""
    v = _Validator(text, source)
    raw = toml_loads(text, source)
    return v.platform(raw)


def check(platform: Platform) -> Platform:
    """Apply the loader's checks to a Platform built in Python (by hand, or dataclasses.replace
    of a loaded one), so that Machine.create refuses what a platform file could not say.

    The platform is turned back into the tables a file would hold and validated as one: each
    error is the ConfigError (a ValueError) the loader gives, naming the key, the value and what
    was expected, from the source ``Platform object 'NAME'`` (no file, so no line). A field of
    the wrong type (``dram`` not a Region, ``mmio`` not a tuple of them ...) is refused as the
    file's key would be. Returns the platform (the checked object itself: ``source`` and
    ``extra`` are not checked, as no file holds them)."""
    def region(r: object) -> object:
        if not isinstance(r, Region):
            return r
        return {"base": r.base, "size": r.size, **({"name": r.name} if r.name != "" else {})}

    def regions(rs: object) -> object:
        return [region(r) for r in rs] if isinstance(rs, (tuple, list)) else rs

    raw: dict[str, Any] = {"name": platform.name, "description": platform.description, "cpus": platform.cpus,
                           "pa_bits": platform.pa_bits, "dram": region(platform.dram),
                           "mmio": regions(platform.mmio), "secure": regions(platform.secure),
                           "rec_time_slice": platform.rec_time_slice}
    f = platform.features
    if isinstance(f, Features):
        features: object = {k: getattr(f, k) for k in Features.__dataclass_fields__}
        if isinstance(f.hash_algorithms, tuple):   # a file's array
            features["hash_algorithms"] = list(f.hash_algorithms)  # type: ignore[index]
    else:
        features = f
    raw["features"] = features
    a = platform.attestation
    if isinstance(a, Attestation):
        # An empty seed is the dataclass's "none" (keys = "tf-a-fvp-sample"): as a missing key.
        seeds = (("rak_seed", a.rak_seed), ("platform_key_seed", a.platform_key_seed))
        raw["attestation"] = {"keys": a.keys, **{k: v for k, v in seeds if v != ""}}
    else:
        raw["attestation"] = a
    _Validator("", f"Platform object {platform.name!r}").platform(raw)
    return platform


def _json_size(value: object) -> int:
    return len(json.dumps(value).encode())


@dataclass(frozen=True)
class _Summary:
    """A value too long to quote in an error, shown by its length."""

    text: str

    def __repr__(self) -> str:
        return f"({self.text})"


class _Validator:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def fail(self, key: str, value: object, expected: str) -> ConfigError:
        line = locate(self.text, key)
        parts = key_path_parts(key)
        if line is None and len(parts) > 1:
            line = locate(self.text, ".".join(parts[:-1]))
        if line is None and (indexed := re.fullmatch(r"(mmio|secure)\[\d+\]", parts[0])):
            # The regions as an inline array (`mmio = [{ base = ..., size = ... }]`) have no
            # [[mmio]] header to find: the line that sets the array, as for a missing key its
            # table's header.
            line = locate(self.text, indexed.group(1))
        return ConfigError(self.source, key, value, expected, line)

    def keys(self, table: dict[str, Any], prefix: str, allowed: AbstractSet[str], required: set[str]) -> None:
        for key in table:
            if key not in allowed:
                where = f"{prefix}.{key_part(key)}" if prefix else key_part(key)
                # A misspelt key is named with the one meant, as a workload file's is (fields.keys);
                # a feature written by its register field's name, with the key and the count it takes.
                hint = register_field_hint(key, table[key]) if prefix == "features" else ""
                # difflib minds case: VMID_BITS is not close to vmid_bits for it.
                hint = hint or (f' (did you mean "{key.lower()}"?)' if key.lower() in allowed
                                else suggestion(key, sorted(allowed)))
                raise self.fail(where, table[key], f"no such key{hint}; "
                                                   f"known keys here: {', '.join(sorted(allowed))}"
                                                   f"{top_level_hint(key, prefix, _TOP_KEYS)}")
        for key in sorted(required - table.keys()):
            where = f"{prefix}.{key}" if prefix else key
            raise self.fail(where, MISSING, "a value: the key is required")

    def integer(self, table: dict[str, Any], key: str, where: str, lo: int, hi: int, what: str) -> int:
        value = table[key]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise self.fail(where, value, f"{what}, an integer in {int_range(lo, hi)}")
        return value

    def boolean(self, table: dict[str, Any], key: str, where: str) -> bool:
        value = table[key]
        if not isinstance(value, bool):
            raise self.fail(where, value, "true or false")
        return value

    def size(self, value: object, where: str) -> int:
        # The workload files' size syntax (tomlnum.size_value): a size copied from one ("64M")
        # reads the same here.
        number = size_value(value)
        if number is None:
            raise self.fail(where, value, size_expected(value))
        if number <= 0 or number % GRANULE_SIZE:
            raise self.fail(where, value, "a positive multiple of the 4 KiB granule size")
        return number

    def region(self, raw: object, where: str, pa_bits: int) -> Region:
        if not isinstance(raw, dict):
            raise self.fail(where, raw, "a table with keys base and size")
        self.keys(raw, where, {"base", "size", "name"}, {"base", "size"})
        name = raw.get("name", "")
        if not isinstance(name, str):
            raise self.fail(f"{where}.name", name, "a string naming the range, such as 'uart0'")
        why = not_one_printable_line(name)
        if why:     # `rmm-mp platform show` prints it, as it prints the description
            raise self.fail(f"{where}.name", name, f"one line of printable text ({why})")
        base = raw["base"]
        # Each mistake named as what it is: "0x0" and -4096 are 4 KiB-aligned as numbers.
        if isinstance(base, str):
            raise self.fail(f"{where}.base", base, "a physical address, an integer such as 0x8000_0000, not a "
                                                   "string: write the address without quotes")
        if not isinstance(base, int) or isinstance(base, bool):
            raise self.fail(f"{where}.base", base, "a physical address, an integer such as 0x8000_0000")
        if base < 0:
            raise self.fail(f"{where}.base", base, "a physical address, an address of 0 or more")
        if base % GRANULE_SIZE:
            raise self.fail(f"{where}.base", base, "a 4 KiB-aligned physical address")
        if base >= 1 << pa_bits:
            # No size can help then: the base is the mistake (or pa_bits is).
            raise self.fail(f"{where}.base", base, f"a physical address below 2^pa_bits = {1 << pa_bits:#x} "
                                                   f"(pa_bits = {pa_bits})")
        region = Region(base, self.size(raw["size"], f"{where}.size"), name)
        if region.end > 1 << pa_bits:
            raise self.fail(f"{where}.size", raw["size"], f"a size that keeps [{base:#x}, base + size) at or "
                                                          f"below 2^pa_bits = {1 << pa_bits:#x}")
        return region

    def platform(self, raw: dict[str, Any]) -> Platform:
        self.keys(raw, "", _TOP_KEYS, {"name", "cpus", "pa_bits", "dram", "features", "attestation"})
        name = raw["name"]
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise self.fail("name", name, "a lower-case identifier such as 'host'")
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise self.fail("description", description, "a string")
        why = not_one_printable_line(description)
        if why:
            raise self.fail("description", description, f"one line of printable text ({why})")
        cpus = self.integer(raw, "cpus", "cpus", 1, 256, "the number of CPUs")
        pa_bits = raw["pa_bits"]
        if type(pa_bits) is not int or pa_bits not in PA_WIDTHS:     # 48.0 == 48, but is no width
            raise self.fail("pa_bits", pa_bits,
                            f"a physical address width ID_AA64MMFR0_EL1.PARange can encode: {choice_list(PA_WIDTHS)}")
        dram = self.region(raw["dram"], "dram", pa_bits)
        if dram.end > 1 << REALM_PA_BITS:
            # pa_bits = 52 allows such DRAM, but RTT_CREATE, DATA_CREATE ... refuse its PAs
            # (lpa2 is always false here): REALM_CREATE would succeed and nothing after it.
            key = "dram.base" if dram.base >= 1 << REALM_PA_BITS else "dram.size"
            raise self.fail(key, raw["dram"][key.split(".")[1]],
                            f"DRAM below 2^{REALM_PA_BITS} = {1 << REALM_PA_BITS:#x}: without FEAT_LPA2 "
                            "(lpa2 = false) a realm can use no PA at or above it")
        if dram.size > MAX_DRAM_GRANULES * GRANULE_SIZE:
            raise self.fail("dram.size", raw["dram"]["size"], f"at most {MAX_DRAM_GRANULES * GRANULE_SIZE >> 30} GiB "
                                                               f"({MAX_DRAM_GRANULES} granules: the host's granule "
                                                               "bitmap has one bit per DRAM granule)")
        mmio = self.regions(raw.get("mmio", []), "mmio", pa_bits)
        secure = self.regions(raw.get("secure", []), "secure", pa_bits)
        # The error shows the whole range, [base, base + size), as the overlap check does: a
        # range whose base is on the right side of DRAM's edge and whose size carries it over
        # was shown by its base alone, an address that was fine ("secure[0].base = 0x83f00000:
        # expected a Secure range inside DRAM [0x80000000, 0x84000000)").
        for i, region in enumerate(mmio):
            if region.base < dram.end and dram.base < region.end:
                raise self.fail(f"mmio[{i}].base", region.base, f"an MMIO range outside DRAM [{dram.base:#x}, "
                                                                f"{dram.end:#x}); it is [{region.base:#x}, "
                                                                f"{region.end:#x}) with its size")
        self.disjoint(mmio, "mmio", "an MMIO range")
        for i, region in enumerate(secure):
            if not (dram.base <= region.base and region.end <= dram.end):
                raise self.fail(f"secure[{i}].base", region.base, f"a Secure range inside DRAM [{dram.base:#x}, "
                                                                  f"{dram.end:#x}); it is [{region.base:#x}, "
                                                                  f"{region.end:#x}) with its size")
        self.disjoint(secure, "secure", "a Secure range")
        ns = dram.size - sum(r.size for r in secure)
        if ns < MIN_NS_DRAM and not secure:
            raise self.fail("dram.size", raw["dram"]["size"], f"at least {MIN_NS_DRAM >> 20} MiB of DRAM, for the "
                                                               "host's pages")
        if ns < MIN_NS_DRAM:
            raise self.fail(f"secure[{len(secure) - 1}].size", raw["secure"][-1]["size"],
                            f"Secure ranges that leave at least {MIN_NS_DRAM >> 20} MiB of DRAM to the Non-secure "
                            f"PAS, for the host's pages (they leave {ns >> 10:,} KiB)")
        features = self.features(raw["features"], pa_bits)
        attestation = self.attestation(raw["attestation"])
        time_slice = raw.get("rec_time_slice", 10_000)
        if isinstance(time_slice, bool) or not isinstance(time_slice, int) or not 1 <= time_slice <= 10**9:
            raise self.fail("rec_time_slice", time_slice, "the number of guest instructions a REC runs before it "
                                                          "exits with IRQ, an integer in 1..1,000,000,000")
        platform = Platform(name, self.source, description, cpus, pa_bits, dram, mmio, secure, features,
                            attestation, time_slice)
        self.fits_control_block(platform)
        return platform

    def fits_control_block(self, platform: Platform) -> None:
        """A machine keeps its platform as JSON in its control block (PLATFORM_MAX bytes), where
        every CPU process reads it: a longer one loaded here and then failed Machine.create with
        a traceback. The error names the longest free-length value: a string or a region list."""
        size = len(platform.to_json().encode())
        if size <= PLATFORM_MAX:
            return
        # Every value of the file whose length is not bounded by its check: the name (a
        # lower-case identifier of any length) too, or a 30,000-character name was refused
        # naming the 75-character description.
        parts: dict[str, tuple[int, str]] = {
            "name": (_json_size(platform.name), f"{len(platform.name)} characters"),
            "description": (_json_size(platform.description), f"{len(platform.description)} characters"),
            "attestation.rak_seed": (_json_size(platform.attestation.rak_seed),
                                     f"{len(platform.attestation.rak_seed)} characters"),
            "attestation.platform_key_seed": (_json_size(platform.attestation.platform_key_seed),
                                              f"{len(platform.attestation.platform_key_seed)} characters"),
            "mmio": (_json_size([asdict(r) for r in platform.mmio]), f"{len(platform.mmio)} regions"),
            "secure": (_json_size([asdict(r) for r in platform.secure]), f"{len(platform.secure)} regions"),
        }
        key = max(parts, key=lambda k: parts[k][0])
        raise self.fail(key, _Summary(parts[key][1]), f"a shorter value: the platform is {size} bytes as JSON, and a "
                                                      f"machine's control block holds at most {PLATFORM_MAX}")

    def disjoint(self, regions: tuple[Region, ...], where: str, what: str) -> None:
        """Refuse a region that overlaps another of the same list, naming both (the one later in
        the file as the key). One sweep in address order: comparing every pair took a minute
        for the 30,000 regions a 1 MiB file holds, before the file was refused as too long."""
        order = sorted(range(len(regions)), key=lambda k: (regions[k].base, k))
        reach: int | None = None        # the region seen so far that ends highest
        for k in order:
            if reach is not None and regions[k].base < regions[reach].end:
                i, j = max(k, reach), min(k, reach)
                other = regions[j]
                raise self.fail(f"{where}[{i}].base", regions[i].base,
                                f"{what} that does not overlap {where}[{j}] [{other.base:#x}, {other.end:#x})")
            if reach is None or regions[k].end > regions[reach].end:
                reach = k

    def regions(self, raw: object, where: str, pa_bits: int) -> tuple[Region, ...]:
        if not isinstance(raw, list):
            raise self.fail(where, raw, f"an array of tables ([[{where}]] with base and size)")
        return tuple(self.region(item, f"{where}[{i}]", pa_bits) for i, item in enumerate(raw))

    def features(self, raw: object, pa_bits: int) -> Features:
        if not isinstance(raw, dict):
            raise self.fail("features", raw, "a table")
        names = {f for f in Features.__dataclass_fields__}
        self.keys(raw, "features", names, names - {"sve_vector_length", "max_recs_order", "vmid_bits"})
        lpa2 = self.boolean(raw, "lpa2", "features.lpa2")
        if lpa2:
            raise self.fail("features.lpa2", lpa2, "false: rmm-mp does not model FEAT_LPA2 (52-bit IPAs, "
                                                   "start level -1); see docs/deviations.md")
        s2sz = self.integer(raw, "s2sz", "features.s2sz", *BOUNDS["s2sz"], "the maximum realm IPA width in bits")
        if s2sz > pa_bits:
            raise self.fail("features.s2sz", s2sz,
                            f"at most pa_bits ({pa_bits}): TF-RMM derives S2SZ from the PA range")
        sve = self.boolean(raw, "sve", "features.sve")
        vl = raw.get("sve_vector_length", 128 if sve else 0)
        if sve and (isinstance(vl, bool) or not accepts("sve_vector_length", vl)):
            raise self.fail("features.sve_vector_length", vl,
                            f"the maximum SVE vector length in bits, {accepted('sve_vector_length')}")
        if not sve and (type(vl) is not int or vl != 0):     # 0.0 and false == 0, but are no length
            raise self.fail("features.sve_vector_length", vl, "0 (or no key) when sve = false")
        pmu = self.boolean(raw, "pmu", "features.pmu")
        counters = self.integer(raw, "pmu_counters", "features.pmu_counters", *BOUNDS["pmu_counters"],
                                   "the number of PMU event counters")
        if not pmu and counters:
            # as for sve_vector_length: the register would say PMU_NUM_CTRS = 0 and drop them
            raise self.fail("features.pmu_counters", counters, "0 when pmu = false")
        bps = self.integer(raw, "breakpoints", "features.breakpoints", *BOUNDS["breakpoints"],
                           "a count of breakpoints (NUM_BPS = count - 1; 0 is reserved)")
        wps = self.integer(raw, "watchpoints", "features.watchpoints", *BOUNDS["watchpoints"],
                           "a count of watchpoints (NUM_WPS = count - 1; 0 is reserved)")
        hashes = raw["hash_algorithms"]
        if (not isinstance(hashes, list) or not hashes or any(h not in HASH_NAMES for h in hashes)
                or len(set(hashes)) != len(hashes)):
            raise self.fail("features.hash_algorithms", hashes,
                            f"a non-empty list of distinct hash names, each {choice_list(HASH_NAMES)}")
        lrs = self.integer(raw, "gic_list_registers", "features.gic_list_registers", *BOUNDS["gic_list_registers"],
                           "a count of GICv3 list registers (GICV3_NUM_LRS = count - 1)")
        order = raw.get("max_recs_order", 10)
        if isinstance(order, bool) or not accepts("max_recs_order", order):
            raise self.fail("features.max_recs_order", order,
                            f"an integer in {accepted('max_recs_order')} (MAX_RECS = 2^order - 1; TF-RMM's bound, "
                            "whose refcount field has 10 bits)")
        vmid_bits = raw.get("vmid_bits", 16)
        if type(vmid_bits) is not int or vmid_bits not in (8, 16):
            raise self.fail("features.vmid_bits", vmid_bits, "8 or 16 (VMIDs a realm may use: 0..2^vmid_bits - 1)")
        return Features(s2sz, lpa2, sve, vl, pmu, counters, bps, wps, tuple(hashes), lrs, order, vmid_bits)

    def attestation(self, raw: object) -> Attestation:
        if not isinstance(raw, dict):
            raise self.fail("attestation", raw, "a table")
        self.keys(raw, "attestation", {"keys", "rak_seed", "platform_key_seed"}, {"keys"})
        keys = raw["keys"]
        if keys not in KEY_SOURCES:
            raise self.fail("attestation.keys", keys, f"one of {choice_list(KEY_SOURCES)}")
        if keys == "seeds":
            for key in ("rak_seed", "platform_key_seed"):
                seed = raw.get(key)
                if not isinstance(seed, str) or not seed:
                    raise self.fail(f"attestation.{key}", seed if seed is not None else MISSING,
                                    "a non-empty string from which the key is derived (keys = 'seeds')")
            return Attestation(keys, raw["rak_seed"], raw["platform_key_seed"])
        extra = set(raw) - {"keys"}
        if extra:
            key = sorted(extra)[0]
            raise self.fail(f"attestation.{key}", raw[key], f"no seed when keys = {keys!r} (the keys are fixed)")
        return Attestation(keys)
