"""check-ckpt's render-time sections: the probe figures when probes ran (the static tables are
built by the library call, they need no drawing)."""
from __future__ import annotations

from typing import Any

from codecdoctor.report.figures import db_text, view
from codecdoctor.report.figures.probe import probe_sections


def build(report: Any, *, figures: bool) -> list[Any]:
    probes = report.measurements.get("probes")
    return probe_sections(view(probes), figures=figures) if probes is not None else []


def key_numbers(report: Any) -> list[tuple[str, str]]:
    m = report.measurements
    keys: list[tuple[str, str]] = []
    if m.get("parameters") is not None:
        keys.append(("parameters", f"{int(m['parameters']):,}"))
    bitrate = m.get("bitrate_bps")
    if isinstance(bitrate, dict):
        bitrate = bitrate.get("bitrate_bps")
    if isinstance(bitrate, (int, float)):
        keys.append(("bitrate", f"{bitrate / 1000:.2f} kbps"))
    recon = m.get("reconstruction") or {}
    for key, label in (("total_snr_db", "SNR on data (energy-weighted)"), ("mean_snr_db", "mean SNR per crop")):
        if recon.get(key) is not None:
            keys.append((label, db_text(recon[key])))
    probes = m.get("probes")
    if probes is not None and view(probes).level_slope_db_per_db is not None:
        keys.append(("level slope", f"{view(probes).level_slope_db_per_db:.3f} dB/dB"))
    return keys
