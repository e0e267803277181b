import re

from codecdoctor.core.findings import Finding, Report, Severity
from codecdoctor.report import html
from codecdoctor.report.sections import Figure, Table
from codecdoctor.report.svg import Axis, Chart

HOSTILE = '<script>alert(1)</script>.wav'


def hostile_report() -> Report:
    report = Report(command="audit-data", args={"dir": '"><img src=x onerror=alert(2)>'})
    report.add([Finding("D103", Severity.ERROR, "Overs", 'message with "&<> inside', HOSTILE,
                        {"<b>key</b>": 1.5}, "cause <i>", "fix <u>")], ["D103"])
    chart = Chart(Axis(HOSTILE), Axis("y"), description=HOSTILE)
    chart.line([0, 1], [0, 1], color="#2f6f9f", label=HOSTILE)
    report.sections.append(Figure("a plot", svg=chart.render(), caption="<caption>"))
    report.sections.append(Table("files", ["path", "peak"], [[HOSTILE, 1.01]]))
    return report


def test_user_strings_are_escaped():
    page = html.render(hostile_report())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.wav" in page
    assert "message with &#34;&amp;&lt;&gt; inside" in page  # markupsafe escapes " as &#34;
    assert "<img src=x" not in page and "onerror=alert(2)>" not in page
    assert "<b>key</b>" not in page and "<i>" not in page and "<caption>" not in page


def test_html_loads_nothing_from_the_network():
    page = html.render(hostile_report())
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    assert '<svg class="chart"' in page and page.count("&lt;script&gt;alert(1)") >= 3  # axis, legend, title


def test_html_has_viewport_and_counts():
    page = html.render(hostile_report())
    assert 'name="viewport"' in page
    assert "1 error finding at the top" in page


def test_a_checks_cause_and_fix_appear_once_and_later_findings_link_to_them():
    """A folder's report holds one R304 per delayed pair: the findings list prints the paragraphs
    with the first and links the others to it; a different cause of the same check stays in full."""
    report = Report(command="compare", args={})
    report.add([Finding("R304", Severity.ERROR, "Time offset", f"pair {i} is 40 samples late", f"{i}.wav",
                        {"lag_samples": 40}, "shared cause", "shared fix") for i in range(3)]
               + [Finding("R304", Severity.ERROR, "Time offset", "drifting", "d.wav", {}, "drift cause", "drift fix")])
    page = html.render(report)
    findings = page[page.index('<div id="findings">'):]
    assert findings.count("shared cause") == 1 and findings.count("shared fix") == 1
    assert findings.count('as for <a href="#finding-0">R304 above</a>') == 2
    assert 'id="finding-0"' in findings
    assert findings.count("drift cause") == 1 and findings.count("drift fix") == 1
    assert all(f"pair {i} is 40 samples late" in findings for i in range(3))
