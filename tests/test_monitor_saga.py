"""The negative-SNR saga of the README, reproduced live on the tiny codec: each test builds one known
cause into a short training run and asserts the monitor names it."""
from __future__ import annotations

import math

import pytest
import torch
from monitor_loops import PassThroughCodec, crops, run_codec, speech_bank, tiny_codec

import codecdoctor


def _ids(findings):
    return [f.id for f in findings]


def test_per_sample_normalisation_with_raw_scale_validation_gives_T603_T608_R302():
    # the fault lives in the data pipeline, so a codec that reconstructs well (a pass-through that
    # trains) shows it without the tiny codec's own reconstruction error blurring the numbers
    model = PassThroughCodec()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5, optimizer=opt)
    raw = speech_bank(6.0, peak=0.2)  # quiet recordings, as a real corpus has them

    def normalised(x):
        # the saga's dataset change: every crop scaled to peak 0.95 on its own
        return x * (0.95 / x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8))

    for step in range(10):
        x = normalised(crops(raw, step))
        y = model(x)
        losses = {"l1": (y - x).abs().mean()}
        monitor.on_batch(x, y, losses)
        opt.zero_grad()
        losses["l1"].backward()
        monitor.on_backward(model)
        opt.step()
        monitor.on_step()
    ref = torch.cat([crops(raw, 1000 + i, batch=2) for i in range(3)])  # validation at the raw scale
    with torch.no_grad():
        est = model(normalised(ref))  # the model is fed what the dataset produces
    monitor.on_validation(ref, est)
    report = monitor.close()
    ids = _ids(report.findings)
    assert "T608" in ids and "T603" in ids and "R302" in ids
    t608 = next(f for f in report.findings if f.id == "T608")
    assert t608.evidence["snr_db"] < 0 and "R302" in t608.message
    assert t608.evidence["what_if_gain_db"] > 20  # after the optimal gain the pair is nearly exact
    t603 = next(f for f in report.findings if f.id == "T603")
    assert t603.evidence["rms_ratio_db"] > 6  # output at the normalised level, louder than the raw reference
    # training itself looked healthy: the level mismatch is only visible against the raw scale
    assert all(abs(c["rms_ratio_db"]) < 1 for c in monitor.curves)


def test_data_peaking_at_1_01_with_tanh_decoder_gives_T601_with_the_ceiling():
    model, loss_fn = tiny_codec("tanh")
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5)
    bank = speech_bank(6.0, peak=1.01)
    fed = []

    def batch(step):
        x = crops(bank, step)
        fed.append(x)
        return x

    run_codec(monitor, model, loss_fn, 10, batch)
    report = monitor.close()
    t601 = [f for f in report.findings if f.id == "T601"]
    assert len(t601) == 1 and t601[0].severity.label == "warning"
    x = torch.cat(fed).double()
    expected_db = 10 * math.log10(float(x.pow(2).sum()) / float((x - x.clamp(-1, 1)).pow(2).sum()))
    # the ceiling printed at the first read-back covers the first window; the run total is in the report
    assert report.measurements["input_snr_ceiling_db"] == pytest.approx(expected_db, rel=1e-4)
    assert "10·log10(Σx²/Σ(x−clip(x))²)" in t601[0].message and "dB" in t601[0].message
    assert t601[0].evidence["max_abs"] == pytest.approx(float(x.abs().max()), rel=1e-6)


def test_unbounded_decoder_whose_output_grows_gives_T602_and_T603():
    model, loss_fn = tiny_codec("none")
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5)
    assert monitor.output_bound is None
    bank = speech_bank(6.0, peak=0.8)
    last_conv = model.decoder.net[-1]

    def drift(step, m):
        # the decoder's last layer gains 20% a step: the level runs away from the input's
        with torch.no_grad():
            last_conv.parametrizations.weight.original0.mul_(1.2)

    run_codec(monitor, model, loss_fn, 40, lambda s: crops(bank, s), before_forward=drift)
    report = monitor.close()
    ids = _ids(report.findings)
    assert "T602" in ids and "T603" in ids
    t602 = next(f for f in report.findings if f.id == "T602")
    assert t602.evidence["output_peak"] > 1.0 and t602.evidence["output_peak"] > 1.1 * t602.evidence["input_peak"]
    assert any(f.id == "T603" and f.evidence["rms_ratio_db"] > 6 for f in report.findings)


