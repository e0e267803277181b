"""`codecdoctor train` (not built yet)."""
from __future__ import annotations

import typer

from codecdoctor.commands.common import not_built


def register(app: typer.Typer) -> None:
    @app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def command(ctx: typer.Context) -> None:
        """Train the built-in codec with live per-batch checks. (not built yet)"""
        not_built("train")
