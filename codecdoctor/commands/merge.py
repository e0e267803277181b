"""`codecdoctor merge part*.json`: combine `audit-data --shard i/n` partial reports into one."""
from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from codecdoctor.commands.common import FailOn, FailOnOption, HtmlOption, JsonOption, Outputs, finish


def register(app: typer.Typer) -> None:
    @app.command("merge")
    def command(
        parts: Annotated[List[str], typer.Argument(
            metavar="PART.json...", help="Partial audit-data JSON reports (paths or s3:// gs:// ... URLs).")],
        storage_options: Annotated[Optional[str], typer.Option(
            "--storage-options", metavar="JSON", help="fsspec options for partials in object storage; "
            "never written to a report.")] = None,
        html: HtmlOption = None,
        json: JsonOption = None,
        fail_on: FailOnOption = FailOn.error,
    ) -> None:
        """Combine partial audit-data JSON reports (--shard i/n) into the report one run would give."""
        from codecdoctor.audit import merge_partials
        from codecdoctor.measure.audio.sources import parse_storage_options

        report = merge_partials(parts, storage_options=parse_storage_options(storage_options))
        finish(report, Outputs(html, json, fail_on), name="audit-data", title="audit-data (merged)")
