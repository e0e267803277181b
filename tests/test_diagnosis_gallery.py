"""The negative-SNR saga gallery: each known fault, injected into clean speech-like audio, must be
named by the TOP finding of diagnose_pair (or diagnose_chunk_set for R313)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from audio_fixtures import speech_like
from scipy.signal import butter, istft, sosfiltfilt, stft

from codecdoctor.core.findings import Severity
from codecdoctor.diagnose import diagnose_chunk_set, diagnose_pair

SR = 16000


@pytest.fixture(scope="module")
def clean():
    return speech_like(3.0, SR, seed=11).astype(np.float64)


def rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def top(ref, est, **kw):
    m, findings, ran = diagnose_pair(ref, est, SR, subject="pair", **kw)
    assert findings, "diagnose_pair always reports at least the R300 summary or a reason it could not score"
    return m, findings, ran


def ids_at_or_above(findings, severity=Severity.WARNING):
    return [f.id for f in findings if f.severity >= severity]


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_scaled_output_is_a_gain_mismatch_with_the_optimal_gain(clean, scale):
    m, findings, _ = top(clean, scale * clean)
    assert findings[0].id == "R302"
    assert m.gain == pytest.approx(1 / scale, rel=1e-6)
    assert m.what_if["raw"] == pytest.approx(10 * math.log10(1 / (1 - scale) ** 2), abs=1e-6)
    assert m.what_if["gain"] > 100


def test_per_chunk_peak_normalisation_destroys_scale(clean):
    # A corpus of utterances at different levels; the "model" outputs each 0.5 s chunk at unit peak.
    chunks = np.array_split(clean, 6)
    levels = [0.2, 1.0, 0.45, 0.8, 0.3, 0.6]
    ref = np.concatenate([c * g for c, g in zip(chunks, levels)])
    est = np.concatenate([c / np.max(np.abs(c)) for c in np.array_split(ref, 6)])
    m, findings, _ = top(ref, est)
    assert findings[0].id == "R302"
    assert m.segment_level_spread_db > 2.0
    assert "does not follow" in findings[0].message


def test_unbounded_decoder_blowing_up_is_a_range_error(clean):
    t = np.arange(clean.size) / SR
    est = clean + 0.05 * np.exp(2.0 * t) * np.sin(2 * np.pi * 3 * t)   # grows to ~20x full scale
    m, findings, _ = top(clean, est)
    assert findings[0].id == "R306" and findings[0].severity == Severity.ERROR
    assert m.est_peak > 10


def test_tanh_output_with_input_peaking_at_1_01_names_the_ceiling(clean):
    ref = clean / np.max(np.abs(clean)) * 1.01
    est = np.tanh(np.arctanh(np.clip(ref, -0.999, 0.999)))   # a perfect tanh-bounded decoder
    m, findings, _ = top(ref, est)
    assert findings[0].id == "R307"
    expected = 10 * math.log10(np.sum(ref ** 2) / np.sum((ref - np.clip(ref, -1, 1)) ** 2))
    assert findings[0].evidence["ceiling_db"] == pytest.approx(expected, abs=1e-6)
    assert f"{expected:.2f} dB" in findings[0].message
    # Told the bound explicitly, same diagnosis.
    _, told, _ = top(ref, est, output_bound=1.0)
    assert told[0].id == "R307"


@pytest.mark.parametrize("delay", [1, 2, 7, 64, 320, 1000, 2000])
def test_delay_is_named_with_the_exact_lag_above_the_negative_snr(clean, delay):
    est = np.concatenate([np.zeros(delay), clean[:-delay]])
    m, findings, _ = top(clean, est)
    assert findings[0].id == "R304" and findings[0].severity == Severity.ERROR
    assert m.lag_samples == delay and findings[0].evidence["lag_samples"] == delay
    assert m.what_if["aligned"] > 100
    ids = [f.id for f in findings]
    if "R301" in ids:
        assert ids.index("R304") < ids.index("R301")


def test_advanced_output_gives_a_negative_lag(clean):
    m, findings, _ = top(clean, np.concatenate([clean[300:], np.zeros(300)]))
    assert findings[0].id == "R304" and m.lag_samples == -300


def test_inverted_output_is_polarity_not_scale(clean):
    m, findings, _ = top(clean, -clean)
    assert findings[0].id == "R303"
    assert m.snr_db == pytest.approx(-6.0206, abs=1e-3)
    assert m.si_sdr_db > 100            # SI-SDR cannot see it
    assert "R302" not in [f.id for f in findings]


def test_all_zero_output_is_silent_output(clean):
    m, findings, _ = top(clean, np.zeros_like(clean))
    assert findings[0].id == "R305"
    assert m.snr_db == 0.0


def test_white_noise_output_is_uncorrelated(clean):
    rng = np.random.default_rng(1)
    m, findings, _ = top(clean, rng.standard_normal(clean.size) * rms(clean))
    assert findings[0].id == "R314"
    assert abs(m.correlation) < 0.1


def test_dc_added_is_named_before_the_negative_snr(clean):
    m, findings, _ = top(clean, clean + 2 * rms(clean))
    assert findings[0].id == "R308"
    assert m.snr_after_dc_removal_db > 100


def test_nan_in_output_is_critical(clean):
    est = clean.copy()
    est[1000:1010] = np.nan
    m, findings, _ = top(clean, est)
    assert findings[0].id == "R309" and findings[0].severity == Severity.CRITICAL
    assert m.nonfinite_est == 10


@pytest.mark.parametrize("change", [800, -800, 1])
def test_padded_or_trimmed_output_is_a_length_mismatch(clean, change):
    est = np.concatenate([clean, np.zeros(change)]) if change > 0 else clean[:change]
    m, findings, _ = top(clean, est)
    assert findings[0].id == "R310"
    assert findings[0].evidence["difference_samples"] == change


def test_low_passed_at_4_khz_is_a_bandwidth_loss(clean):
    est = sosfiltfilt(butter(8, 4000, fs=SR, output="sos"), clean)   # zero phase: no delay
    m, findings, _ = top(clean, est)
    assert findings[0].id == "R311"
    assert 4000 <= m.est_bandwidth_hz <= 4600
    assert m.ref_bandwidth_hz >= 6000


def test_same_magnitudes_scrambled_phase_is_phase_incoherent(clean):
    rng = np.random.default_rng(2)
    _, _, spec = stft(clean, nperseg=512)
    _, est = istft(np.abs(spec) * np.exp(1j * rng.uniform(0, 2 * np.pi, spec.shape)), nperseg=512)
    m, findings, _ = top(clean, est[: clean.size])
    assert findings[0].id == "R312"
    assert m.mel_correlation >= 0.8 and m.what_if["all"] <= 3.0


def test_delay_plus_gain_names_both(clean):
    est = 0.3 * np.concatenate([np.zeros(500), clean[:-500]])
    m, findings, _ = top(clean, est)
    ids = ids_at_or_above(findings, Severity.ERROR)
    assert ids[0] == "R304" and "R302" in ids
    assert m.lag_samples == 500 and m.gain == pytest.approx(1 / 0.3, rel=1e-6)


def test_healthy_output_at_25_db_gives_no_warning_or_error(clean):
    rng = np.random.default_rng(3)
    est = clean + rng.standard_normal(clean.size) * rms(clean) * 10 ** (-25 / 20)
    m, findings, ran = top(clean, est)
    assert ids_at_or_above(findings) == []
    assert m.snr_db == pytest.approx(25.0, abs=0.3)
    assert [f.id for f in findings] == ["R300"]
    assert {"R301", "R302", "R303", "R304", "R305", "R311", "R312", "R314"} <= set(ran)


def test_silent_reference_is_stated_without_division_by_zero(clean):
    m, findings, _ = top(np.zeros_like(clean), clean)
    assert findings[0].id == "R315"
    assert all(v == -math.inf for v in m.what_if.values())


def test_empty_inputs_are_stated():
    m, findings, _ = diagnose_pair(np.zeros(0), np.zeros(0), SR)
    assert findings[0].id == "R315"


def test_per_chunk_average_with_9_percent_silent_chunks_is_biased():
    rng = np.random.default_rng(4)
    refs, ests = [], []
    for i in range(33):
        ref = speech_like(0.25, SR, seed=100 + i).astype(np.float64) if i % 11 != 5 else np.zeros(4000)
        refs.append(ref)
    level = rms(np.concatenate(refs))
    for ref in refs:   # a healthy codec: noise at 25 dB below the set's level, also in silence
        ests.append(ref + rng.standard_normal(ref.size) * level * 10 ** (-25 / 20))
    m, findings, ran = diagnose_chunk_set(refs, ests, subject="validation")
    assert ran == ["R313"]
    assert m.silent_chunks == 3 and m.silent_fraction == pytest.approx(3 / 33)
    assert findings[0].id == "R313"
    assert m.total_snr_db == pytest.approx(25.0, abs=0.5)
    assert m.total_snr_db - m.mean_chunk_snr_db > 3.0
    assert f"{m.mean_chunk_snr_db:.2f} dB" in findings[0].message and f"{m.total_snr_db:.2f} dB" in findings[0].message


def test_chunk_set_without_silence_is_not_biased():
    rng = np.random.default_rng(5)
    refs = [speech_like(0.25, SR, seed=200 + i).astype(np.float64) for i in range(10)]
    ests = [r + rng.standard_normal(r.size) * 0.003 for r in refs]
    _, findings, ran = diagnose_chunk_set(refs, ests)
    assert ran == ["R313"] and findings == []


def test_every_finding_states_numbers(clean):
    _, findings, _ = top(clean, 0.3 * np.concatenate([np.zeros(500), clean[:-500]]))
    for f in findings:
        assert any(ch.isdigit() for ch in f.message), f.message
        assert f.evidence
