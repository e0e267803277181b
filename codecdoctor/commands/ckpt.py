"""`codecdoctor check-ckpt CKPT`: static checks on any checkpoint; dynamic ones when the model builds."""
from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from codecdoctor.commands.common import FailOn, FailOnOption, HtmlOption, JsonOption, Outputs, finish


class Precision(str, enum.Enum):
    fp16 = "fp16"
    bf16 = "bf16"
    none = "none"


ModelOption = Annotated[Optional[str], typer.Option(
    "--model", metavar="SPEC", help="Build the model: path/to/file.py:Name or pkg.module:Name, Name an nn.Module "
                                    "class or a factory (returning a module, or (module, adapter)).")]
ModelKwargsOption = Annotated[Optional[str], typer.Option(
    "--model-kwargs", metavar="JSON", help="Constructor arguments for a --model class, e.g. '{\"channels\": 32}' "
                                           "(default: the checkpoint's saved config/args that match its signature).")]
UnsafeLoadOption = Annotated[bool, typer.Option(
    "--unsafe-load", help="Execute the pickle (weights_only=False). Only for files you trust.")]


def parse_fft_sizes(text: str | None) -> list[int] | None:
    from codecdoctor.core.errors import InputError

    if not text:
        return None
    try:
        sizes = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise InputError(f"--fft-sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or any(n < 2 for n in sizes):
        raise InputError(f"--fft-sizes must be integers >= 2, got {text!r}")
    return sizes


def register(app: typer.Typer) -> None:
    @app.command("check-ckpt")
    def command(
        ckpt: Annotated[Path, typer.Argument(help="Checkpoint file or a folder of them (this codec's, a raw "
                                                  "state_dict, a training dict, Lightning, encodec, dac or "
                                                  "vector-quantize-pytorch).")],
        data: Annotated[Optional[Path], typer.Option(
            "--data", metavar="DIR", help="Audio folder: reconstruct crops (R3xx), code histograms, data peak.")] = None,
        model: ModelOption = None,
        model_kwargs: ModelKwargsOption = None,
        unsafe_load: UnsafeLoadOption = False,
        fft_sizes: Annotated[Optional[str], typer.Option(
            "--fft-sizes", metavar="N,N,...", help="FFT sizes of the spectral loss (S501-S504).")] = None,
        amp: Annotated[Optional[Precision], typer.Option(
            "--amp", case_sensitive=False, help="Precision the spectral loss runs in (default: from the checkpoint).")] = None,
        probes: Annotated[bool, typer.Option("--probes/--no-probes", help="Run the probes when the model builds.")] = True,
        crops: Annotated[int, typer.Option("--crops", min=1, help="Number of --data crops.")] = 8,
        html: HtmlOption = None,
        json: JsonOption = None,
        fail_on: FailOnOption = FailOn.error,
    ) -> None:
        """Static checks on any checkpoint (C2xx, Q4xx, S5xx); probes, reconstruction and codebook
        usage on data when the model can be built. Exit 2 when the checkpoint cannot be loaded."""
        from codecdoctor.check_ckpt import check_checkpoint
        from codecdoctor.commands.common import console_for

        console = console_for(json)
        if unsafe_load:
            console.print("warning: --unsafe-load executes the checkpoint's pickle; only use it for files you trust",
                          style="bold yellow", markup=False)
        report = check_checkpoint(ckpt, data=data, model=model, model_kwargs=model_kwargs, unsafe_load=unsafe_load,
                                  fft_sizes=parse_fft_sizes(fft_sizes), amp=amp.value if amp else None,
                                  probes=probes, n_crops=crops)
        if report.measurements.get("refused_unsafe") and not report.fatal:
            # Refusing to run code is a usage outcome, not a finding threshold: exit 2 whatever --fail-on says.
            report.fatal = f"{ckpt}: refused to execute the checkpoint's pickle (see C200; --unsafe-load runs it)"
        finish(report, Outputs(html, json, fail_on), name="check-ckpt", console=console)
