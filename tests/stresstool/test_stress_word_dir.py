"""A relative segment directory that is one ordinary word (RMM_MP_SHM_DIR=tables): what a replay
leaves out of a finding's text (stress.findings.without_run_place)."""

from __future__ import annotations

import pytest

from rmm_mp.stress.findings import without_run_place


@pytest.mark.parametrize("shm_dir", ["tables", "tables/", "run"])
def test_a_word_segment_directory_is_masked_only_where_it_stands_as_a_path(shm_dir: str) -> None:
    """Masked where a message names it as a path (a segment in it, in quotes, as rmm_mp.machine's
    errors name the directory); elsewhere it is a word of the message and stays. It was masked
    wherever the word stood: "the tables workload" read "the ? workload"."""
    word = shm_dir.rstrip("/")
    shown = shm_dir     # as the directory is shown: as given, its trailing '/' kept
    for text in (f"the {word} workload", f"could not {word}: X0 = 0x4", f"guest-{word} and {word}-x", f"{word}.",
                 f"({word})", f"{word}"):
        assert without_run_place(text, (shm_dir,)) == text
    named = {
        f"segment {word}/rmm-mp-4242-0a1b2c3d.ctl: gone": "segment ?: gone",
        f"no machine named 'rmm-mp-?' in {shown} (it was closed, or never existed)":
            "no machine named 'rmm-mp-?' in ? (it was closed, or never existed)",
        f"no machine named x can be attached: its ctl segment in {shown}: gone":
            "no machine named x can be attached: its ctl segment in ?: gone",
        f"[Errno 2] No such file or directory: '{shown}'": "[Errno 2] No such file or directory: '?'",
        f"{shown} (RMM_MP_SHM_DIR) is missing": "? (RMM_MP_SHM_DIR) is missing",
        f"but {shown} has 5 MiB free: ... or enlarge {shown}": "but ? has 5 MiB free: ... or enlarge ?",
    }
    for text, masked in named.items():
        assert without_run_place(text, (shm_dir,)) == masked, text


@pytest.mark.parametrize("shm_dir", ["realm", "lock", "in", "CPU", "tables/"])
def test_a_word_directory_is_not_masked_in_message_forms_that_only_look_like_a_path(shm_dir: str) -> None:
    """The forms the masking took as a path matched more than rmm_mp.machine's errors: any "WORD has
    N" (host.exits's "the realm has 2 RECs", with RMM_MP_SHM_DIR=realm, read "the ? has 2 RECs"), any
    "in WORD:" or "in WORD (" and any "enlarge WORD". Failed before each form was tied to its message."""
    word = shm_dir.rstrip("/")
    for text in (f"a PSCI exit naming MPIDR 0x1 (REC 3); the {word} has 2 RECs",
                 f"error: {word} has 3 waiters", f"blocked in {word}: X0 = 0x4", f"a call in {word} (REC 0x8000)",
                 f"enlarge {word} to 64 MiB", f"in in {word} (it was"):
        assert without_run_place(text, (shm_dir,)) == text, text
    shown = shm_dir
    named = {
        f"no machine named 'rmm-mp-?' in {shown} (it was closed, or never existed)":
            "no machine named 'rmm-mp-?' in ? (it was closed, or never existed)",
        f"platform 'x' needs 9 MiB of shared memory but {shown} has 1,024 MiB free: remove leftovers with "
        f"`rmm-mp clean`, use a smaller platform or fewer CPUs, or enlarge {shown}":
            "platform 'x' needs 9 MiB of shared memory but ? has 1,024 MiB free: remove leftovers with "
            "`rmm-mp clean`, use a smaller platform or fewer CPUs, or enlarge ?",
        f"a path that is not an rmm-mp machine's shared memory segment in {shown}":
            "a path that is not an rmm-mp machine's shared memory segment in ?",
        f"shared memory cannot be made in {shown} (RMM_MP_SHM_DIR): expected a directory":
            "shared memory cannot be made in ? (RMM_MP_SHM_DIR): expected a directory",
    }
    for text, masked in named.items():
        assert without_run_place(text, (shm_dir,)) == masked, text
