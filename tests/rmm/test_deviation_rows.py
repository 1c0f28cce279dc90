"""Rows of docs/deviations.md that no other test pinned.

Each test names its row; it fails if rmm-mp stops doing what the row says. Rows whose behaviour
is pinned elsewhere name their test in the row itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_mp.hw import platform as plat
from rmm_mp.hw.platform import load
from rmm_mp.hw.tomlsrc import ConfigError

HOST_TOML = plat.platform_dir() / "host.toml"


def test_feat_lpa2_a_platform_claiming_lpa2_is_refused(tmp_path: Path) -> None:
    """Row "FEAT_LPA2" (From TF-RMM rel0): "platforms must say lpa2 = false". A platform file
    with lpa2 = true is refused when loaded, naming features.lpa2 and the deviation; the same file
    with lpa2 = false loads (the refusal is the flag's, not the file's)."""
    text = HOST_TOML.read_text()
    assert "lpa2 = false" in text
    path = tmp_path / "lpa2.toml"
    path.write_text(text.replace("lpa2 = false", "lpa2 = true"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == "features.lpa2" and "docs/deviations.md" in str(info.value)
    path.write_text(text)
    assert load(path).features.lpa2 is False
