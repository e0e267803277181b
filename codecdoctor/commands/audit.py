"""`codecdoctor audit-data` (not built yet)."""
from __future__ import annotations

import typer

from codecdoctor.commands.common import not_built


def register(app: typer.Typer) -> None:
    @app.command("audit-data", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def command(ctx: typer.Context) -> None:
        """Stream every audio file under DIR once; per-file and corpus findings. (not built yet)"""
        not_built("audit-data")
