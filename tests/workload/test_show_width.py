"""`rmm-mp workloads show` keeps its lines within 118 columns, as `rmm-mp run`'s report does
(describe.describe): a long platform name, a workload file and a guest file deep in a directory
tree, a full RPV, many constants and lifecycle instances, a long description."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from click.testing import CliRunner

from rmm_mp.cli import main
from rmm_mp.workload.describe import wrapped

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 118


def _files(tmp_path: Path, name: str) -> Path:
    """A platform file of ``name`` (fvp's, renamed) and, deep below ``tmp_path``, a workload
    using it with a guest file beside it."""
    deep = tmp_path.joinpath(*(f"directory-{i:02}" for i in range(12)))
    deep.mkdir(parents=True)
    platform = (ROOT / "platform" / "fvp.toml").read_text().replace('name = "fvp"', f'name = "{name}"', 1)
    (tmp_path / "board.toml").write_text(platform)
    constants = ", ".join(f"C{i} = {1 << (i + 40)}" for i in range(12))
    lines = "\n".join(f".equ C{i}, 0" for i in range(12))
    (deep / "guest-with-a-rather-long-file-name.s").write_text(f"{lines}\nstart:\n    b start\n")
    workload = deep / "my-workload-with-a-long-name.toml"
    workload.write_text(
        f'description = "{"a rather long description of what this workload does, " * 3}the end"\n'
        f'platform = "{tmp_path / "board.toml"}"\nseconds = 604799.5\nseed = {2**64 - 1}\n'
        'activities = { run = 1, lifecycle = 1 }\n'
        '[[realm]]\nname = "realm-with-a-long-name"\nguest = "guest-with-a-rather-long-file-name.s"\n'
        f'instances = 8\nlifecycle = true\nrecs = 2\nrpv = "0x{"ab" * 64}"\nconstants = {{ {constants} }}\n'
        'cpus = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]\n'
        'lifetime = 123456789\n')
    return workload


def test_workloads_show_keeps_its_lines_within_the_width(tmp_path: Path) -> None:
    """With every value at its longest, no line of `rmm-mp workloads show` passes 118 columns:
    each long line goes on, between its phrases, on lines indented by 4 more than it; a name or
    path wider than a line is cut, its pieces read together giving it whole. Before, a
    platform's name made its line as long as it is, and every bundled workload had a realm line
    of some 150 columns."""
    name = "acme-" + "x" * 150
    workload = _files(tmp_path, name)
    shown = CliRunner().invoke(main, ["workloads", "show", str(workload), "--seed", "1"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert max(len(line) for line in lines) <= WIDTH, [len(line) for line in lines]
    at = next(i for i, line in enumerate(lines) if line.startswith("platform "))
    assert lines[at + 1].startswith("    x") and lines[at + 1].endswith("instructions"), lines[at:at + 3]
    assert lines[at][len("platform "):] + lines[at + 1][4:].split(":")[0] == name, lines[at:at + 2]
    first = lines[0] + "".join(line[4:] for line in lines[1:next(i for i, line in enumerate(lines)
                                                                    if line.startswith("  a rather"))])
    assert first == f"workload my-workload-with-a-long-name ({workload})", lines[:4]
    assert f"guest file {workload.parent / 'guest-with-a-rather-long-file-name.s'}".replace(" ", "") in \
        "".join("".join(line.split()) for line in lines), lines
    assert any(line.startswith("    rpv ") for line in lines) and "ab" * 64 in "".join(
        line.removeprefix("    rpv ").strip() for line in lines if "abab" in line), lines
    for workload_name in ("quickstart", "smp-realms", "kvm-lifecycle", "attestation-storm", "churn", "contention"):
        bundled = CliRunner().invoke(main, ["workloads", "show", workload_name, "--platform", "large"]).output
        assert max(len(line) for line in bundled.splitlines()) <= WIDTH, (workload_name, bundled)


def _columns(text: str) -> int:
    """Terminal columns, counted here on their own: a wide character two, a combining mark none."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 0 if unicodedata.category(c) in ("Mn", "Me")
               else 1 for c in text)


