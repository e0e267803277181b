"""The codec and its quantizer: shapes, bitrate, precision, EMA codebook rules."""
from __future__ import annotations

import math

import pytest
import torch

from codecdoctor_model import Codec, CodecConfig
from codecdoctor_model.quantizer import EMACodebook, ResidualVectorQuantizer


def test_default_config_is_16khz_hop_320_at_4_kbps():
    cfg = CodecConfig()
    assert cfg.sample_rate == 16000 and cfg.hop_length == 320
    assert cfg.frame_rate == 50.0
    assert cfg.bitrate_bps == 50 * 8 * 10 == 4000
    assert cfg.bitrate_at(4) == 2000


def test_config_round_trips_through_plain_dict():
    cfg = CodecConfig.tiny().replace(output_bound="none")
    data = cfg.to_dict()
    assert all(not isinstance(v, tuple) for v in data.values())  # weights_only-safe types
    assert CodecConfig.from_dict(data) == cfg


def test_bad_output_bound_is_refused():
    with pytest.raises(ValueError):
        CodecConfig(output_bound="clip")


@pytest.mark.parametrize("length", [4000, 4017, 37])
def test_forward_keeps_input_shape_and_codes_have_one_column_per_frame(length):
    torch.manual_seed(0)
    cfg = CodecConfig.tiny()
    codec = Codec(cfg)
    x = 0.3 * torch.randn(3, 1, length)
    out = codec(x)
    frames = math.ceil(length / cfg.hop_length)
    assert out.audio.shape == x.shape
    assert out.codes.shape == (3, cfg.n_codebooks, frames) and out.codes.dtype == torch.long
    assert out.codes.min() >= 0 and out.codes.max() < cfg.codebook_size
    assert out.commit_loss.ndim == 0 and torch.isfinite(out.commit_loss)


def test_encode_decode_matches_forward_in_eval_mode():
    torch.manual_seed(0)
    codec = Codec(CodecConfig.tiny())
    x = 0.3 * torch.randn(2, 1, 800)
    codec(x)  # k-means init in training mode
    codec.eval()
    with torch.no_grad():
        out = codec(x)
    codes = codec.encode(x)
    assert torch.equal(codes, out.codes)
    assert torch.allclose(codec.decode(codes, length=800), out.audio, atol=1e-6)


def test_tanh_bound_limits_output_and_none_does_not_apply_it():
    torch.manual_seed(0)
    bounded = Codec(CodecConfig.tiny())
    unbounded = Codec(CodecConfig.tiny().replace(output_bound="none"))
    unbounded.load_state_dict(bounded.state_dict())
    for p in list(bounded.decoder.parameters()) + list(unbounded.decoder.parameters()):
        p.data.mul_(3.0)  # push pre-activation far beyond 1
    x = 0.5 * torch.randn(1, 1, 400)
    assert bounded(x).audio.abs().max() <= 1.0
    assert unbounded(x).audio.abs().max() > 1.0


def test_weight_norm_uses_parametrizations():
    names = [n for n, _ in Codec(CodecConfig.tiny()).named_parameters()]
    assert any("parametrizations.weight.original0" in n for n in names)


def test_quantizer_runs_in_float32_under_autocast():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(CodecConfig.tiny())
    z = torch.randn(2, 8, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rvq(z.to(torch.bfloat16))
    assert out.quantized.dtype == torch.float32
    assert all(level.embed.dtype == torch.float32 for level in rvq.levels)


def test_kmeans_init_runs_once_from_the_first_batch():
    torch.manual_seed(0)
    book = EMACodebook(2, 4, decay=0.99, epsilon=1e-5, kmeans_iters=10, dead_code_fraction=0.03)
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    x = centres.repeat_interleave(50, 0) + 0.01 * torch.randn(200, 2)
    book.train()
    book(x)
    assert bool(book.initted)
    found = sorted(book.embed.round().tolist())
    assert found == sorted(centres.tolist())
    assert torch.allclose(book.cluster_size.sum(), torch.tensor(200.0), rtol=1e-4)


def test_dead_code_revival_replaces_the_code_and_resets_its_ema_statistics():
    torch.manual_seed(0)
    book = EMACodebook(2, 4, decay=0.99, epsilon=1e-5, kmeans_iters=5, dead_code_fraction=0.03)
    book.train()
    data = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]).repeat_interleave(25, 0)
    book(data)
    # make code 3 dead with a stale running average far away: without a reset of embed_avg the
    # next EMA update would drag the revived code back to (100, 100)
    book.cluster_size[3] = 1e-6
    book.embed_avg[3] = torch.tensor([100.0, 100.0]) * 1e-6
    batch = torch.tensor([[0.5, 0.5]]).repeat(10, 1)
    book(batch)
    assert book.revived_total >= 1
    revived_count = float(book.cluster_size[3])
    share_before_revival = (float(book.cluster_size.sum()) - revived_count) / 4
    assert torch.allclose(book.embed[3], torch.tensor([0.5, 0.5]))
    assert revived_count == pytest.approx(share_before_revival, rel=1e-5)
    assert torch.allclose(book.embed_avg[3] / book.cluster_size[3], torch.tensor([0.5, 0.5]), atol=1e-5)
    # one more update with the same batch keeps it there (the reset statistics agree with it)
    book(batch)
    assert torch.allclose(book.embed[3], torch.tensor([0.5, 0.5]), atol=1e-3)


def test_dead_threshold_is_relative_to_the_uniform_share():
    book = EMACodebook(2, 4, decay=0.99, epsilon=1e-5, kmeans_iters=1, dead_code_fraction=0.1)
    for scale in (1.0, 1000.0):  # same shares at any batch size
        book.cluster_size.copy_(torch.tensor([10.0, 10.0, 10.0, 0.5]) * scale)
        assert book.dead_mask().tolist() == [False, False, False, True]


def test_usage_reports_used_perplexity_and_dead_per_level():
    torch.manual_seed(0)
    codec = Codec(CodecConfig.tiny())
    codec(0.3 * torch.randn(4, 1, 4000))
    usage = codec.quantizer.usage()
    assert len(usage) == 2
    for level in usage:
        assert level["codebook_size"] == 16
        assert 0 < level["used"] <= 16 and 1.0 <= level["perplexity"] <= 16.0
        assert level["dead"] >= 0 and level["initted"] is True


def test_quantizer_dropout_varies_levels_only_in_training():
    torch.manual_seed(0)
    cfg = CodecConfig.tiny().replace(n_codebooks=4, quantizer_dropout=1.0)
    rvq = ResidualVectorQuantizer(cfg)
    z = torch.randn(64, 8, 5)
    assert len(set(rvq(z).n_quantizers.tolist())) > 1
    rvq.eval()
    assert set(rvq(z).n_quantizers.tolist()) == {4}
