"""`codecdoctor train`: train the built-in codec with live checks.

The options are generated from `codecdoctor.train.TrainRequest` (the codec's TrainOptions plus
codecdoctor's own), so they are declared once; every flag is accepted in the user's original
underscore spelling (`--data_dir --checkpoint_dir --batch_size --num_epochs --learning_rate
--experiment_name`) and in the dashed form.
"""
from __future__ import annotations

from typing import Any

import typer

from codecdoctor.commands.common import (
    FailOn,
    FailOnOption,
    HtmlOption,
    JsonOption,
    Outputs,
    finish,
    options_from_dataclass,
    plain_values,
    with_signature,
)


def _train(*, html: str | None = None, json: str | None = None, fail_on: FailOn = FailOn.error, **options: Any) -> None:
    """Train the built-in codec (16 kHz, 6 kbps by default) with live per-batch checks."""
    from codecdoctor.commands.common import console_for
    from codecdoctor.report.live import TrainDisplay
    from codecdoctor.train import TrainRequest, is_main_process, train

    request = TrainRequest(**plain_values(options))
    console = console_for(json)
    report = train(request, progress_factory=lambda total, monitor: TrainDisplay(console, total, monitor))
    if not is_main_process():  # under torchrun only rank 0 renders and writes reports
        raise typer.Exit(0)
    finish(report, Outputs(html, json, fail_on), name="train", title="codecdoctor train", console=console)


def register(app: typer.Typer) -> None:
    import inspect

    from codecdoctor.train import TrainRequest

    outputs = [inspect.Parameter("html", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=HtmlOption),
               inspect.Parameter("json", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=JsonOption),
               inspect.Parameter("fail_on", inspect.Parameter.KEYWORD_ONLY, default=FailOn.error,
                                 annotation=FailOnOption)]

    def command(**kwargs: Any) -> None:
        _train(**kwargs)

    command.__doc__ = _train.__doc__
    app.command("train")(with_signature(command, options_from_dataclass(TrainRequest) + outputs))
