"""R304's drift: a delay that changes over the pair (a clock-rate error, samples dropped by a
streaming decoder) is measured window by window, named as the root cause with its rate, and stays
silent on healthy pairs and constant delays, at several levels and lengths, on every speech source."""
from __future__ import annotations

import numpy as np
import pytest
from pair_reference import measure_pair_whole
from speech_sources import SOURCES, SR, at_level, speech
from test_compare_stream import assert_same_measurements

from codecdoctor.checks.reconstruction import lag_drifts
from codecdoctor.core.findings import Severity
from codecdoctor.diagnose import judge_pair
from codecdoctor.measure import metrics as M
from codecdoctor.measure.pair import ArraySource, measure_pair, measure_pair_stream


def clock_error(x: np.ndarray, ppm: float) -> np.ndarray:
    """`x` played by a clock `ppm` parts per million fast: output sample n is input time n (1 + ppm)."""
    n = np.arange(x.size)
    return np.interp(n * (1.0 + ppm * 1e-6), n, x)


def with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x ** 2)))
    return x + np.random.default_rng(seed).standard_normal(x.size) * rms * 10 ** (-snr_db / 20)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("ppm", [-150.0, 80.0])
def test_a_clock_rate_error_is_the_top_finding_with_its_rate(source, ppm):
    ref = speech(source, max_seconds=8.0)
    est = with_noise(clock_error(ref, ppm), 30.0)
    m = measure_pair(ref, est, SR)
    findings, _ = judge_pair(m)
    assert findings[0].id == "R304", [f.id for f in findings]
    assert "lag_drift_ppm" in findings[0].evidence
    # a fast clock makes the output ever earlier: the lag falls at the clock's rate
    assert m.lag_drift_ppm == pytest.approx(-ppm, rel=0.1)
    assert m.snr_gain_local_lags_db >= 3.0
    assert not {"R312", "R314"} & {f.id for f in findings}


@pytest.mark.parametrize("source", ["te-default", "synthetic"])
def test_samples_dropped_midway_are_a_drift(source):
    """A streaming decoder that loses 24 samples at a chunk boundary halfway through."""
    ref = speech(source, max_seconds=8.0)
    mid = ref.size // 2
    est = with_noise(np.concatenate([ref[:mid], ref[mid + 24:], np.zeros(24)]), 30.0)
    m = measure_pair(ref, est, SR)
    findings, _ = judge_pair(m)
    assert findings[0].id == "R304" and "lag_drift_samples" in findings[0].evidence
    assert m.lag_drift_samples < -8.0        # the step, seen through the fitted line
    windows = [w for w in m.lag_by_window if w[3]]
    assert round(windows[0][1]) == 0 and round(windows[-1][1]) == -24


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("level_dbfs", [-45.0, -20.0, -6.0])
@pytest.mark.parametrize("seconds", [2.5, 8.0])
def test_healthy_pairs_and_constant_delays_show_no_drift(source, level_dbfs, seconds):
    ref = at_level(speech(source, max_seconds=seconds), level_dbfs)
    cases = {"20 dB noise": with_noise(ref, 20.0), "5 dB noise": with_noise(ref, 5.0, seed=1),
             "half a sample late": M.fractional_shift(ref, 0.5),
             "37 samples late": np.concatenate([np.zeros(37), ref[:-37]])}
    for name, est in cases.items():
        m = measure_pair(ref, est, SR)
        assert not lag_drifts(m), (name, m.lag_drift_samples, m.snr_gain_local_lags_db, m.lag_by_window)
        assert abs(m.lag_drift_samples) < 1.0, (name, m.lag_drift_samples)
        findings, _ = judge_pair(m)
        assert not any("lag_drift_samples" in f.evidence for f in findings), name


def test_streamed_drift_equals_the_whole_file_one():
    ref = speech("synthetic", max_seconds=8.0)
    est = with_noise(clock_error(ref, 120.0), 25.0)
    whole = measure_pair_whole(ref, est, SR)
    streamed = measure_pair_stream(ArraySource(ref, SR), ArraySource(est, SR), SR)
    assert len(whole.lag_by_window) >= 4
    assert_same_measurements(whole, streamed, "drift 120 ppm")


@pytest.mark.parametrize("source", SOURCES)
def test_a_dispersive_output_moves_the_peaks_but_is_not_a_drift(source):
    """An all-pass (phase-only) filter shifts each window's correlation peak by its content, back
    and forth: not a delay that drifts."""
    from scipy.signal import lfilter

    ref = speech(source, max_seconds=8.0)
    for f0, radius in ((300.0, 0.97), (1000.0, 0.9), (150.0, 0.99)):
        w = 2 * np.pi * f0 / SR
        a = [1.0, -2.0 * radius * np.cos(w), radius * radius]
        est = lfilter(a[::-1], a, ref)
        m = measure_pair(ref, est, SR)
        assert not lag_drifts(m), (f0, m.lag_drift_samples, m.snr_gain_local_lags_db, m.lag_by_window)


@pytest.mark.parametrize("ppm", [150.0, 0.0])
def test_a_clock_drift_over_a_long_pair_is_found_from_end_to_end(ppm):
    """Over 30 minutes a 150 ppm clock moves the lag by 0.27 s, so the end windows' lags lie far
    beyond +-50 ms of the global lag: the search reaches as far as a 200 ppm drift needs
    (pair.drift_search_seconds). Before, only 3 windows were found, and R314 was named instead."""
    from codecdoctor.measure.pair import drift_search_seconds

    ref = np.resize(speech("te-default", max_seconds=8.0), 30 * 60 * SR)
    est = with_noise(clock_error(ref, ppm), 30.0)
    m = measure_pair_stream(ArraySource(ref, SR), ArraySource(est, SR), SR)
    findings, _ = judge_pair(m)
    assert drift_search_seconds(30 * 60) == pytest.approx(0.18)
    if ppm:
        assert findings[0].id == "R304", [f.id for f in findings]
        assert sum(w[3] for w in m.lag_by_window) >= 7
        assert m.lag_drift_ppm == pytest.approx(-ppm, rel=0.02)
    else:
        assert not lag_drifts(m) and abs(m.lag_drift_samples) < 1.0
        assert not [f.id for f in findings if f.severity >= Severity.WARNING]
