"""R317 tells a codec's frame grid from the speaker's own pitch.

The reported false alarm: R317 at 101.7 Hz on speakers with pitch 93-126 Hz, codec frame rate 75
Hz. A codec that smears glottal pulses leaves residual energy at the pitch; with the hop unknown
that looked like a frame rate.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, lfilter, sosfiltfilt

from codecdoctor.diagnose import diagnose_pair
from codecdoctor.measure.pitch import pitch_range

SR = 16000


def voice(seconds: float, f0_low: float, f0_high: float, seed: int = 0) -> np.ndarray:
    """A sustained vowel (/a/ formants) whose pitch glides between f0_low and f0_high (0.15 Hz
    intonation), harmonics falling 1/k, a 5 Hz syllable-rate level swing, peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = f0_low + (f0_high - f0_low) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.15 * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    source = sum(np.where(k * f0 < 0.45 * SR, np.cos(k * phase) / k, 0.0) for k in range(1, 60))
    out = source.copy()
    for formant, bandwidth in ((700, 80), (1200, 100), (2600, 150)):
        r = np.exp(-np.pi * bandwidth / SR)
        out += 0.5 * lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / SR), r * r], source)
    out *= 0.6 + 0.4 * np.sin(2 * np.pi * 2.5 * t) ** 2
    return 0.5 * out / np.max(np.abs(out))


def smeared_pulses(ref: np.ndarray) -> np.ndarray:
    """A codec output that loses 30% of the band above 2 kHz: the error sits on every glottal pulse."""
    return ref - 0.3 * sosfiltfilt(butter(4, 2000, "high", fs=SR, output="sos"), ref)


def with_frame_clicks(ref: np.ndarray, hop: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    rms = float(np.sqrt(np.mean(ref ** 2)))
    est = ref + rng.standard_normal(ref.size) * rms * 10 ** (-25 / 20)
    est[::hop] += 1.2 * rms
    return est


def test_pitch_range_of_a_voice_is_its_f0_range():
    found = pitch_range(voice(8.0, 93.0, 126.0), SR)
    assert found.low_hz == pytest.approx(93.0, abs=1.5) and found.high_hz == pytest.approx(126.0, abs=1.5)
    assert pitch_range(np.random.default_rng(0).standard_normal(8 * SR), SR) is None  # noise is unvoiced


def test_residual_at_the_speakers_own_pitch_is_not_a_frame_rate_artifact_when_the_hop_is_unknown():
    ref = voice(8.0, 98.0, 106.0)
    m, findings, _ = diagnose_pair(ref, smeared_pulses(ref), SR)
    # the lines are there and strong: without the pitch they were reported as a 98 Hz frame rate
    assert 97.0 <= m.frame_rate_hz <= 107.0 and m.frame_line_excess_db > 15.0
    assert m.frame_locked_fraction > 0.2
    assert 97.0 <= m.ref_pitch_low_hz and m.ref_pitch_high_hz <= 107.0 and m.frame_pitch_multiple == 1
    assert "R317" not in [f.id for f in findings]


@pytest.mark.parametrize("hop, told", [(213, False), (320, False), (160, True)])
def test_clicks_at_the_codec_hop_are_still_frame_rate_artifacts_on_the_same_voice(hop, told):
    # 75 Hz (the reported codec's rate) and 50 Hz lie outside the 93-126 Hz pitch; 100 Hz lies inside
    # it, so there the hop must be given
    ref = voice(8.0, 93.0, 126.0)
    m, findings, _ = diagnose_pair(ref, with_frame_clicks(ref, hop), SR, hop_samples=hop if told else None)
    assert findings[0].id == "R317", [f"{f.id}: {f.message}" for f in findings]
    assert m.frame_hop_samples == hop and m.frame_pitch_multiple == 0
    assert findings[0].evidence["hop_known"] == int(told)


def test_clicks_at_a_rate_inside_the_pitch_range_with_the_hop_unknown_are_taken_for_the_voice():
    ref = voice(8.0, 93.0, 126.0)
    m, findings, _ = diagnose_pair(ref, with_frame_clicks(ref, 160), SR)
    assert m.frame_rate_hz == pytest.approx(100.0) and m.frame_pitch_multiple == 1
    assert "R317" not in [f.id for f in findings]
