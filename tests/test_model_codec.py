"""The codec and its quantizer: shapes, bitrate, precision, EMA codebook rules."""
from __future__ import annotations

import math

import pytest
import torch

from codecdoctor_model import Codec, CodecConfig
from codecdoctor_model.quantizer import EMACodebook, ResidualVectorQuantizer, kmeans, rotate_to


def test_default_config_is_16khz_hop_320_at_4_kbps():
    cfg = CodecConfig()
    assert cfg.sample_rate == 16000 and cfg.hop_length == 320
    assert cfg.frame_rate == 50.0
    assert cfg.bitrate_bps == 50 * 12 * 10 == 6000
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


# -- factorized codes (code_dim > 0) ---------------------------------------------------------------
def test_factorized_level_searches_by_direction_and_decodes_through_out_proj():
    torch.manual_seed(0)
    book = EMACodebook(6, 4, decay=0.99, epsilon=1e-5, kmeans_iters=5, dead_code_fraction=0.03, code_dim=2)
    assert book.embed.shape == (4, 2) and book.in_proj.weight.shape == (2, 6)
    book.embed.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.5], [-2.0, 0.0], [0.0, -0.5]]))
    # (1, 0.9) points closer to code 0's direction, though code 1 is nearer in Euclidean distance
    # (1.16 vs 1.81 squared); its length does not matter
    low = torch.tensor([[1.0, 0.9], [10.0, 9.0], [-0.2, -3.0]])
    assert book.nearest(low).tolist() == [0, 0, 3]
    codes = torch.tensor([1, 3])
    assert torch.allclose(book.decode_codes(codes), book.out_proj(book.embed[codes]))


def test_factorized_level_projections_learn_and_the_ema_state_stays_consistent():
    torch.manual_seed(0)
    book = EMACodebook(6, 8, decay=0.9, epsilon=1e-5, kmeans_iters=5, dead_code_fraction=0.03, code_dim=2)
    book.train()
    residual = torch.randn(64, 6, requires_grad=True)
    decoded, codes, commit = book.quantize_residual(residual)
    assert decoded.shape == (64, 6) and codes.shape == (64,) and commit.shape == (64, 1)
    assert bool(book.initted)
    (decoded.pow(2).sum() + commit.sum()).backward()
    assert book.in_proj.weight.grad.abs().sum() > 0 and book.out_proj.weight.grad.abs().sum() > 0
    assert residual.grad is None  # the encoder's path is the quantizer's straight-through estimator
    # the codebook is the EMA mean of projected vectors: embed == embed_avg / smoothed counts
    total = book.cluster_size.sum()
    smoothed = (book.cluster_size + book.epsilon) / (total + book.size * book.epsilon) * total
    live = book.cluster_size > 0.01 * total / book.size
    assert torch.allclose(book.embed[live], (book.embed_avg / smoothed[:, None])[live], rtol=1e-4, atol=1e-6)


def test_factorized_kmeans_clusters_directions_with_mean_length_centroids():
    torch.manual_seed(0)
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    lengths = torch.linspace(0.5, 1.5, 50)  # mean length 1.0
    x = (directions[:, None, :] * lengths[None, :, None]).reshape(-1, 2)
    centroids, counts = kmeans(x, 4, 10, cosine=True)
    assert sorted(counts.tolist()) == [50.0] * 4
    assert sorted(centroids.round(decimals=4).tolist()) == sorted(directions.tolist())


def test_factorized_rvq_trains_the_projections_and_the_encoder_sees_straight_through():
    torch.manual_seed(0)
    cfg = CodecConfig.tiny().replace(code_dim=4)
    rvq = ResidualVectorQuantizer(cfg)
    rvq.train()
    z = torch.randn(2, cfg.latent_dim, 30, requires_grad=True)
    out = rvq(z)
    weights = torch.randn_like(out.quantized)
    (out.quantized * weights).sum().backward()
    # d quantized / d z is the identity (the commitment is not part of this loss)
    assert torch.allclose(z.grad, weights)
    assert all(level.in_proj.weight.grad is not None for level in rvq.levels)
    rvq.eval()
    with torch.no_grad():
        again = rvq(z)
        assert torch.allclose(rvq.decode(again.codes), again.quantized, atol=1e-6)


def test_full_dim_layout_is_the_default_and_older_configs_load_as_it():
    old = CodecConfig.tiny()
    codec = Codec(old)
    assert not any("in_proj" in k for k in codec.state_dict())
    data = old.to_dict()
    del data["code_dim"]  # a checkpoint written before the field existed
    rebuilt = Codec(CodecConfig.from_dict(data))
    rebuilt.load_state_dict(codec.state_dict())  # strict: the same layout
    assert CodecConfig().code_dim == 0
    assert any("in_proj" in k for k in Codec(old.replace(code_dim=4)).state_dict())
    with pytest.raises(ValueError, match="code_dim"):
        CodecConfig(code_dim=65)


def test_rotation_gradient_forwards_the_codes_and_turns_the_gradient_onto_the_latent():
    torch.manual_seed(0)
    e = torch.randn(5, 6, requires_grad=True)
    q = torch.randn(5, 6)
    out = rotate_to(e, q)
    assert torch.allclose(out, q, atol=1e-6)
    g = torch.randn(5, 6)
    out.backward(g)
    e_len, q_len = e.detach().norm(dim=1), q.norm(dim=1)
    # a rotation keeps the gradient's length (scaled by |q| / |e|) ...
    assert torch.allclose(e.grad.norm(dim=1), g.norm(dim=1) * q_len / e_len, rtol=1e-5)
    # ... and what the gradient says about q's direction it says about e's
    along_e = (e.grad * e.detach() / e_len[:, None]).sum(1) * e_len / q_len
    assert torch.allclose(along_e, (g * q / q_len[:, None]).sum(1), atol=1e-5)


def test_rvq_with_the_rotation_gradient_differs_from_straight_through_only_backwards():
    torch.manual_seed(0)
    cfg = CodecConfig.tiny().replace(code_dim=0)
    plain, turned = ResidualVectorQuantizer(cfg), ResidualVectorQuantizer(cfg.replace(quantizer_gradient="rotation"))
    z = torch.randn(2, cfg.latent_dim, 30)
    plain.train()
    plain(z)  # k-means init
    turned.load_state_dict(plain.state_dict())
    plain.eval(), turned.eval()
    za, zb = z.clone().requires_grad_(), z.clone().requires_grad_()
    a, b = plain(za), turned(zb)
    assert torch.equal(a.codes, b.codes) and torch.allclose(a.quantized, b.quantized, atol=1e-6)
    g = torch.randn_like(a.quantized)
    (a.quantized * g).sum().backward()
    (b.quantized * g).sum().backward()
    assert torch.allclose(za.grad, g) and not torch.allclose(zb.grad, g)


def test_factorized_level_with_euclidean_search_picks_the_nearest_low_dim_code():
    book = EMACodebook(6, 4, decay=0.99, epsilon=1e-5, kmeans_iters=5, dead_code_fraction=0.03, code_dim=2,
                       cosine=False)
    book.embed.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.5], [-2.0, 0.0], [0.0, -0.5]]))
    # (1, 0.9): code 1 is nearer (1.16 vs 1.81 squared) though code 0 has the closer direction
    assert book.nearest(torch.tensor([[1.0, 0.9], [10.0, 9.0]])).tolist() == [1, 0]
    with pytest.raises(ValueError, match="code_search"):
        CodecConfig(code_search="manhattan")
