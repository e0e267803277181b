"""`codecdoctor compare REF EST`: a thin wrapper over `codecdoctor.compare.compare`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from codecdoctor.commands.common import FailOn, console_for, fail_on_option, finish, html_option, json_option


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def command(
        ref: Path = typer.Argument(..., metavar="REF", help="Reference (input) audio file or folder."),
        est: Path = typer.Argument(..., metavar="EST", help="Estimate (reconstruction) file or folder, paired by relative path."),
        sample_rate: Optional[int] = typer.Option(None, "--sample-rate", min=1, metavar="HZ",
                                                  help="Resample both sides to this rate first (default: the reference's rate)."),
        output_bound: Optional[float] = typer.Option(None, "--output-bound", metavar="B",
                                                     help="The decoder's output bound, e.g. 1.0 for tanh (R307); inferred when omitted."),
        max_lag_ms: Optional[float] = typer.Option(None, "--max-lag-ms", min=0.0, help="Lag search window (default 500 ms)."),
        no_plots: bool = typer.Option(False, "--no-plots", help="Skip waveform and spectrogram figures in the HTML."),
        no_progress: bool = typer.Option(False, "--no-progress", help="Do not show the progress bar."),
        html: Optional[Path] = html_option(),
        json: Optional[str] = json_option(),
        fail_on: FailOn = fail_on_option(),
    ) -> None:
        """Differential diagnosis of a reconstruction: two files or two folders of paired files (R300-R316)."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from codecdoctor.compare import compare

        console = console_for(json)
        with Progress(TextColumn("compare"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeRemainingColumn(), TextColumn("{task.description}"), console=console, transient=True,
                      disable=no_progress or not console.is_terminal) as bar:
            task = bar.add_task("", total=None)

            def on_pair(done: int, total: int, subject: str) -> None:
                bar.update(task, completed=done, total=total, description=subject[-40:])

            report = compare(ref, est, sample_rate=sample_rate, output_bound=output_bound, max_lag_ms=max_lag_ms,
                             plots=not no_plots, progress=on_pair)
        finish(report, html=html, json=json, fail_on=fail_on, name="compare", title=f"compare {ref} {est}")
