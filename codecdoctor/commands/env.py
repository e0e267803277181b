"""`codecdoctor env`: torch / torchaudio / CUDA / AMP compatibility."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from codecdoctor.commands.common import FailOn, fail_on_option, finish, html_option, json_option


def register(app: typer.Typer) -> None:
    @app.command("env")
    def env(
        html: Optional[Path] = html_option(),
        json: Optional[str] = json_option(),
        fail_on: FailOn = fail_on_option(),
    ) -> None:
        """Check torch / torchaudio / CUDA / AMP compatibility (E701-E703)."""
        from codecdoctor.env import check_environment
        from codecdoctor.report.sections import Table

        report = check_environment()
        env_m = report.measurements["environment"]
        report.sections.append(Table("Autocast probes", ["device", "dtype", "works", "detail"],
                                     [[r.device, r.dtype, "yes" if r.works else "no", r.detail] for r in env_m.autocast]))
        finish(report, html=html, json=json, fail_on=fail_on, name="env")
