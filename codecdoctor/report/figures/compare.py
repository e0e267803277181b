"""Report sections for `compare`, from `Report.measurements` only: the what-if table, the aggregate,
and for the worst pair (its bounded excerpt, measurements.excerpt) a waveform overlay (reference,
estimate, error) and spectrograms. The figures are inline SVG (report/svg.py; the spectrograms a
PNG heat map from report/raster.py on SVG axes)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from codecdoctor.core.findings import Report
from codecdoctor.report.figures import db_text
from codecdoctor.report.sections import Figure, Table, Text


def _cell(value: float) -> Any:
    if isinstance(value, float) and value > 150:  # beyond ~150 dB the residual is float rounding
        return "exact"
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 2)
    return value


def key_numbers(report: Report) -> list[tuple[str, str]]:
    pairs = [p for p in report.measurements.get("pairs", []) if p.get("snr_db") is not None]
    aggregate = report.measurements.get("aggregate", {})
    if len(pairs) == 1:
        w = pairs[0].get("what_if") or {}
        keys = [("SNR as is", db_text(pairs[0]["snr_db"])), ("SNR with every correction", db_text(w.get("all"))),
                ("SI-SNR", db_text(pairs[0].get("si_snr_db"))), ("lag", f"{pairs[0].get('lag_samples')} samples")]
    else:
        keys = [("pairs scored", f"{aggregate.get('scored_pairs', 0)} of {aggregate.get('pairs', 0)}"),
                ("total-power SNR", db_text(aggregate.get("total_snr_db"))),
                ("pairs with negative SNR", str(aggregate.get("pairs_with_negative_snr", 0)))]
    return keys


def build(report: Report, *, figures: bool) -> list[Any]:
    sections: list[Any] = []
    pairs = report.measurements.get("pairs", [])
    if any(p.get("snr_db") is not None for p in pairs):
        sections.append(what_if_table(report))
    quality = quality_table(report)
    if quality is not None:
        sections.append(quality)
    if "aggregate" in report.measurements:
        sections.append(aggregate_text(report.measurements["aggregate"]))
    excerpt = report.measurements.get("excerpt")
    if figures and excerpt:
        worst = next((p for p in pairs if p.get("ref") == excerpt.get("ref")), None)
        title = excerpt["subject"] if len(pairs) == 1 else f"worst pair {excerpt['subject']}"
        sections[:0] = [waveform_figure(excerpt, worst, title), spectrogram_figure(excerpt, title)]
    return sections


def what_if_table(report: Report) -> Table:
    top_by_subject: dict[str, str] = {}
    for f in report.findings:  # findings are stored root cause first within each pair
        if f.subject and f.id != "R300" and f.id.startswith("R3"):
            top_by_subject.setdefault(f.subject, f.id)
    scored = [p for p in report.measurements.get("pairs", []) if p.get("snr_db") is not None]
    order = sorted(scored, key=lambda p: _sortable(p["snr_db"]))
    rows = []
    for p in order:
        w = p.get("what_if") or {}
        subject = p.get("subject") or p.get("ref")
        rows.append([subject, *(_cell(_float(w.get(k))) for k in ("raw", "gain", "aligned", "polarity", "all")),
                     p.get("lag_samples"), _cell(_float(p.get("gain"))), top_by_subject.get(subject, "-")])
    return Table("What-if SNR (dB): each correction alone, then all together",
                 ["pair", "raw", "gain", "aligned", "polarity", "all", "lag (samples)", "optimal gain", "top finding"],
                 rows,
                 caption="gain: best non-negative gain; aligned: lag removed; polarity: sign flipped if the "
                         "correlation is negative; all: lag, DC, signed optimal gain. Worst pair first. "
                         "'exact' = a perfect match once corrected (residual below float rounding).")


QUALITY_COLUMNS = (("stoi", "STOI"), ("estoi", "ESTOI"), ("pesq_wb", "PESQ WB"), ("pesq_nb", "PESQ NB"),
                   ("multiscale_mel_distance", "multi-scale mel"), ("mel_distance", "mel distance"))


def quality_table(report: Report) -> Table | None:
    """STOI, ESTOI, PESQ and the mel distances per pair, with the notes that say why one is
    missing; None when no pair carries quality metrics (compare ran with quality=False)."""
    pairs = [p for p in report.measurements.get("pairs", []) if p.get("snr_db") is not None]
    if not any(key in p for p in pairs for key in ("stoi", "pesq_wb", "quality_notes")):
        return None
    if not any(p.get(key) is not None for p in pairs for key, _ in QUALITY_COLUMNS[:5]) and \
            not any(p.get("quality_notes") for p in pairs):
        return None
    rows = []
    for p in sorted(pairs, key=lambda p: _sortable(p.get("pesq_wb", p.get("stoi")))):
        cells = [p.get("subject") or p.get("ref")]
        for key, _ in QUALITY_COLUMNS:
            value = p.get(key)
            cells.append("-" if value is None else round(float(value), 3))
        cells.append("; ".join(p.get("quality_notes") or []))
        rows.append(cells)
    config = next((p.get("multiscale_mel_config") for p in pairs if p.get("multiscale_mel_config")), None) or {}
    scales = ", ".join(f"{s['window']}/{s['n_mels']}" for s in config.get("scales", []))
    caption = ("STOI/ESTOI (pystoi, 0-1) and PESQ (ITU-T P.862.2 wide band / P.862 narrow band, MOS-LQO 1-4.64) on "
               "the pair aligned by its lag, energy-weighted over 20 s segments (the last up to 30 s); '-' = not computed (see "
               "the note). Multi-scale mel: sum over scales of the mean |log10 mel| difference (window/mels: "
               f"{scales or 'n/a'}; hop window/4, clamp 1e-5, HTK mel, Slaney norm). Mel distance: the single-scale "
               "one of R300 (1024-point window, 64 mels). Worst PESQ first.")
    return Table("Quality metrics", ["pair", *(label for _, label in QUALITY_COLUMNS), "notes"], rows, caption=caption)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _sortable(value: Any) -> float:
    number = _float(value)
    return number if math.isfinite(number) else -1e9


def aggregate_text(aggregate: dict[str, Any]) -> Text:
    def fmt(v: Any) -> str:
        return f"{v:.2f} dB" if isinstance(v, float) and math.isfinite(v) else str(v)

    mel = aggregate.get("mean_mel_distance")
    top = ", ".join(f"{k} x{v}" for k, v in sorted(aggregate.get("top_findings", {}).items())) or "none"
    unit = "file" if aggregate["pairs"] > 1 else "second"
    lines = [
        f"pairs: {aggregate['pairs']} ({aggregate['scored_pairs']} scored, "
        f"{aggregate['unreadable_or_missing']} unreadable or missing)",
        f"total-power SNR over the scored pairs: {fmt(aggregate['total_snr_db'])}",
        f"mean of per-{unit} SNR (eps form, as training loops average): {fmt(aggregate.get('mean_chunk_snr_db'))} "
        f"over {aggregate.get('chunks')} chunks, {aggregate.get('silent_chunks')} silent",
        f"mean SI-SNR: {fmt(aggregate['mean_si_snr_db'])}; mean segmental SNR: {fmt(aggregate['mean_seg_snr_db'])}; "
        f"mean mel distance: {mel if mel is None else round(mel, 3)}",
        f"pairs with negative SNR: {aggregate['pairs_with_negative_snr']}; top findings: {top}",
    ]
    return Text("Aggregate", "\n".join(lines))


def waveform_figure(excerpt: dict[str, Any], pair: dict[str, Any] | None, title: str) -> Figure:
    """Overview of the excerpt and a zoom window at the reference's loudest point (inline SVG)."""
    from codecdoctor.report.svg import Axis, Chart

    charts = []
    for part, x_key, unit, label in ((excerpt["overview"], "t_s", "s", f"first {excerpt['seconds']:.3g} s"),
                                     (excerpt["zoom"], "t_ms", "ms",
                                      f"{excerpt['zoom']['window_ms']:g} ms at the reference's peak")):
        x, r, e = (np.asarray(part[k], float) for k in (x_key, "ref", "est"))
        chart = Chart(Axis(f"time ({unit}): {label}"), Axis("amplitude"), width_px=640, height_px=250,
                      description=f"Waveforms, {label}")
        if x.size:
            end = float(x[-1] + (x[-1] - x[-2] if x.size > 1 else 1.0))
            # the error underneath: where it is small the two signals stay visible over it
            chart.step(x, r - e, end_x=end, color="#e8a0a0", label="error (ref - est)", width_px=1.0)
            chart.step(x, r, end_x=end, color="#2f6f9f", label="reference", width_px=1.0)
            chart.step(x, e, end_x=end, color="#c05621", label="estimate", width_px=1.0)
        charts.append(chart.render())
    caption = ""
    if pair is not None:
        caption = (f"SNR {db_text(pair.get('snr_db'))}, lag {pair.get('lag_samples')} samples, optimal gain "
                   f"{_float(pair.get('gain')):.4g}, correlation {_float(pair.get('correlation')):.3f}")
    return Figure(title=f"Waveforms: {title}", caption=caption, alt=f"Waveforms: {title}", svg=_joined(charts))


