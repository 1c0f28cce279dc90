"""Docs that are generated from code stay in step with it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmm_mp.abi.rsi import RsiFid
from rmm_mp.rmm import rsi_dispatch
from rmm_mp.rmm.dispatch import COMMANDS, failure_conditions, lock_sequences

ROOT = Path(__file__).resolve().parents[1]


def test_locking_doc_matches_declared_sequences() -> None:
    """docs/locking.md's per-command table is what tools/gen_docs.py generates from the
    LOCK_SEQUENCES in the handler modules (so the doc cannot drift from the code)."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_docs.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_gen_docs_help_and_a_mistyped_option_write_nothing(tmp_path: Path) -> None:
    """`python tools/gen_docs.py --help` prints its usage and a mistyped option (`--chek`) is a
    usage error (exit 2); neither rewrites docs/locking.md. The tool once looked for "--check"
    in sys.argv only, so both fell through to regenerating the doc (found by a docs audit
    running every tool's --help). Run on a copy of the tool beside a stale locking.md."""
    import shutil
    (tmp_path / "tools").mkdir()
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "tools" / "gen_docs.py", tmp_path / "tools" / "gen_docs.py")
    stale = ("<!-- BEGIN GENERATED: lock sequences (tools/gen_docs.py) -->\nold\n<!-- END GENERATED -->\n"
             "<!-- BEGIN GENERATED: realm call lock sequences (tools/gen_docs.py) -->\nold\n<!-- END GENERATED -->\n")
    locking = tmp_path / "docs" / "locking.md"
    locking.write_text(stale)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for option, status, stream in (("--help", 0, "stdout"), ("--chek", 2, "stderr")):
        proc = subprocess.run([sys.executable, str(tmp_path / "tools" / "gen_docs.py"), option],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == status, (option, proc.returncode, proc.stderr)
        assert "usage: gen_docs.py" in getattr(proc, stream), (option, proc.stdout, proc.stderr)
        assert locking.read_text() == stale, option
    proc = subprocess.run([sys.executable, str(tmp_path / "tools" / "gen_docs.py"), "--check"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1 and locking.read_text() == stale, "--check reports the stale copy"


def test_every_implemented_command_declares_locks_and_failure_conditions() -> None:
    """Each implemented RMI command has a lock sequence with a deadlock argument, and its
    ordered list of spec failure-condition labels."""
    sequences, conditions = lock_sequences(), failure_conditions()
    implemented = [cmd for cmd in COMMANDS.values() if cmd.implemented]
    assert len(implemented) == len(COMMANDS), [c.fid.name for c in COMMANDS.values() if not c.implemented]
    for cmd in implemented:
        name = cmd.fid.name
        assert name in sequences and all(sequences[name]), name
        assert name in conditions, name


def test_every_realm_call_declares_locks() -> None:
    """Each RSI command a realm can make, and PSCI, has a lock sequence with a deadlock argument
    (docs/locking.md, "Realm calls"): they run inside REC_ENTER and take locks of their own."""
    sequences = rsi_dispatch.lock_sequences()
    for fid in rsi_dispatch.RSI_HANDLERS:
        name = RsiFid(fid).name
        assert name in sequences and all(sequences[name]), name
    assert any(name.startswith("PSCI_") for name in sequences)
    assert all(all(entry) for entry in sequences.values())


# -- paths the docs name ------------------------------------------------------------------------

PROSE = ("README.md", "docs/*.md", "tests/README.md", "workloads/README.md", "workloads/guests/README.md")
PATH_TOKEN = re.compile(r"`([^`\s]+)`|\]\(([^)\s#]+)|(?<![\w/.`-])((?:[\w-]+/)*[\w-]+\.py)\b(?!`)")
"""A path in backticks, a Markdown link's target, or a Python file named in plain prose
(`rmm/handlers/psci.py narrows ...`, `stress/explore_pairs_rec.py`)."""
PATH_LIKE = re.compile(r"[\w.-]+(/[\w.*-]+)*/?", re.ASCII)
INSTALLED_ONLY = {"rmm_mp/platforms", "rmm_mp/workloads"}
"""Package directories that exist only once installed (pyproject.toml maps platform/ and
workloads/ onto them)."""


def _named_paths(doc: Path) -> Iterator[str]:
    """Every token of ``doc`` that names a file of this repository: a path whose first part is
    a directory here (at the top, in rmm_mp/, in tests/ or beside the doc), or a bare module
    name such as `cpu_handle.py`. Example files (`my.toml`, `out.json`) start nowhere and are
    not taken."""
    for match in PATH_TOKEN.finditer(doc.read_text()):
        token = match.group(1) or match.group(2) or match.group(3)
        if not PATH_LIKE.fullmatch(token) or token.rstrip("/") in INSTALLED_ONLY:
            continue
        if "/" not in token:
            if token.endswith(".py"):
                yield token
            continue
        first = token.split("/")[0]
        if any((base / first).is_dir() for base in _bases(doc)) and first not in (".", ".."):
            yield token


def _bases(doc: Path) -> tuple[Path, ...]:
    return ROOT, ROOT / "rmm_mp", ROOT / "tests", doc.parent


def _exists(doc: Path, token: str) -> bool:
    if "/" not in token:       # a module of the package, a test helper or a tool
        return any(any((ROOT / top).glob(f"**/{token}")) for top in ("rmm_mp", "tests", "tools"))
    return any(any(base.glob(token.rstrip("/"))) for base in _bases(doc))


def test_every_path_the_docs_name_exists() -> None:
    """A file or directory named in README.md, docs/ or the READMEs of tests/ and workloads/
    (`hw/granule.py`, `rmm_mp/stress/shared.py`, `tests/rmm/test_rmi_rtt.py`, a link to
    docs/locking.md, or a Python file written in plain prose, such as the rows of
    docs/deviations.md that say "rmm/handlers/psci.py narrows ...") exists: a rename or removal
    that leaves a doc pointing at nothing fails here. Plain-prose paths were not looked at until
    a docs audit counted 98 of them, all unchecked."""
    docs = sorted({p for pattern in PROSE for p in ROOT.glob(pattern)})
    named = [(doc, token) for doc in docs for token in _named_paths(doc)]
    assert len(named) > 100, "the scan finds the docs' paths"
    missing = [f"{doc.relative_to(ROOT)}: {token}" for doc, token in named if not _exists(doc, token)]
    assert not missing, missing


def test_attestation_doc_names_every_attest_module() -> None:
    """docs/attestation.md's table of the code names every module of rmm_mp/attest/ (an audit
    found _claim_rules.py, digest.py and errors.py missing from it)."""
    row = next(line for line in (ROOT / "docs/attestation.md").read_text().splitlines()
               if line.startswith("| `rmm_mp/attest/` |"))
    modules = sorted(p.name for p in (ROOT / "rmm_mp/attest").glob("*.py") if p.name != "__init__.py")
    assert len(modules) > 10, "the scan finds the package's modules"
    missing = [name for name in modules if f"`{name}`" not in row]
    assert not missing, missing


def test_readme_counts_the_bug_and_pair_catalogs() -> None:
    """README's status row counts the stress tool's bug catalog and the explorer's pairs, and
    those whose setup runs a guest on a REC (stress/explore_pairs_rec.py, explore_pairs_rsi.py):
    the counts are written by hand, so a pair or bug added without the README shows here."""
    from rmm_mp.stress.bugs import BUGS
    from rmm_mp.stress.explore_pairs import PAIRS
    guest_modules = {"rmm_mp.stress.explore_pairs_rec", "rmm_mp.stress.explore_pairs_rsi"}
    with_guest = sum(1 for p in PAIRS.values() if p.setup.__module__ in guest_modules)
    readme = (ROOT / "README.md").read_text()
    assert f"a catalog of {len(BUGS)} injectable locking bugs" in readme
    assert f"{len(PAIRS)} pairs of calls ({with_guest} with a REC running a guest)" in readme


# -- command lines the docs show ------------------------------------------------------------------

COMMAND_SPAN = re.compile(r"`([^`\n]+)`|^(?:\s*\$?\s*)(rmm-mp .*|(?:python )?tools/\S+\.py.*)$", re.M)
"""An inline code span, or a line of a code block that starts with a command."""
TOOL = re.compile(r"(?:tools/)?(bench_\w+|gen_docs)\.py")


def _click_options() -> dict[str, set[str]]:
    """Every `rmm-mp` command path ("run", "attest verify", "" for the group) and its long options."""
    import click

    from rmm_mp.cli import main

    found: dict[str, set[str]] = {}

    def walk(cmd: click.Command, path: str) -> None:
        found[path] = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")} | {"--help"}
        if isinstance(cmd, click.Group):
            # Through the group's own listing, as --help does: rmm-mp imports most subcommands
            # only when asked (rmm_mp.cli.SUBCOMMANDS), so ``commands`` holds few of them.
            with click.Context(cmd) as ctx:
                for name in cmd.list_commands(ctx):
                    sub = cmd.get_command(ctx, name)
                    assert sub is not None, f"rmm-mp{' ' + path if path else ''} lists {name} but has no such command"
                    walk(sub, f"{path} {name}".strip())

    walk(main, "")
    return found


def _tool_options() -> dict[str, set[str]]:
    """Each tool's long options: the string literals of its source that are one (what argparse's
    add_argument names, or gen_docs.py looks for in sys.argv)."""
    return {p.stem: set(re.findall(r"[\"'](--[a-z][a-z0-9-]*)[\"']", p.read_text())) | {"--help"}
            for p in (ROOT / "tools").glob("*.py")}


def test_every_tool_option_has_a_help_text_that_gives_its_default() -> None:
    """Every option a tool in tools/ declares with argparse's add_argument has a help text (three
    of bench_run.py and two of bench_recording_ir.py had none, so `--help` showed a bare `--seed
    SEED`: found by a docs audit), and a help text that says "(default X)" says the default the
    code has (a number compared as a number: 2,500, 1e6, 5 for 5.0; else the first word)."""
    import ast
    checked, wrong = 0, []
    for path in sorted((ROOT / "tools").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_argument"):
                continue
            checked += 1
            name = f"{path.name} {ast.literal_eval(node.args[0])}"
            keywords = {k.arg: k.value for k in node.keywords}
            if "help" not in keywords:
                wrong.append(f"{name}: no help text")
                continue
            literal = {k: v.value for k, v in keywords.items() if isinstance(v, ast.Constant)}
            said = re.search(r"\(default ([^;) ]+)", str(literal.get("help", "")))
            if said is None or "default" not in literal:      # an f-string or a named default: not read
                continue
            default = literal["default"]
            if isinstance(default, (int, float)):
                ok = float(said[1].replace(",", "")) == default
            else:
                ok = default == "" or said[1] == default
            if not ok:
                wrong.append(f"{name}: help says default {said[1]}, the code has {default!r}")
    assert checked > 40, "the scan finds the tools' options"
    assert not wrong, wrong


def test_every_option_a_doc_gives_a_command_exists() -> None:
    """In README.md and docs/, every `--option` written after `rmm-mp COMMAND` (in a code span or
    on a command line of a code block, up to its `#` comment) or after `tools/NAME.py` is an
    option of that very command or tool: a renamed or removed option, or one moved to another
    command, that a doc still shows fails here."""
    commands, tools = _click_options(), _tool_options()
    paths = sorted(commands, key=lambda p: -len(p.split()))
    checked, wrong = 0, []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in COMMAND_SPAN.finditer(doc.read_text()):
            text = (match.group(1) or match.group(2)).split(" #")[0]
            for part in re.split(r"(?=\brmm-mp |(?<![\w/])(?:python )?tools/)", text):
                tool = TOOL.match(part.removeprefix("python ").strip())
                if tool is not None:
                    name, known = tool.group(1), tools.get(tool.group(1))
                elif part.startswith("rmm-mp "):
                    words = " ".join(w for w in part.split()[1:3] if re.fullmatch(r"[a-z]+", w))
                    name = next((p for p in paths if f"{words} ".startswith(f"{p} ")), "")
                    known = commands[name]
                else:
                    continue
                for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", part):
                    checked += 1
                    if known is None or option not in known:
                        wrong.append(f"{doc.relative_to(ROOT)}: {name or 'rmm-mp'} {option} in {text!r}")
    assert checked > 40, "the scan finds the docs' command lines"
    assert not wrong, wrong


# -- catalogs docs/stress.md lists ----------------------------------------------------------------

def _table_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first Markdown table after ``heading``, as lists of cell texts."""
    section = text[text.index(heading):]
    table = re.search(r"^\|.*\|\n\|[-| ]+\|\n((?:\|.*\|\n)+)", section, re.M)
    assert table is not None, heading
    return [[cell.strip() for cell in row.strip().strip("|").split(" | ")] for row in table.group(1).splitlines()]


def test_stress_doc_lists_the_bug_and_pair_catalogs_and_the_workloads() -> None:
    """docs/stress.md's bug table names every catalogued bug once, in catalog order, with the
    checker and rule that catch it; its pair table names every explorer pair, in catalog order;
    its workload table gives each stress workload's weights: a bug, pair or weight changed in
    the code without the doc fails here."""
    from rmm_mp.stress.bugs import BUGS
    from rmm_mp.stress.explore_pairs import PAIRS
    from rmm_mp.stress.ops import WORKLOADS
    text = (ROOT / "docs" / "stress.md").read_text()
    bugs = _table_rows(text, "## The bug catalog")
    assert [row[0] for row in bugs] == [f"`{name}`" for name in BUGS]
    for name, row in zip(BUGS, bugs):
        assert row[2].startswith(f"{BUGS[name].checker}: {BUGS[name].rule}"), (name, row[2])
    pairs = _table_rows(text, "| pair | the race |")
    assert [row[0] for row in pairs] == [f"`{name}`" for name in PAIRS]
    documented = {}
    for name, weights in _table_rows(text, "| workload | weights |"):
        items = [item.split() for item in weights.split(", ")]
        documented[name.strip("`")] = {w[0]: float(w[1]) if len(w) > 1 else 1.0 for w in items}
    assert documented == WORKLOADS


def test_latency_doc_and_schema_name_every_host_fact_of_the_run_json() -> None:
    """docs/latency.md's `host` item names exactly the keys of `rmm-mp run`'s JSON `host`
    object (render_json's `cores` and workload.run's host facts), and docs/report-schema.json
    describes exactly those: the doc named cores, machine, Python and date only, and the schema
    left time_slice, phases, overrides and stopped_by to "further facts" (found by a docs
    audit). The doc's names are the backquoted words of the item outside parentheses."""
    import json
    from types import SimpleNamespace

    from rmm_mp.workload import run
    facts = run._host_facts(SimpleNamespace(control=SimpleNamespace(time_slice=1)),  # type: ignore[arg-type]
                            SimpleNamespace(phases=(), overrides=()), "")  # type: ignore[arg-type]
    keys = {"cores", *facts, *run.LOAD_KEYS}     # the load averages are read around the CPUs' run
    text = (ROOT / "docs" / "latency.md").read_text()
    item = re.search(r"^- `host`, (.*?)(?=^- |^$)", text, re.MULTILINE | re.DOTALL)
    assert item, "docs/latency.md has no '- `host`, ...' item"
    top = item[1]
    while re.search(r"\([^()]*\)", top):
        top = re.sub(r"\([^()]*\)", "", top)
    assert set(re.findall(r"`([a-z_]+)`", top)) == keys, top
    schema = json.loads((ROOT / "docs" / "report-schema.json").read_text())
    assert set(schema["properties"]["host"]["properties"]) == keys


def test_readme_python_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """README.md's Python example (create a machine, RMI_VERSION, delegate a granule, read it
    from the NS world) runs as written and prints the granule protection fault it promises.
    No test ran it: found by an audit of which doc examples are exercised."""
    (example,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    exec(compile(example, "README.md", "exec"), {})
    assert "granule protection fault at PA" in capsys.readouterr().out


def test_acs_coverage_doc_names_tests_that_exist() -> None:
    """docs/acs.md maps the Arm RMM ACS's tests to rmm-mp's: every `test_*` it names is a test
    function defined in the file under tests/rmm/ the doc names before it (in the same table
    row, or earlier in the same paragraph), and every file it names exists, so renaming,
    removing or moving one that the coverage table names fails here instead of leaving the
    table pointing at nothing or at the wrong file."""
    defined = {path.name: set(re.findall(r"^def (test_\w+)\(", path.read_text(), re.MULTILINE))
               for path in (ROOT / "tests" / "rmm").glob("test_*.py")}
    named, wrong = 0, []
    for paragraph in re.split(r"\n(?=\||#)|\n\n", (ROOT / "docs" / "acs.md").read_text()):
        file = None
        for token in re.findall(r"`([^`]+)`", paragraph):
            if re.fullmatch(r"(tests/rmm/)?test_\w+\.py", token):
                file = token.rsplit("/", 1)[-1]
                if file not in defined:
                    wrong.append(f"{token}: no such file under tests/rmm/")
            elif re.fullmatch(r"test_\w+", token):
                named += 1
                if file is None or token not in defined.get(file, set()):
                    wrong.append(f"{token}: not defined in {file}")
    assert named > 30, "the scan finds the doc's test names"
    assert not wrong, wrong


# -- ranges and defaults docs/platforms.md gives ------------------------------------------------

PLATFORM_RANGE = re.compile(r"(\d+(?:\^\d+)?)\.\.(\d+(?:\^\d+)?)")
"""An integer range of a platforms.md "accepted" cell: `1..256`, `1..10^9`."""


PLATFORM_RANGED_KEYS = {"cpus", "rec_time_slice", "s2sz", "pmu_counters", "breakpoints", "watchpoints",
                        "gic_list_registers", "max_recs_order"}
"""The keys whose "accepted" cell gives an integer range the scan must find."""
PLATFORM_DEFAULTED_KEYS = {"rec_time_slice", "max_recs_order", "vmid_bits"}
"""The optional keys whose cell ends with their default, `; N`."""


def _platform_rows() -> list[tuple[str, str]]:
    """(key, accepted cell) of each row of docs/platforms.md's top-level and [features] tables."""
    text = (ROOT / "docs" / "platforms.md").read_text()
    rows = _table_rows(text, "## Top-level keys") + _table_rows(text, "## `[features]`")
    return [(row[0].strip("`"), row[2]) for row in rows]


def _number(text: str) -> int:
    base, _, power = text.partition("^")
    return int(base) ** int(power) if power else int(base)


def test_platform_doc_ranges_and_defaults_are_the_loaders() -> None:
    """docs/platforms.md's tables give each integer key's range (`cpus` 1..256, `breakpoints`
    2..64, `rec_time_slice` 1..10^9 ...) and, after a `;`, the default of an optional key
    (`max_recs_order` 10): host.toml with the key set to each end of its range loads, one
    beyond either end is refused naming the key, and without the key the platform has the
    default. The doc once said the DRAM size was any positive multiple of 4 KiB, leaving out
    the 1 MiB minimum the loader holds to (found by a docs audit); a range written by hand
    drifts the same way. Each key of PLATFORM_RANGED_KEYS and PLATFORM_DEFAULTED_KEYS must be
    found by the scan: a cell reworded out of its pattern fails rather than going unchecked."""
    from rmm_mp.hw import platform as platforms
    from rmm_mp.hw.tomlsrc import ConfigError
    host = (ROOT / "platform" / "host.toml").read_text()

    def with_key(key: str, value: int | None) -> str:
        line = re.compile(rf"^{key}\s*=.*$", re.M)
        assert line.search(host), f"host.toml has no {key} line to vary"
        return line.sub("" if value is None else f"{key} = {value}", host)

    def value_of(plat: platforms.Platform, key: str) -> object:
        return getattr(plat, key) if hasattr(plat, key) else getattr(plat.features, key)

    ranged, defaulted, wrong = set(), set(), []
    for key, accepted in _platform_rows():
        span = PLATFORM_RANGE.search(accepted)
        if span is not None and "multiple of" not in accepted[:span.start()]:
            ranged.add(key)
            lo, hi = _number(span[1]), _number(span[2])
            for value, ok in ((lo, True), (hi, True), (lo - 1, False), (hi + 1, False)):
                try:
                    loaded = value_of(platforms.parse(with_key(key, value), "host.toml"), key)
                except ConfigError as exc:
                    if ok or key not in str(exc):
                        wrong.append(f"{key} = {value}: refused ({exc})")
                else:
                    if not ok or loaded != value:
                        wrong.append(f"{key} = {value}: loaded as {loaded!r}, the doc gives {accepted!r}")
        default = re.search(r"; (\d+)$", accepted)
        if default is not None:
            defaulted.add(key)
            loaded = value_of(platforms.parse(with_key(key, None), "host.toml"), key)
            if loaded != int(default[1]):
                wrong.append(f"{key} absent: {loaded!r}, the doc's default is {default[1]}")
    # Key by key, so that one cell reworded out of the patterns ("2 to 64", "; default 10") is
    # not skipped in silence: a count of checks let one through.
    assert ranged >= PLATFORM_RANGED_KEYS, f"no lo..hi range found for {sorted(PLATFORM_RANGED_KEYS - ranged)}"
    assert defaulted >= PLATFORM_DEFAULTED_KEYS, f"no '; N' default for {sorted(PLATFORM_DEFAULTED_KEYS - defaulted)}"
    assert not wrong, wrong


def test_platform_doc_dram_size_bounds_are_the_loaders() -> None:
    """docs/platforms.md's `[dram]` row gives the DRAM size's bounds, at least 1 MiB and at most
    4 GiB: host.toml (its Secure range removed) loads with either, and is refused with 4 KiB
    less or more. The row said "a positive multiple of 4 KiB", and a 512 KiB DRAM was refused
    (found by a docs audit)."""
    from rmm_mp.hw import platform as platforms
    from rmm_mp.hw.tomlsrc import ConfigError
    text = (ROOT / "docs" / "platforms.md").read_text()
    (dram,) = [row[2] for row in _table_rows(text, "## The address map") if row[0] == "`[dram]`"]
    low, high = re.search(r"`size`: a multiple of 4 KiB, at least (\d+) MiB .*? at most (\d+) GiB", dram).groups()
    host = re.sub(r"\[\[secure\]\].*?(?=\n\[features\])", "", (ROOT / "platform" / "host.toml").read_text(),
                  flags=re.S)
    for size, ok in ((int(low) << 20, True), ((int(low) << 20) - 4096, False),
                     (int(high) << 30, True), ((int(high) << 30) + 4096, False)):
        source = re.sub(r'^size = "64 MiB".*$', f"size = {size}", host, count=1, flags=re.M)
        try:
            platforms.parse(source.replace("base = 0x8000_0000", "base = 0x1_0000_0000", 1), "host.toml")
        except ConfigError as exc:
            assert not ok and "dram.size" in str(exc), (size, exc)
        else:
            assert ok, f"a DRAM of {size:,} bytes loads"


def test_architecture_layers_line_is_the_enforced_layering() -> None:
    """docs/architecture.md's layer line (`abi/inputfile <- hw <- ... <- cli`) names, level by
    level, the modules tests/test_structure.py's LEVELS puts at each level (the entry points
    `__main__` and `__init__` aside, which sit with cli): a module moved to another layer, or
    a new one, in the code without the doc fails here. The line is written by hand."""
    import ast
    tree = ast.parse((ROOT / "tests" / "test_structure.py").read_text())
    (levels,) = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "LEVELS" for t in node.targets)]
    enforced: dict[int, set[str]] = {}
    for name, level in levels.items():
        if name not in ("__main__", "__init__"):
            enforced.setdefault(level, set()).add(name)
    text = (ROOT / "docs" / "architecture.md").read_text()
    line = re.search(r"^`(abi[^`]*<-[^`]*)`", text, re.M)
    assert line, "docs/architecture.md has no layer line"
    documented = [set(group.strip().split("/")) for group in line[1].split("<-")]
    assert documented == [enforced[level] for level in sorted(enforced)], line[1]


def test_latency_doc_names_every_field_of_the_run_json() -> None:
    """docs/latency.md's section on the JSON report names each top-level property of
    docs/report-schema.json in backquotes, and its field lists (`latency`: `{cpu, call, ...}`,
    and those of `locks`, `processes`, `realms`) are exactly the properties of the schema's
    records: a field added to or dropped from the schema (and the renderer, which the report
    tests hold to the schema) without the doc fails here. A docs audit found them in step; they
    are written by hand."""
    import json
    schema = json.loads((ROOT / "docs" / "report-schema.json").read_text())
    text = (ROOT / "docs" / "latency.md").read_text()
    section = text[text.index("## The JSON report"):text.index("## The CSV")]
    named = set(re.findall(r"`([a-z_0-9]+)`", section)) | {"schema"}   # `{"schema": ...}` opens the section
    assert set(schema["properties"]) <= named, set(schema["properties"]) - named
    for field in ("latency", "locks", "processes", "realms"):
        listed = re.search(rf"`{field}`[^{{]*?`\{{([^}}]*)\}}`", section, re.S)
        assert listed, f"no field list of {field}"
        fields = {name.strip() for name in listed[1].split(",")}
        assert fields == set(schema["properties"][field]["items"]["properties"]), field
    split = re.search(r"`total_ns` = `el3_ns` \+ `rmm_ns` \+\s+`lock_wait_ns`", section)
    assert split and {"cpu", "calls", "total_ns", "el3_ns", "rmm_ns", "lock_wait_ns"} == set(
        schema["properties"]["time_split"]["items"]["properties"])


def _stress_shm(cpus: int) -> str:
    """The shared memory of a `rmm-mp stress` machine of CPUS CPUs in MB: the `host` platform's DRAM with
    its granule descriptors and GPT bytes, the control block, the CPU areas and the stress segment."""
    from rmm_mp.hw import control, cpuarea, granule
    from rmm_mp.hw.platform import load
    from rmm_mp.machine import REGION_BYTES
    from rmm_mp.stress import shared
    granules = load("host").dram.size // granule.GRANULE_SIZE
    total = (granules * (granule.GRANULE_SIZE + granule.DESCRIPTOR_SIZE + 1) + control.SIZE
             + cpus * cpuarea.area_size(REGION_BYTES) + shared.SIZE)
    return f"{total / 1e6:.1f}"


def _doc_facts() -> list[tuple[str, str]]:
    """(doc, phrase) for each hand-written number of the prose docs that is a constant of the
    code, the phrase built from the constant as the doc words it."""
    from rmm_mp import interrupts, runtime
    from rmm_mp.abi.cca_token import TOKEN_BUFFER_SIZE
    from rmm_mp.el3.monitor import SPLIT_EVERY
    from rmm_mp.host.runqueue import MAX_QUEUES
    from rmm_mp.hw import control, granule, trace
    from rmm_mp.hw.quiesce import LEASE_NS
    from rmm_mp.rmm.attestation import SIGNING_STEPS, STEP_COST
    from rmm_mp.stats.histogram import FLUSH_INTERVAL_NS
    from rmm_mp.host.devices import _GONE_LOOK_EVERY
    from rmm_mp.hw import cpuarea
    from rmm_mp.hw.memory import HostLockWaiter
    from rmm_mp.hw.quiesce import PARK_SLEEP_FIRST_S, PARK_SLEEP_MAX_S
    from rmm_mp.machine import REGION_BYTES
    from rmm_mp.host.realm_entry import CONSOLE_BYTES, LOG_RECORDS
    from rmm_mp.host.runqueue import MAX_CPUS, MAX_REALMS, MAX_VCPUS
    from rmm_mp.stats import calls, histogram
    from rmm_mp.stats.plot import MAX_CALLS
    from rmm_mp.workload import churning, report, resolve
    from rmm_mp.workload.cpustate import _IDLE_SLEEP_S
    from rmm_mp.workload.render_json import MAX_LOOPING_NAMED, MAX_VIOLATIONS
    from rmm_mp.workload.render_text import MAX_OK_REALMS, WIDTH
    from rmm_mp.workload.run import GRACE_S, OVERRUN_S, TRACE_CAPACITY
    words = {6: "Six", 7: "Seven", 8: "Eight"}
    arch, lock, dev, readme = "docs/architecture.md", "docs/locking.md", "docs/deviations.md", "README.md"
    plat, stress = "docs/platforms.md", "docs/stress.md"
    wl, lat, sig = "docs/workloads.md", "docs/latency.md", "docs/signals.md"
    listed = report.MAX_LISTED_PER_CPU
    return [
        (arch, f"| `ctl` | {control.SIZE >> 20} MiB (sparse) |"),
        (arch, f"quiescent points, {control.PARTICIPANTS_MAX:,} entries at {control.OFF_PARTICIPANTS:#x})"),
        (arch, f"| `granules` | {granule.DESCRIPTOR_SIZE} bytes per DRAM granule |"),
        (arch, f"a ring of N {trace.RECORD_SIZE}-byte records per CPU"),
        (arch, f"host area (from {control.OFF_HOST_RUN:#x})"),
        (arch, f"{words.get(MAX_QUEUES - 1, MAX_QUEUES - 1)} more run queues (from {control.OFF_HOST_QUEUES:#x})"),
        (arch, f"holds one of {control.QUIESCE_SLOTS} pause slots"),
        (arch, f"lets the CPUs go within {LEASE_NS / 1e9:g} s"),
        (arch, f"`runtime.STARTUP_S` ({runtime.STARTUP_S:g} s, times the simulated CPUs per host core, "
               f"1 to {runtime.SLACK_CAP:g})"),
        (arch, f"a SIGTERM within {interrupts.REPEAT_S:g} s of the last one taken (`interrupts.REPEAT_S`)"),
        (arch, f"a SIGINT within {interrupts.COPY_S * 1000:g} ms of the last one taken (`interrupts.COPY_S`"),
        (arch, f"at most every {FLUSH_INTERVAL_NS // 1_000_000} ms"),
        (arch, f"measured on about one call in {SPLIT_EVERY} "),
        (readme, f"measured on about 1 call in {SPLIT_EVERY} "),
        (sig, f"a SIGTERM within {interrupts.REPEAT_S:g} s or a SIGINT (`timeout -s INT`) within "
              f"{interrupts.COPY_S * 1000:g} ms of the last one taken"),
        (lock, f"`{granule.HOST_OWNER_FLAG:#_x} | pid`"),
        (lock, f"sleeps of up to {granule.SLEEP_MAX_S * 1000:g} ms"),
        (dev, f"SIGNING_STEPS ({SIGNING_STEPS}) steps, each charged STEP_COST ({STEP_COST:,}) guest instructions"),
        (dev, f"longer than INIT's bound ({TOKEN_BUFFER_SIZE} bytes"),
        (dev, f"| refcount field | {granule.REFCOUNT_MASK.bit_length()} bits |"),
        (arch, f"looking whether it is over after {PARK_SLEEP_FIRST_S * 1000:g} ms, then twice as long each time "
               f"up to {PARK_SLEEP_MAX_S * 1000:g} ms"),
        (arch, f"looks at the holder's process every {_GONE_LOOK_EVERY} tries"),
        (lock, f"backoff plus one look, every {HostLockWaiter.LIVENESS_EVERY} tries once the wait sleeps"),
        (plat, f"must fit the machine's control block ({control.PLATFORM_MAX >> 10} KiB"),
        (plat, f"plus about {cpuarea.area_size(REGION_BYTES) / (1 << 20):.1f} MiB per CPU and "
               f"{control.SIZE >> 20} MiB of control block"),
        (plat, f"plus {granule.DESCRIPTOR_SIZE} bytes of granule descriptor"),
        (stress, f"about {cpuarea.area_size(REGION_BYTES) / 1e6:.1f} MB per CPU ({_stress_shm(2)} MB in all at 2 CPUs, "
                 f"{_stress_shm(16)} MB at 16, {_stress_shm(64)} MB at 64)"),
        (wl, f"a second Ctrl-C, {interrupts.COPY_S * 1000:g} ms or more after the first"),
        (wl, f"still running {OVERRUN_S:g} s after a timed run's end is stuck"),
        (wl, f"kills any that has not returned {GRACE_S:g} s later"),
        (wl, f"the start barrier {runtime.STARTUP_S:g} s after they were started"),
        (wl, f"simulated CPUs per host core (1 to {runtime.SLACK_CAP:g})"),
        (wl, f"at most {MAX_OK_REALMS} that succeeded"),
        (wl, f"its first {listed} that succeeded and its first {listed} that failed one by one (`MAX_LISTED_PER_CPU`)"),
        (wl, f"each CPU keeps the first {report.MAX_ERRORS_PER_CPU:,} vCPU errors' messages (`MAX_ERRORS_PER_CPU`)"),
        (wl, f"output of the first {report.MAX_OUTPUTS_PER_CPU} that failed (`MAX_OUTPUTS_PER_CPU`"),
        (wl, f"**at least {report.EXCEPTION_LOOP_MIN} exceptions and more than {report.EXCEPTION_LOOP_FACTOR} per REC "
             f"entry**"),
        (wl, f"(the first {MAX_LOOPING_NAMED} such realms, and how many more)"),
        (wl, f"**last {CONSOLE_BYTES >> 10} KiB** ({CONSOLE_BYTES:,} bytes, `CONSOLE_BYTES`"),
        (wl, f"the **last {LOG_RECORDS}** LOG records"),
        (wl, f"then the **last {report.LOG_SHOWN}** LOG records"),
        (wl, f"within the report's {WIDTH} columns"),
        (wl, f"an empty queue is an idle poll (yield, then {_IDLE_SLEEP_S * 1000:g} ms sleeps)"),
        (wl, f"at most {MAX_CPUS} CPUs; at most {MAX_REALMS} realms alive at once"),
        (wl, f"at most {MAX_VCPUS} RECs per realm; at most {MAX_QUEUES - 1} distinct realm `cpus` sets"),
        (wl, f"(the host's {MAX_QUEUES} run queues)"),
        (wl, f"a reserve of {resolve.reserve(1)} granules, or {resolve.HELD_PER_CPU} per CPU above "
             f"{resolve.reserve(1) // resolve.HELD_PER_CPU} CPUs"),
        (wl, f"{resolve.WINDOW_RUN * resolve.GRANULE >> 20} MiB and {resolve.CHURN_WINDOW_GRANULES - resolve.WINDOW_RUN} "
             f"tables per CPU and churnable realm for `rtt-churn`"),
        (wl, f"{churning.MAP_PAGES} pages and {resolve.MAP_WINDOW_GRANULES - churning.MAP_PAGES} tables per CPU and "
             f"realm for `map-shared`"),
        (wl, f"{resolve.DELEGATE_SHARED} + {resolve.DELEGATE_PRIVATE} per CPU granules for `delegate-churn`"),
        (lat, f"into {calls.SLOTS} slots by function ID"),
        (lat, f"one per value below {histogram.LINEAR} ns, then {1 << histogram.SUB_BITS} per power of two"),
        (lat, f"A sample whose EL3 part is {histogram.EL3_SAMPLE_LIMIT_NS // 1000} us or more (`EL3_SAMPLE_LIMIT_NS`"),
        (lat, f"{FLUSH_INTERVAL_NS // 1_000_000} ms (`FLUSH_INTERVAL_NS`)"),
        (lat, f"the trace holds only the newest {TRACE_CAPACITY:,} records of each CPU"),
        (lat, f"for the {MAX_CALLS} calls with the most calls"),
        (lat, f"at most {MAX_VIOLATIONS} violations listed"),
    ]


def test_signals_doc_quotes_the_line_of_a_ctrl_c_while_starting() -> None:
    """docs/signals.md quotes the one line a Ctrl-C while rmm-mp starts writes (launch.INTERRUPTED),
    read from launch.py's source: importing rmm_mp.launch would take this process's Ctrl-C over."""
    import ast
    tree = ast.parse((ROOT / "rmm_mp" / "launch.py").read_text())
    (line,) = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "INTERRUPTED" for t in node.targets)
               and isinstance(node.value, ast.Constant)]
    assert isinstance(line, bytes)
    text = " ".join((ROOT / "docs" / "signals.md").read_text().split())
    assert f"`{line.decode().strip()}` on stderr and exit status 130" in text


def test_hand_written_numbers_of_the_docs_are_the_code_constants() -> None:
    """The numbers that README.md, docs/architecture.md, docs/locking.md, docs/deviations.md,
    docs/platforms.md, docs/workloads.md, docs/latency.md, docs/signals.md and docs/stress.md give for constants
    of the code (the control block's size and offsets, the
    participant table's and the pause slots' counts, the quiesce lease and a parked CPU's sleeps,
    the start-up allowance and its cap, the signal repeat windows, the latency flush interval and
    split sampling, the host lock word, the lock backoff's longest sleep and its liveness looks,
    the output lock's, the attestation signing steps, the token bound, the refcount width, the
    platform JSON's room and the shared memory per CPU, and a stress machine's in all; a run's
    overrun and grace times, the
    report's bounds on realms, vCPU errors, guest output and exception-loop warnings, its width,
    the run queue's limits, the memory bound's reserve and activity pools, the histogram's slots
    and buckets, the EL3 sample limit, the trace ring, the plot's panels and the violations
    listed) are written by hand: each phrase, rebuilt from the constant, is in its doc (line
    breaks read as spaces), so a constant changed without the doc fails here. Found in step by
    docs audits that checked them one by one (but the rtt-churn and map-shared windows' tables,
    which docs/workloads.md's memory bound left out)."""
    missing = []
    for doc, phrase in _doc_facts():
        text = re.sub(r"\s+", " ", (ROOT / doc).read_text())
        if phrase not in text:
            missing.append(f"{doc}: {phrase}")
    assert not missing, missing


def test_test_names_the_docs_give_are_defined() -> None:
    """Every `test_*` that README.md or docs/*.md names in backquotes is a test function defined
    under tests/; in docs/deviations.md, where a row names a test file before it
    (tests/rmm/test_rec_exits.py `test_time_slice_irq`, or the file's bare name), the function
    is in that file. A docs audit found the 58 names all defined; a rename that leaves a doc
    citing a test that no longer exists, or one moved to another file, fails here."""
    files = {path: path.read_text() for path in (ROOT / "tests").rglob("test_*.py")}
    defined = {name for text in files.values() for name in re.findall(r"^def (test_\w+)\(", text, re.M)}
    by_file = {path.name: set(re.findall(r"^def (test_\w+)\(", text, re.M)) for path, text in files.items()}
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {(doc.name, name) for doc in docs for name in re.findall(r"`(test_\w+)`", doc.read_text())}
    assert len(named) > 50, "the scan finds the docs' test names"
    missing = sorted(f"{doc}: {name}" for doc, name in named if name not in defined)
    assert not missing, missing
    wrong, placed = [], 0
    for row in (ROOT / "docs" / "deviations.md").read_text().splitlines():
        file = None
        for match in re.finditer(r"(test_\w+\.py)|`(test_\w+)`", row):
            if match[1]:
                file = match[1]
            elif file is not None:
                placed += 1
                if match[2] not in by_file.get(file, set()):
                    wrong.append(f"{match[2]}: not defined in {file}")
    assert placed >= 9, "the scan finds the rows' file and test pairs"
    assert not wrong, wrong
