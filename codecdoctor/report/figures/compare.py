"""Report sections for `compare`: the what-if table, the aggregate, and for the worst pair a
waveform overlay (reference, estimate, error) and spectrograms."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from codecdoctor.core.findings import Report
from codecdoctor.report.sections import Table, Text

# Spectrograms and overviews cover at most this much audio: enough to see the fault, bounded cost.
PLOT_SECONDS = 10.0
ZOOM_MS = 30.0


def _cell(value: float) -> Any:
    if isinstance(value, float) and value > 150:  # beyond ~150 dB the residual is float rounding
        return "exact"
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 2)
    return value


def what_if_table(measured: list) -> Table:
    rows = []
    order = sorted(measured, key=lambda item: item[1].snr_db if math.isfinite(item[1].snr_db) else -1e9)
    for pair, m, findings in order:
        w = m.what_if
        top = next((f.id for f in findings if f.id != "R300"), "-")
        rows.append([pair.subject, *(_cell(float(w.get(k, -math.inf))) for k in ("raw", "gain", "aligned", "polarity", "all")),
                     m.lag_samples, _cell(float(m.gain)), top])
    return Table("What-if SNR (dB): each correction alone, then all together",
                 ["pair", "raw", "gain", "aligned", "polarity", "all", "lag (samples)", "optimal gain", "top finding"],
                 rows,
                 caption="gain: best non-negative gain; aligned: lag removed; polarity: sign flipped if the "
                         "correlation is negative; all: lag, DC, signed optimal gain. Worst pair first. "
                         "'exact' = a perfect match once corrected (residual below float rounding).")


def aggregate_text(aggregate: dict[str, Any], chunk_set: Any) -> Text:
    def fmt(v: Any) -> str:
        return f"{v:.2f} dB" if isinstance(v, float) and math.isfinite(v) else str(v)

    lines = [
        f"pairs: {aggregate['pairs']} ({aggregate['scored_pairs']} scored, {aggregate['unreadable_or_missing']} unreadable or missing)",
        f"total-power SNR over the scored pairs: {fmt(aggregate['total_snr_db'])}",
        f"mean of per-{'file' if aggregate['pairs'] > 1 else 'second'} SNR (eps form, as training loops average): "
        f"{fmt(chunk_set.mean_chunk_snr_db)} over {chunk_set.chunks} chunks, {chunk_set.silent_chunks} silent",
        f"mean SI-SNR: {fmt(aggregate['mean_si_snr_db'])}; mean segmental SNR: {fmt(aggregate['mean_seg_snr_db'])}; "
        f"mean mel distance: {aggregate['mean_mel_distance'] if aggregate['mean_mel_distance'] is None else round(aggregate['mean_mel_distance'], 3)}",
        f"pairs with negative SNR: {aggregate['pairs_with_negative_snr']}; top findings: "
        + (", ".join(f"{k} x{v}" for k, v in sorted(aggregate['top_findings'].items())) or "none"),
    ]
    return Text("Aggregate", "\n".join(lines))


def waveform_figure(ref: np.ndarray, est: np.ndarray, sample_rate: int, m: Any, title: str):
    """Overview of the first PLOT_SECONDS and a ZOOM_MS window at the reference's loudest point."""
    from codecdoctor.report.plots import figure_section, new_figure

    r, e = ref.reshape(-1), est.reshape(-1)
    n = min(r.size, e.size, int(PLOT_SECONDS * sample_rate))
    r, e = np.nan_to_num(r[:n]), np.nan_to_num(e[:n])
    fig, axes = new_figure(9.0, 5.0, nrows=2)
    t = np.arange(n) / sample_rate
    step = max(1, n // 20000)  # plotting every sample of minutes of audio is slow and invisible
    for ax, sl, unit in ((axes[0], slice(0, n, step), "s"), (axes[1], None, "ms")):
        if sl is None:
            centre = int(np.argmax(np.abs(r))) if n else 0
            half = int(ZOOM_MS / 2000 * sample_rate)
            sl = slice(max(0, centre - half), min(n, centre + half))
            x = t[sl] * 1000.0
        else:
            x = t[sl]
        ax.plot(x, r[sl], color="#2f6f9f", linewidth=0.8, label="reference")
        ax.plot(x, e[sl], color="#c05621", linewidth=0.8, alpha=0.8, label="estimate")
        ax.plot(x, (r - e)[sl], color="#822727", linewidth=0.6, alpha=0.7, label="error (ref - est)")
        ax.set_xlabel(f"time ({unit})")
        ax.set_ylabel("amplitude")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[1].set_title(f"{ZOOM_MS:g} ms at the reference's peak", fontsize=9)
    caption = (f"SNR {m.snr_db:.2f} dB, lag {m.lag_samples} samples, optimal gain {m.gain:.4g}, "
               f"correlation {m.correlation:.3f}")
    return figure_section(fig, f"Waveforms: {title}", caption)


def spectrogram_figure(ref: np.ndarray, est: np.ndarray, sample_rate: int, title: str):
    from scipy.signal import spectrogram

    from codecdoctor.measure.spectral import mel_fft_size
    from codecdoctor.report.plots import figure_section, new_figure

    n = int(PLOT_SECONDS * sample_rate)
    fig, axes = new_figure(9.0, 5.0, nrows=2, sharex=True)
    nfft = mel_fft_size(sample_rate) // 2
    for ax, x, name in ((axes[0], ref, "reference"), (axes[1], est, "estimate")):
        x = np.nan_to_num(x.reshape(-1)[:n])
        if x.size < nfft:
            x = np.pad(x, (0, nfft - x.size))
        f, t, power = spectrogram(x, fs=sample_rate, nperseg=nfft, noverlap=nfft * 3 // 4)
        db = 10 * np.log10(np.maximum(power, 1e-14))
        ax.pcolormesh(t, f / 1000.0, db, shading="auto", cmap="magma", vmin=db.max() - 90, vmax=db.max())
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=9)
        ax.grid(False)
    axes[1].set_xlabel("time (s)")
    return figure_section(fig, f"Spectrograms: {title}", "Power in dB, 90 dB range below the loudest bin.")


def add_sections(report: Report, measured: list, chunk_set: Any, *, plots: bool,
                 loader: Callable[[Any], tuple]) -> None:
    """Append the what-if table, the aggregate and (optionally) figures for the worst pair."""
    if measured:
        report.sections.append(what_if_table(measured))
    report.sections.append(aggregate_text(report.measurements["aggregate"], chunk_set))
    if not plots or not measured:
        return
    scored = [item for item in measured if not item[1].ref_silent and item[1].compared_samples > 0]
    if not scored:
        return
    pair, m, _ = min(scored, key=lambda item: item[1].snr_db)
    try:
        ref, est, rate, _ = loader(pair)
    except Exception as exc:  # the file changed since it was measured: say so, keep the report
        report.notes.append(f"figures skipped: cannot re-read {pair.subject}: {exc}")
        return
    title = pair.subject if len(measured) == 1 else f"worst pair {pair.subject}"
    report.sections.append(waveform_figure(ref, est, rate, m, title))
    report.sections.append(spectrogram_figure(ref, est, rate, title))
