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


def catalog_markdown(infos: list) -> str:
    """docs/CHECKS.md: every check's ID, scope, severity and its What / Why / Fix, from the docstrings."""
    lines = ["# Check catalog", "",
             "Generated from the check docstrings by `codecdoctor checks --markdown` (a test keeps this file in "
             "sync). IDs are stable; `codecdoctor explain ID` prints one entry.", ""]
    for scope in registry.SCOPES:
        group = [info for info in infos if info.scope == scope]
        if not group:
            continue
        lines += [f"## {scope}", "", "| ID | severity | title |", "|---|---|---|"]
        lines += [f"| [{i.id}](#{i.id.lower()}) | {i.severity.label} | {i.title} |" for i in group]
        lines.append("")
        for info in group:
            lines += [f"### {info.id}", "", f"**{info.title}** ({info.scope}, default severity {info.severity.label})",
                      "", f"- **What:** {info.what}", f"- **Why:** {info.why}", f"- **Fix:** {info.fix}", ""]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("checks")
    def checks(
        scope: Annotated[Optional[Scope], typer.Option("--scope", help="Only checks of this scope.")] = None,
        markdown: Annotated[bool, typer.Option("--markdown", help="Print the full catalog (what / why / fix) as "
                                                                  "Markdown, as in docs/CHECKS.md.")] = False,
    ) -> None:
        """List every check with its stable ID, scope, default severity and title."""
        infos = registry.all_checks(scope.value if scope else None)
        if markdown:
            typer.echo(catalog_markdown(infos), nl=False)
            return
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
        console.print(f"[bold]{info.id}[/bold]  {escape(info.title)}  "
                      f"({info.scope}, default severity {info.severity.label})", markup=True)
        for label, text in (("What it checks", info.what), ("Why it matters", info.why), ("How to fix", info.fix)):
            console.print(f"\n[bold]{label}[/bold]")
            console.print(text, markup=False)
