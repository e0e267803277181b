"""`codecdoctor probe` (not built yet)."""
from __future__ import annotations

import typer

from codecdoctor.commands.common import not_built


def register(app: typer.Typer) -> None:
    @app.command("probe", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def command(ctx: typer.Context) -> None:
        """Audio-analyzer measurements of a codec: level sweep, impulse, sine sweep, silence. (not built yet)"""
        not_built("probe")
