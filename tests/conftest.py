"""Shared fixtures. Audio is generated here (deterministic seeds); nothing is downloaded."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests must not depend on a developer's terminal width or colour settings.
os.environ.setdefault("COLUMNS", "120")
os.environ.setdefault("NO_COLOR", "1")


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run the CLI in-process inside a temp folder; returns (exit_code, stdout, stderr)."""
    from codecdoctor.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args: str):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
