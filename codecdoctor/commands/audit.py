"""`codecdoctor audit-data DIR`: a thin wrapper over `codecdoctor.audit.audit_data`."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from codecdoctor.commands.common import FailOn, FailOnOption, HtmlOption, JsonOption, Outputs, ProgressOption, finish


def register(app: typer.Typer) -> None:
    @app.command("audit-data")
    def command(
        directory: Annotated[str, typer.Argument(
            metavar="DIR", help="Folder of audio files (searched recursively), a .tar shard, a .parquet file, "
            "a lhotse manifest, or an s3:// gs:// hf:// URL.")],
        jobs: Annotated[Optional[int], typer.Option(
            "--jobs", "-j", min=1, help="Worker processes (default: all cores); threads for the parts of a "
            "single long file when 2 or fewer.")] = None,
        sample_rate: Annotated[Optional[int], typer.Option(
            "--sample-rate", min=1, metavar="HZ", help="Expected sample rate (D108); default: the corpus majority.")] = None,
        shard: Annotated[Optional[str], typer.Option(
            "--shard", metavar="i/n", help="Audit every n-th entry starting at i; combine with `codecdoctor merge`.")] = None,
        sample: Annotated[Optional[float], typer.Option(
            "--sample", metavar="FRACTION", help="Audit only this fraction of the files (by path hash).")] = None,
        silence_db: Annotated[float, typer.Option(
            "--silence-db", help="20 ms frames below this RMS (dBFS) are silence.")] = -60.0,
        max_silence: Annotated[float, typer.Option(
            "--max-silence", min=0.0, max=1.0, help="D107 fires above this fraction of silent frames.")] = 0.30,
        long_file_s: Annotated[float, typer.Option("--long-file-s", min=0.0,
                                                   help="D113 fires above this duration.")] = 600.0,
        scheduler: Annotated[Optional[str], typer.Option(
            "--scheduler", metavar="ADDRESS", help="Run on a Dask cluster: tcp://host:8786 or a scheduler file "
            "(needs the 'distributed' extra: dask).")] = None,
        storage_options: Annotated[Optional[str], typer.Option(
            "--storage-options", metavar="JSON", help="fsspec options for s3:// gs:// hf:// (endpoint, credentials); "
            "never written to a report.")] = None,
        progress: ProgressOption = True,
        html: HtmlOption = None,
        json: JsonOption = None,
        fail_on: FailOnOption = FailOn.error,
    ) -> None:
        """Stream every audio file under DIR once; per-file and corpus findings (D100-D116)."""
        from codecdoctor.audit import audit_data
        from codecdoctor.commands.common import console_for
        from codecdoctor.measure.audio.sources import parse_storage_options, public_url
        from codecdoctor.report.live import progress_bar

        outputs = Outputs(html, json, fail_on)
        console = console_for(json)
        options = parse_storage_options(storage_options)
        client = None
        if scheduler:
            from codecdoctor.distributed import connect

            client = connect(scheduler)
        try:
            with progress_bar("audit", console, enabled=progress) as on_progress:
                report = audit_data(directory, jobs=jobs, sample_rate=sample_rate, shard=shard, sample=sample,
                                    silence_threshold_db=silence_db, max_silence_fraction=max_silence,
                                    long_file_s=long_file_s, progress=on_progress, storage_options=options,
                                    client=client)
        finally:
            if client is not None:
                client.close()
        name = "audit-data" if not shard else f"audit-data.part{shard.replace('/', 'of')}"
        finish(report, outputs, name=name, title=f"audit-data {public_url(directory)}", console=console)
