"""The .equ constants of guest source (rmm_mp.guest.equ), read as the assembler reads them: the
directive in any ASCII case, the name case-sensitive; and the two users of the rewriting, a
workload's ``constants`` and host.load_guest."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_mp.guest.assembler import assemble
from rmm_mp.guest.equ import equ_names, with_constants
from rmm_mp.host import load_guest
from rmm_mp.workload import spec
from rmm_mp.workload.resolve import resolve

SOURCE = """\
    .EQU COUNT, 1        // upper case, as the assembler accepts
\t.Equ\tSTEP ,2
.equ LIMIT, 3
    mov x0, #COUNT
    mov x1, #STEP
    mov x2, #LIMIT
"""


def _immediates(image: bytes) -> list[int]:
    """The 32-bit immediates of the three movs (docs/guest-isa.md: the high word of each)."""
    return [int.from_bytes(image[i + 4:i + 8], "little") for i in range(0, len(image), 8)]


def test_equ_names_reads_every_spelling_of_the_directive() -> None:
    """Every .equ line is found, whatever the case of the directive and the blanks around it."""
    assert equ_names(SOURCE) == ["COUNT", "STEP", "LIMIT"]


def test_with_constants_rewrites_an_upper_case_directive() -> None:
    """A constant defined with .EQU or .Equ is given its new value, as one written .equ is."""
    assert _immediates(assemble(SOURCE)) == [1, 2, 3]
    rewritten = with_constants(SOURCE, {"COUNT": 7, "STEP": 8, "LIMIT": 9})
    assert _immediates(assemble(rewritten)) == [7, 8, 9]


def test_with_constants_keeps_names_case_sensitive() -> None:
    """The assembler's names are case-sensitive, so 'count' is not COUNT: refused, naming what
    the program defines."""
    with pytest.raises(ValueError, match=r"count is not an \.equ constant of the guest \(it defines COUNT, STEP, LIMIT\)"):
        with_constants(SOURCE, {"count": 7})


def test_with_constants_of_a_program_with_none() -> None:
    """A constant for a program with no .equ lines is refused, saying that it has none."""
    with pytest.raises(ValueError, match=r"X is not an \.equ constant of the guest \(it has no \.equ lines\)"):
        with_constants("    b .\n", {"X": 1})


def test_load_guest_names_the_guest_and_its_constants() -> None:
    """host.load_guest's refusal still names the guest and the constants it has."""
    with pytest.raises(ValueError, match=r"load_guest\('smp-boot'\): NOT_THERE is not an \.equ constant "
                                         r"of the guest \(it defines .*WORK"):
        load_guest("smp-boot", NOT_THERE=1)


def test_workload_constants_of_an_upper_case_equ(tmp_path: Path) -> None:
    """A workload's constants for a guest file that writes .EQU: accepted and applied (they were
    refused as 'not an .equ constant', and the image kept the file's value)."""
    (tmp_path / "g.s").write_text(SOURCE)
    path = tmp_path / "w.toml"
    path.write_text('seconds = 1\nactivities = { run = 1 }\n[[realm]]\nname = "a"\nguest = "g.s"\n'
                    'constants = { COUNT = 5 }\n')
    realm = resolve(spec.load(str(path))).realms[0]
    assert _immediates(realm.image) == [5, 2, 3]


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"], ids=["cr", "crlf", "lf"])
def test_lines_end_where_the_assemblers_do(newline: str) -> None:
    """The assembler ends a line at \\r, \\r\\n or \\n, and so do equ_names and with_constants:
    with lone \\r line ends, the rewriting of COUNT used to swallow every line after it (the
    program lost its other .equ lines and its instructions) and only the first name was found.
    Each line end of the source is kept as it was."""
    text = SOURCE.replace("\n", newline)
    assert equ_names(text) == ["COUNT", "STEP", "LIMIT"]
    rewritten = with_constants(text, {"COUNT": 7, "LIMIT": 9})
    assert rewritten == text.replace("1        // upper case, as the assembler accepts", "0x7").replace(" 3", " 0x9")
    assert _immediates(assemble(rewritten)) == [7, 2, 9]
