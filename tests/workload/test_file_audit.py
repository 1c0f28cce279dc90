"""Workload files a user may get wrong, found by an audit of the workload loader
(rmm_mp/workload/spec.py, resolve.py): each is refused before anything is created, with an
error naming the key, its value and what was expected, in text that is safe to print."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_mp.hw.tomlsrc import MAX_INPUT, ConfigError
from rmm_mp.workload import spec
from rmm_mp.workload.resolve import resolve

ROOT = Path(__file__).resolve().parents[2]
REALM = '[[realm]]\nname = "vm"\nguest = "{guest}"\n'
TOP = "seconds = 1\nactivities = { run = 1 }\n"


def _refused(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "w.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        resolve(spec.load(path))
    return info.value


@pytest.mark.parametrize("text, key", [
    (TOP + REALM.format(guest="a\\u001b[2J.s"), "realm[0].guest"),
    ('platform = "a\\u001b[2J.toml"\n' + TOP + REALM.format(guest="hello"), "platform"),
], ids=["guest", "platform"])
def test_a_missing_file_named_with_a_control_character_is_shown_escaped(tmp_path: Path, text: str,
                                                                         key: str) -> None:
    """A guest or platform path holding an ESC that names no file is refused saying where it
    was looked for, with the ESC escaped there as it is in the value. Before, the path after
    "looked for" was printed raw: "a\\u001b[2J.toml" cleared the user's terminal."""
    error = _refused(tmp_path, text)
    assert error.key == key
    assert "\x1b" not in str(error), repr(str(error))
    assert f'looked for "{tmp_path}/a\\u001B[2J.' in str(error) and "no such file" in str(error)


def test_a_guest_file_too_large_named_with_a_control_character_is_shown_escaped(tmp_path: Path) -> None:
    """A guest file of more than 1 MiB whose name holds an ESC is refused naming its size, with
    the path escaped. Before, the path was printed raw."""
    (tmp_path / "big\x1b[2J.s").write_bytes(b"\n" * (MAX_INPUT + 1))
    error = _refused(tmp_path, TOP + REALM.format(guest="big\\u001b[2J.s"))
    assert error.key == "realm[0].guest"
    assert "\x1b" not in str(error), repr(str(error))
    assert "big\\u001B[2J.s\" has 1,048,577" in str(error)


@pytest.mark.parametrize("guest", ["'a{.s'", '"a\\"{.s"', "'a\"[.s'"], ids=["literal-brace", "escaped-quote",
                                                                          "literal-quote"])
def test_an_error_in_an_array_of_inline_tables_has_its_line_past_a_string_with_a_brace(tmp_path: Path,
                                                                                       guest: str) -> None:
    """realm = [ {...}, {...} ] with a brace or a double quote inside a string of the first
    element (a literal string, or a basic one with an escaped quote): an error in the second
    element still names its line. Before, the walk over the array counted only double quotes
    as strings and no escapes, so the brace was taken for a table, and the error had no line."""
    name = guest[1:-1].replace('\\"', '"')
    (tmp_path / name).write_text("start:\n    b start\n")
    error = _refused(tmp_path, TOP + "realm = [\n  { name = 'a', guest = " + guest + " },\n"
                                      "  { name = 'b', guest = 'hello', recs = 99 },\n]\n")
    assert (error.key, error.line) == ("realm[1].recs", 5), str(error)


def test_an_error_in_an_array_of_inline_tables_inside_a_phase_has_its_line(tmp_path: Path) -> None:
    """A [[phase]] whose groups are an array of inline tables, `group = [ {...}, {...} ]`: an
    error in the second group names the line that group is on. Before, only arrays at the top
    level of the file were walked, and the error named the [[phase]] header's line."""
    error = _refused(tmp_path, '[[phase]]\nname = "a"\nseconds = 1\ngroup = [\n'
                               '  { cpus = "0-1", activities = { run = 1 } },\n'
                               '  { cpus = "2-3", activities = { run = -1 } },\n]\n' + REALM.format(guest="hello"))
    assert (error.key, error.line) == ("phase[0].group[1].activities.run", 6), str(error)


