"""`codecdoctor merge` (not built yet)."""
from __future__ import annotations

import typer

from codecdoctor.commands.common import not_built


def register(app: typer.Typer) -> None:
    @app.command("merge", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def command(ctx: typer.Context) -> None:
        """Combine partial audit-data JSON reports (--shard i/n) into one report. (not built yet)"""
        not_built("merge")
