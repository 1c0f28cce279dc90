"""Input files as a whole (rmm_mp.inputfile, rmm_mp.hw.tomlsrc): the size bound every workload,
platform and guest file is read under, how an error message shows a value too long to print
whole, and the time an error takes to make for a file with a pathological line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rmm_mp.hw import platform as plat
from rmm_mp.hw.tomlparse import loads
from rmm_mp.hw.tomlsrc import MAX_INPUT, ConfigError, InputTooLarge, read_source
from rmm_mp.inputfile import TooLarge, read_at_most
from rmm_mp.workload import spec

WORKLOAD = 'description = "padded"\ncpus = 1\nseconds = 1\nactivities = { delegate-churn = 1 }\n'


def _padded(text: str, size: int) -> bytes:
    """``text`` followed by comment lines up to exactly ``size`` bytes (still the same TOML)."""
    data = text.encode()
    pad = size - len(data)
    lines = [b"#" + b"x" * 99 + b"\n"] * (pad // 101)
    tail = pad - 101 * len(lines)
    return data + b"".join(lines) + (b"#" + b"x" * (tail - 2) + b"\n" if tail >= 2 else b"\n" * tail)


def test_a_workload_file_of_exactly_the_bound_is_read(tmp_path: Path) -> None:
    """1 MiB exactly (comments padding a valid workload) is read and parsed: the bound is
    inclusive."""
    data = _padded(WORKLOAD, MAX_INPUT)
    assert len(data) == MAX_INPUT
    path = tmp_path / "w.toml"
    path.write_bytes(data)
    assert spec.load(path).description == "padded"


@pytest.mark.parametrize("kind", ["workload", "platform"])
def test_a_file_one_byte_over_the_bound_is_refused_unparsed(tmp_path: Path, kind: str) -> None:
    """One byte more than 1 MiB is refused naming the file and the bound, before it is parsed
    (a 30 MB workload took 13 s to parse before its first mistake was reported)."""
    path = tmp_path / f"{kind}.toml"
    path.write_bytes(_padded(WORKLOAD, MAX_INPUT + 1))
    load = spec.load if kind == "workload" else plat.load
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert (err.source, err.key, err.line) == (str(path), "(file)", None)
    assert err.expected == f"a {kind} file of at most 1,048,576 bytes (1 MiB)", str(err)


def test_a_pipe_is_read_no_further_than_the_bound(tmp_path: Path) -> None:
    """A stream whose size is unknown beforehand (a FIFO, such as `<(cat big.toml)`) is refused
    once it has given more than 1 MiB, without being read to its end: the writer still has
    bytes to give when the refusal comes."""
    fifo = tmp_path / "w.toml"
    os.mkfifo(fifo)
    written: list[int] = []

    def writer() -> None:
        with open(fifo, "wb") as out:
            try:
                for _ in range(64):             # 4 MiB in all, if anyone read it
                    out.write(b"#" * 65535 + b"\n")
                    written.append(1)
            except BrokenPipeError:
                pass

    thread = threading.Thread(target=writer)
    thread.start()
    with pytest.raises(InputTooLarge) as info:
        read_source(fifo, "workload")
    thread.join(timeout=30)
    assert "at most 1,048,576 bytes" in str(info.value)
    assert info.value.too_large.size is None        # a pipe has no size to tell
    assert len(written) < 64


@pytest.mark.parametrize("kind", ["workload", "platform", "guest"])
def test_a_workload_platform_or_guest_path_that_is_a_pipe_is_refused_unread(tmp_path: Path, kind: str) -> None:
    """A workload file, a platform file or a realm's guest file named by a path that is a FIFO
    (`<(cat w.toml)`), with a writer ready to give it a valid workload: refused outright as "not
    a regular file", the FIFO never opened (the writer is still waiting for a reader), rather
    than read up to the 1 MiB bound as docs/workloads.md once said of "a pipe that gives more"
    (the bound is for a regular file that grows while it is read)."""
    fifo = tmp_path / ("g.s" if kind == "guest" else f"{kind}.toml")
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer() -> None:
        with open(fifo, "wb") as out:
            opened.set()
            out.write(WORKLOAD.encode())

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with pytest.raises(ConfigError) as info:
            if kind == "platform":
                plat.load(fifo)
            elif kind == "workload":
                spec.load(fifo)
            else:
                workload = tmp_path / "w.toml"
                workload.write_text(WORKLOAD + f'[[realm]]\nname = "r"\nguest = "{fifo}"\n')
                spec.load(workload)
        assert "it is not a regular file" in str(info.value), str(info.value)
        assert not opened.is_set()
    finally:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)     # lets the writer finish
        thread.join(timeout=10)
        os.close(reader)


def test_read_at_most_reads_the_bound_and_names_a_larger_files_size(tmp_path: Path) -> None:
    """read_at_most: a file of exactly ``limit`` bytes is read whole; one of a byte more (a
    sparse file of 1 GiB + 1) is TooLarge naming the file, its size and the limit, its message
    saying so."""
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_at_most(path, 10) == b"x" * 10
    with open(path, "r+b") as file:
        file.truncate((1 << 30) + 1)
    with pytest.raises(TooLarge) as info:
        read_at_most(path, 10)
    assert (info.value.path, info.value.size, info.value.limit) == (str(path), (1 << 30) + 1, 10)
    assert str(info.value) == f"{path} has 1,073,741,825 bytes; expected at most 10 bytes"


def test_a_long_value_is_shown_by_its_start_and_its_length() -> None:
    """A value whose rendering is longer than 240 characters shows its first 120 and its
    length; a shorter one is shown whole, as the file writes it."""
    long = ConfigError("w.toml", "x", "a" * 3000, "no such key", 1)
    assert str(long) == f"w.toml:1: x = '{'a' * 119}... (3,002 characters in all): expected no such key"
    short = ConfigError("w.toml", "seed", [1, 2, 3], "an integer", 2)
    assert str(short) == "w.toml:2: seed = [1, 2, 3]: expected an integer"
    edge = ConfigError("w.toml", "x", "b" * 238, "no such key")
    assert str(edge) == f"w.toml: x = '{'b' * 238}': expected no such key"


@pytest.mark.parametrize("value, start", [
    ("\x1b" * 100, '"' + "\\u001B" * 19),               # 1 + 6 * 19 = 115 characters; a 20th ends at 121
    ("\\" * 300 + "\x1b", '"' + "\\\\" * 59),          # 119; a 60th escaped backslash ends at 121
    ("'" + "\U000E0001" * 30, '"\'' + "\\U000E0001" * 11),  # 2 + 10 * 11 = 112; a 12th ends at 122
    (["\x1b" * 50] * 3, '["' + "\\u001B" * 19),           # in an array: 2 + 6 * 19 = 116
])
def test_a_long_value_is_not_cut_inside_an_escape(value: object, start: str) -> None:
    """A long value written with TOML's escapes (control characters, backslashes, characters
    outside the BMP) is cut before an escape that would end past its first 120 characters, not
    inside it: it showed '\\u001' or a lone backslash before the '...', neither of which reads as
    the value's start."""
    message = str(ConfigError("w.toml", "x", value, "no such key", 1))
    assert message.startswith(f"w.toml:1: x = {start}... ("), message


