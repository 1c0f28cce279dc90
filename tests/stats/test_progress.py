"""The progress bar (rmm_mp/stats/progress.py): per-CPU rates from the published call counts,
one redrawn line when enabled, nothing when not."""

from __future__ import annotations

import io

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.stats.progress import Progress


def test_rates_come_from_published_counts() -> None:
    """After CPU 0 publishes 3 calls and CPU 1 none, a tick 0.5 s in shows 3 calls in all and
    6 calls/s for CPU 0; a disabled bar writes nothing."""
    with Machine.create("host", cpus=2) as m:
        cpu = m.cpu(0)
        for _ in range(3):
            cpu.smc(RmiFid.RMI_VERSION, 0x10000)
        cpu.flush_statistics()
        out = io.StringIO()
        bar = Progress(m, [0, 1], 10.0, stream=out, enabled=True)
        assert bar.counts() == {0: 3, 1: 0}
        bar.tick(0.5)
        bar.close()
        text = out.getvalue()
        assert text.startswith("\r[") and text.endswith("\n")
        assert "3 calls" in text and "cpu0 6/s" in text and "cpu1 0/s" in text
        quiet = io.StringIO()
        silent = Progress(m, [0, 1], 10.0, stream=quiet, enabled=False)
        silent.tick(0.5)
        silent.close()
        assert quiet.getvalue() == ""
