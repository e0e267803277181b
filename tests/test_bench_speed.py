"""bench/bench_speed.py --quick prints the whole table in one run (a smoke test: no timing asserted)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_speed.py"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("sox") is None, reason="the audit rows' peer is sox")
def test_bench_speed_quick_prints_every_row_with_a_ratio_and_peak_rss():
    out = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=900,
                         check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| work")]
    expected = ("compare, one 1.8 h pair", "audit-data, three 1.6-1.8 h files", "audit-data, one 1.8 h file",
                "start-up", "check-ckpt static", "0.5 min of 10 s pairs:", "0.5 min of 10 s pairs, no quality metrics",
                "1 min of 10 s pairs, no quality metrics")
    for name in expected:
        assert sum(name in row for row in rows) == 1, (name, out)
    assert len(rows) == len(expected)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        ours, peer, ratio, ours_cpu, peer_cpu, ours_rss, peer_rss = cells[1:8]
        assert float(ours_cpu) >= 0 and float(peer_cpu) >= 0
        # --quick's files are tiny: a peer (sox on a short file) can round to 0.00 s
        assert float(ours.split()[0]) > 0 and float(peer) >= 0
        assert ratio.endswith("x") and float(ratio[:-1]) > 0
        assert float(ours_rss) > 0 and float(peer_rss) > 0
    assert "s of audio/s" in out
