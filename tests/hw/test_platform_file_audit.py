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