def spectrogram_figure(excerpt: dict[str, Any], title: str) -> Figure:
    """Reference and estimate spectrograms (dB, 90 dB below the loudest bin), each a heat map
    image on SVG axes."""
    from codecdoctor.report.raster import heatmap_data_uri
    from codecdoctor.report.svg import Axis, Chart

    spec = excerpt["spectrogram"]
    f_khz, t = np.asarray(spec["f_hz"], float) / 1000.0, np.asarray(spec["t_s"], float)
    top = max(np.max(spec["ref_db"]), np.max(spec["est_db"]))
    charts = []
    for key, name in (("ref_db", "reference"), ("est_db", "estimate")):
        chart = Chart(Axis("time (s)", limits=_edges_span(t)), Axis(f"kHz ({name})", limits=_edges_span(f_khz)),
                      width_px=640, height_px=220, description=f"Spectrogram of the {name}")
        chart.image(heatmap_data_uri(np.asarray(spec[key], float), top - 90.0, top))
        charts.append(chart.render())
    return Figure(title=f"Spectrograms: {title}", caption="Power in dB, 90 dB range below the loudest bin "
                  "(magma: dark = quiet, light = loud).", alt=f"Spectrograms: {title}", svg=_joined(charts))


def _edges_span(centres: np.ndarray) -> tuple[float, float]:
    """The span of cells centred on `centres` (evenly spaced)."""
    if centres.size == 0:
        return 0.0, 1.0
    half = float(centres[1] - centres[0]) / 2 if centres.size > 1 else 0.5
    return float(centres[0] - half), float(centres[-1] + half)


def _joined(charts: list[Any]) -> Any:
    from markupsafe import Markup

    return Markup("").join(charts)
