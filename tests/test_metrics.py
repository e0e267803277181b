"""codecdoctor.metrics: pinned against torchmetrics (the oracle), and safe on every degenerate input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from codecdoctor.measure import metrics as M

DEGENERATE = {
    "empty": ([], []),
    "single_equal": ([0.5], [0.5]),
    "single_different": ([0.5], [0.25]),
    "both_zero": (np.zeros(100), np.zeros(100)),
    "zero_ref": (np.zeros(100), np.ones(100)),
    "zero_est": (np.linspace(-1, 1, 100), np.zeros(100)),
    "constants": (np.full(100, 0.3), np.full(100, -0.3)),
    "huge": (np.full(64, 1e300) * np.sign(np.sin(np.arange(64))), np.full(64, -1e300)),
    "tiny": (1e-300 * np.sin(np.arange(64.0)), 2e-300 * np.sin(np.arange(64.0))),
    "subnormal": (np.full(8, 5e-324), np.zeros(8)),
    "nan": ([1.0, np.nan, 0.5], [1.0, 0.0, 0.5]),
    "inf": ([1.0, 0.0, 0.5], [1.0, np.inf, 0.5]),
    "mismatched_lengths": (np.sin(np.arange(1000.0)), np.sin(np.arange(700.0))),
    "int16": (np.array([1000, -2000, 3000], dtype=np.int16), np.array([900, -2100, 2900], dtype=np.int16)),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_every_metric_returns_a_number_never_nan_or_an_exception(case):
    ref, est = DEGENERATE[case]
    values = [M.snr_db(ref, est), M.si_sdr_db(ref, est), M.si_snr_db(ref, est), M.seg_snr_db(ref, est),
              M.optimal_gain(ref, est), M.output_level_ratio(ref, est), M.correlation(ref, est),
              M.mel_distance(ref, est, 16000), M.mel_correlation(ref, est, 16000), M.chunk_snr_db_eps(ref, est),
              float(M.estimate_lag(ref, est, 50)), float(M.polarity(ref, est, 50))]
    assert not any(math.isnan(v) for v in values), values
    assert all(isinstance(v, float) for v in values)
    bands = M.band_transfer(ref, est, 16000)
    assert not any(math.isnan(v) for v in bands.values())


def test_sentinels_are_the_documented_ones():
    assert M.snr_db(np.zeros(10), np.zeros(10)) == math.inf          # exact (both silent)
    assert M.snr_db(np.zeros(10), np.ones(10)) == -math.inf          # silent reference, nonzero error
    assert M.snr_db([], []) == -math.inf                              # nothing to score
    assert M.snr_db([1.0, np.nan], [1.0, 0.0]) == -math.inf           # non-finite
    assert M.si_sdr_db(np.sin(np.arange(50.0)), np.zeros(50)) == -math.inf  # nothing along the reference
    assert M.mel_distance([np.inf], [0.0], 16000) == math.inf
    assert M.correlation(np.ones(10), np.arange(10.0)) == 0.0          # constant input
    assert M.optimal_gain(np.ones(10), np.zeros(10)) == 0.0
    assert M.estimate_lag(np.zeros(100), np.zeros(100)) == 0
    assert M.polarity(np.zeros(100), np.zeros(100)) == 0


def test_huge_and_tiny_values_give_the_same_snr_as_unit_scale():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(2000)
    est = ref + 0.1 * rng.standard_normal(2000)
    unit = M.snr_db(ref, est)
    assert unit == pytest.approx(20.0, abs=0.5)
    for scale in (1e300, 1e-300, 1e-310):
        assert M.snr_db(ref * scale, est * scale) == pytest.approx(unit, abs=1e-3 if scale > 1e-308 else 0.1)
        assert M.si_sdr_db(ref * scale, est * scale) == pytest.approx(M.si_sdr_db(ref, est), abs=1e-3 if scale > 1e-308 else 0.1)


def test_known_values_scale_and_polarity():
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert M.snr_db(ref, 0.1 * ref) == pytest.approx(10 * math.log10(1 / 0.81), abs=1e-9)   # 0.92 dB
    assert M.snr_db(ref, 10 * ref) == pytest.approx(10 * math.log10(1 / 81), abs=1e-9)      # -19.08 dB
    assert M.snr_db(ref, -ref) == pytest.approx(-6.0206, abs=1e-4)
    assert M.si_sdr_db(ref, -ref) > 100          # SI-SDR is blind to polarity
    assert M.si_sdr_db(ref, 0.1 * ref) > 100     # and to scale
    assert M.optimal_gain(ref, 0.1 * ref) == pytest.approx(10.0)
    assert M.output_level_ratio(ref, 0.1 * ref) == pytest.approx(0.1)
    assert M.polarity(ref, -ref) == -1 and M.polarity(ref, ref) == 1
    assert M.correlation(ref, -ref) == pytest.approx(-1.0)


def test_si_snr_ignores_dc_but_si_sdr_does_not():
    rng = np.random.default_rng(4)
    ref = rng.standard_normal(4000)
    assert M.si_snr_db(ref, ref + 5.0) > 100
    assert M.si_sdr_db(ref - ref.mean(), ref - ref.mean() + 5.0) < 0


@pytest.mark.parametrize("lag", [1, 2, 7, 100, 1999, -3, -640])
def test_estimate_lag_is_exact_on_noise(lag):
    rng = np.random.default_rng(5)
    ref = rng.standard_normal(8000)
    est = np.roll(ref, lag)
    assert M.estimate_lag(ref, est, max_lag_samples=2000) == lag
    assert M.estimate_lag(ref, -est, max_lag_samples=2000) == lag  # polarity does not hide the lag


def test_estimate_lag_stays_inside_the_window():
    rng = np.random.default_rng(6)
    ref = rng.standard_normal(8000)
    assert abs(M.estimate_lag(ref, np.roll(ref, 3000), max_lag_samples=100)) <= 100


def test_cross_correlation_on_long_signals_uses_bounded_blocks():
    rng = np.random.default_rng(7)
    ref = rng.standard_normal(1_000_000)
    est = np.concatenate([np.zeros(37), ref[:-37]])
    lags, c = M.cross_correlation(ref, est, 64, max_blocks=4)
    assert lags[np.argmax(c)] == 37 and c.max() > 0.99


def test_seg_snr_clamps_and_skips_silence():
    ref = np.concatenate([np.zeros(3200), np.sin(np.arange(3200.0))])
    assert M.seg_snr_db(ref, ref, 320) == 35.0                 # every active frame clamped at the ceiling
    assert M.seg_snr_db(ref, np.zeros_like(ref), 320) == pytest.approx(0.0)
    noisy = ref + np.concatenate([np.ones(3200), np.zeros(3200)])  # error only in the silent half
    assert M.seg_snr_db(ref, noisy, 320) == 35.0               # silent frames do not count


def test_mel_distance_is_zero_for_identity_and_one_decade_for_a_tenth():
    rng = np.random.default_rng(8)
    ref = 0.3 * rng.standard_normal(16000)   # no silence, so the 1e-5 floor never engages
    assert M.mel_distance(ref, ref, 16000) == 0.0
    assert M.mel_distance(ref, 0.1 * ref, 16000) == pytest.approx(1.0, abs=1e-6)
    assert M.mel_correlation(ref, ref, 16000) == pytest.approx(1.0)


def test_torch_tensors_and_batches_are_accepted():
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 1, 1000, dtype=torch.float64)
    assert M.snr_db(x, x) == math.inf
    assert M.snr_db(x, 0.1 * x) == pytest.approx(10 * math.log10(1 / 0.81), abs=1e-9)
    assert M.snr_db(x.half(), x.half()) == math.inf


@pytest.fixture(scope="module")
def torchmetrics_audio():
    pytest.importorskip("torch")
    return pytest.importorskip("torchmetrics.functional.audio", reason="torchmetrics (dev extra) is the oracle")


@pytest.mark.parametrize("seed", range(6))
def test_snr_and_si_sdr_agree_with_torchmetrics_within_1e3_db(seed, torchmetrics_audio):
    import torch

    rng = np.random.default_rng(seed)
    n = int(rng.integers(100, 20000))
    ref = rng.standard_normal(n) * rng.uniform(0.01, 3)
    est = ref * rng.uniform(0.2, 2) + rng.standard_normal(n) * rng.uniform(0.01, 3) + rng.uniform(-0.5, 0.5)
    tm = torchmetrics_audio
    t_ref, t_est = torch.tensor(ref), torch.tensor(est)
    assert M.snr_db(ref, est) == pytest.approx(tm.signal_noise_ratio(t_est, t_ref).item(), abs=1e-3)
    assert M.si_sdr_db(ref, est) == pytest.approx(tm.scale_invariant_signal_distortion_ratio(t_est, t_ref).item(), abs=1e-3)
    assert M.si_snr_db(ref, est) == pytest.approx(tm.scale_invariant_signal_noise_ratio(t_est, t_ref).item(), abs=1e-3)
    # The eps form that training loops use is torchmetrics' SNR in float32.
    assert M.chunk_snr_db_eps(ref, est) == pytest.approx(
        tm.signal_noise_ratio(t_est.float(), t_ref.float()).item(), abs=1e-3)


def test_no_nan_on_arbitrary_inputs():
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    values = st.floats(allow_nan=True, allow_infinity=True, width=64)

    @settings(max_examples=60, deadline=None)
    @given(arrays(np.float64, st.integers(0, 40), elements=values), arrays(np.float64, st.integers(0, 40), elements=values))
    def run(ref, est):
        for v in (M.snr_db(ref, est), M.si_sdr_db(ref, est), M.si_snr_db(ref, est), M.seg_snr_db(ref, est, 8),
                  M.optimal_gain(ref, est), M.correlation(ref, est), M.mel_distance(ref, est, 8000),
                  float(M.estimate_lag(ref, est, 10))):
            assert not math.isnan(v)

    run()


# ---- fractional delay -----------------------------------------------------------------------------

def _band_limited_noise(n, seed=0, cutoff=0.8):
    """White noise low-passed to `cutoff` x Nyquist (an FFT brick wall): band-limited like audio."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[int(cutoff * spectrum.size):] = 0.0
    return np.fft.irfft(spectrum, n)


