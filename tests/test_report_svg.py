"""Inline-SVG charts (codecdoctor/report/svg.py) and audit-data's figures drawn with them: an audit
never imports matplotlib, its HTML carries the figures as well-formed <svg>, text is escaped, ticks
do not collide and long series stay small."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import soundfile as sf
from audio_fixtures import speech_like

from codecdoctor.report.svg import MAX_POINTS, Axis, Chart, linear_ticks, log_ticks, text_width_px

SR = 16000
HOSTILE = '<script>alert(1)</script>&"x".wav'


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(str(svg))  # raises on anything that is not well-formed XML


def test_an_audit_imports_no_matplotlib_torch_or_scipy_stats_and_draws_svg_figures(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    hot = speech_like(6.0, SR, seed=1, peak=0.9)
    hot[SR:2 * SR] *= 3.0  # overs (D103): a flagged file with a level strip
    sf.write(data / "hot.wav", hot, SR, subtype="FLOAT")
    sf.write(data / "quiet.wav", speech_like(4.0, SR, seed=2, peak=0.05), SR, subtype="PCM_16")
    sf.write(data / "zeros.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")  # all silent (D114)
    html, report = tmp_path / "audit.html", tmp_path / "audit.json"
    probe = (
        "import sys\n"
        "from codecdoctor.cli import main\n"
        f"code = main(['audit-data', {str(data)!r}, '--no-progress', '--jobs', '1', '--html', {str(html)!r}, "
        f"'--json', {str(report)!r}])\n"
        "print('MODULES', sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'torch', 'PIL') "
        "or m.startswith(('scipy.signal', 'scipy.stats'))))\n"
        "print('CODE', code)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "MODULES []" in out.stdout, out.stdout
    assert re.search(r"CODE [01]\n", out.stdout)  # a finished run (1 = findings at or above --fail-on)
    page = html.read_text(encoding="utf-8")
    svgs = re.findall(r"<svg .*?</svg>", page, re.S)
    # peak-vs-RMS, durations, silence, amplitudes, and a level strip per flagged file (hot, zeros)
    assert len(svgs) >= 6, len(svgs)
    assert "data:image/png" not in page
    for svg in svgs:
        _parse(svg)
    titles = re.findall(r"<figcaption><strong>(.*?)</strong>", page)
    assert titles[:4] == ["Peak vs RMS per file", "Duration histogram", "Silence fraction",
                          "Pooled amplitude histogram"]
    assert "Level over time: hot.wav" in titles
    assert "1 all-zero file not drawn" in page  # the silent file has no level to place
    findings = {f["id"] for f in json.loads(report.read_text())["findings"]}
    assert {"D103", "D114"} <= findings


def test_chart_text_is_escaped_and_the_svg_is_well_formed():
    chart = Chart(Axis(f"x {HOSTILE}"), Axis("y <b>"), description=f"Level over time: {HOSTILE}")
    chart.step([0.0, 1.0, 2.0], [-10.0, -20.0, -5.0], end_x=3.0, color="#2f6f9f", label=HOSTILE)
    chart.hline(0.0, color="#c53030", label="0 dBFS")
    svg = str(chart.render())
    assert "<script" not in svg and "<b>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;x&quot;.wav" in svg
    root = _parse(svg)
    texts = ["".join(t.itertext()) for t in root.iter("text")]
    assert f"x {HOSTILE}" in texts and HOSTILE in texts  # the label and the legend entry, as text
    assert "http" not in svg  # inline SVG in HTML needs no namespace URL; the page loads nothing


def test_nice_ticks_linear_and_log():
    assert linear_ticks(0.0, 100.0, 5) == [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    assert linear_ticks(-0.3, 0.72, 5) == [-0.2, 0.0, 0.2, 0.4, 0.6]
    assert linear_ticks(0.0, 2.4, 6, integer=True) == [0.0, 1.0, 2.0]  # counts: no half files
    assert log_ticks(0.5, 2e6, 8) == [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]
    assert log_ticks(0.5, 1e7, 4) == [1.0, 100.0, 1e4, 1e6]  # every second decade when crowded
    assert log_ticks(0.4, 30.0, 6) == [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]  # under two decades: 1-2-5
    assert log_ticks(5120.0, 10600.0, 5) == [6000.0, 8000.0, 10000.0]  # under a factor of 2: linear
    assert log_ticks(0.95, 4.2, 6) == [1.0, 2.0, 3.0, 4.0]  # 1-2-5 would give two ticks: linear


def test_x_tick_labels_never_overlap_and_stay_inside_the_chart():
    for lo, hi in ((0.0, 6480.0), (-123456.0, 987654.0), (1e-3, 1e9), (0.0, 1e-4)):
        log = lo > 0
        chart = Chart(Axis("x", log=log), Axis("y"), width_px=360)
        chart.scatter([lo, hi], [0.0, 1.0], color="#000000")
        root = _parse(str(chart.render()))
        ticks = [t for t in root.iter("text") if t.get("text-anchor") == "middle" and t.get("y") == "293"]
        assert len(ticks) >= 2, (lo, hi)
        spans = []
        for t in ticks:
            text = "".join(t.itertext())
            x = float(t.get("x"))
            half = text_width_px(text) / 2
            spans.append((x - half, x + half))
        assert all(a[1] + 4 <= b[0] for a, b in zip(spans, spans[1:])), (lo, hi, spans)
        assert spans[0][0] >= 0 and spans[-1][1] <= 360, (lo, hi, spans)


def test_long_series_are_decimated_to_the_pixel_grid():
    rng = np.random.default_rng(0)
    n = 200_000
    chart = Chart(Axis("time (s)"), Axis("dBFS"))
    chart.step(np.arange(n) * 0.02, rng.normal(-30, 10, n), end_x=n * 0.02, color="#2f6f9f", label="RMS")
    svg = str(chart.render())
    _parse(svg)
    assert len(svg) < 40_000, len(svg)  # ~2.4 MB if every step were written
    scatter = Chart(Axis("RMS (dBFS)"), Axis("peak (dBFS)"))
    scatter.scatter(rng.uniform(-60, 0, n), rng.uniform(-40, 0, n), color="#c53030", label="files")
    svg = str(scatter.render())
    _parse(svg)
    assert svg.count("h0") == MAX_POINTS and len(svg) < 100_000, len(svg)
    assert scatter.dropped_points > n // 2  # said in the caption
    histogram = Chart(Axis("sample value"), Axis("count", log=True))
    counts = rng.integers(0, 1000, 30_000).astype(float)
    histogram.stairs(counts, np.linspace(-1.5, 1.5, counts.size + 1), color="#2f6f9f")
    assert len(str(histogram.render())) < 60_000


def test_a_compare_without_quality_imports_no_matplotlib_and_draws_svg_figures(tmp_path):
    clean = speech_like(3.0, SR, seed=4, peak=0.5)
    late = 0.7 * np.concatenate([np.zeros(240, np.float32), clean[:-240]])
    sf.write(tmp_path / "ref.wav", clean, SR, subtype="FLOAT")
    sf.write(tmp_path / "est.wav", late, SR, subtype="FLOAT")
    html = tmp_path / "compare.html"
    probe = (
        "import sys\n"
        "from codecdoctor.cli import main\n"
        f"code = main(['compare', 'ref.wav', 'est.wav', '--no-quality', '--no-progress', '--html', {str(html)!r}, "
        "'--json', 'none'])\n"
        "print('MODULES', sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'torch', 'PIL') "
        "or m.startswith(('scipy.signal', 'scipy.stats'))))\n"
        "print('CODE', code)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "MODULES []" in out.stdout, out.stdout
    page = html.read_text(encoding="utf-8")
    svgs = re.findall(r"<svg .*?</svg>", page, re.S)
    assert len(svgs) == 4, len(svgs)    # overview and zoom, two spectrograms
    for svg in svgs:
        _parse(svg)
    titles = re.findall(r"<figcaption><strong>(.*?)</strong>", page)
    assert titles == ["Waveforms: ref.wav vs est.wav", "Spectrograms: ref.wav vs est.wav"]
    # the heat maps are inline PNGs inside the chart, nothing else is an image
    assert page.count("<image ") == 2 and page.count('href="data:image/png;base64,') == 2


def test_a_line_breaks_at_missing_points_and_leaves_out_non_positive_values_on_a_log_axis():
    chart = Chart(Axis("step"), Axis("loss", log=True))
    chart.line([0, 1, 2, 3, 4, 5, 6], [1.0, 2.0, None, 3.0, -1.0, 4.0, 5.0], color="#2f6f9f", label="loss",
               markers=True)
    root = _parse(str(chart.render()))
    drawn = [p for p in root.iter("path") if p.get("stroke") == "#2f6f9f"]
    line = next(p for p in drawn if p.get("stroke-linecap") is None)
    dots = next(p for p in drawn if p.get("stroke-linecap") == "round")
    assert line.get("d").count("M") == 3  # runs [0, 1], [3], [5, 6]: None and -1 are gaps
    assert line.get("d").count("L") == 2
    assert dots.get("d").count("h0") == 5
    labels = ["".join(t.itertext()) for t in root.iter("text") if t.get("text-anchor") == "end"]
    assert labels == ["1", "2", "5"]


def test_a_dense_line_is_drawn_as_pixel_column_ranges_and_keeps_its_extremes():
    n = 100_000
    y = np.sin(np.linspace(0, 40 * np.pi, n))
    y[n // 3] = 7.0  # one spike must survive the thinning
    chart = Chart(Axis("step"), Axis("value"), width_px=460)
    chart.line(np.arange(n), y, color="#2f6f9f")
    svg = str(chart.render())
    root = _parse(svg)
    assert len(svg) < 40_000, len(svg)
    d = next(p for p in root.iter("path") if p.get("stroke") == "#2f6f9f").get("d")
    ys = [float(v) for v in re.findall(r"V(-?[\d.]+)", d)]
    assert min(ys) < 40  # the spike's pixel row is near the top of the plot


def test_legend_wraps_into_rows_inside_the_chart_and_bands_lie_behind_the_data():
    chart = Chart(Axis("step"), Axis("perplexity"), width_px=460)
    chart.band(-6.0, 6.0, color="#2f855a")
    for level in range(10):
        chart.line([0, 1, 2], [level, level + 1, level], color="#2f6f9f", label=f"level {level} of the codebook")
    root = _parse(str(chart.render()))
    rows = {t.get("y") for g in root.iter("g") if g.get("class") == "legend" for t in g.iter("text")}
    assert len(rows) >= 3
    for g in root.iter("g"):
        if g.get("class") == "legend":
            for t in g.iter("text"):
                x = float(t.get("x"))
                assert 0 <= x and x + text_width_px("".join(t.itertext())) <= 460
    order = [el.tag for el in root if el.tag in ("rect", "path")]
    assert order.index("rect") < max(i for i, tag in enumerate(order) if tag == "path")
    band = next(root.iter("rect"))
    assert float(band.get("height")) > 0


def test_probe_and_training_reports_draw_svg_and_import_no_matplotlib(tmp_path):
    """Every command's figures are inline SVG: a probe report and a training report (per-epoch
    history plus the monitor's read-back windows) render their figures without matplotlib."""
    script = (
        "import sys, json\n"
        "import torch\n"
        "from codecdoctor.probe import probe\n"
        "from codecdoctor.core.findings import Report\n"
        "from codecdoctor.report import html\n"
        "class Identity:\n"
        "    sample_rate = 8000\n"
        "    def reconstruct(self, audio):\n"
        "        return audio\n"
        "curves = [{'step': 10 * i, 'loss': {'l1': 1.0 / (i + 1), 'mel': 2.0 / (i + 1)}, 'input_peak': 0.9,\n"
        "           'output_peak': 0.8, 'rms_ratio_db': -1.0, 'grad_norm': 1.0 + i, 'grad_norm_max': 2.0 + i,\n"
        "           'perplexity': [50.0 + i, 40.0]} for i in range(30)]\n"
        "history = [{'epoch': e, 'step': 100 * e, 'train_loss': 1.0 / e, 'val_snr_db': 2.0 * e,\n"
        "            'val_si_snr_db': 2.0 * e - 1} for e in (1, 2, 3)]\n"
        "train = Report(command='train', measurements={'history': history, 'steps': 300,\n"
        "               'monitor': {'curves': curves, 'validation': [{'step': 300, 'snr_db': 6.0, 'rms_ratio_db': -1.0}]}})\n"
        f"open({str(tmp_path / 'probe.html')!r}, 'w').write(html.render(probe(Identity())))\n"
        f"open({str(tmp_path / 'train.html')!r}, 'w').write(html.render(train))\n"
        "print('MODULES', sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "MODULES []" in out.stdout, out.stdout + out.stderr
    for name, titles in (("probe", ["Level in/out", "Magnitude response", "Impulse response"]),
                         ("train", ["Validation SNR and loss", "Training curves", "Codebooks"])):
        page = (tmp_path / f"{name}.html").read_text(encoding="utf-8")
        assert "data:image/png" not in page and "sections not drawn" not in page
        assert re.findall(r"<figcaption><strong>(.*?)</strong>", page) == titles
        for svg in re.findall(r"<svg .*?</svg>", page, re.S):
            _parse(svg)
    train_page = (tmp_path / "train.html").read_text(encoding="utf-8")
    assert train_page.count("<svg ") == 7  # 2 + 4 panels + 1
    for label in ("SI-SNR", "output peak", "validation", "level 1", "mel"):
        assert f">{label}</text>" in train_page, label
