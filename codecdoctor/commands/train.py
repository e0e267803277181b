"""`codecdoctor train`: train the built-in codec with live checks.

Accepts the user's original flags exactly (`--data_dir --checkpoint_dir --batch_size --num_epochs
--learning_rate --experiment_name`) and their dashed forms.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from codecdoctor.commands.common import FailOn, console_for, fail_on_option, finish, html_option, json_option


def register(app: typer.Typer) -> None:
    @app.command("train")
    def command(
        data_dir: Path = typer.Option(..., "--data_dir", "--data-dir", help="Folder of audio files (searched recursively)."),
        checkpoint_dir: Path = typer.Option(Path("checkpoints"), "--checkpoint_dir", "--checkpoint-dir",
                                            help="Checkpoints go to CHECKPOINT_DIR/EXPERIMENT_NAME/{last,best}.pt."),
        batch_size: int = typer.Option(16, "--batch_size", "--batch-size"),
        num_epochs: int = typer.Option(100, "--num_epochs", "--num-epochs"),
        learning_rate: float = typer.Option(1e-3, "--learning_rate", "--learning-rate", help="Peak learning rate (AdamW)."),
        experiment_name: str = typer.Option("codec", "--experiment_name", "--experiment-name"),
        resume: bool = typer.Option(False, "--resume", help="Continue from CHECKPOINT_DIR/EXPERIMENT_NAME/last.pt."),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", "--max_steps", help="Stop after this many steps in total."),
        max_minutes: Optional[float] = typer.Option(None, "--max-minutes", "--max_minutes", help="Stop after this many minutes of this run."),
        amp: Optional[str] = typer.Option(None, "--amp", help="Mixed precision: bf16 or fp16 (fp16 needs CUDA)."),
        adversarial: bool = typer.Option(False, "--adversarial", help="Add the multi-scale STFT discriminator."),
        sample_rate: int = typer.Option(16000, "--sample-rate", "--sample_rate"),
        segment_seconds: float = typer.Option(1.0, "--segment-seconds", "--segment_seconds", help="Training crop length."),
        strict_rate: bool = typer.Option(False, "--strict-rate", help="Refuse files at another sample rate instead of resampling."),
        config: str = typer.Option("default", "--config", help="Codec size preset: default or tiny."),
        codebooks: Optional[int] = typer.Option(None, "--codebooks", help="Number of RVQ codebooks."),
        codebook_size: Optional[int] = typer.Option(None, "--codebook-size"),
        base_channels: Optional[int] = typer.Option(None, "--base-channels"),
        latent_dim: Optional[int] = typer.Option(None, "--latent-dim"),
        output_bound: Optional[str] = typer.Option(None, "--output-bound", help="tanh or none."),
        checks: str = typer.Option("nonfinite", "--checks",
                                   help="Live checks: nonfinite (stop on NaN/Inf, report drift; default), "
                                        "strict (stop on any error finding), warn (never stop), off."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
        num_workers: int = typer.Option(0, "--num-workers", "--num_workers"),
        save_every: Optional[int] = typer.Option(None, "--save-every", "--save_every", help="Also write last.pt every N steps."),
        steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch", help="Default: training audio / (crop × batch)."),
        seed: int = typer.Option(0, "--seed"),
        html: Optional[Path] = html_option(),
        json: Optional[str] = json_option(),
        fail_on: FailOn = fail_on_option(),
    ) -> None:
        """Train the built-in codec (16 kHz, 4 kbps by default) with live per-batch checks."""
        from codecdoctor.report.live import TrainDisplay
        from codecdoctor.train import TrainRequest, is_main_process, train

        request = TrainRequest(
            data_dir=str(data_dir), checkpoint_dir=str(checkpoint_dir), experiment_name=experiment_name,
            batch_size=batch_size, num_epochs=num_epochs, learning_rate=learning_rate, resume=resume,
            max_steps=max_steps, max_minutes=max_minutes, amp=amp, adversarial=adversarial, sample_rate=sample_rate,
            segment_seconds=segment_seconds, strict_rate=strict_rate, config=config,
            config_overrides={"n_codebooks": codebooks, "codebook_size": codebook_size, "base_channels": base_channels,
                              "latent_dim": latent_dim, "output_bound": output_bound},
            checks=checks, device=device, num_workers=num_workers, save_every=save_every,
            steps_per_epoch=steps_per_epoch, seed=seed)
        console = console_for(json)
        report = train(request, progress_factory=lambda total, monitor: TrainDisplay(console, total, monitor))
        if not is_main_process():  # under torchrun only rank 0 renders and writes reports
            raise typer.Exit(0)
        fatal = report.measurements.get("fatal_error")
        if fatal:  # the run could not go on (a checkpoint write failed): keep its report, then exit 2
            from codecdoctor.commands.common import write_outputs
            from codecdoctor.core.errors import InputError
            from codecdoctor.report import terminal

            terminal.render(report, console)
            write_outputs(report, html=html, json=json, name="train", console=console, title="codecdoctor train")
            raise InputError(fatal)
        finish(report, html=html, json=json, fail_on=fail_on, name="train", title="codecdoctor train")