@pytest.mark.parametrize("delay", [0.5, 0.25, -0.3, 0.1])
def test_fractional_shift_matches_an_exact_band_limited_delay(delay):
    x = _band_limited_noise(8192)
    # exact delay by a phase ramp (circular; compare away from the ends)
    freqs = np.fft.rfftfreq(x.size)
    exact = np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * freqs * delay), x.size)
    shifted = M.fractional_shift(x, delay)
    inner = slice(100, -100)
    assert M.snr_db(exact[inner], shifted[inner]) > 60.0


@pytest.mark.parametrize("delay", [0.5, 0.37, -0.2, 0.0])
def test_fractional_lag_finds_the_peak_between_samples(delay):
    x = _band_limited_noise(16384, seed=1)
    freqs = np.fft.rfftfreq(x.size)
    y = np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * freqs * delay), x.size)
    lags, c = M.cross_correlation(x, y, 40, clip=False)
    index = int(np.argmax(np.abs(c)))
    assert lags[index] + M.fractional_lag(lags, c, index) == pytest.approx(delay, abs=0.02)


def test_padded_output_peak_is_found_before_clipping():
    # est = ref with 320 zeros in front: the normalisation over unshifted blocks puts |c| slightly
    # above 1 at the true lag and its neighbours; the lag must still be the exact one.
    rng = np.random.default_rng(4)
    ref = np.convolve(rng.standard_normal(48000), np.ones(64) / 64, mode="same")   # neighbours correlate at 0.98
    ref[-2000:] *= 4.0   # a loud ending: the estimate's unshifted blocks miss its last 320 samples
    est = np.concatenate([np.zeros(320), ref])
    lag, peak = M.lag_and_peak(ref, est, 8000)
    assert lag == 320 and peak == pytest.approx(1.0, abs=1e-9)
