"""`codecdoctor demo`: the negative-SNR saga end to end on generated data, with an HTML index."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from codecdoctor.demo import DEMO_STEPS


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def command(
        out: Annotated[Path, typer.Option("--out", help="Folder for the corpus, checkpoints and reports.")] = Path(
            "reports/demo"),
        steps: Annotated[int, typer.Option("--steps", min=1, help="Training budget in optimizer steps: what the "
                                           "demo shows depends on it, not on the machine's speed.")] = DEMO_STEPS,
        minutes: Annotated[Optional[float], typer.Option("--minutes", min=0.05, help="Stop training after this many "
                                                         "minutes even if the steps are not done (the demo says so).")] = None,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    ) -> None:
        """The negative-SNR saga end to end: make a corpus, audit it, train briefly with live checks,
        check and probe the checkpoint, reproduce each fault and diagnose it; writes OUT/index.html.
        Exit 0 when every step was diagnosed as expected, 1 otherwise."""
        from rich.console import Console

        from codecdoctor.demo.run import DemoRunner

        runner = DemoRunner(out, Console(highlight=False), steps=steps, minutes=minutes, batch_size=batch_size)
        runner.run()
        raise typer.Exit(0 if all(step.passed for step in runner.steps) else 1)