def test_a_long_key_is_shown_by_its_start_and_its_length(tmp_path: Path) -> None:
    """An unknown quoted key of 4,002 characters as the file writes it (a key may be as long as
    its line, up to the 1 MiB bound) is shown by its first 120 characters and its length, as a
    long value is; the message printed the whole key (1 MB for a 1 MB key). The error keeps
    the whole key in its ``key``; a short key is shown whole."""
    path = tmp_path / "w.toml"
    path.write_text(WORKLOAD + '"' + "k" * 4000 + '" = 1\n')
    with pytest.raises(ConfigError) as info:
        spec.load(path)
    assert str(info.value).startswith(f"{path}:5: {'k' * 120}... (4,000 characters in all) = 1: expected no such key")
    assert info.value.key == "k" * 4000
    short = ConfigError("w.toml", 'realm[0]."a.b"', 1, "no such key", 3)
    assert str(short) == 'w.toml:3: realm[0]."a.b" = 1: expected no such key'


@pytest.mark.parametrize("kind, last, key", [
    ("workload", "seconds = 2", "seconds"),
    ("platform", "rak_seed = 'x'", "attestation.rak_seed"),
    ("workload", "activities.run = 2", "activities.run"),
    ("workload", "[[realm]]\nname = \"a\"\nguest = \"hello\"\nname = \"b\"", "realm[0].name"),
    ("platform", "[features]", "features"),
], ids=["workload-key", "platform-key-in-a-table", "dotted-key-into-an-inline-table", "key-in-an-array-of-tables",
        "table-declared-twice"])
