"""Workload files (TOML, docs/workloads.md): reading one and checking every key.

    bundled()            names of the workloads in workloads/*.toml
    find(name_or_path)   the file of a bundled name or a path
    load(name_or_path)   read and check it -> WorkloadFile
    parse(text, source)  the same for text in hand

Everything that can be checked without the platform or the command line is checked here: key
names (unknown keys are errors, with a "did you mean"), types, ranges, sizes, guests and their
constants (each guest is assembled), CPU sets, weight tables, phases. resolve.py then applies
the platform and the command-line options and checks what depends on them. Every error is a
ConfigError naming file:line, the key, the value and what was expected; nothing is created in
shared memory before both have passed.

This module owns the file format. It must not create a machine.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from rmm_mp.guest.assembler import AssemblerError, ImageTooLarge
from rmm_mp.guest.equ import equ_names, with_constants
from rmm_mp.host.realm import TEARDOWN_ORDERS
from rmm_mp.host.runqueue import MAX_CPUS, MAX_REALMS, MAX_VCPUS
from rmm_mp.hw.platform import MAX_DRAM_GRANULES
from rmm_mp.hw.tomlparse import loads as toml_loads
from rmm_mp.hw.tomlsrc import (ConfigError, InputTooLarge, bundled_dir, bundled_hint, bundled_names, find_toml,
                               key_part, read_source, suggestion, why_not_a_file)
from rmm_mp.printable import shown_path
from rmm_mp.workload import blame, programs
from rmm_mp.workload.fields import U64, Fields, integer_hint, is_int

Weights = tuple[tuple[str, float], ...]
TOP_KEYS = ("description", "platform", "cpus", "seconds", "iterations", "seed", "time_slice", "activities",
            "group", "realm", "phase")
MIN_IPA_WIDTH = 33
"""The narrowest realm a workload can have: its RAM starts at IPA 2 GiB, in the protected half."""
REALM_KEYS = ("name", "guest", "recs", "ram", "ipa_width", "hash", "rpv", "measure", "constants", "instances",
              "lifecycle", "lifetime", "teardown", "cpus")
GROUP_KEYS = ("cpus", "activities")
PHASE_KEYS = ("name", "seconds", "iterations", "activities", "group")
HASHES = ("sha256", "sha512")
TEARDOWNS = TEARDOWN_ORDERS + ("alternate",)
MAX_SECONDS = 7 * 24 * 3600.0
MIN_SECONDS = 1e-9
"""The shortest run or phase, a nanosecond: a CPU counts a run's time in whole nanoseconds
(engine), so that a shorter length (a subnormal such as 1e-316, surely a typo) was a run of no
time at all, with no call made, reported as a run of it."""
SECONDS_WHAT = "a duration in seconds (a run counts whole nanoseconds)"


def nanoseconds(seconds: float) -> int:
    """The whole nanoseconds a run or phase of ``seconds`` lasts (the engine's deadlines, and the
    count `workloads show` keeps to): the float product rounded, not truncated. 0.000000015 is
    14.999999999999998 ns as a float product, which int() made 14; up to a week (6 * 10^14 ns,
    products exact to an eighth of one) rounding gives back every nanosecond a file writes."""
    return round(seconds * 1e9)


def phase_ends(lengths: Iterable[float]) -> list[int]:
    """The nanoseconds after a timed run's start at which each of its phases of ``lengths``
    seconds ends: the running sum of the lengths (added as Workload.seconds adds them), rounded
    once (nanoseconds). The phases' own counts added up drifted from the run's length by up to
    half a nanosecond a phase: `--seconds 10` over 3 equal phases ended 9,999,999,999 ns after
    the start, where `workloads show` says 10 s; the last phase now ends at the length it says."""
    ends, total = [], 0.0
    for seconds in lengths:
        total += seconds
        ends.append(nanoseconds(total))
    return ends


MAX_ITERATIONS = 10**12
MiB = 1 << 20
GRANULE = 4096


@dataclass(frozen=True)
class RealmTemplate:
    """One [[realm]] entry: what every instance of it is built from."""

    key: str
    name: str
    guest: str
    """A bundled guest name, "ripas-loop", or the absolute path of a .s file."""
    recs: int
    ram: int
    ipa_width: int
    hash: str
    rpv: bytes
    measure: bool
    constants: tuple[tuple[str, int], ...]
    instances: int
    lifecycle: bool
    lifetime: int | None
    teardown: str
    image: bytes
    """Assembled with the constants (an attest realm's challenge is replaced per instance)."""
    cpus: frozenset[int] | None = None
    """The CPUs that run its vCPUs (the `cpus` key; None: every CPU). Ids beyond the run's CPUs
    are ignored (resolve.py refuses a set with none of them)."""
    cpus_written: str | tuple[int, ...] = "all"
    """The `cpus` value as the file wrote it (a list as a tuple), for errors."""
    backed: int = 0
    """Granules of its RAM the host can have to back for the guest, its constants applied
    (programs.backed_pages): the image's and the guest's data pages, not the RAM between them
    (the memory check, resolve.realm_granules); 0: not computed (the engine's own ripas-loop
    template)."""
    shared: int | None = None
    """NS pages the host can back at the unprotected alias of its RAM for the guest, its
    constants applied (programs.shared_pages: where an attest realm's SHARED_OFFSET puts its
    token's copy); None: not computed (resolve.realm_granules takes the guest's defaults)."""
    ram_written: bool = True
    """Whether the file sets `ram` (False: the default, 2M, which an error about ram says it is:
    the key's line is the [[realm]] header's)."""

    @property
    def hash_algo(self) -> int:
        return HASHES.index(self.hash)

    @property
    def attest(self) -> bool:
        return self.guest == "attest"

    def teardown_for(self, generation: int) -> str:
        if self.teardown == "alternate":
            return TEARDOWN_ORDERS[generation % 2]
        return self.teardown


@dataclass(frozen=True)
class Group:
    key: str
    cpus: frozenset[int] | None
    """None: every CPU."""
    weights: Weights


@dataclass(frozen=True)
class PhaseSpec:
    key: str
    name: str
    seconds: float | None
    iterations: int | None
    activities: Weights | None
    groups: tuple[Group, ...]


@dataclass(frozen=True)
class WorkloadFile:
    """A checked workload file, before the platform and the command line are applied."""

    name: str
    source: str
    text: str
    description: str
    platform: str | None
    cpus: int | None
    seconds: float | None
    iterations: int | None
    seed: int | None
    time_slice: int | None
    activities: Weights | None
    groups: tuple[Group, ...]
    realms: tuple[RealmTemplate, ...]
    phases: tuple[PhaseSpec, ...]

    @property
    def fields(self) -> Fields:
        return Fields(self.text, self.source, integer_hints=True)


def workload_dir() -> Path:
    """The bundled workloads: the installed package's data, else the repository's."""
    return bundled_dir("workloads", "workloads")


def bundled() -> list[str]:
    return bundled_names(workload_dir())


def find(name_or_path: str | os.PathLike[str]) -> Path:
    """The file of a bundled workload name or of a path; ConfigError if there is none (saying
    what the name is in the working directory, when it is a directory or a file without .toml)."""
    return find_toml(name_or_path, workload_dir(), "command line", "WORKLOAD", "workload", said=True)


def load(name_or_path: str | os.PathLike[str]) -> WorkloadFile:
    path = find(name_or_path)
    return parse(read_source(path, "workload"), str(path))


def parse(text: str, source: str) -> WorkloadFile:
    """Check workload ``text`` read from ``source`` (a path: guest paths are relative to its directory)."""
    f = Fields(text, source, integer_hints=True)
    raw = toml_loads(text, source)
    f.keys(raw, "", TOP_KEYS)
    base_dir = base_directory(source)
    # Before the length's own value is checked: `seconds = "5s"` beside phases was told to write
    # 5, which is refused in turn, here. A `phase` that is no array of tables (`phase = [1]`) is
    # refused first, as such: "no top-level length when the file has [[phase]] entries" named
    # the length as the mistake, beside phases the file does not have.
    if "phase" in raw and ("seconds" in raw or "iterations" in raw):
        _array(f, raw["phase"], "phase")
    if isinstance(raw.get("phase"), list) and raw["phase"] and ("seconds" in raw or "iterations" in raw):
        key = "seconds" if "seconds" in raw else "iterations"
        raise f.fail(key, raw[key], "no top-level length when the file has [[phase]] entries: each phase "
                                    "gives its own seconds or iterations")
    seconds, iterations = _length(f, raw, "")
    realms = _realms(f, raw.get("realm", []), base_dir)
    phases = _phases(f, raw.get("phase", []))
    return WorkloadFile(
        name=Path(source).stem, source=source, text=text,
        description=f.line_of_text(raw.get("description", ""), "description"),
        platform=f.string(raw["platform"], "platform", "a platform name or a path to a platform .toml file")
        if "platform" in raw else None,
        cpus=f.integer(raw["cpus"], "cpus", 1, MAX_CPUS, f"the number of CPU processes (at most {MAX_CPUS}, the run "
                       "queue's limit, and at most the platform's CPUs)") if "cpus" in raw else None,
        seconds=seconds, iterations=iterations,
        seed=f.integer(raw["seed"], "seed", 0, U64, "the seed of every random choice") if "seed" in raw else None,
        time_slice=f.integer(raw["time_slice"], "time_slice", 1, 10**9, "guest instructions a REC runs per "
                             "entry before an IRQ exit") if "time_slice" in raw else None,
        activities=f.weights(raw["activities"], "activities") if "activities" in raw else None,
        groups=_groups(f, raw.get("group", []), "group"),
        realms=realms, phases=phases)


def base_directory(source: str) -> Path:
    """The directory a workload file's relative paths (guest files, platform) are read from:
    that of the file itself, after symbolic links, not that of a link naming it. So a workload
    kept with its guests and linked from elsewhere (ln -s ~/pack/w.toml .) finds them, and
    /dev/stdin redirected from a file (/proc/self/fd/0 leads to it) reads them beside that file.
    docs/workloads.md, "Top-level keys", says so."""
    return Path(source).resolve().parent


def beside(source: str) -> str:
    """What an error about a relative path adds when the workload file was named through a
    symbolic link: where the path was read relative to is not where the user named the file."""
    real = Path(source).resolve()
    if real == Path(os.path.abspath(source)):
        return ""
    return f", beside {shown_path(real)}, which {shown_path(source)} leads to through a symbolic link"


def _length(f: Fields, table: dict[str, Any], prefix: str) -> tuple[float | None, int | None]:
    sk, ik = f"{prefix}seconds", f"{prefix}iterations"
    if "seconds" in table and "iterations" in table:
        raise f.fail(ik, table["iterations"], "either seconds or iterations, not both")
    seconds = f.number(table["seconds"], sk, MIN_SECONDS, MAX_SECONDS, SECONDS_WHAT, seconds=True) \
        if "seconds" in table else None
    iterations = f.integer(table["iterations"], ik, 1, MAX_ITERATIONS, "activity steps per CPU") \
        if "iterations" in table else None
    return seconds, iterations


def _array(f: Fields, value: object, key: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise f.fail(key, value, f"an array of tables ([[{key}]] entries)")
    return value


def _groups(f: Fields, value: object, key: str) -> tuple[Group, ...]:
    groups: list[Group] = []
    claimed: dict[int, str] = {}
    for i, raw in enumerate(_array(f, value, key)):
        where = f"{key}[{i}]"
        f.keys(raw, where, GROUP_KEYS, GROUP_KEYS, top=TOP_KEYS)
        cpus = f.cpu_set(raw["cpus"], f"{where}.cpus")
        for cpu in sorted(cpus) if cpus is not None else ():
            if cpu in claimed:
                raise f.fail(f"{where}.cpus", raw["cpus"], f"CPUs that no other group names (CPU {cpu} is in "
                                                           f"{claimed[cpu]} too)")
            claimed[cpu] = where
        if cpus is None and len(_array(f, value, key)) > 1:
            raise f.fail(f"{where}.cpus", raw["cpus"], '"all" only in a lone group (other groups name CPUs too)')
        groups.append(Group(where, cpus, f.weights(raw["activities"], f"{where}.activities")))
    return tuple(groups)


def _phases(f: Fields, value: object) -> tuple[PhaseSpec, ...]:
    phases: list[PhaseSpec] = []
    # The names and the total so far kept as the phases come, not found again over all of
    # them for each: 15,000 phases (a 1 MiB file holds more) took 45 s to check.
    names: set[str] = set()
    total = Decimal(0)
    for i, raw in enumerate(_array(f, value, "phase")):
        where = f"phase[{i}]"
        f.keys(raw, where, PHASE_KEYS, ("name",), top=TOP_KEYS)
        name = f.name(raw["name"], f"{where}.name")
        if name in names:
            raise f.fail(f"{where}.name", name, "a name no other phase has")
        names.add(name)
        seconds, iterations = _length(f, raw, f"{where}.")
        if seconds is None and iterations is None:
            raise f.fail(where, name, "an end: seconds or iterations")
        if phases and (seconds is None) != (phases[0].seconds is None):
            unit = "seconds" if phases[0].seconds is not None else "iterations"
            raise f.fail(f"{where}.{'iterations' if seconds is None else 'seconds'}", seconds or iterations,
                         f"{unit}, like phase[0]: the phases of a file are all timed or all counted")
        activities = f.weights(raw["activities"], f"{where}.activities") if "activities" in raw else None
        phases.append(PhaseSpec(where, name, seconds, iterations, activities,
                                _groups(f, raw.get("group", []), f"{where}.group")))
        total = _phases_total(f, raw, phases, total)
    return tuple(phases)


_TERMS_SHOWN = 8
"""Most phases the error about the phases' total names one by one (half of them first, half last)."""


def _phases_total(f: Fields, raw: dict[str, Any], phases: list[PhaseSpec], before: Decimal) -> Decimal:
    """The phases' lengths so far (``before``: those of all but the last) must add up to no more
    than a run may last (MAX_SECONDS, or MAX_ITERATIONS steps), the bound each phase and the
    top-level length have on their own: two phases of a week each validated as a two-week run
    (and two of 10^12 steps as 2 * 10^12). Returns the total; raised at the phase that passes
    the bound, naming the phases (the first and last _TERMS_SHOWN / 2 of more than
    _TERMS_SHOWN + 2) and the sum."""
    timed = phases[0].seconds is not None
    last = phases[-1].seconds if timed else phases[-1].iterations
    # Added as the decimals the file wrote (repr gives them back from the floats), not as
    # floats: 76701.0 + 134898.4 + 271000.9 + 98284.9 + 23914.8 is exactly a week, but its float
    # sum is 604,800.0000000001, which refused the file with a sum shown as "= 604,800 s".
    total = before + Decimal(repr(last or 0))
    limit, unit = (MAX_SECONDS, "s") if timed else (MAX_ITERATIONS, "steps")
    if total <= limit:
        return total
    key = "seconds" if timed else "iterations"
    shown = [f"{p.key} {p.name!r} {_amount((p.seconds if timed else p.iterations) or 0)}" for p in phases]
    half = _TERMS_SHOWN // 2
    if len(shown) > _TERMS_SHOWN + 2:
        # Every one of 6,048 phases of 100 s made a message of 150 KB. (Two or fewer left out
        # would take as long to say as to name.)
        shown = shown[:half] + [f"... ({len(shown) - 2 * half:,} phases more)"] + shown[-half:]
    terms = " + ".join(shown)
    most = "a week, 604,800 s" if timed else "10^12 steps per CPU"
    raise f.fail(f"{phases[-1].key}.{key}", raw[key], f"{key} that keep the phases' total at most what a run may "
                                                       f"last ({most}): {terms} = {_amount(total)} {unit}")


def _amount(x: float | Decimal) -> str:
    """A length as a person reads it, every decimal the file wrote: 604,800 and 1,209,600.5, not
    1.2096e+06; and 604,800.0000001, not 604,800 (six decimals showed a sum past the bound as the
    bound itself)."""
    text = f"{x if isinstance(x, Decimal) else Decimal(repr(x)):,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _realms(f: Fields, value: object, base_dir: Path) -> tuple[RealmTemplate, ...]:
    out: list[RealmTemplate] = []
    raws = _array(f, value, "realm")
    if len(raws) > MAX_REALMS:
        # Before any guest is assembled: each entry has at least one instance, so the file is
        # refused anyway (resolve's capacity check), and assembling thousands of guests first
        # took seconds per hundred entries.
        # Shown by its name, or, without one, as the entry itself (not Python's None).
        extra = raws[MAX_REALMS]
        raise f.fail(f"realm[{MAX_REALMS}]", extra["name"] if "name" in extra else extra,
                     f"at most {MAX_REALMS} [[realm]] entries (each has at least one instance, and the run "
                     f"queue holds {MAX_REALMS} realms); this file has {len(raws)}")
    image_granules = 0
    for i, raw in enumerate(raws):
        # Every instance holds a copy of its image in DRAM, which no platform has more of than
        # MAX_DRAM_GRANULES (4 GiB): past that the memory check refuses the file on any
        # platform. Checked as each entry is assembled, because the images are kept until
        # then (54 entries with 1 GiB images, a ripas-loop MAX_RECS of 4,000,000, took 42 GB
        # and some 8 s each to be refused, and the validation was killed for memory), and by
        # the image's size before it is made (_realm).
        realm = _realm(f, raw, f"realm[{i}]", base_dir, i, image_granules)
        if any(r.name == realm.name for r in out):
            raise f.fail(f"realm[{i}].name", realm.name, "a name no other realm has")
        image_granules += -(-len(realm.image) // GRANULE) * realm.instances
        out.append(realm)
    return tuple(out)


def _images_past_dram(f: Fields, raw: dict[str, Any], index: int, image_granules: int) -> ConfigError:
    """The error for images of realm[0..index] that take ``image_granules`` in all, more than
    any platform's DRAM."""
    entries = "realm[0]" if index == 0 else f"realm[0] to realm[{index}]"
    return f.fail(f"realm[{index}].guest", raw["guest"], f"guests whose images fit in DRAM: each instance "
                  f"holds its realm's image, those of {entries} take {image_granules * GRANULE / MiB:,.1f} MiB, "
                  f"and no platform has more than {MAX_DRAM_GRANULES * GRANULE >> 30} GiB of DRAM")


def _realm(f: Fields, raw: dict[str, Any], where: str, base_dir: Path, index: int,
           image_granules: int) -> RealmTemplate:
    """realm[index]; the images of the entries before it take ``image_granules`` of DRAM."""
    f.keys(raw, where, REALM_KEYS, ("name", "guest"), top=TOP_KEYS)
    name = f.name(raw["name"], f"{where}.name")
    guest, text = _guest(f, raw["guest"], f"{where}.guest", base_dir)
    recs = f.integer(raw.get("recs", 1), f"{where}.recs", 1, MAX_VCPUS,
                     f"RECs per realm (the host's run queue runs at most {MAX_VCPUS})")
    ipa_width = f.integer(raw.get("ipa_width", 40), f"{where}.ipa_width", MIN_IPA_WIDTH, 48,
                          "the realm's IPA width in bits (RAM starts at 2 GiB, so at least 33)")
    par = 1 << (ipa_width - 1)
    ram = f.size(raw.get("ram", 2 * MiB), f"{where}.ram", 4096, min(par - programs.RAM_BASE, 1 << 30))
    constants = _constants(f, raw.get("constants", {}), f"{where}.constants", guest, text)
    hash_name = f.choice(raw.get("hash", "sha256"), f"{where}.hash", HASHES)
    derived: dict[str, int] = {}
    if guest == "measure":
        # The REM the guest compares with depends on the realm's hash (and its value): derived
        # here, as the attest guest's challenge is, so that a sha512 realm passes too.
        derived = programs.measure_expected(text, dict(constants), HASHES.index(hash_name))
    instances = f.integer(raw.get("instances", 1), f"{where}.instances", 1, MAX_REALMS,
                          f"realms of this kind alive at once (the run queue holds {MAX_REALMS} realms)")
    source = with_constants(text, {**dict(constants), **derived})
    # The largest image that is not refused by its size anyway, asked of the assembler so that
    # a larger one is refused having been sized, not made: a 7 GB guest (1 GiB images, 7
    # instances) was assembled whole, seconds and gigabytes, to be refused for its size.
    dram_most = (MAX_DRAM_GRANULES - image_granules) // instances * GRANULE
    image: bytes | None
    try:
        image = programs.image(source, {}, most=min(dram_most, ram))
        image_size = len(image)
    except ImageTooLarge as exc:
        if exc.size > dram_most:
            raise _images_past_dram(f, raw, index, image_granules + -(-exc.size // GRANULE) * instances) from None
        image, image_size = None, exc.size         # larger than ram: refused below, naming the key to blame
    except (AssemblerError, ValueError) as exc:
        raise blame.unassembled(f, raw, where, text, source, exc) from None
    if not image_size:
        raise f.fail(f"{where}.guest", raw["guest"], "a guest with code in it: REC 0 starts at the first byte of "
                                                     "the image, and this file assembles to nothing")
    blame.pages_after_image(f, raw, where, guest, recs, image_size, text, dict(constants), derived)
    need = programs.min_ram(guest, recs, image_size, source)
    most = min(par - programs.RAM_BASE, 1 << 30)
    if need > most:
        # No ram would do: saying "set ram = ..." sent the user to a size refused as well
        # (a RANGE near 2^64 asked for ram = "17592186042369M"). The constant that placed the
        # pages there is what to change.
        key, value = blame.placing_culprit(raw, where, guest, recs, image_size, text, dict(constants), derived, most) \
            or (f"{where}.ram", raw.get("ram", ram))
        raise f.fail(key, value, f"pages that fit in the most RAM a realm can have: guest {raw['guest']!r} with "
                                 f"{recs} REC{'s' if recs > 1 else ''} touches {blame.kib(need)} of RAM, and ram is at "
                                 f"most {blame.kib(most)} (1 GiB, and what ipa_width {ipa_width} leaves above 2 GiB)")
    if ram < need:
        unset = "" if "ram" in raw else \
            f"; ram is not set, and its default, 2M, is less: set ram = \"{-(-need // MiB)}M\" or more"
        raise f.fail(f"{where}.ram", raw.get("ram", ram),
                     f"at least {blame.kib(need)} for guest {raw['guest']!r} with {recs} REC{'s' if recs > 1 else ''} "
                     f"(its image and the pages it uses){unset}")
    assert image is not None         # an image larger than ram needs more than ram, refused above
    lifecycle = f.boolean(raw.get("lifecycle", False), f"{where}.lifecycle")
    lifetime = None
    if "lifetime" in raw:
        lifetime = f.integer(raw["lifetime"], f"{where}.lifetime", 1, 10**9, "REC entries after which the "
                             "lifecycle turns the realm off")
        if not lifecycle:
            raise f.fail(f"{where}.lifetime", lifetime, "no lifetime unless lifecycle = true (only a lifecycle "
                                                        "realm is turned off and rebuilt)")
    return RealmTemplate(
        key=where, name=name, guest=guest, recs=recs, ram=ram, ipa_width=ipa_width,
        hash=hash_name,
        rpv=f.hex_bytes(raw.get("rpv", ""), f"{where}.rpv", 64),
        measure=f.boolean(raw.get("measure", True), f"{where}.measure"),
        constants=constants,
        instances=instances,
        lifecycle=lifecycle, lifetime=lifetime,
        teardown=f.choice(raw.get("teardown", "v12"), f"{where}.teardown", TEARDOWNS), image=image,
        cpus=f.cpu_set(raw["cpus"], f"{where}.cpus") if "cpus" in raw else None,
        cpus_written=tuple(raw["cpus"]) if isinstance(raw.get("cpus"), list) else raw.get("cpus", "all"),
        backed=programs.backed_pages(guest, recs, image_size, source), shared=programs.shared_pages(guest, source),
        ram_written="ram" in raw)


def _guest(f: Fields, value: object, key: str, base_dir: Path) -> tuple[str, str]:
    names = programs.guest_names()
    expected = f"a bundled guest ({', '.join(names)}) or the path of a .s file"
    if not isinstance(value, str) or not value:
        raise f.fail(key, value, expected)
    if value in names:
        return value, programs.guest_text(value)
    if value.endswith(".s") or os.sep in value:
        if "\0" in value:      # TOML strings may hold one; resolve() would raise on it
            raise f.fail(key, value, "a regular .s file that exists (a path cannot hold a NUL character)")
        try:
            path = (base_dir / value).resolve()
        except (OSError, RuntimeError) as exc:  # a symbolic-link loop: RuntimeError before Python 3.13
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else os.strerror(errno.ELOOP)
            raise f.fail(key, value, f"a regular .s file that exists (it cannot be looked up: {why})") from None
        not_a_file = bundled_hint(why_not_a_file(path), value, names, "guest")
        if not_a_file is not None:
            # The path escaped where a character would act on the terminal (the value is;
            # this text is printed as it is): "a\u001b[2J.s" cleared the screen.
            raise f.fail(key, value, f"a regular .s file that exists (looked for {shown_path(path)}{beside(f.source)}: "
                                     f"{not_a_file})")
        try:
            return str(path), read_source(path, "guest")
        except InputTooLarge as exc:
            # Named by the key that chose the file, with the file's size: read_source's error
            # names the .s file alone, not which realm of which workload asked for it.
            too_large = exc.too_large
            has = f"{too_large.size:,}" if too_large.size is not None else too_large.size_text
            raise f.fail(key, value, f"a .s file of at most {too_large.limit:,} bytes (1 MiB; {shown_path(path)} has "
                                     f"{has})") from None
    raise f.fail(key, value, expected + suggestion(value, names))


_BOUNDED = {
    # The guest would ask for 0 bytes at a time for ever: its realm never finishes.
    ("attest", "CHUNK"): (1, U64, "at least 1 byte per RSI_ATTESTATION_TOKEN_CONTINUE call (with 0 the guest never "
                                  "finishes its token)"),
    # RSI_MEASUREMENT_EXTEND's index and size: anything else fails the realm at run time.
    ("attest", "EXTEND_REM"): (0, 4, "0 (no extension) or the index of a REM, 1..4 (RSI_MEASUREMENT_EXTEND's)"),
    ("attest", "EXTEND_SIZE"): (0, 64, "a size in 0..64 bytes (RSI_MEASUREMENT_EXTEND's)"),
    ("measure", "SIZE"): (0, 64, "a size in 0..64 bytes (RSI_MEASUREMENT_EXTEND's)"),
    ("measure", "REM_INDEX"): (1, 4, "the REM RSI_MEASUREMENT_EXTEND extends, 1..4 (0 is the RIM)"),
    # With 0 every REC's RSI_IPA_STATE_SET covers an empty range, which the RMM refuses, and
    # all RECs share one page.
    ("ripas-loop", "PAGES"): (1, U64, "at least 1 page per REC (with 0 the guest's RSI_IPA_STATE_SET covers an "
                                      "empty range)"),
    # The image holds an RsiHostCall per REC up to MAX_RECS: with 0 it holds none, and REC 0's
    # host calls write the page after the image, which neither the image nor guest_pages counts
    # (the memory check's backed_pages): ripas-loop had one page more backed than counted.
    ("ripas-loop", "MAX_RECS"): (1, U64, "at least 1 REC (with 0 the image holds no RsiHostCall: REC 0's host calls "
                                         "would write the page after it)"),
    ("smp-boot", "MAX_RECS"): (1, U64, "at least 1 REC (with 0 the image holds no RsiHostCall: REC 0's host calls "
                                       "would write the page after it)"),
    # The guest's touch loop counts RANGE_PAGES down after each page and stops at 0: from 0 it
    # wraps, and the guest writes every page from RANGE to the end of its RAM, all faulted in
    # against a count (backed_pages) of none.
    ("ripas-flip", "RANGE_PAGES"): (1, U64, "at least 1 page (with 0 the guest's touch loop wraps and writes every "
                                            "page from RANGE to the end of its RAM)"),
}
"""Bundled guests' constants whose range is narrower than a u64: (guest, name) -> (lowest,
highest, what is expected)."""


def _constants(f: Fields, value: object, key: str, guest: str, text: str) -> tuple[tuple[str, int], ...]:
    table = f.table(value, key)
    defined = equ_names(text)
    out = []
    for name, number in table.items():
        if name not in defined:
            known = f": {', '.join(defined)}" if defined else " (it has no .equ lines)"
            raise f.fail(f"{key}.{key_part(name)}", number, f"an .equ constant of guest {os.path.basename(guest)!r}"
                                                  f"{suggestion(name, defined)}{known}")
        if guest == "attest" and name.startswith("CHALLENGE"):
            raise f.fail(f"{key}.{name}", number, "no CHALLENGE constant: the engine gives each attest realm "
                                                  "its own challenge from the seed")
        if guest == "measure" and name.startswith("EXPECTED"):
            raise f.fail(f"{key}.{name}", number, "no EXPECTED constant: the engine computes EXPECTED0..7 from the "
                                                  "realm's hash and VALUE0..7 and SIZE")
        if not is_int(number) or not 0 <= number <= U64:
            raise f.fail(f"{key}.{name}", number, f"an integer in 0..2^64-1{integer_hint(number, 0, U64)}")
        bound = _BOUNDED.get((guest, name))
        if bound is not None and not bound[0] <= number <= bound[1]:
            raise f.fail(f"{key}.{name}", number, bound[2])
        out.append((name, number))
    return tuple(out)
