"""The docs a user reads stay true: the check catalog is generated from the check docstrings, and
nothing points outside the repository."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

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


USER_DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
# Words of a development log, not of a product: numbered work sessions, "this VM", this project's
# issue numbers ("issue #12", "issue-17 recipe"), dates of work and commit hashes. Other projects'
# issues cited as sources ("DAC issue 39") and a recording session ("split by speaker/session") are
# product words.
DEVELOPMENT_LOG = {
    "a work session": re.compile(r"(?<!/)\bsessions?\b(?! of recording)", re.IGNORECASE),
    "the machine it was built on": re.compile(r"\bthis (VM|virtual machine|box)\b", re.IGNORECASE),
    "this project's issues": re.compile(r"\bissue[ -]?#\d+|\bissue-\d+\b|\b(the|this|our) issue\b", re.IGNORECASE),
    "a date of work": re.compile(r"\b20\d\d-\d\d-\d\d\b"),
    "a commit hash": re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b"),
}


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.name)
def test_user_docs_speak_of_the_product_not_of_its_development(path):
    text = path.read_text(encoding="utf-8")
    found = [f"{what}: {m.group(0)!r} (line {text.count(chr(10), 0, m.start()) + 1})"
             for what, pattern in DEVELOPMENT_LOG.items() for m in pattern.finditer(text)]
    assert not found, found


@pytest.mark.parametrize("text, what", [
    ("Session 7's changes", "a work session"), ("measured in session 4", "a work session"),
    ("This VM is faster", "the machine it was built on"), ("the goal the issue names", "this project's issues"),
    ("see issue #29", "this project's issues"), ("2026-12-03", "a date of work"),
    ("against `964541a`", "a commit hash")])
def test_the_development_log_patterns_catch_what_they_name(text, what):
    assert DEVELOPMENT_LOG[what].search(text)


def test_product_words_are_not_taken_for_a_development_log():
    for text in ("split by speaker/session", "(DAC issue 39)", "WavTokenizer issue 82", "peak 1.0129",
                 "bitrate 6000 bps", "0x7fffffff"):
        assert not [w for w, p in DEVELOPMENT_LOG.items() if p.search(text)], text


def test_readme_is_a_short_users_guide_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "./run demo" in text and "./run test" in text and "pip install ." in text
    for command in ("audit-data", "check-ckpt", "train", "watch", "compare"):
        assert f"codecdoctor {command}" in text, command
    for image in ("docs/img/demo_index.png", "docs/img/compare_delay.png"):
        assert image in text and (ROOT / image).is_file()
    for link in re.findall(r"\]\(((?:docs/)?[A-Z]+\.md)", text):
        assert (ROOT / link).is_file(), link