def test_a_key_defined_twice_is_named_with_its_line(tmp_path: Path, kind: str, last: str, key: str) -> None:
    """A key (or table) a valid file defines a second time, as its last statement with no
    newline after it: the error names the key path, the value as written and the line of the
    second definition. tomllib's error named neither the key nor, at the end of the file, any
    line ("(file) = 'Cannot overwrite a value (at end of document)': expected valid TOML")."""
    if kind == "workload":
        text, load = WORKLOAD + "seconds = 1\n" * ("seconds" not in WORKLOAD), spec.load
    else:
        text, load = (plat.platform_dir() / "host.toml").read_text(), plat.load
    text = text + last                                  # no newline after the last line
    path = tmp_path / f"{kind}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    written = text.splitlines()[-1].split(" = ")[-1]
    assert (info.value.key, info.value.line) == (key, len(text.splitlines())), str(info.value)
    assert str(info.value).startswith(f"{path}:{info.value.line}: {key} = {written}: expected each key and table "
                                      "defined once (the TOML parser: C"), str(info.value)


@pytest.mark.parametrize("text, key, line, already", [
    ('realm = [1]\n[[realm]]\nname = "vm"\n', "realm", 2, "realm is already an array of values at line 1 (realm = [1])"),
    ("x = 1\n[[x]]\n", "x", 2, "x is already a value at line 1 (x = 1)"),
    ("x = { a = 1 }\n[[x]]\n", "x", 2, "x is already an inline table at line 1 (x = { a = 1 })"),
    ("[t]\nx = [1]\n[[t.x]]\n", "t.x", 3, "t.x is already an array of values at line 2 (x = [1])"),
    ("x = [1]\n[[x.y]]\n", "x", 2, "x is already an array of values at line 1 (x = [1])"),
], ids=["array-of-values", "value", "inline-table", "in-a-table", "below-an-array"])
def test_an_array_of_tables_over_a_key_s_value_names_that_key(text: str, key: str, line: int, already: str) -> None:
    """A [[header]] for a key (or below one) that a `key = value` line already defined: the
    error names that key, what it already is and where, at the header's line. It named the
    header's first table, realm[0], as if an entry of [[realm]] were defined twice, beside
    tomllib's "Cannot mutate immutable namespace ('realm',)"."""
    with pytest.raises(ConfigError) as info:
        loads(text, "w.toml")
    assert (info.value.key, info.value.line) == (key, line), str(info.value)
    header = text.splitlines()[line - 1]
    assert str(info.value).startswith(f"w.toml:{line}: {key} = {header}: expected each key and table defined "
                                      f"once: {already}, to which {header} cannot add a table (the TOML parser: "
                                      "Cannot "), str(info.value)


@pytest.mark.parametrize("kind, tail, key, header", [
    ("workload", '[[realm]]\nname = "vm"\nguest = "hello"\nseed = 4\n', "realm[0].seed", "[[realm]]"),
    ("workload", '[[phase]]\nname = "a"\nseconds = 1\n[[phase.group]]\ncpus = [0]\nactivities = { run = 1 }\n'
                 'platform = "host"\n', "phase[0].group[0].platform", "[[phase.group]]"),
    ("platform", "rec_time_slice = 5\n", "attestation.rec_time_slice", "[attestation]"),
], ids=["workload-realm", "workload-phase-group", "platform-attestation"])
def test_a_top_level_key_below_a_table_says_where_it_belongs(tmp_path: Path, kind: str, tail: str, key: str,
                                                            header: str) -> None:
    """A top-level key written at the end of a file, below a table's header (TOML has no end of
    a table, so it is that table's key): the "no such key" error goes on to say that it is a
    top-level key, which table it landed in and where to write it. It said only "expected no
    such key; keys here: name, guest, ...", which reads as if the key itself were wrong."""
    if kind == "workload":
        text, load = 'cpus = 1\nactivities = { run = 1 }\n' + tail, spec.load
    else:
        host = (plat.platform_dir() / "host.toml").read_text()
        text, load = "\n".join(line for line in host.splitlines() if not line.startswith("rec_time_slice")) + \
            "\n" + tail, plat.load
    path = tmp_path / f"{kind}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    name = key.rsplit(".", 1)[1]
    assert info.value.key == key and ": expected no such key" in str(info.value), str(info.value)
    assert str(info.value).endswith(f"; {name} is a top-level key, and a key below the {header} header belongs to "
                                    f"{key.rsplit('.', 1)[0]} (a table goes on to the next header): write it above "
                                    "the first table"), str(info.value)


