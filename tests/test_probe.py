"""Probes on small stand-in codecs with a known behaviour: each measurement and finding asserted."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from codecdoctor.probe import probe

SR = 8000  # small rate keeps every probe batch tiny


class Adapter:
    sample_rate = SR

    def __init__(self, fn):
        self.fn = fn

    def reconstruct(self, audio):
        return self.fn(audio)


def ids(report):
    return {f.id for f in report.findings}


def test_identity_codec_slope_1_no_findings():
    report = probe(Adapter(lambda x: x))
    p = report.measurements["probes"]
    assert p.level_slope_db_per_db == pytest.approx(1.0, abs=1e-6)
    assert p.low_level_gain_db == pytest.approx(0.0, abs=1e-6) and p.saturation_dbfs is None
    assert p.latency_samples == 0 and p.impulse_latency_samples == 0 and p.polarity == 1
    assert p.bandwidth_3db_hz == pytest.approx(0.45 * SR, rel=1e-6) and p.idle_rms_dbfs == -200.0
    assert report.findings == []
    assert set(report.checks_run) == {"C210", "C211", "C212", "C213", "C214", "C215", "C216"}


def test_per_sample_normalisation_flattens_the_level_sweep():
    def normalise(x):  # the saga's fault: every example scaled to unit peak inside the model
        return x / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8)

    report = probe(Adapter(normalise))
    p = report.measurements["probes"]
    assert abs(p.level_slope_db_per_db) < 0.01
    found = [f for f in report.findings if f.id == "C210"]
    assert found and found[0].severity.label == "error" and found[0].evidence["output_range_db"] < 0.1


def test_tanh_output_saturates_near_full_scale():
    report = probe(Adapter(torch.tanh))
    p = report.measurements["probes"]
    assert p.level_slope_db_per_db == pytest.approx(1.0, abs=0.02)
    assert p.saturation_dbfs is not None and -12 < p.saturation_dbfs <= 0.1
    assert p.max_output_peak == pytest.approx(np.tanh(10 ** (0.1 / 20)), abs=1e-4)
    assert "C211" in ids(report) and "C210" not in ids(report)


def test_delay_and_inversion_are_measured_exactly():
    delay = 37

    def late_and_inverted(x):
        return -torch.nn.functional.pad(x, (delay, 0))[..., : x.shape[-1]]

    report = probe(Adapter(late_and_inverted))
    p = report.measurements["probes"]
    assert p.latency_samples == delay and p.impulse_latency_samples == delay and p.polarity == -1
    assert {"C212", "C213"} <= ids(report)


def test_lowpass_bandwidth_and_idle_hiss():
    def lowpass_plus_hiss(x):
        # 2nd-order Butterworth-like low-pass at 1 kHz via FFT mask, plus noise at -50 dBFS RMS
        spectrum = torch.fft.rfft(x)
        freqs = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
        spectrum = spectrum / torch.sqrt(1 + (freqs / 1000.0) ** 4)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * 10 ** (-50 / 20)
        return torch.fft.irfft(spectrum, n=x.shape[-1]) + noise

    report = probe(Adapter(lowpass_plus_hiss))
    p = report.measurements["probes"]
    assert 700 < p.bandwidth_3db_hz <= 1000 and p.idle_rms_dbfs == pytest.approx(-50, abs=0.5)
    assert {"C214", "C215"} <= ids(report)


def test_probe_command_on_own_checkpoint(cli, tmp_path):
    from fixtures.checkpoints import own_state, save

    ckpt = save(own_state(), tmp_path / "own.pt")
    code, out, err = cli("probe", ckpt, "--json", tmp_path / "p.json", "--html", tmp_path / "p.html")
    import json

    report = json.loads((tmp_path / "p.json").read_text())
    assert code in (0, 1) and report["command"] == "probe"
    assert len(report["measurements"]["probes"]["rms_out_db"]) == 15
    assert "Level in/out" in (tmp_path / "p.html").read_text()


def test_probe_of_unknown_architecture_is_an_input_error(cli, tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "x.pt")
    code, _, err = cli("probe", tmp_path / "x.pt")
    assert code == 2 and "static checks only" in err or "--model" in err


def test_nan_output_is_c216_and_a_deaf_codec_is_c210():
    """A codec that emits NaN (C216, critical) and one whose output ignores its input: even
    -12 dBFS speech does not lift it 6 dB above what silence gives (C210, error)."""
    nan_report = probe(Adapter(lambda x: x * float("nan")))
    assert "C216" in ids(nan_report)
    assert next(f for f in nan_report.findings if f.id == "C216").severity.label == "critical"
    deaf = probe(Adapter(lambda x: 0.1 * torch.sin(torch.arange(x.shape[-1]) * 0.3).expand_as(x).clone()))
    c210 = next(f for f in deaf.findings if f.id == "C210")
    assert c210.severity.label == "error" and "does not respond" in c210.message


class FrameCodec:
    """Codes = one integer per 8-sample frame (the frame mean on a 1/256 grid); decode repeats each
    frame's value, optionally smoothed over `context` frames on each side (a non-causal decoder)."""

    sample_rate = SR
    hop = 8

    def __init__(self, context: int = 0):
        self.context = context

    def encode(self, audio):
        frames = audio[:, :1, : audio.shape[-1] // self.hop * self.hop].reshape(audio.shape[0], 1, -1, self.hop)
        return torch.round(frames.mean(-1) * 256).long()

    def decode(self, codes):
        values = codes.float() / 256
        if self.context:
            width = 2 * self.context + 1
            values = torch.nn.functional.conv1d(values, torch.ones(1, 1, width) / width, padding=self.context)
        return values.repeat_interleave(self.hop, dim=-1)


def test_frame_local_decoder_decodes_chunks_exactly_no_c218():
    report = probe(FrameCodec(context=0))
    p = report.measurements["probes"]
    assert p.chunk_count == 4 and p.chunk_seconds == pytest.approx(0.5)
    assert p.chunk_vs_whole_snr_db == float("inf")
    assert "C218" in report.checks_run and "C218" not in ids(report)


def test_decoder_with_lookahead_context_has_seams_c218():
    # a decoder that averages ±40 frames (±40 ms at 8 kHz, hop 8): each chunk edge loses that context
    report = probe(FrameCodec(context=40))
    p = report.measurements["probes"]
    found = [f for f in report.findings if f.id == "C218"]
    assert found and found[0].evidence["chunk_vs_whole_snr_db"] < 20.0
    # the difference sits at the 3 seams: all of it within ±50 ms of them (15% of the time)
    assert p.chunk_seam_energy_fraction > 0.99 and p.chunk_seam_time_fraction == pytest.approx(0.15)
    assert "3 seams" in found[0].message


def _lowpass_1k(x):
    spectrum = torch.fft.rfft(x)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / SR)
    return torch.fft.irfft(spectrum / torch.sqrt(1 + (freqs / 1000.0) ** 4), n=x.shape[-1])


