"""The field trainers (tests/scripts/field) do what their README says, without codecdoctor: run as
`python` runs them (in this process, through `as_main`), a healthy run uses many codes per level and
its discriminator learns; each planted fault shows in the script's own printout (one code per level,
a discriminator stuck at its starting loss, a NaN loss)."""
from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest

from codecdoctor.core.as_main import as_main, resolve_target, run_main

FIELD = Path(__file__).resolve().parent / "scripts" / "field"
TRAINERS = {
    "encodec": ["train_encodec_style.py", "steps=6", "eval_every=3", "hydra.run.dir=run"],
    "dac": ["train_dac_style.py", "--steps", "6", "--val_freq", "3"],
    "hifigan": ["train_hifigan_style.py", "--steps", "6", "--validation_interval", "3", "--num_workers", "0"],
}
STEP = re.compile(r"^step (\d+) gen_loss (\S+) disc_loss (\S+)", re.M)
CODES = re.compile(r"codes_per_level \[([\d, ]+)\]")


def _train(folder: Path, trainer: str, fault: str, capfd) -> tuple[list[tuple[float, float]], list[list[int]]]:
    script, *args = TRAINERS[trainer]
    args += [f"fault={fault}"] if trainer == "encodec" else ["--fault", fault]
    target = resolve_target(script=str(folder / script))
    capfd.readouterr()
    with as_main(target, args) as namespace:
        run_main(target, namespace)
    out = capfd.readouterr().out
    losses = [(float(gen), float(disc)) for _, gen, disc in STEP.findall(out)]
    codes = [[int(c) for c in match.split(",")] for match in CODES.findall(out)]
    assert len(losses) == 6 and codes, out
    return losses, codes


@pytest.fixture
def field(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "field"
    shutil.copytree(FIELD, folder, ignore=shutil.ignore_patterns("__pycache__", "outputs"))
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_a_healthy_field_trainer_uses_many_codes_and_its_discriminator_learns(field, trainer, capfd):
    losses, codes = _train(field, trainer, "none", capfd)
    assert all(math.isfinite(g) and math.isfinite(d) for g, d in losses)
    assert min(codes[-1]) >= 8  # of 32 codes per level
    assert losses[-1][1] < losses[0][1] - 0.005  # the discriminator's loss leaves its starting value


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_the_codebook_blowup_fault_makes_every_level_emit_one_code_on_held_out_audio(field, trainer, capfd):
    _, codes = _train(field, trainer, "codebook_blowup", capfd)
    assert codes[-1] == [1, 1, 1, 1]


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_the_zero_grad_fault_leaves_the_discriminator_at_its_starting_loss(field, trainer, capfd):
    losses, _ = _train(field, trainer, "disc_zero_grad_after_step", capfd)
    first = losses[0][1]
    assert all(abs(d - first) < 0.005 * first for _, d in losses), losses  # a healthy one falls 0.3-14%


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_the_nan_weight_fault_makes_the_generator_loss_nan_from_the_first_step(field, trainer, capfd):
    losses, _ = _train(field, trainer, "nan_decoder_weight", capfd)
    assert all(math.isnan(g) for g, _ in losses)
