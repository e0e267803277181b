"""`codecdoctor checks` and `codecdoctor explain ID`: the catalog, read from the check docstrings."""
from __future__ import annotations

import enum
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from codecdoctor.core import registry
from codecdoctor.core.errors import InputError

Scope = enum.Enum("Scope", {name: name for name in registry.SCOPES}, type=str)


def register(app: typer.Typer) -> None:
    @app.command("checks")
    def checks(
        scope: Annotated[Optional[Scope], typer.Option("--scope", help="Only checks of this scope.")] = None,
    ) -> None:
        """List every check with its stable ID, scope, default severity and title."""
        infos = registry.all_checks(scope.value if scope else None)
        table = Table(title=f"codecdoctor checks ({len(infos)})", title_justify="left", header_style="bold")
        for column in ("ID", "scope", "severity", "title"):
            table.add_column(column)
        for info in infos:
            table.add_row(info.id, info.scope, info.severity.label, info.title)
        Console(highlight=False).print(table)

    @app.command("explain")
    def explain(check_id: Annotated[str, typer.Argument(metavar="ID", help="A check ID such as D103.")]) -> None:
        """Print what one check measures, why it matters and how to fix what it finds."""
        try:
            info = registry.get(check_id)
        except KeyError as exc:
            raise InputError(str(exc.args[0])) from None
        console = Console(highlight=False)
        console.print(f"[bold]{info.id}[/bold]  {escape(info.title)}  ({info.scope}, default severity {info.severity.label})", markup=True)
        for label, text in (("What it checks", info.what), ("Why it matters", info.why), ("How to fix", info.fix)):
            console.print(f"\n[bold]{label}[/bold]")
            console.print(text, markup=False)
