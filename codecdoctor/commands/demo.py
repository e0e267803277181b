"""`codecdoctor demo`: the negative-SNR saga end to end on generated data, with an HTML index."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def command(
        out: Annotated[Path, typer.Option("--out", help="Folder for the corpus, checkpoints and reports.")] = Path(
            "reports/demo"),
        minutes: Annotated[float, typer.Option("--minutes", min=0.05, help="Training budget in minutes (CPU).")] = 2.5,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    ) -> None:
        """The negative-SNR saga end to end: make a corpus, audit it, train briefly with live checks,
        check and probe the checkpoint, reproduce each fault and diagnose it; writes OUT/index.html.
        Exit 0 when every step was diagnosed as expected, 1 otherwise."""
        from rich.console import Console

        from codecdoctor.demo.run import DemoRunner

        runner = DemoRunner(out, minutes, Console(highlight=False), batch_size=batch_size)
        runner.run()
        raise typer.Exit(0 if all(step.passed for step in runner.steps) else 1)