def test_wide_characters_count_two_columns(tmp_path: Path) -> None:
    """A description and a workload path in CJK characters (each two terminal columns) keep
    their lines within 118 columns: counted as characters, a description of 60 of them was
    "shown as written" in 122 columns and a path of 150 wrapped into lines of some 230. A
    combining mark stays with its base character where a path is cut."""
    deep = tmp_path / ("漢字" * 25) / ("e\u0301" * 70)
    deep.mkdir(parents=True)
    workload = deep / "w.toml"
    description = "漢字の説明" * 12
    workload.write_text(f'description = "{description}"\nseconds = 1\nactivities = {{ run = 1 }}\n'
                        '[[realm]]\nname = "r"\nguest = "hello"\n')
    shown = CliRunner().invoke(main, ["workloads", "show", str(workload)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert max(_columns(line) for line in lines) <= WIDTH, [_columns(line) for line in lines]
    at = next(i for i, line in enumerate(lines) if line.startswith("  漢"))
    assert lines[0] + "".join(line[4:] for line in lines[1:at]) in (f"workload w ({workload})",
                                                                   f"workload w({workload})"), lines[:at]
    assert not any(line[4:].startswith("\u0301") for line in lines[1:at]), lines[:at]
    end = next(i for i, line in enumerate(lines) if line.startswith("platform "))
    assert "".join(line.strip() for line in lines[at:end]) == description, lines[at:end]


def test_a_cut_never_parts_a_mark_from_its_character() -> None:
    """describe.wrapped cuts a word wider than the line before a character, never before a mark
    that sits on the one before it: keeping its last 4 characters, "x" * 116 + "e\\u0301abc" was
    cut between the e and its accent, which then began the next line on its own."""
    for word in ("x" * 116 + "e\u0301abc", "x" * 116 + "e\u0301\u0302ab"):
        lines = wrapped(word)
        assert lines[0] + "".join(line[4:] for line in lines[1:]) == word, lines
        assert all(unicodedata.category(line[4]) not in ("Mn", "Me", "Mc") for line in lines[1:]), lines


def test_the_wrapper_reads_other_whitespace_as_a_space() -> None:
    """describe.wrapped breaks at spaces only: a newline or a tab inside a message broke or
    widened a line without it knowing. Each is a space, as textwrap read them (the run and stress
    reports' callers translated them themselves before)."""
    assert wrapped("WARNING: a\nb\tc\rd\x0be\x0cf") == ["WARNING: a b c d e f"]
    long = "word " * 30 + "\n" + "tail\ttext"
    assert all("\n" not in line and "\t" not in line and len(line) <= 118 for line in wrapped(long))


def _description_shown(tmp_path: Path, description: str) -> list[str]:
    """The lines `workloads show` gives a one-realm workload's ``description`` (those before
    its platform line)."""
    workload = tmp_path / "w.toml"
    workload.write_text(f'description = "{description}"\nseconds = 1\nactivities = {{ run = 1 }}\n'
                        '[[realm]]\nname = "r"\nguest = "hello"\n')
    shown = CliRunner().invoke(main, ["workloads", "show", str(workload)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("platform "))
    return lines[1:end]


def test_a_long_description_keeps_its_spacing_when_wrapped(tmp_path: Path) -> None:
    """A description is one line in the file (a newline is refused), shown as written when it
    fits. One too long for a line was wrapped reading each run of spaces as one: two spaces after
    a full stop, or a gap lining words up, were lost where a short description keeps them. Now a
    line breaks at a space or a run of spaces, and every other run is kept whole."""
    description = ("First sentence of a long description.  Second sentence, after two spaces as some write. "
                   * 3) + "columns:   a   b   c"
    body = _description_shown(tmp_path, description)
    assert len(body) > 1 and body[0].startswith("  First") and all(line.startswith("    ") for line in body[1:]), body
    assert max(_columns(line) for line in body) <= WIDTH and not any(line.endswith(" ") for line in body), body
    assert body[-1].endswith("columns:   a   b   c"), body
    # No break fell at a run of spaces here: read with a space at each break, the lines give the
    # description back, its runs of spaces and all.
    assert " ".join(line.strip() for line in body) == description, body


def test_a_run_of_spaces_at_a_break_is_dropped_whole(tmp_path: Path) -> None:
    """Where a line of a wrapped description breaks at a run of spaces, the run is dropped there
    whole. The run was held to the end of the word before it, which made that word wider: a
    word that fits a line alone (110 columns) was cut in two, its end and the run of spaces
    starting the next line; and a run wider than a line left a blank line and a line of spaces."""
    cases = [("w" * 110 + " " * 8 + "z" * 20, ["  " + "w" * 110, "    " + "z" * 20]),
             ("a" + " " * 300 + "b c", ["  a", "    b c"]),
             ("lead " + "x" * 105 + "   " + "y" * 10 + "  tail", ["  lead " + "x" * 105, "    " + "y" * 10 + "  tail"])]
    for description, expected in cases:
        shown = _description_shown(tmp_path, description)
        assert shown == expected, shown
