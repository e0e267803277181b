"""`codecdoctor merge part*.json`: combine `audit-data --shard i/n` partial reports into one."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from codecdoctor.commands.common import FailOn, fail_on_option, finish, html_option, json_option


def register(app: typer.Typer) -> None:
    @app.command("merge")
    def command(
        parts: List[Path] = typer.Argument(..., metavar="PART.json...", help="Partial audit-data JSON reports."),
        html: Optional[Path] = html_option(),
        json: Optional[str] = json_option(),
        fail_on: FailOn = fail_on_option(),
    ) -> None:
        """Combine partial audit-data JSON reports (--shard i/n) into the report one run would give."""
        from codecdoctor.audit import merge_partials

        report = merge_partials(parts, plots=html is None or str(html).lower() != "none")
        finish(report, html=html, json=json, fail_on=fail_on, name="audit-data", title="audit-data (merged)")
