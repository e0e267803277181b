"""`codecdoctor demo` (not built yet)."""
from __future__ import annotations

import typer

from codecdoctor.commands.common import not_built


def register(app: typer.Typer) -> None:
    @app.command("demo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def command(ctx: typer.Context) -> None:
        """The negative-SNR saga end to end on generated data, with an HTML index. (not built yet)"""
        not_built("demo")
