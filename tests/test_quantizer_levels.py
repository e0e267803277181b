"""Q4xx from EMA buffers and code histograms: fault injection with known codebook states."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from codecdoctor.core.registry import run_checks
from codecdoctor.measure.quantizer import QuantizerMeasurements, level_stats_from_codes, quantizer_levels_from_state


def ema_level(prefix: str, counts: np.ndarray, *, dim: int = 8, initted: bool = True, seed: int = 0,
              scale: float = 1.0, dtype=torch.float32) -> dict:
    gen = torch.Generator().manual_seed(seed)
    size = counts.shape[-1]
    embed = torch.randn(size, dim, generator=gen) * scale
    return {f"{prefix}cluster_size": torch.as_tensor(counts, dtype=torch.float32).to(dtype),
            f"{prefix}embed": embed.to(dtype), f"{prefix}embed_avg": (embed * 2).to(dtype),
            f"{prefix}initted": torch.tensor(initted)}


def healthy_counts(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(4.0, 1.0, size)


def judge(state: dict):
    levels = quantizer_levels_from_state(state)
    run = run_checks("quantizer", QuantizerMeasurements(levels=levels))
    return levels, run


def test_healthy_rvq_reads_usage_and_raises_nothing():
    state = {}
    for level in range(4):
        state.update(ema_level(f"quantizer.levels.{level}.", healthy_counts(1024, level), seed=level,
                               scale=0.5 ** level))
    levels, run = judge(state)
    assert [lv.name for lv in levels] == [f"quantizer.levels.{i}" for i in range(4)]
    assert all(lv.codebook_size == 1024 and lv.used == 1024 and lv.initted for lv in levels)
    assert all(900 < lv.perplexity <= 1024 for lv in levels)
    assert run.findings == []
    assert {"Q401", "Q402", "Q403", "Q404", "Q405", "Q406"} <= set(run.checks_run)


def test_three_of_1024_codes_alive_is_a_collapse_q402():
    counts = np.zeros(1024)
    counts[[5, 77, 900]] = [120.0, 80.0, 40.0]
    state = ema_level("quantizer.levels.0.", counts)
    levels, run = judge(state)
    assert levels[0].used == 3 and levels[0].dead == 1021
    assert levels[0].perplexity == pytest.approx(np.exp(-sum(p * np.log(p) for p in [0.5, 1 / 3, 1 / 6])))
    q402 = [f for f in run.findings if f.id == "Q402"]
    assert q402 and q402[0].subject == "quantizer.levels.0" and q402[0].evidence["used"] == 3
    assert "Q401" not in [f.id for f in run.findings]  # collapse is reported once, as the worse finding
    assert "Q403" in [f.id for f in run.findings]      # the 1021 zero counts were never revived


def test_uninitialised_codebook_q404():
    state = ema_level("vq.layers.0._codebook.", np.zeros(64), initted=False)
    state["vq.layers.0._codebook.embed"].zero_()
    levels, run = judge(state)
    assert levels[0].initted is False and levels[0].all_zero
    assert [f.id for f in run.findings] == ["Q404"]


def test_half_of_codes_unused_is_low_utilization_q401():
    counts = healthy_counts(256)
    counts[100:] = 0.0
    _, run = judge(ema_level("rvq.0.", counts))
    found = [f for f in run.findings if f.id == "Q401"]
    assert found and found[0].evidence["used"] == 100


def test_level_with_one_code_or_tiny_codebook_adds_nothing_q405():
    constant = np.zeros(128)
    constant[3] = 50.0
    state = {**ema_level("q.layers.0.", healthy_counts(128)),
             **ema_level("q.layers.1.", healthy_counts(128, 1), scale=1e-4, seed=1),
             **ema_level("q.layers.2.", constant, seed=2)}
    _, run = judge(state)
    subjects = sorted(f.subject for f in run.findings if f.id == "Q405")
    assert subjects == ["q.layers.1", "q.layers.2"]


def test_half_precision_codebook_q406():
    _, run = judge(ema_level("q.", healthy_counts(64), dtype=torch.float16))
    assert [f.id for f in run.findings] == ["Q406"]


def test_vector_quantize_pytorch_heads_become_levels():
    counts = np.stack([healthy_counts(64, 0), np.r_[np.ones(2), np.zeros(62)]])
    state = {"_codebook.cluster_size": torch.tensor(counts, dtype=torch.float32),
             "_codebook.embed": torch.randn(2, 64, 4), "_codebook.initted": torch.tensor(True)}
    levels, run = judge(state)
    assert [lv.used for lv in levels] == [64, 2]
    assert levels[1].name.endswith("[head 1]")
    assert any(f.id == "Q402" for f in run.findings)


def test_code_histogram_stats_match_counts():
    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, 256, (4, 500)), np.full((4, 500), 7)], axis=1)  # [B, n_q, frames]
    levels = level_stats_from_codes(codes, 256)
    # 2000 uniform draws over 256 codes: all codes seen, plug-in perplexity within 5% of 256
    assert levels[0].used == len(np.unique(codes[:, 0])) == 256 and levels[0].perplexity > 240
    assert levels[1].used == 1 and levels[1].perplexity == pytest.approx(1.0)
    run = run_checks("quantizer", QuantizerMeasurements(levels=levels, source="codes"))
    assert {f.id for f in run.findings} == {"Q402", "Q405"}
    assert "Q403" not in run.checks_run  # staleness needs EMA buffers: not run on histograms


def test_too_few_frames_for_the_codebook_is_not_judged():
    codes = np.random.default_rng(0).integers(0, 1024, (1, 2, 100))  # 100 frames for 1024 codes
    run = run_checks("quantizer", QuantizerMeasurements(levels=level_stats_from_codes(codes, 1024), source="codes"))
    assert "Q401" not in run.checks_run and "Q402" not in run.checks_run
