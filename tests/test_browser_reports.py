"""HTML reports as a user's browser sees them: headless Chromium loads each one and we check that it
renders, decodes every plot, makes no network request and logs no console error. Screenshots go to
reports/screenshots/ (look at them). Skipped only where Chromium is not installed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from browser_cdp import find_chromium, load_page

from codecdoctor.core.findings import Finding, Report, Severity
from codecdoctor.report import html as html_view
from codecdoctor.report.raster import heatmap_data_uri
from codecdoctor.report.sections import Figure
from codecdoctor.report.svg import Axis, Chart

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt install chromium)")

SCREENSHOTS = Path(__file__).resolve().parents[1] / "reports" / "screenshots"
HOSTILE = ['<script>alert(1)</script>.wav', '<img src=x onerror="alert(2)">', 'javascript:alert(3)',
           '" onmouseover="alert(4)']


def _hostile_report() -> Report:
    report = Report(command="unit", args={"data": HOSTILE[0]})
    for name in HOSTILE:
        report.findings.append(Finding(id="D103", severity=Severity.ERROR, title="t " + name,
                                       message=f"file {name} has \"&<> in it", subject=name,
                                       evidence={name: 1.0129}, cause=name, fix=name))
    chart = Chart(Axis(HOSTILE[0]), Axis(HOSTILE[1]), description=HOSTILE[2])
    chart.line(np.arange(100), np.sin(np.linspace(0, 6.28, 100)), color="#2f6f9f", label=HOSTILE[3], markers=True)
    report.sections.append(Figure("A chart " + HOSTILE[1], svg=chart.render(), caption=HOSTILE[2]))
    # a user's own figure as a PNG data URI (Report.sections)
    heat = heatmap_data_uri(np.outer(np.linspace(0, 1, 20), np.ones(30)), 0.0, 1.0)
    report.sections.append(Figure("A plot " + HOSTILE[1], data_uri=heat, caption=HOSTILE[2]))
    report.notes.append(HOSTILE[3])
    return report


def test_hostile_strings_stay_inert_and_plots_decode(tmp_path):
    page = tmp_path / "hostile.html"
    html_view.write(_hostile_report(), page)
    result = load_page(page, screenshot=SCREENSHOTS / "hostile.png")
    assert result.requests == [], "the page asked the network for something"
    assert result.console_errors == [], result.console_errors
    assert result.images == 1 and result.images_decoded == 1
    assert result.findings == len(HOSTILE)
    assert result.height_px > 400


def test_env_report_renders(cli, tmp_path):
    assert cli("env", "--html", "env.html", "--json", "none")[0] == 0
    result = load_page(tmp_path / "env.html", screenshot=SCREENSHOTS / "env.png")
    assert result.requests == [] and result.console_errors == []
    assert result.findings >= 1 and result.tables >= 1
