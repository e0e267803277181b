"""`codecdoctor audit-data DIR`: a thin wrapper over `codecdoctor.audit.audit_data`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from codecdoctor.commands.common import FailOn, fail_on_option, finish, html_option, json_option


def register(app: typer.Typer) -> None:
    @app.command("audit-data")
    def command(
        directory: Path = typer.Argument(..., metavar="DIR", help="Folder of audio files (searched recursively)."),
        jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes (default: all cores)."),
        sample_rate: Optional[int] = typer.Option(None, "--sample-rate", min=1, metavar="HZ",
                                                  help="Expected sample rate (D108); default: the corpus majority."),
        shard: Optional[str] = typer.Option(None, "--shard", metavar="i/n",
                                            help="Audit every n-th entry starting at i; combine with `codecdoctor merge`."),
        sample: Optional[float] = typer.Option(None, "--sample", metavar="FRACTION",
                                               help="Audit only this fraction of the files (by path hash)."),
        silence_db: float = typer.Option(-60.0, "--silence-db", help="20 ms frames below this RMS (dBFS) are silence."),
        max_silence: float = typer.Option(0.30, "--max-silence", min=0.0, max=1.0,
                                          help="D107 fires above this fraction of silent frames."),
        long_file_s: float = typer.Option(600.0, "--long-file-s", min=0.0, help="D113 fires above this duration."),
        no_progress: bool = typer.Option(False, "--no-progress", help="Do not show the progress bar."),
        html: Optional[Path] = html_option(),
        json: Optional[str] = json_option(),
        fail_on: FailOn = fail_on_option(),
    ) -> None:
        """Stream every audio file under DIR once; per-file and corpus findings (D100-D115)."""
        from codecdoctor.audit import audit_data

        report = audit_data(directory, jobs=jobs, sample_rate=sample_rate, shard=shard, sample=sample,
                            silence_threshold_db=silence_db, max_silence_fraction=max_silence,
                            long_file_s=long_file_s, progress=not no_progress,
                            plots=html is None or str(html).lower() != "none")
        name = "audit-data" if not shard else f"audit-data.part{shard.replace('/', 'of')}"
        finish(report, html=html, json=json, fail_on=fail_on, name=name, title=f"audit-data {directory}")
