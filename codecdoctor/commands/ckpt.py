"""`codecdoctor check-ckpt CKPT`: static checks on any checkpoint; dynamic ones when the model builds."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from codecdoctor.commands.common import FailOn, fail_on_option, finish, html_option, json_option


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
        ckpt: Path = typer.Argument(..., help="Checkpoint file (this codec's, a raw state_dict, Lightning, "
                                              "encodec, dac or vector-quantize-pytorch)."),
        data: Optional[Path] = typer.Option(None, "--data", metavar="DIR",
                                            help="Audio folder: reconstruct crops (R3xx), code histograms, data peak."),
        model: Optional[str] = typer.Option(None, "--model", metavar="PKG.MODULE:FACTORY",
                                            help="Build a foreign model: factory(state_dict) -> (module, adapter)."),
        unsafe_load: bool = typer.Option(False, "--unsafe-load",
                                         help="Execute the pickle (weights_only=False). Only for files you trust."),
        fft_sizes: Optional[str] = typer.Option(None, "--fft-sizes", metavar="N,N,...",
                                                help="FFT sizes of the spectral loss (S501-S504)."),
        amp: Optional[str] = typer.Option(None, "--amp", metavar="fp16|bf16|none",
                                          help="Precision the spectral loss runs in (default: from the checkpoint, "
                                               "else unknown)."),
        probes: bool = typer.Option(True, "--probes/--no-probes", help="Run the probes when the model builds."),
        crops: int = typer.Option(8, "--crops", min=1, help="Number of --data crops."),
        html: Optional[Path] = html_option(),
        json: Optional[str] = json_option(),
        fail_on: FailOn = fail_on_option(),
    ) -> None:
        """Static checks on any checkpoint (C2xx, Q4xx, S5xx); probes, reconstruction and codebook
        usage on data when the model can be built. Exit 2 when an unsafe pickle is refused."""
        from codecdoctor.check_ckpt import check_checkpoint
        from codecdoctor.commands.common import console_for, write_outputs
        from codecdoctor.core.errors import InputError
        from codecdoctor.report import terminal

        if amp is not None and amp.lower() not in ("fp16", "bf16", "none", "fp32", "float16", "bfloat16", "float32"):
            raise InputError(f"--amp must be fp16, bf16 or none, got {amp!r}")
        console = console_for(json)
        if unsafe_load:
            console.print("warning: --unsafe-load executes the checkpoint's pickle; only use it for files you trust",
                          style="bold yellow", markup=False)
        report = check_checkpoint(ckpt, data=data, model=model, unsafe_load=unsafe_load,
                                  fft_sizes=parse_fft_sizes(fft_sizes), amp=amp, probes=probes, n_crops=crops)
        if report.measurements.get("refused_unsafe"):
            # Refusing to run code is a usage outcome, not a finding threshold: exit 2 regardless of --fail-on.
            terminal.render(report, console)
            write_outputs(report, html=html, json=json, name="check-ckpt", console=console)
            raise typer.Exit(2)
        finish(report, html=html, json=json, fail_on=fail_on, name="check-ckpt")
