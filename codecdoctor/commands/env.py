"""`codecdoctor env`: torch / torchaudio / CUDA / AMP compatibility."""
from __future__ import annotations

import typer

from codecdoctor.commands.common import FailOn, FailOnOption, HtmlOption, JsonOption, Outputs, finish


def register(app: typer.Typer) -> None:
    @app.command("env")
    def env(
        html: HtmlOption = None,
        json: JsonOption = None,
        fail_on: FailOnOption = FailOn.error,
    ) -> None:
        """Check torch / torchaudio / CUDA / AMP compatibility (E701-E703)."""
        from codecdoctor.env import check_environment

        finish(check_environment(), Outputs(html, json, fail_on), name="env")
