"""Reproduce each fault of the negative-SNR saga with the demo's trained codec.

Every fault is made the way the team made it, not painted onto a waveform afterwards:

- per-sample normalisation: the codec is fed `x / max|x|` (what their dataset did) and its output is
  compared with the raw reference, as their validation did;
- "removed the tanh": the same trained weights decoded without the final tanh;
- tanh versus data beyond +-1: the float file peaking at -1.0129 / +1.0108 through the tanh decoder;
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
    peak = float(np.max(np.abs(inp.clean))) or 1.0
    return inp.clean, _run_codec(inp.codec, inp.clean / peak)


def _unbounded_decoder(inp: SagaInputs) -> tuple[np.ndarray, np.ndarray]:
    # The team removed the tanh AND kept per-sample normalised inputs at full scale; the pre-tanh
    # activations of a decoder trained with tanh overshoot wherever tanh was saturating.
    peak = float(np.max(np.abs(inp.clean))) or 1.0
    with _without_tanh(inp.codec):
        return inp.clean, _run_codec(inp.codec, inp.clean / peak)


def _tanh_versus_peaks(inp: SagaInputs) -> tuple[np.ndarray, np.ndarray]:
    return inp.peaks, _run_codec(inp.codec, inp.peaks)


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
             "The team normalised every training example to unit peak while validation compared "
             "with the raw recordings, so the output's scale no longer matched the reference.",
             ["R302"], "saga", _per_sample_normalisation),
    SagaCase("unbounded_decoder", "Round 2: the decoder's tanh removed",
             "To 'let the output reach the peaks' the tanh was deleted; the same decoder then "
             "produced values far beyond the input's range.", ["R306"], "saga", _unbounded_decoder),
    SagaCase("tanh_vs_peaks", "Round 3: tanh restored, data peaking at 1.01",
             "With the tanh back, the data still peaked at -1.0129 / +1.0108: a bounded output can "
             "never reproduce those samples, which caps the reachable SNR.", ["R307"], "saga",
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
