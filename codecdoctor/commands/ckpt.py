"""`codecdoctor check-ckpt` (not built yet)."""
from __future__ import annotations

import typer

from codecdoctor.commands.common import not_built


def register(app: typer.Typer) -> None:
    @app.command("check-ckpt", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def command(ctx: typer.Context) -> None:
        """Static checks on any checkpoint; dynamic checks when the model can be built. (not built yet)"""
        not_built("check-ckpt")