def test_nan_from_a_module_at_step_k_names_terms_module_and_step_and_keeps_weights_good():
    k = 7
    model, loss_fn = tiny_codec()
    monitor = codecdoctor.Monitor(model, 16000, mode="strict", read_every=25)
    bank = speech_bank(4.0)
    target = model.decoder.net[5]  # a transposed conv in the middle of the decoder

    def poison(step, m):
        if step == k:
            with torch.no_grad():
                target.parametrizations.weight.original1[0, 0, 0] = float("nan")

    with pytest.raises(codecdoctor.CheckFailed) as failure:
        run_codec(monitor, model, loss_fn, 20, lambda s: crops(bank, s), before_forward=poison)
    t604 = next(f for f in failure.value.findings if f.id == "T604")
    assert t604.evidence["step"] == k
    assert t604.evidence["module"] == "decoder.net.5"
    assert {"mel", "l1"} <= set(t604.evidence["terms"]) and "commit" not in t604.evidence["terms"]
    assert "decoder.net.5" in t604.message and f"step {k}" in t604.message
    # strict mode stopped inside on_batch of step k: no optimizer step spread the NaN
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    assert bad == ["decoder.net.5.parametrizations.weight.original1"]
    monitor.close()


def test_nan_injected_into_one_loss_term_at_step_k_names_that_term():
    k = 12
    model, loss_fn = tiny_codec()
    monitor = codecdoctor.Monitor(model, 16000, mode="strict", read_every=5)
    bank = speech_bank(4.0)

    def inject(step, losses):
        if step == k:
            losses = dict(losses)
            losses["commit"] = losses["commit"] * float("nan")
            losses["total"] = losses["mel"] + losses["l1"] + losses["commit"]
        return losses

    with pytest.raises(codecdoctor.CheckFailed) as failure:
        run_codec(monitor, model, loss_fn, 20, lambda s: crops(bank, s), edit_losses=inject)
    t604 = next(f for f in failure.value.findings if f.id == "T604")
    assert t604.evidence["step"] == k and t604.evidence["terms"] == ["commit"]
    assert t604.evidence["module"] is None and "loss computation" in t604.message
    monitor.close()


def _half_mel_loss(est, ref, fft_sizes=(512, 2048)):
    """A spectral loss whose power spectrum is held in float16: the CPU stand-in for fp16 autocast."""
    total = 0
    for n_fft in fft_sizes:
        window = torch.hann_window(n_fft)

        def power(s, n_fft=n_fft, window=window):
            spec = torch.stft(s.reshape(-1, s.shape[-1]).float(), n_fft, n_fft // 4, window=window, return_complex=True)
            return spec.abs().half() ** 2

        total = total + (torch.log(power(est) + 1e-4) - torch.log(power(ref) + 1e-4)).abs().mean()
    return total / len(fft_sizes)


def test_float16_spectral_loss_on_full_scale_input_gives_S501_S503():
    from codecdoctor.measure.stft_risk import synthetic_full_scale

    model, loss_fn = tiny_codec()
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5, spectral_fft_sizes=(512, 2048))
    # full-scale voiced sound (150 Hz + 450 Hz tones at peak 1.0): |X|² reaches ~1.2e5 at n_fft 2048
    bank = torch.from_numpy(synthetic_full_scale(1.0, seconds=2.0))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for step in range(5):
        x = crops(bank, step, samples=8000)
        out = model(x)
        losses = loss_fn(out.audio, x, out.commit_loss)
        losses["mel"] = _half_mel_loss(out.audio, x)  # the loop's spectral term, held in float16
        monitor.on_batch(x, out.audio, losses)
        opt.zero_grad()
        (losses["l1"] + losses["commit"]).backward()
        monitor.on_backward(model)
        opt.step()
        monitor.on_step()
    report = monitor.close()
    ids = _ids(report.findings)
    assert {"T604", "S501", "S503"} <= set(ids)
    t604 = next(f for f in report.findings if f.id == "T604")
    assert t604.evidence["terms"] == ["mel"] and t604.evidence["module"] is None
    s501 = next(f for f in report.findings if f.id == "S501")
    assert s501.severity.label == "error" and s501.evidence["n_fft"] == 2048
    s503 = next(f for f in report.findings if f.id == "S503")
    assert s503.evidence["peak"] == pytest.approx(1.0, abs=1e-3)


def test_learning_rate_1e_6_gives_T609_at_the_first_read_back():
    read_every = 10
    model, loss_fn = tiny_codec()
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=read_every)
    bank = speech_bank(6.0)
    run_codec(monitor, model, loss_fn, 4 * read_every + 1, lambda s: crops(bank, s), lr=1e-6)
    t609 = [f for f in monitor.findings if f.id == "T609"]
    assert t609, _ids(monitor.findings)
    # judged from the first read-back (steps 0-9), 10x below Adam's usual minimum 1e-5
    assert t609[0].evidence["step"] == read_every - 1
    assert t609[0].evidence["lr"] == pytest.approx(1e-6) and t609[0].evidence["usual_min_lr"] == 1e-5
    monitor.close()


def test_usual_learning_rate_gives_no_T609():
    model, loss_fn = tiny_codec()
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=10)
    bank = speech_bank(6.0)
    run_codec(monitor, model, loss_fn, 41, lambda s: crops(bank, s), lr=3e-4)
    assert "T609" in monitor.checks_run and "T609" not in _ids(monitor.findings)
    monitor.close()
