"""check-ckpt's render-time sections: the probe figures when probes ran (the static tables are
built by the library call, they need no drawing)."""
from __future__ import annotations

from typing import Any

from codecdoctor.report.figures import db_text, view
from codecdoctor.report.figures.probe import probe_sections
from codecdoctor.report.sections import Table


def build(report: Any, *, figures: bool) -> list[Any]:
    probes = report.measurements.get("probes")
    sections = probe_sections(view(probes), figures=figures) if probes is not None else []
    on_data = report.measurements.get("quantizer_on_data")
    if on_data and on_data.get("levels"):
        sections.append(codes_table(on_data))
    return sections


def _top_codes_text(level: dict) -> str:
    total = level.get("total_count") or 0
    pairs = level.get("top_codes") or []
    return ", ".join(f"{code}: {100.0 * count / total:.0f}%" for code, count in pairs) if total else ""


def codes_table(on_data: dict) -> Table:
    """The per-level histogram of the codes the model emitted on the data, with what the
    checkpoint's EMA buffers say of the same level."""
    rows = [[f"{lv.get('name')} ({lv['source_module']})" if lv.get("source_module") else lv.get("name"),
             lv.get("codebook_size"), lv.get("used"), lv.get("perplexity"), _top_codes_text(lv),
             lv.get("buffer_perplexity")]
            for lv in on_data["levels"]]
    return Table(f"Codes on data ({on_data.get('frames')} frames per level)",
                 ["level", "K", "distinct", "perplexity", "top codes", "EMA buffers' perplexity"], rows)


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