_LOAD = ("import sys\nfrom rmm_mp.hw import platform\nfrom rmm_mp.hw.tomlsrc import ConfigError\n"
         "from rmm_mp.workload import spec\n"
         "try:\n    (spec if sys.argv[1] == 'workload' else platform).load(sys.argv[2])\n"
         "except ConfigError as exc:\n    print(exc.key)\n")


def _refused_within(kind: str, path: Path, seconds: float) -> str:
    """The key of the error loading ``path`` (a ``kind`` file) in a child gives, failing the test
    if the child takes longer than ``seconds`` (so that a regression fails instead of hanging
    the suite)."""
    root = Path(__file__).resolve().parents[2]
    try:
        proc = subprocess.run([sys.executable, "-c", _LOAD, kind, str(path)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)}, timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"refusing {path.name} took more than {seconds} s")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("kind, key", [("workload", "x"), ("platform", "cpus")])
def test_an_error_in_a_file_with_a_long_bracketed_line_is_made_at_once(tmp_path: Path, kind: str, key: str) -> None:
    """A file holding an array over several lines, one of them `[`, 20,000 spaces and `1, 2]`
    (an array in the array: no table header), with a mistake (the array under a key a
    workload does not know; a platform's as its rec_time_slice, and its `cpus` left out): refused at once
    naming the key. Finding the mistake's line matched the lines against the table-header
    pattern, which took time cubic in a run of blanks on a line that is no header: 3,000
    spaces took 16 s, these 20,000 would take hours."""
    if kind == "workload":
        text = "x = [\n[" + " " * 20_000 + "1, 2],\n]\n" + WORKLOAD
    else:
        host = (plat.platform_dir() / "host.toml").read_text()
        kept = "\n".join(line for line in host.splitlines() if not line.startswith(("cpus =", "rec_time_slice =")))
        text = "rec_time_slice = [\n[" + " " * 20_000 + "1, 2],\n]\n" + kept
    path = tmp_path / f"{kind}.toml"
    path.write_text(text)
    assert _refused_within(kind, path, 20) == key


@pytest.mark.parametrize("kind, key", [("workload", "x"), ("platform", "cpus")])
def test_an_error_in_a_file_with_a_line_of_many_multiline_strings_is_made_at_once(tmp_path: Path, kind: str,
                                                                                 key: str) -> None:
    """A file holding a line of 130,000 empty multi-line strings (`x = ["""""", """""", ...]`,
    about 1 MiB, valid TOML) with a mistake (the array under a key a workload does not know; a
    platform's as its rec_time_slice, its `cpus` left out): refused at once naming the key.
    Telling the lines inside multi-line strings from the others counted the quotes at each
    string's end on a copy of the rest of the line, time quadratic in the line: some 25 s per
    look at a 1 MiB line, and a platform error looks up to three times."""
    array = "[" + ", ".join(['""""""'] * 130_000) + "]\n"
    if kind == "workload":
        text = "x = " + array + WORKLOAD
    else:
        host = (plat.platform_dir() / "host.toml").read_text()
        kept = "\n".join(line for line in host.splitlines() if not line.startswith(("cpus =", "rec_time_slice =")))
        text = "rec_time_slice = " + array + kept
    path = tmp_path / f"{kind}.toml"
    path.write_text(text)
    assert len(text.encode()) <= MAX_INPUT
    assert _refused_within(kind, path, 10) == key
