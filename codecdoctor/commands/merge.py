"""`codecdoctor merge part*.json`: combine `audit-data --shard i/n` partial reports into one."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, List

import typer

from codecdoctor.commands.common import FailOn, FailOnOption, HtmlOption, JsonOption, Outputs, finish


def register(app: typer.Typer) -> None:
    @app.command("merge")
    def command(
        parts: Annotated[List[Path], typer.Argument(metavar="PART.json...", help="Partial audit-data JSON reports.")],
        html: HtmlOption = None,
        json: JsonOption = None,
        fail_on: FailOnOption = FailOn.error,
    ) -> None:
        """Combine partial audit-data JSON reports (--shard i/n) into the report one run would give."""
        from codecdoctor.audit import merge_partials

        finish(merge_partials(parts), Outputs(html, json, fail_on), name="audit-data", title="audit-data (merged)")
