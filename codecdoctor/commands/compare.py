"""`codecdoctor compare REF EST`: a thin wrapper over `codecdoctor.compare.compare`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from codecdoctor.commands.common import FailOn, FailOnOption, HtmlOption, JsonOption, Outputs, ProgressOption, finish


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def command(
        ref: Annotated[Path, typer.Argument(metavar="REF", help="Reference (input) audio file or folder.")],
        est: Annotated[Path, typer.Argument(metavar="EST",
                                            help="Estimate (reconstruction) file or folder, paired by relative path.")],
        sample_rate: Annotated[Optional[int], typer.Option(
            "--sample-rate", min=1, metavar="HZ",
            help="Resample both sides to this rate first (default: the reference's rate).")] = None,
        output_bound: Annotated[Optional[float], typer.Option(
            "--output-bound", metavar="B", help="The decoder's output bound, e.g. 1.0 for tanh (R307); inferred "
                                                "when omitted.")] = None,
        max_lag_ms: Annotated[Optional[float], typer.Option(
            "--max-lag-ms", min=0.0, help="Lag search window (default 500 ms).")] = None,
        quality: Annotated[bool, typer.Option(
            "--quality/--no-quality",
            help="STOI, ESTOI, PESQ and a multi-scale mel distance per pair (extra [quality]; null with a note "
                 "without it). They cost about ten times the diagnosis itself.")] = True,
        jobs: Annotated[Optional[int], typer.Option(
            "--jobs", "-j", min=1, help="Worker processes for a folder of pairs (default: the machine's cores).")] = None,
        progress: ProgressOption = True,
        html: HtmlOption = None,
        json: JsonOption = None,
        fail_on: FailOnOption = FailOn.error,
    ) -> None:
        """Differential diagnosis of a reconstruction: two files or two folders of paired files (R300-R317)."""
        from codecdoctor.commands.common import console_for
        from codecdoctor.compare import compare
        from codecdoctor.report.live import progress_bar

        console = console_for(json)
        with progress_bar("compare", console, enabled=progress) as on_progress:
            report = compare(ref, est, sample_rate=sample_rate, output_bound=output_bound, max_lag_ms=max_lag_ms,
                             quality=quality, jobs=jobs, progress=on_progress)
        finish(report, Outputs(html, json, fail_on), name="compare", title=f"compare {ref} {est}", console=console)
