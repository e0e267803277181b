"""`codecdoctor probe CKPT`: audio-analyzer measurements of a codec."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from codecdoctor.commands.common import FailOn, fail_on_option, finish, html_option, json_option


def register(app: typer.Typer) -> None:
    @app.command("probe")
    def command(
        ckpt: Path = typer.Argument(..., help="Checkpoint of this codec, or any checkpoint with --model."),
        model: Optional[str] = typer.Option(None, "--model", metavar="PKG.MODULE:FACTORY",
                                            help="Build a foreign model: factory(state_dict) -> (module, adapter)."),
        unsafe_load: bool = typer.Option(False, "--unsafe-load",
                                         help="Execute the pickle (weights_only=False). Only for files you trust."),
        html: Optional[Path] = html_option(),
        json: Optional[str] = json_option(),
        fail_on: FailOn = fail_on_option(),
    ) -> None:
        """Level sweep (-40 ... +0.1 dBFS: slope, saturation), chirp/impulse (latency), sine sweep
        (magnitude response, -3 dB bandwidth), silence (idle level), asymmetric pulse (polarity)."""
        from codecdoctor.probe import probe

        report = probe(ckpt, model=model, unsafe_load=unsafe_load)
        finish(report, html=html, json=json, fail_on=fail_on, name="probe")
