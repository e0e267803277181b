"""The docs a user reads stay true: the check catalog is generated from the check docstrings, and
nothing points outside the repository."""
from __future__ import annotations

from pathlib import Path

from codecdoctor.commands.catalog import catalog_markdown
from codecdoctor.core import registry

ROOT = Path(__file__).resolve().parents[1]


def test_check_catalog_matches_the_docstrings():
    generated = catalog_markdown(registry.all_checks())
    on_disk = (ROOT / "docs" / "CHECKS.md").read_text(encoding="utf-8")
    assert on_disk == generated, "regenerate it: codecdoctor checks --markdown > docs/CHECKS.md"


def test_docs_do_not_point_outside_the_repository():
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "codecdoctor").rglob("*.py"),
             *(ROOT / "model").rglob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in texts if "../shared" in p.read_text(encoding="utf-8")]
    assert not offenders, offenders
