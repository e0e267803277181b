"""Reproduce each fault of the negative-SNR saga with the demo's trained codec.

The faults are made the way the team made them, as far as a few CPU minutes allow:

- per-sample normalisation: every 1 s training example was normalised to unit peak, so the model
  reproduces unit-peak audio; validation compared that output with the raw recordings. The model's
  output is emulated as its reconstruction of each 1 s example, normalised the same way;
- tanh versus data beyond +-1: the trained codec is trained on for 60 more steps (tanh kept) on the
  float file peaking at -1.0129 / +1.0108, as the team's model was; its bounded output cannot follow;
- "removed the tanh": that same model decoded without the final tanh. Chasing peaks a tanh cannot
  reach drove its pre-activations beyond +-1 (measured: 1.28 after 60 steps), so the output leaves
  the input's range;
- delay: the decoder output shifted by a misaligned padding of 240 samples (15 ms);
- polarity: an inverted output (a sign flip in a loss or a resynthesis step);
- and the healthy control: the trained codec on clean speech, unchanged.

Each case writes `ref.wav` / `est.wav` (float32, so values beyond +-1 survive) for `compare`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf
import torch

DELAY_SAMPLES = 240


@dataclass
class SagaCase:
    key: str
    title: str
    story: str
    expected_ids: list[str]
    kind: str  # "saga" or "healthy"
    make: Callable[["SagaInputs"], tuple[np.ndarray, np.ndarray]]


@dataclass
class SagaInputs:
    codec: torch.nn.Module
    clean: np.ndarray  # reference speech (float32, mono)
    peaks: np.ndarray  # the file peaking at 1.01
    sample_rate: int
    peaks_codec: torch.nn.Module | None = None  # the codec trained on further on `peaks` (tanh kept)


def train_on(codec: torch.nn.Module, audio: np.ndarray, steps: int = 60, batch: int = 8,
             crop_samples: int = 8000, seed: int = 0) -> torch.nn.Module:
    """A copy of `codec` trained `steps` more steps on random crops of `audio` with the codec's own
    reconstruction loss (what the team's run did with its data peaking at 1.01)."""
    import copy

    from codecdoctor_model.losses import ReconstructionLoss

    tuned = copy.deepcopy(codec).train()
    loss_fn = ReconstructionLoss(tuned.config)
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    source = torch.from_numpy(np.ascontiguousarray(audio, np.float32))
    for _ in range(steps):
        starts = torch.randint(0, max(1, source.numel() - crop_samples), (batch,), generator=generator)
        x = torch.stack([source[int(i):int(i) + crop_samples] for i in starts]).unsqueeze(1)
        out = tuned(x)
        losses = loss_fn(out.audio, x, out.commit_loss)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(tuned.parameters(), 1.0)
        optimizer.step()
    return tuned.eval()


def _run_codec(codec: torch.nn.Module, audio: np.ndarray) -> np.ndarray:
    """Encode and decode mono audio in one go (the demo's clips are short), float32 out."""
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(audio, np.float32)).view(1, 1, -1)
        y = codec(x).audio
    return y.view(-1).float().numpy()


@contextlib.contextmanager
def _without_tanh(codec: torch.nn.Module) -> Iterator[None]:
    """Decode with the output bound removed, keeping the weights: what deleting the tanh line did."""
    decoder = codec.decoder
    saved = decoder.output_bound
    decoder.output_bound = "none"
    try:
        yield
    finally:
        decoder.output_bound = saved


def _healthy(inp: SagaInputs) -> tuple[np.ndarray, np.ndarray]:
    return inp.clean, _run_codec(inp.codec, inp.clean)


def _per_sample_normalisation(inp: SagaInputs) -> tuple[np.ndarray, np.ndarray]:
    example = inp.sample_rate  # the training examples were 1 s crops, each normalised to unit peak
    pieces = []
    for start in range(0, inp.clean.size, example):
        chunk = inp.clean[start:start + example]
        peak = float(np.max(np.abs(chunk))) or 1.0
        pieces.append(_run_codec(inp.codec, chunk) / peak)
    return inp.clean, np.concatenate(pieces).astype(np.float32)


def _unbounded_decoder(inp: SagaInputs) -> tuple[np.ndarray, np.ndarray]:
    codec = inp.peaks_codec or inp.codec
    with _without_tanh(codec):
        return inp.peaks, _run_codec(codec, inp.peaks)


def _tanh_versus_peaks(inp: SagaInputs) -> tuple[np.ndarray, np.ndarray]:
    return inp.peaks, _run_codec(inp.peaks_codec or inp.codec, inp.peaks)


def _delay(inp: SagaInputs) -> tuple[np.ndarray, np.ndarray]:
    est = _run_codec(inp.codec, inp.clean)
    shifted = np.concatenate([np.zeros(DELAY_SAMPLES, np.float32), est[:-DELAY_SAMPLES]])
    return inp.clean, shifted


def _polarity(inp: SagaInputs) -> tuple[np.ndarray, np.ndarray]:
    return inp.clean, -_run_codec(inp.codec, inp.clean)


CASES: tuple[SagaCase, ...] = (
    SagaCase("healthy", "Healthy control: the trained codec on clean speech",
             "The codec trained in this demo reconstructs clean speech at its own scale. Low SNR is "
             "expected after a few minutes of CPU training; no fault should be named.", [], "healthy",
             _healthy),
    SagaCase("per_sample_normalisation", "Round 1: per-sample normalisation",
             "The team normalised every 1 s training example to unit peak, so the model reproduces "
             "unit-peak audio, while validation compared its output with the raw recordings.",
             ["R302"], "saga", _per_sample_normalisation),
    SagaCase("unbounded_decoder", "Round 2: the decoder's tanh removed",
             "To 'let the output reach the peaks' the tanh was deleted. The model had been trained "
             "with tanh on data peaking at 1.01 (60 more steps here), which pushed its pre-activations "
             "beyond +-1; without the tanh its output leaves the input's range.", ["R306"], "saga",
             _unbounded_decoder),
    SagaCase("tanh_vs_peaks", "Round 3: tanh restored, data peaking at 1.01",
             "With the tanh back, the data still peaked at -1.0129 / +1.0108: a bounded output can "
             "never reproduce those samples, which caps the reachable SNR (same model, trained on "
             "that file with its tanh).", ["R307"], "saga",
             _tanh_versus_peaks),
    SagaCase("delay", f"Misaligned output ({DELAY_SAMPLES} samples late)",
             "A padding mismatch delays the decoder output; sample-wise SNR then compares speech "
             "with a shifted copy of itself.", ["R304"], "saga", _delay),
    SagaCase("polarity", "Inverted output",
             "A sign flip somewhere in the pipeline: perfect magnitude, opposite sign, and an SNR "
             "near -6 dB however good the codec is.", ["R303"], "saga", _polarity),
)


def write_pair(folder: Path, ref: np.ndarray, est: np.ndarray, sample_rate: int) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ref_path, est_path = folder / "ref.wav", folder / "est.wav"
    sf.write(str(ref_path), np.asarray(ref, np.float32), sample_rate, subtype="FLOAT")
    sf.write(str(est_path), np.asarray(est, np.float32), sample_rate, subtype="FLOAT")
    return ref_path, est_path
