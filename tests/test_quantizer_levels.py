"""Q4xx from EMA buffers and code histograms: fault injection with known codebook states."""
from __future__ import annotations

import math

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
    # a consistent EMA state: embed = embed_avg / cluster_size (what one EMA step leaves)
    embed_avg = embed * torch.as_tensor(counts, dtype=torch.float32).reshape(-1, 1)
    return {f"{prefix}cluster_size": torch.as_tensor(counts, dtype=torch.float32).to(dtype),
            f"{prefix}embed": embed.to(dtype), f"{prefix}embed_avg": embed_avg.to(dtype),
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


def test_codebook_rms_of_a_value_whose_square_overflows_is_finite_and_exact():
    state = ema_level("q.layers.0.", healthy_counts(16), seed=3)
    embed = state["q.layers.0.embed"]
    embed.view(-1)[5] = 3.0e38  # a flipped exponent bit: its float32 square is inf
    levels = quantizer_levels_from_state(state)
    expected = math.sqrt(float((embed.double() ** 2).mean()))
    assert math.isfinite(levels[0].codebook_rms)
    assert levels[0].codebook_rms == pytest.approx(expected, rel=1e-9)


def test_q405_with_a_corrupted_first_level_neither_raises_nor_states_a_db_ratio():
    state = {**ema_level("q.layers.0.", healthy_counts(128)),
             **ema_level("q.layers.1.", healthy_counts(128, 1), scale=1e-4, seed=1)}
    levels = quantizer_levels_from_state(state)
    for first_rms in (math.inf, math.nan, 0.0):
        levels[0].codebook_rms = first_rms
        run = run_checks("quantizer", QuantizerMeasurements(levels=levels))
        assert run.notes == [] and "Q405" in run.checks_run
        assert not [f for f in run.findings if f.id == "Q405" and "rms_ratio_db" in f.evidence]
    levels[0].codebook_rms = 1.0  # the same level 1 against a sound level 0: -40 dB and more below
    run = run_checks("quantizer", QuantizerMeasurements(levels=levels))
    q405 = [f for f in run.findings if f.id == "Q405"]
    assert q405 and q405[0].evidence["rms_ratio_db"] < -40.0


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


def test_short_clip_of_a_healthy_codebook_is_judged_against_a_uniform_draw_not_collapse():
    # 100 frames for 1024 codes: at most ~100 distinct codes can appear. A uniform draw uses
    # 1024(1 - (1 - 1/1024)^100) = 95.3 of them; a healthy level shows about that, and is no Q401.
    codes = np.random.default_rng(0).integers(0, 1024, (1, 2, 100))
    levels = level_stats_from_codes(codes, 1024)
    assert levels[0].expected_used == pytest.approx(1024 * (1 - (1 - 1 / 1024) ** 100), rel=1e-9)
    assert levels[0].expected_used == pytest.approx(95.3, abs=0.1)
    run = run_checks("quantizer", QuantizerMeasurements(levels=levels, source="codes"))
    assert "Q401" in run.checks_run and run.findings == []
    assert "Q402" not in run.checks_run  # perplexity of 100 tokens cannot reach K/16 = 64 reliably


def test_a_level_emitting_two_codes_on_150_frames_is_q402_before_it_has_k_frames():
    # The blown-up codebook's case: 1024 codes, a first batch of ~150 frames. A uniform draw of 150
    # tokens shows ~140 distinct codes; a level that emits 2 carries at most 1 bit of its 10.
    rng = np.random.default_rng(2)
    codes = np.stack([rng.integers(0, 1024, (1, 150)), rng.integers(0, 2, (1, 150)), rng.integers(0, 3, (1, 150))],
                     axis=1)
    levels = level_stats_from_codes(codes, 1024)
    run = run_checks("quantizer", QuantizerMeasurements(levels=levels, source="codes"))
    q402 = [f for f in run.findings if f.id == "Q402"]
    assert [f.subject for f in q402] == ["level 1"] and q402[0].evidence["used"] == 2
    assert "2 distinct codes in 150 frames measured on data" in q402[0].message
    # the 3-code level is Q401 (3 of the ~140 a uniform draw uses), the 2-code one only Q402
    assert [f.subject for f in run.findings if f.id == "Q401"] == ["level 2"]


def test_two_codes_on_fewer_than_100_frames_or_in_a_tiny_codebook_is_no_q402():
    few_frames = level_stats_from_codes(np.zeros((1, 1, 99), dtype=np.int64), 1024)
    tiny = level_stats_from_codes(np.random.default_rng(0).integers(0, 2, (1, 1, 400)), 4)
    for levels in (few_frames, tiny):
        run = run_checks("quantizer", QuantizerMeasurements(levels=levels, source="codes"))
        assert not [f for f in run.findings if f.id == "Q402"]


def test_short_clip_using_few_codes_is_q401_with_entropy():
    rng = np.random.default_rng(1)
    # 200 tokens: a uniform draw would use 181.8 of 1024; this level uses 40 codes (entropy ~5.3 bits)
    codes = rng.integers(0, 40, (1, 1, 200))
    levels = level_stats_from_codes(codes, 1024)
    run = run_checks("quantizer", QuantizerMeasurements(levels=levels, source="codes"))
    found = [f for f in run.findings if f.id == "Q401"]
    assert len(found) == 1 and found[0].evidence["expected_used"] == pytest.approx(181.76, abs=0.01)
    assert found[0].evidence["used"] == len(np.unique(codes)) and found[0].evidence["used_of_expected"] < 0.25
    assert 4.5 < found[0].evidence["entropy_bits"] < math.log2(40) + 1e-9
    assert levels[0].to_dict()["entropy_bits"] == pytest.approx(found[0].evidence["entropy_bits"])


def _ema_state(prefix: str, counts: np.ndarray, *, dim: int = 8, seed: int = 0) -> dict:
    """A consistent EMA level with known counts: embed = embed_avg / cluster_size."""
    embed = torch.randn(counts.size, dim, generator=torch.Generator().manual_seed(seed))
    counts_t = torch.as_tensor(counts, dtype=torch.float32)
    return {f"{prefix}cluster_size": counts_t, f"{prefix}embed": embed.clone(),
            f"{prefix}embed_avg": embed * counts_t[:, None], f"{prefix}inited": torch.tensor([1.0])}


def test_dead_code_threshold_above_tokens_per_code_is_q407():
    # WavTokenizer's case: K = 4096 codes, threshold_ema_dead_code = 2, a batch of 8 × 75 frames =
    # 600 tokens: the counts average 0.146 per code, far below 2; every code is reset every step.
    counts = np.random.default_rng(0).dirichlet(np.ones(4096)) * 600
    levels = quantizer_levels_from_state(_ema_state("vq.layers.0._codebook.", counts))
    q = QuantizerMeasurements(levels=levels, dead_code_threshold=2.0, threshold_source="threshold_ema_dead_code")
    found = [f for f in run_checks("quantizer", q).findings if f.id == "Q407"]
    assert len(found) == 1 and found[0].subject == "vq.layers.0._codebook"
    assert found[0].evidence["tokens_needed"] == pytest.approx(8192) and found[0].evidence["total_count"] == \
        pytest.approx(600, rel=1e-4)


def test_reachable_dead_code_threshold_is_no_q407():
    # the same codebook with batches of 64 × 150 frames = 9600 tokens: 2.3 per code > 2
    counts = np.random.default_rng(0).dirichlet(np.ones(4096) * 50) * 9600
    q = QuantizerMeasurements(levels=quantizer_levels_from_state(_ema_state("vq.", counts)), dead_code_threshold=2.0,
                              threshold_source="config")
    run = run_checks("quantizer", q)
    assert "Q407" in run.checks_run and not [f for f in run.findings if f.id == "Q407"]
    # a relative rule below the uniform share can always be met; one at 1x the share cannot
    assert not run_checks("quantizer", QuantizerMeasurements(levels=q.levels, dead_code_fraction=0.1,
                                                             threshold_source="x")).findings
    assert [f.id for f in run_checks("quantizer", QuantizerMeasurements(levels=q.levels, dead_code_fraction=1.5,
                                                                        threshold_source="x")).findings] == ["Q407"]


def test_revival_that_replaced_only_embed_is_q408():
    counts = np.random.default_rng(2).gamma(4.0, 1.0, 256) + 1.0
    state = _ema_state("quantizer.levels.0.", counts)
    # a revival that wrote 5 new vectors into `embed` and set their counts to the uniform share,
    # but left `embed_avg` stale: the next EMA step pulls them straight back
    revived = [3, 40, 41, 100, 200]
    state["quantizer.levels.0.embed"][revived] = torch.randn(5, 8, generator=torch.Generator().manual_seed(9))
    state["quantizer.levels.0.cluster_size"][revived] = float(counts.mean())
    levels = quantizer_levels_from_state(state)
    found = [f for f in run_checks("quantizer", QuantizerMeasurements(levels=levels)).findings if f.id == "Q408"]
    assert len(found) == 1 and found[0].evidence["inconsistent_codes"] == 5
    assert found[0].evidence["live_codes"] == 256


def test_consistent_ema_state_with_laplace_smoothing_is_no_q408():
    counts = np.random.default_rng(3).gamma(4.0, 1.0, 512)
    state = _ema_state("q.", counts)
    # what EnCodec / this codec store: embed = embed_avg / ((n + eps) / (N + K eps) · N)
    total = counts.sum()
    smoothed = (counts + 1e-5) / (total + 512 * 1e-5) * total
    state["q.embed"] = state["q.embed_avg"] / torch.as_tensor(smoothed, dtype=torch.float32)[:, None]
    run = run_checks("quantizer", QuantizerMeasurements(levels=quantizer_levels_from_state(state)))
    assert "Q408" in run.checks_run and run.findings == []


def test_ema_that_never_ran_is_not_judged_by_q408():
    # vector-quantize-pytorch without EMA updates keeps cluster_size at ones and embed_avg at the
    # initial codebook while `embed` is trained by gradients: not an inconsistency it could undo
    state = _ema_state("_codebook.", np.ones(64))
    state["_codebook.embed"] = state["_codebook.embed"] * 3.0
    run = run_checks("quantizer", QuantizerMeasurements(levels=quantizer_levels_from_state(state)))
    assert "Q408" not in run.checks_run


def test_real_vector_quantize_pytorch_buffers_q407_only_when_the_batch_is_too_small():
    pytest.importorskip("vector_quantize_pytorch")
    from vector_quantize_pytorch import ResidualVQ

    def trained_state(codebook_size: int) -> dict:
        torch.manual_seed(0)
        rvq = ResidualVQ(dim=16, num_quantizers=2, codebook_size=codebook_size, kmeans_init=True,
                         threshold_ema_dead_code=2)
        rvq.train()
        for _ in range(4):
            rvq(torch.randn(8, 50, 16))  # 400 tokens per step
        return rvq.state_dict()

    # 400 tokens over 64 codes: 6.25 per code on average, above the threshold of 2
    healthy = quantizer_levels_from_state(trained_state(64))
    run = run_checks("quantizer", QuantizerMeasurements(levels=healthy, dead_code_threshold=2.0, threshold_source="t"))
    assert {"Q407", "Q408"} <= set(run.checks_run) and not [f for f in run.findings if f.id in ("Q407", "Q408")]
    # 400 tokens over 1024 codes: 0.39 per code, a threshold of 2 needs 2048 tokens per step
    starved = quantizer_levels_from_state(trained_state(1024))
    run = run_checks("quantizer", QuantizerMeasurements(levels=starved, dead_code_threshold=2.0, threshold_source="t"))
    found = [f for f in run.findings if f.id == "Q407"]
    assert len(found) == 2 and found[0].evidence["tokens_needed"] == 2048
    assert found[0].evidence["total_count"] < 2048
