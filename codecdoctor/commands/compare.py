"""`codecdoctor compare` (not built yet)."""
from __future__ import annotations

import typer

from codecdoctor.commands.common import not_built


def register(app: typer.Typer) -> None:
    @app.command("compare", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def command(ctx: typer.Context) -> None:
        """Differential diagnosis of a reconstruction (two files or two folders of paired files). (not built yet)"""
        not_built("compare")
