import pytest

from codecdoctor.core import registry
from codecdoctor.core.findings import Severity
from codecdoctor.core.registry import NotApplicable, check, parse_docstring, run_checks


def test_every_registered_check_has_title_what_why_fix():
    infos = registry.all_checks()
    assert infos, "no checks registered"
    for info in infos:
        assert info.title and info.what and info.why and info.fix, info.id
        assert info.scope in registry.SCOPES


def test_docstring_parser_splits_sections():
    title, sections = parse_docstring("""Title here.

    What: measures a.
      continued.
    Why: because.
    Fix: do b.
    """)
    assert title == "Title here"
    assert sections == {"What": "measures a. continued.", "Why": "because.", "Fix": "do b."}


def test_check_without_sections_is_rejected():
    with pytest.raises(ValueError, match="Why"):
        @check("X901", scope="data", severity="info")
        def bad(m):
            """Title.

            What: only this.
            Fix: x.
            """


def test_bad_id_is_rejected():
    with pytest.raises(ValueError):
        check("D1", scope="data", severity="info")


def test_not_applicable_checks_are_not_listed_as_run():
    @check("X902", scope="environment", severity=Severity.INFO, level="test-only")
    def skipped(m):
        """Skipped.

        What: a.
        Why: b.
        Fix: c.
        """
        raise NotApplicable

    @check("X903", scope="environment", severity=Severity.WARNING, level="test-only")
    def fires(m):
        """Fires.

        What: a.
        Why: b.
        Fix: c.
        """
        return [registry.finding("X903", f"value {m}")]

    try:
        result = run_checks("environment", 7, level="test-only")
        assert result.checks_run == ["X903"]
        assert [(f.id, f.severity, f.message, f.fix) for f in result.findings] == [("X903", Severity.WARNING, "value 7", "c.")]
    finally:
        registry._REGISTRY.pop("X902", None)
        registry._REGISTRY.pop("X903", None)


def test_unknown_id_raises_key_error():
    with pytest.raises(KeyError):
        registry.get("Z999")
