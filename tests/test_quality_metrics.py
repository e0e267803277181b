"""Quality metrics (measure/quality.py): STOI/ESTOI (pystoi), PESQ (pesq), multi-scale mel distance.

Pinned against each package's own behaviour (identity scores its documented maximum) and against
torchmetrics' wrappers of the same packages; preconditions gated with notes, never a crash."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from speech_sources import SR, speech

from codecdoctor.measure import quality as Q

pytest.importorskip("pystoi")
pytest.importorskip("pesq")


def rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


@pytest.fixture(scope="module")
def clean():
    return speech("te-default", 0, max_seconds=3.0)


def noisy(x, snr_db, seed=0):
    rng = np.random.default_rng(seed)
    return x + rng.standard_normal(x.size) * rms(x) * 10 ** (-snr_db / 20)


def test_identity_scores_each_metrics_documented_maximum(clean):
    q = Q.quality_metrics(clean, clean, SR)
    assert q.stoi == pytest.approx(1.0, abs=1e-6) and q.estoi == pytest.approx(1.0, abs=1e-6)
    # P.862.2 wide band maps to at most 4.644, P.862 narrow band to 4.549 (MOS-LQO)
    assert q.pesq_wb == pytest.approx(4.644, abs=0.001)
    assert q.pesq_nb == pytest.approx(4.549, abs=0.001)
    assert q.multiscale_mel_distance == 0.0
    assert q.notes == [] and q.segments == 1


def test_more_noise_scores_lower_on_every_metric(clean):
    better, worse = Q.quality_metrics(clean, noisy(clean, 20), SR), Q.quality_metrics(clean, noisy(clean, 5), SR)
    for key in ("stoi", "estoi", "pesq_wb", "pesq_nb"):
        assert getattr(worse, key) < getattr(better, key) < 4.65, key
    assert worse.multiscale_mel_distance > better.multiscale_mel_distance > 0.0


def test_numbers_equal_torchmetrics_wrappers(clean):
    torch = pytest.importorskip("torch")
    audio = pytest.importorskip("torchmetrics.functional.audio")
    est = noisy(clean, 10)
    q = Q.quality_metrics(clean, est, SR)
    ref_t, est_t = torch.from_numpy(clean), torch.from_numpy(est)
    assert q.stoi == pytest.approx(float(audio.short_time_objective_intelligibility(est_t, ref_t, SR)), abs=1e-9)
    assert q.estoi == pytest.approx(float(audio.short_time_objective_intelligibility(est_t, ref_t, SR, extended=True)),
                                    abs=1e-9)
    assert q.pesq_wb == pytest.approx(float(audio.perceptual_evaluation_speech_quality(est_t, ref_t, SR, "wb")), abs=1e-4)
    assert q.pesq_nb == pytest.approx(float(audio.perceptual_evaluation_speech_quality(est_t, ref_t, SR, "nb")), abs=1e-4)


def test_block_by_block_equals_whole_signal_and_segments_are_energy_weighted(clean):
    ref = np.concatenate([clean, 0.3 * clean[::-1]])          # 6 s: three 2 s segments
    est = noisy(ref, 12)
    whole = Q.quality_metrics(ref, est, SR, segment_seconds=2.0)
    acc = Q.QualityAccumulator(SR, segment_seconds=2.0, total_samples=ref.size)
    for start in range(0, ref.size, 7777):
        acc.update(ref[start:start + 7777], est[start:start + 7777])
    streamed = acc.result()
    assert whole.segments == streamed.segments == 3
    for key in ("stoi", "estoi", "pesq_wb", "pesq_nb", "multiscale_mel_distance"):
        assert getattr(streamed, key) == pytest.approx(getattr(whole, key), abs=1e-12), key
    # energy weighting: the weighted mean of the per-segment STOIs
    seg = 2 * SR
    parts = [(ref[i:i + seg], est[i:i + seg]) for i in range(0, ref.size, seg)]
    values = [Q.quality_metrics(r, e, SR).stoi for r, e in parts]
    weights = [float(np.dot(r, r)) for r, _ in parts]
    assert whole.stoi == pytest.approx(np.average(values, weights=weights), abs=1e-12)


def test_a_long_pair_is_scored_on_segments_spread_over_it(clean):
    ref = np.concatenate([clean * g for g in np.linspace(0.2, 1.0, 10)])        # 30 s
    est = noisy(ref, 15)
    q = Q.quality_metrics(ref, est, SR, segment_seconds=2.0, max_seconds=6.0, pesq=False)
    assert q.segments == 3 and Q.chosen_segments(15, 3) == {0, 7, 14}
    assert any("3 of 15 segments" in n for n in q.notes)
    acc = Q.QualityAccumulator(SR, segment_seconds=2.0, max_seconds=6.0, total_samples=ref.size, pesq=False)
    for start in range(0, ref.size, 10000):
        acc.update(ref[start:start + 10000], est[start:start + 10000])
    assert acc.result().stoi == pytest.approx(q.stoi, abs=1e-12)
    picked = [Q.segment_bounds(ref.size, 2 * SR)[i] for i in (0, 7, 14)]
    values = [Q.quality_metrics(ref[a:b], est[a:b], SR, pesq=False).stoi for a, b in picked]
    assert q.stoi == pytest.approx(np.average(values, weights=[float(np.dot(ref[a:b], ref[a:b])) for a, b in picked]),
                                   abs=1e-12)


def test_segments_end_with_a_tail_between_half_and_one_and_a_half_segments():
    for total in (1, 5, 14, 15, 16, 24, 26, 100):
        bounds = Q.segment_bounds(total, 10)
        assert bounds[0][0] == 0 and bounds[-1][1] == total
        assert all(b[1] == c[0] for b, c in zip(bounds, bounds[1:]))
        if len(bounds) > 1:
            assert 5 <= bounds[-1][1] - bounds[-1][0] < 15


def test_sources_read_in_blocks_equal_arrays_and_the_lag_is_undone(clean):
    from codecdoctor.measure.pair import ArraySource

    est = np.concatenate([np.zeros(40), noisy(clean, 15)[:-40]])
    direct = Q.quality_metrics(clean, est, SR, lag_samples=40)
    streamed = Q.quality_from_sources(ArraySource(clean, SR), ArraySource(est, SR), SR, lag_samples=40,
                                      segment_seconds=1.0)
    direct = Q.quality_metrics(clean, est, SR, lag_samples=40, segment_seconds=1.0)
    assert streamed.stoi == pytest.approx(direct.stoi, abs=1e-12)
    assert streamed.pesq_wb == pytest.approx(direct.pesq_wb, abs=1e-6)
    assert direct.stoi > Q.quality_metrics(clean, est, SR).stoi    # aligned scores better than as is
    assert "aligned by its lag (+40 samples)" in direct.notes[0]


@pytest.mark.parametrize("rate, wide, note", [
    (44100, True, "resampled from 44100 Hz to 16000 Hz"),
    (12000, False, "resampled from 12000 Hz to 8000 Hz"),
    (8000, False, "narrow band only"),
    (6000, None, "it needs at least 8 kHz"),
])
def test_pesq_runs_only_at_8_or_16_khz_and_says_what_it_did(clean, rate, wide, note):
    from codecdoctor.measure.audio.reader import resample

    ref = resample(clean, SR, rate)
    q = Q.quality_metrics(ref, noisy(ref, 20), rate)
    assert any(note in n for n in q.notes), q.notes
    assert q.stoi is not None                                   # STOI takes any rate
    if wide is None:
        assert q.pesq_wb is None and q.pesq_nb is None
    else:
        assert q.pesq_nb is not None and (q.pesq_wb is not None) == wide


def test_silent_or_too_short_pairs_are_null_with_a_note(clean):
    silent = Q.quality_metrics(np.zeros(SR), np.zeros(SR), SR)
    assert silent.stoi is None and silent.pesq_wb is None
    assert any("silent" in n for n in silent.notes)
    short = Q.quality_metrics(clean[:3000], clean[:3000], SR)
    assert short.stoi is None and short.pesq_wb is None
    assert any("shorter than" in n for n in short.notes)
    assert short.multiscale_mel_distance == 0.0                  # the mel distance needs no utterance


def test_pause_only_segment_gives_no_utterance_note():
    rng = np.random.default_rng(2)
    hiss = rng.standard_normal(2 * SR) * 1e-4                     # -80 dBFS: no speech for PESQ's VAD
    q = Q.quality_metrics(hiss, hiss + rng.standard_normal(hiss.size) * 1e-5, SR)
    assert q.pesq_wb is None or math.isfinite(q.pesq_wb)
    if q.pesq_wb is None:
        assert any("PESQ" in n for n in q.notes)


def test_missing_packages_give_null_with_an_install_note(clean, monkeypatch):
    monkeypatch.setattr(Q, "_import_pystoi", lambda: None)
    monkeypatch.setattr(Q, "_import_pesq", lambda: None)
    q = Q.quality_metrics(clean, noisy(clean, 20), SR)
    assert q.stoi is None and q.estoi is None and q.pesq_wb is None and q.pesq_nb is None
    assert Q.PYSTOI_MISSING in q.notes and Q.PESQ_MISSING in q.notes
    assert q.multiscale_mel_distance is not None                 # numpy only


def test_multiscale_mel_distance_of_a_half_gain_is_log10_2_per_scale(clean):
    q = Q.quality_metrics(clean, 0.5 * clean, SR)
    # A bin differs by log10(2) = 0.301 when both sides are above the 1e-5 clamp, by less when
    # only the halved one is clamped, by 0 when both are: bounds from the reference's bins alone.
    low = high = 0.0
    for window, n_mels in Q.MULTISCALE_MEL:
        ref_bins = Q._log_mel(clean, SR, window, n_mels)
        low += math.log10(2) * float(np.mean(ref_bins >= math.log10(2 * Q.MEL_CLAMP)))
        high += math.log10(2) * float(np.mean(ref_bins > math.log10(Q.MEL_CLAMP)))
    assert low - 1e-9 <= q.multiscale_mel_distance <= high + 1e-9
    assert q.multiscale_mel_distance > 0.5 * len(Q.MULTISCALE_MEL) * math.log10(2)
    assert q.multiscale_mel_config["scales"][0] == {"window": 32, "hop": 8, "n_mels": 5}
    assert q.multiscale_mel_config["mel_scale"] == "htk" and q.multiscale_mel_config["clamp"] == 1e-5


def test_compare_puts_the_metrics_in_every_pair_and_can_skip_them(clean):
    from codecdoctor.compare import compare

    est = noisy(clean, 15)
    pair = compare(clean, est, sample_rate=SR).measurements["pairs"][0]
    for key in ("stoi", "estoi", "pesq_wb", "pesq_nb", "multiscale_mel_distance"):
        assert isinstance(pair[key], float), key
    assert pair["multiscale_mel_config"]["scales"] and pair["mel_distance_config"]["n_mels"] == 64
    skipped = compare(clean, est, sample_rate=SR, quality=False).measurements["pairs"][0]
    assert skipped["stoi"] is None and skipped["pesq_wb"] is None
    assert skipped["snr_db"] == pair["snr_db"]                   # the rest of the pair is unchanged


def test_compare_html_shows_the_quality_table_and_json_carries_the_fields(cli, tmp_path, clean):
    import soundfile as sf

    sf.write(str(tmp_path / "ref.wav"), clean, SR)
    sf.write(str(tmp_path / "est.wav"), noisy(clean, 15), SR)
    code, _, _ = cli("compare", tmp_path / "ref.wav", tmp_path / "est.wav", "--html", tmp_path / "q.html",
                     "--json", tmp_path / "q.json", "--no-progress")
    assert code == 0
    html = (tmp_path / "q.html").read_text(encoding="utf-8")
    assert "Quality metrics" in html and "PESQ WB" in html and "ESTOI" in html
    pair = json.loads((tmp_path / "q.json").read_text())["measurements"]["pairs"][0]
    assert 0.0 < pair["stoi"] <= 1.0 and 1.0 <= pair["pesq_wb"] <= 4.65
    code, _, _ = cli("compare", tmp_path / "ref.wav", tmp_path / "est.wav", "--html", tmp_path / "n.html",
                     "--json", tmp_path / "n.json", "--no-quality", "--no-progress")
    assert code == 0 and "Quality metrics" not in (tmp_path / "n.html").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "n.json").read_text())["measurements"]["pairs"][0]["stoi"] is None


def test_a_segment_with_too_little_speech_is_left_out_of_stoi_with_a_note(clean):
    """pystoi returns 1e-5 (with a warning) when fewer than 30 frames of speech remain after it drops
    the frames 40 dB below the loudest: that is no score, so the metric stays None and a note says why
    (an earlier check matched a wording pystoi does not use and averaged the 1e-5 in)."""
    ref = np.zeros(SR)
    ref[: SR // 8] = clean[: SR // 8]           # 125 ms of speech, then digital silence
    est = ref + 1e-3 * np.random.default_rng(0).standard_normal(ref.size) * (np.arange(ref.size) < SR // 8)
    result = Q.quality_metrics(ref, est, SR, pesq=False, mel=False)
    assert result.stoi is None and result.estoi is None
    assert any("STOI not computed" in note and "fewer than 30 frames" in note for note in result.notes), result.notes