def _speech_crops(n=4, seconds=2.0):
    from codecdoctor.measure.stimuli import speech_like

    return [0.3 * speech_like(seconds, SR, seed=seed).astype(np.float64) for seed in range(n)]


def test_response_on_data_is_flat_for_an_identity_codec_and_reaches_the_datas_top_band():
    from codecdoctor.measure.probes import ProbeMeasurements, response_on_data, sweep_frequencies

    m = ProbeMeasurements(sample_rate=SR)
    crops = _speech_crops()
    response_on_data(m, crops, [c.copy() for c in crops])
    known = [g for g in m.data_gain_db if g is not None]
    assert len(known) >= 15 and max(abs(g) for g in known) < 1e-9
    assert m.data_bandwidth_3db_hz == m.data_content_top_hz == pytest.approx(sweep_frequencies(SR)[-1])


def test_a_lowpass_codec_narrows_the_response_on_data_as_on_sines_and_c215_quotes_both():
    from codecdoctor.checks.checkpoint import bandwidth
    from codecdoctor.measure.probes import response_on_data

    report = probe(Adapter(_lowpass_1k))
    p = report.measurements["probes"]
    crops = _speech_crops()
    response_on_data(p, crops, [_lowpass_1k(torch.as_tensor(c)).numpy() for c in crops])
    # the same rule on the same frequencies: the data's band edge within one sweep step of the sines'
    assert 700 < p.data_bandwidth_3db_hz <= 1000 and p.data_bandwidth_3db_hz == pytest.approx(p.bandwidth_3db_hz)
    [found] = bandwidth(p)
    assert found.severity.label == "warning" and "on the data: " in found.message and "as well" in found.message


def test_c215_is_info_when_the_data_keeps_the_band_that_steady_sines_lose():
    """A codec trained on speech may not pass a steady tone it never saw; what the user's audio
    goes through is the response on the data."""
    from codecdoctor.checks.checkpoint import bandwidth
    from codecdoctor.measure.probes import ProbeMeasurements, passband_and_bandwidth, sweep_frequencies

    freqs = sweep_frequencies(SR)
    m = ProbeMeasurements(sample_rate=SR, nyquist_hz=SR / 2, sweep_freqs_hz=list(freqs),
                          sweep_gain_db=[0.0 if f < 1300 else -55.0 for f in freqs])
    m.passband_gain_db, m.bandwidth_3db_hz = passband_and_bandwidth(freqs, m.sweep_gain_db, SR)
    [without_data] = bandwidth(m)
    assert without_data.severity.label == "warning" and "check-ckpt --data" in without_data.message
    m.data_gain_db = [0.5 if f < 3000 else -1.0 for f in freqs]
    m.data_bandwidth_3db_hz, m.data_content_top_hz = float(freqs[-1]), float(freqs[-1])
    [with_data] = bandwidth(m)
    assert with_data.severity.label == "info" and "steady sines" in with_data.message
    assert with_data.evidence["data_bandwidth_3db_hz"] == pytest.approx(freqs[-1])