def test_images_beyond_any_platforms_dram_are_refused_before_the_next_realm_is_assembled(tmp_path: Path) -> None:
    """54 instances of a realm whose guest file assembles to 76 MiB: their images alone take
    more than 4 GiB, more DRAM than any platform has, and the file is refused at that realm,
    naming the total, before the next [[realm]] entry is assembled (its mistake is not the
    one reported). Before, every entry was assembled and kept first: 54 entries with 1 GiB
    images (ripas-loop with MAX_RECS = 4000000) needed some 42 GB to validate."""
    (tmp_path / "big.s").write_text("start:\n    b start\n    .zero 0x4C00000\n")
    error = _refused(tmp_path, TOP + '[[realm]]\nname = "big"\nguest = "big.s"\nram = "80M"\ninstances = 54\n'
                               '[[realm]]\nname = "next"\nguest = "hello"\nrecs = 99\n')
    assert (error.key, error.line) == ("realm[0].guest", 5), str(error)
    assert "those of realm[0] take 4,104.2 MiB" in str(error)
    assert "no platform has more than 4 GiB of DRAM" in str(error)


def test_a_realm_is_assembled_once_and_probed_once_for_its_page_constants(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking a ripas-loop realm assembles its guest once, for the image, and reads the
    constants that place its pages once, from the assembler's first pass (symbols), which makes
    no image. Before, the probe was made again by each check that needs them (the page
    placement, min_ram, backed_pages): four assemblies of the whole guest, 8 s for a 1 GiB
    image; then a whole assembly with .quad lines appended, 2 s more for such an image."""
    from rmm_mp.workload import programs
    calls = {"assemble": 0, "symbols": 0}
    real_assemble, real_symbols = programs.assemble, programs.symbols

    def assemble(text: str, base: int, most: int | None = None) -> bytes:
        calls["assemble"] += 1
        return real_assemble(text, base=base, most=most)

    def symbols(text: str, base: int) -> dict[str, int]:
        calls["symbols"] += 1
        return real_symbols(text, base=base)

    monkeypatch.setattr(programs, "assemble", assemble)
    monkeypatch.setattr(programs, "symbols", symbols)
    getattr(programs._equ_values, "cache_clear", lambda: None)()   # a value cached by an earlier test
    path = tmp_path / "w.toml"
    path.write_text(TOP + REALM.format(guest="ripas-loop") + "constants = { PAGES = 3 }\n")
    spec.load(path)
    assert calls == {"assemble": 1, "symbols": 1}


@pytest.mark.parametrize("realm, key, expected", [
    ('ram = "1G"\ninstances = 7\n', "realm[0].guest", "those of realm[0] take 7,161.0 MiB"),
    ('ram = "2M"\n', "realm[0].ram", "at least 1,047,553 KiB for guest 'big.s'"),
], ids=["past-dram", "past-ram"])
def test_an_image_too_large_is_refused_by_its_size_before_it_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      realm: str, key: str, expected: str) -> None:
    """A guest file that assembles to 1023 MiB, in 7 instances (7 GB of images, more DRAM than
    any platform has) or in a realm of 2 MiB of RAM, is refused from the first pass's size:
    no byte of the image is encoded (the test fails if one is). Before, the image was made
    whole and then refused for its size: seconds and gigabytes (61 s reported for the 7 GB)."""
    from rmm_mp.guest import assembler

    def no_image(*args: object) -> bytes:
        raise AssertionError("the image was made although its size alone refuses it")

    monkeypatch.setattr(assembler._Assembler, "_emit", no_image)
    (tmp_path / "big.s").write_text("start:\n    b start\n    .zero 0x3FF00000\n")
    error = _refused(tmp_path, TOP + '[[realm]]\nname = "big"\nguest = "big.s"\n' + realm)
    assert error.key == key and expected in error.expected, str(error)


@pytest.mark.parametrize("name, why", [
    ("d", "('d' is a directory)"),
    ("w.txt", "('w.txt' is a file whose name does not end in .toml: write './w.txt' to read it as a workload "
              "file)"),
], ids=["directory", "another-suffix"])
def test_a_directory_or_a_file_of_another_suffix_is_named_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             name: str, why: str) -> None:
    """`rmm-mp workloads show d` (a directory) and `rmm-mp run w.txt` (a file without .toml)
    said only "expected a bundled workload ... or a path to a .toml file": what the name is,
    and for the file how to read it, are said."""
    (tmp_path / "d").mkdir()
    (tmp_path / "w.txt").write_text(TOP)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        spec.find(name)
    assert str(info.value).endswith(f"or a path to a .toml file {why}"), str(info.value)
    assert spec.load("./w.txt").seconds == 1        # the path the hint names is read


@pytest.mark.parametrize("name, why", [
    ("d", "('d' is a directory)"),
    ("p.txt", "('p.txt' is a file whose name does not end in .toml: write './p.txt' to read it as a platform "
              "file)"),
], ids=["directory", "another-suffix"])
def test_a_platform_option_naming_a_directory_or_a_file_of_another_suffix_is_named_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, why: str) -> None:
    """`--platform d` (a directory in the working directory) and `--platform p.txt` said only
    "expected a bundled platform ... or a path to a .toml file", where a WORKLOAD named so is
    told what it is: so is the option, and the path the hint names is read."""
    (tmp_path / "d").mkdir()
    (tmp_path / "p.txt").write_text((ROOT / "platform" / "host.toml").read_text())
    path = tmp_path / "w.toml"
    path.write_text(TOP + REALM.format(guest="hello"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        resolve(spec.load(path), platform=name)
    assert info.value.key == "--platform"
    assert str(info.value).endswith(f"or a path to a .toml file {why}"), str(info.value)
    assert resolve(spec.load(path), platform="./p.txt").platform.name == "host"


@pytest.mark.parametrize("name, why", [
    ("d", "(looked for {dir}/d: it is a directory)"),
    ("p.txt", "(looked for {dir}/p.txt: it is a file whose name does not end in .toml: write platform = './p.txt' "
              "to read it as a platform file)"),
], ids=["directory", "another-suffix"])
def test_a_platform_key_naming_a_directory_or_a_file_of_another_suffix_beside_the_file_is_named_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, why: str) -> None:
    """A workload file's `platform = "d"`, d a directory beside the file, is told so, looked up
    beside the file (where its path would be read), not in the working directory, which holds a
    d of its own that is a file."""
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d").mkdir()
    (sub / "p.txt").write_text((ROOT / "platform" / "host.toml").read_text())
    (tmp_path / "d").write_text("")
    monkeypatch.chdir(tmp_path)
    error = _refused(sub, f'platform = "{name}"\n' + TOP + REALM.format(guest="hello"))
    assert error.key == "platform" and error.line == 1
    assert str(error).endswith(f"or a path to a .toml file {why.format(dir=sub)}"), str(error)
    (sub / "w.toml").write_text('platform = "./p.txt"\n' + TOP + REALM.format(guest="hello"))
    assert resolve(spec.load(sub / "w.toml")).platform.name == "host"


@pytest.mark.parametrize("ram, shown", [('"1G"', "RAM 1 GiB at"), ('"2M"', "RAM 2 MiB at"),
                                        ('"1028K"', "RAM 1,028 KiB at"), ('"3M"', "RAM 3 MiB at")],
                         ids=["1G", "2M", "1028K", "3M"])
def test_show_names_a_whole_gib_of_ram_in_gib(tmp_path: Path, ram: str, shown: str) -> None:
    """`workloads show` of ram = "1G" printed "RAM 1,024 MiB": a size of whole GiB is in GiB."""
    from rmm_mp.workload.describe import describe
    path = tmp_path / "w.toml"
    path.write_text(TOP + REALM.format(guest="hello") + f"ram = {ram}\n")
    assert shown in describe(resolve(spec.load(path)))


@pytest.mark.parametrize("weight, shown", [("1e-320", "1e-320"), ("0.333333333333", "0.333333333333"), ("3", "3"),
                                           ("2.5", "2.5"), ("1e300", "1e+300")],
                         ids=["subnormal", "twelve-digits", "integer", "decimal", "large"])
def test_show_writes_a_weight_as_the_number_it_is(tmp_path: Path, weight: str, shown: str) -> None:
    """A weight was shown to 6 digits (%g): 1e-320, a subnormal float, as 9.99989e-321, and
    0.333333333333 as 0.333333; each is shown as the shortest text that reads back as it."""
    from rmm_mp.workload.describe import describe
    path = tmp_path / "w.toml"
    activities = f"{{ run = 1, delegate-churn = {weight} }}"
    path.write_text(TOP.replace("{ run = 1 }", activities) + REALM.format(guest="hello"))
    text = describe(resolve(spec.load(path)))
    assert f" run 1, delegate-churn {shown}\n" in text + "\n", text


def test_an_empty_workload_name_is_not_called_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rmm-mp run ""`: the empty name is no directory, though Path("") is the working one
    (it read "('' is a directory)")."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        spec.find("")
    assert str(info.value).endswith("or a path to a .toml file"), str(info.value)
