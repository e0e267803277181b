"""`codecdoctor probe CKPT`: audio-analyzer measurements of a codec."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codecdoctor.commands.ckpt import ModelKwargsOption, ModelOption, UnsafeLoadOption
from codecdoctor.commands.common import FailOn, FailOnOption, HtmlOption, JsonOption, Outputs, finish


def register(app: typer.Typer) -> None:
    @app.command("probe")
    def command(
        ckpt: Annotated[Path, typer.Argument(help="Checkpoint of this codec, or any checkpoint with --model.")],
        model: ModelOption = None,
        model_kwargs: ModelKwargsOption = None,
        unsafe_load: UnsafeLoadOption = False,
        html: HtmlOption = None,
        json: JsonOption = None,
        fail_on: FailOnOption = FailOn.error,
    ) -> None:
        """Level sweep (-40 ... +0.1 dBFS: slope, saturation), chirp/impulse (latency), sine sweep
        (magnitude response, -3 dB bandwidth), silence (idle level), asymmetric pulse (polarity)."""
        from codecdoctor.probe import probe

        finish(probe(ckpt, model=model, model_kwargs=model_kwargs, unsafe_load=unsafe_load), Outputs(html, json, fail_on),
               name="probe")
