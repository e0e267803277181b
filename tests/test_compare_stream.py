"""The one pair engine (codecdoctor.measure.pair: `measure_pair_stream` over sources, what `compare`
runs, and `measure_pair` over arrays, what check-ckpt and the monitor run) equals the whole-file
reference (tests/pair_reference.py): every field within 0.01 dB, the exact lag, the same findings in the same
order, on the diagnosis gallery's faults (built as tests/test_diagnosis_gallery.py builds them) and
on other speech sources; with blocks small enough that every frame, segment and STFT carry is used.
Plus: compare's memory does not grow with length, and a truncated or corrupt estimate is scored up
to where it stops, with a finding naming the offset."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import speech_like
from pair_reference import measure_pair_whole
from scipy.signal import butter, istft, sosfiltfilt, stft

from codecdoctor.compare import compare
from codecdoctor.diagnose import diagnose_pair, judge_pair
from codecdoctor.measure.audio.reader import FileSource, resample
from codecdoctor.measure.pair import ArraySource, measure_pair, measure_pair_stream

SR = 16000
# Fields measured on the residual after every correction: when that residual is float rounding of an
# exact copy (SNR "all" above 100 dB) they describe rounding noise, which differs between two
# correct summation orders.
RESIDUAL_FIELDS = {"frame_hop_samples", "frame_rate_hz", "frame_line_excess_db", "frame_locked_fraction",
                   "frame_locked_chance_fraction", "frame_locked_ceiling_db"}


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def gallery_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The faults of tests/test_diagnosis_gallery.py, built the same way on 2 s of its clean signal
    (the gallery uses 3 s; shorter keeps this module fast)."""
    clean = speech_like(2.0, SR, seed=11).astype(np.float64)
    rng = np.random.default_rng(1)
    t = np.arange(clean.size) / SR
    chunks = np.array_split(clean, 6)
    levelled = np.concatenate([c * g for c, g in zip(chunks, [0.2, 1.0, 0.45, 0.8, 0.3, 0.6])])
    _, _, spec = stft(clean, nperseg=512)
    _, scrambled = istft(np.abs(spec) * np.exp(1j * np.random.default_rng(2).uniform(0, 2 * np.pi, spec.shape)),
                         nperseg=512)
    nan_out = clean.copy()
    nan_out[1000:1010] = np.nan
    over = clean / np.max(np.abs(clean)) * 1.01
    cases = {
        "scaled_0.1": (clean, 0.1 * clean), "scaled_10": (clean, 10.0 * clean),
        "per_chunk_normalised": (levelled, np.concatenate([c / np.max(np.abs(c)) for c in np.array_split(levelled, 6)])),
        "unbounded": (clean, clean + 0.05 * np.exp(2.0 * t) * np.sin(2 * np.pi * 3 * t)),
        "tanh_ceiling": (over, np.tanh(np.arctanh(np.clip(over, -0.999, 0.999)))),
        "advanced_300": (clean, np.concatenate([clean[300:], np.zeros(300)])),
        "inverted": (clean, -clean), "all_zero": (clean, np.zeros_like(clean)),
        "white_noise": (clean, rng.standard_normal(clean.size) * _rms(clean)),
        "dc": (clean, clean + 2 * _rms(clean)), "nan": (clean, nan_out),
        "padded_800": (clean, np.concatenate([clean, np.zeros(800)])), "trimmed_800": (clean, clean[:-800]),
        # a hop of padding left before the output: the correlation's neighbours of the peak exceed 1
        # (the estimate's first part holds less energy than the peak's lag) and must not tie there
        "padded_before_320": (clean, np.concatenate([np.zeros(320), clean])),
        "lowpass_4k": (clean, sosfiltfilt(butter(8, 4000, fs=SR, output="sos"), clean)),
        "phase_scrambled": (clean, scrambled[: clean.size]),
        "delay_500_gain_0.3": (clean, 0.3 * np.concatenate([np.zeros(500), clean[:-500]])),
        "healthy_25db": (clean, clean + np.random.default_rng(3).standard_normal(clean.size) * _rms(clean) * 10 ** (-25 / 20)),
        "silent_reference": (np.zeros_like(clean), clean), "empty": (np.zeros(0), np.zeros(0)),
    }
    for delay in (1, 7, 320, 2000):
        cases[f"delay_{delay}"] = (clean, np.concatenate([np.zeros(delay), clean[:-delay]]))
    return cases


CASES = gallery_cases()


def assert_same_measurements(whole, streamed, label=""):
    a, b = dataclasses.asdict(whole), dataclasses.asdict(streamed)
    assert a.keys() == b.keys()
    exact_copy = whole.what_if.get("all", -math.inf) > 100.0
    for key, value in a.items():
        other = b[key]
        if key in RESIDUAL_FIELDS and exact_copy:
            continue
        if isinstance(value, dict) and key == "what_if":
            assert value.keys() == other.keys(), (label, key)
            for k in value:
                _close_db(value[k], other[k], f"{label} what_if.{k}")
        elif isinstance(value, float) and (key.endswith("_db") or key.startswith("snr")):
            _close_db(value, other, f"{label} {key}")
        elif isinstance(value, float):
            assert other == pytest.approx(value, rel=1e-5, abs=1e-4), (label, key, value, other)
        else:
            assert other == value, (label, key, value, other)


def _close_db(x, y, label):
    if x == y:
        return
    # beyond 100 dB the error is float rounding of an exact match: both paths call it exact or huge
    if x > 100.0 and y > 100.0:
        return
    assert abs(x - y) <= 0.01, (label, x, y)


@pytest.mark.parametrize("name", sorted(CASES))
def test_streamed_measurements_equal_the_whole_file_ones_on_the_gallery(name):
    ref, est = CASES[name]
    whole = measure_pair_whole(ref, est, SR, subject="pair")
    # 4096-sample blocks: every 20 ms frame, 0.25 s segment, 1 s chunk and STFT frame crosses blocks
    streamed = measure_pair_stream(ArraySource(ref, SR), ArraySource(est, SR), SR, subject="pair", block_samples=4096)
    assert streamed.lag_samples == whole.lag_samples
    assert_same_measurements(whole, streamed, name)
    # measure_pair over arrays is the same engine (default blocks): the same numbers
    assert_same_measurements(whole, measure_pair(ref, est, SR, subject="pair"), f"{name} (arrays)")
    # the same judges on the same numbers: the same findings, top finding first
    whole_findings, whole_ran = judge_pair(whole)
    findings, ran = judge_pair(streamed)
    assert [f.id for f in findings] == [f.id for f in whole_findings]
    assert [f.severity for f in findings] == [f.severity for f in whole_findings]
    assert ran == whole_ran


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_streamed_snrs_hold_for_values_whose_squares_overflow_or_underflow(scale):
    """The sums and the per-frame energies are taken scaled by a power of two (a 1e200 block once
    made every segmental frame +inf dB, a 1e-200 one -inf)."""
    clean = speech_like(2.0, SR, seed=11).astype(np.float64)
    noisy = clean + 0.01 * np.random.default_rng(5).standard_normal(clean.size) * _rms(clean)
    ref, est = scale * clean, scale * noisy
    whole = measure_pair_whole(ref, est, SR, subject="pair")
    streamed = measure_pair_stream(ArraySource(ref, SR), ArraySource(est, SR), SR, subject="pair", block_samples=4096)
    for key in ("snr_db", "si_snr_db", "seg_snr_db"):
        _close_db(getattr(whole, key), getattr(streamed, key), key)
    _close_db(whole.what_if["all"], streamed.what_if["all"], "all")
    assert 20.0 < streamed.seg_snr_db < 35.0


@pytest.mark.parametrize("block", [1 << 18, 4096])
@pytest.mark.parametrize("scale", [1e250, 1e150, 1e-150, 1e-250])
def test_streamed_equals_whole_file_at_any_scale(scale, block):
    """A half-level copy 7 samples late, scaled to where squares and products of energies overflow
    or underflow float64: the lag search, the per-segment levels and, above unit scale, the log-mel
    floor and the long-pair mel-peak bound measure what they measure at unit scale (they once gave
    lag 0, -3001 dB, silence 120 decades up and a skipped mel peak)."""
    clean = speech_like(2.0, SR, seed=11).astype(np.float64)
    ref = scale * clean
    est = 0.5 * np.concatenate([np.zeros(7), ref[:-7]])
    whole = measure_pair_whole(ref, est, SR, subject="pair")
    streamed = measure_pair_stream(ArraySource(ref, SR), ArraySource(est, SR), SR, subject="pair", block_samples=block)
    assert streamed.lag_samples == whole.lag_samples == 7
    assert streamed.correlation_chance == pytest.approx(whole.correlation_chance, abs=1e-6) and whole.correlation_chance > 0
    assert_same_measurements(whole, streamed, f"scale {scale:g}")
    unit = measure_pair_stream(ArraySource(clean, SR), ArraySource(est / scale, SR), SR, subject="pair")
    assert streamed.est_peak_after_segment_levels / scale == pytest.approx(unit.est_peak_after_segment_levels, rel=1e-9)
    if scale > 1.0:   # far below the log-mel floor (1e-5) every bin is floored, by definition
        assert streamed.mel_correlation == pytest.approx(unit.mel_correlation, abs=1e-4)


def test_streamed_stereo_pair_equals_the_whole_file_one():
    ref = np.stack([speech_like(2.0, SR, seed=4), speech_like(2.0, SR, seed=5)]).astype(np.float64)
    est = 0.7 * np.concatenate([np.zeros((2, 64)), ref[:, :-64]], axis=1) + 1e-3
    whole = measure_pair_whole(ref, est, SR)
    streamed = measure_pair_stream(ArraySource(ref, SR), ArraySource(est, SR), SR, block_samples=4096)
    assert streamed.lag_samples == whole.lag_samples == 64
    assert_same_measurements(whole, streamed, "stereo")


@pytest.mark.parametrize("level_dbfs", [-40.0, -12.0])
def test_streamed_equals_whole_on_other_speech_sources_and_levels(level_dbfs):
    sources = pytest.importorskip("speech_sources")
    for name in ("synthetic", "te-default"):
        try:
            clean = sources.at_level(sources.speech(name), level_dbfs)
        except pytest.skip.Exception:
            continue
        rng = np.random.default_rng(7)
        est = -0.8 * np.concatenate([np.zeros(3), clean[:-3]]) + rng.standard_normal(clean.size) * _rms(clean) * 0.01
        whole = measure_pair_whole(clean, est, SR)
        streamed = measure_pair_stream(ArraySource(clean, SR), ArraySource(est, SR), SR, block_samples=8192)
        assert streamed.lag_samples == whole.lag_samples == 3
        assert_same_measurements(whole, streamed, f"{name} at {level_dbfs} dBFS")


@pytest.mark.parametrize("seed", range(12))
def test_the_float32_lag_search_agrees_with_float64_on_random_pairs(seed):
    """Random rate (8-48 kHz), length (0.5-20 s), level (-60 to -6 dBFS), delay, fractional delay,
    polarity, gain, noise and truncation, on speech from several sources: the same lag, correlation,
    fraction and chance level as the whole-file float64 search."""
    from scipy.signal import resample_poly

    sources = pytest.importorskip("speech_sources")
    rng = np.random.default_rng(100 + seed)
    name = ("synthetic", "te-default", "sox-vowels")[seed % 3]
    try:
        base = sources.speech(name, seed, max_seconds=8.0)
    except pytest.skip.Exception:
        base = sources.speech("synthetic", seed, max_seconds=8.0)
    sr = int(rng.choice([8000, 16000, 24000, 44100, 48000]))
    x = resample_poly(base, sr, SR) if sr != SR else base
    x = np.tile(x, 3)[: int(sr * rng.uniform(0.5, 20.0))]
    x = sources.at_level(x, rng.uniform(-60.0, -6.0))
    est = np.roll(x, int(rng.integers(-400, 400))) * rng.choice([1.0, -1.0, 0.5, 1.7])
    fraction = rng.choice([0.0, 0.3, 0.5])
    if fraction:
        spectrum = np.fft.rfft(est)
        est = np.fft.irfft(spectrum * np.exp(-2j * np.pi * np.arange(spectrum.size) * fraction / est.size), est.size)
    est = est + rng.standard_normal(est.size) * _rms(x) * 10 ** (-rng.uniform(0.0, 40.0) / 20)
    if seed % 4 == 1:
        est = est[: int(est.size * 0.9)]
    whole = measure_pair_whole(x, est, sr)
    streamed = measure_pair_stream(ArraySource(x, sr), ArraySource(est, sr), sr)
    assert streamed.lag_samples == whole.lag_samples
    assert streamed.correlation == pytest.approx(whole.correlation, abs=1e-9)
    assert streamed.lag_fraction_samples == pytest.approx(whole.lag_fraction_samples, abs=1e-6)
    assert streamed.correlation_chance == pytest.approx(whole.correlation_chance, abs=1e-5)


def test_a_long_pair_uses_the_sampled_lag_blocks_and_finds_the_lag():
    # beyond 32 lag blocks (64 s at the default window) the lag comes from 32 evenly spaced blocks,
    # read by seeking, as metrics.cross_correlation samples them
    base = speech_like(10.0, 8000, seed=9).astype(np.float64)
    ref = np.concatenate([base * g for g in np.linspace(0.3, 1.0, 7)])      # 70 s at 8 kHz: 35 blocks
    est = 0.9 * np.concatenate([np.zeros(240), ref[:-240]])
    whole = measure_pair_whole(ref, est, 8000, max_lag_samples=400)
    streamed = measure_pair_stream(ArraySource(ref, 8000), ArraySource(est, 8000), 8000, max_lag_samples=400)
    assert streamed.lag_samples == whole.lag_samples == 240
    assert streamed.correlation == pytest.approx(whole.correlation, abs=1e-9)


def test_the_float32_lag_search_rechecks_its_peak_in_float64():
    """The single-FFT search runs in float32; every lag near its peak is recomputed as a float64 dot
    product, which gives the float64 FFT's values (1e-12), so the peak, its ties and its value are
    the float64 search's."""
    from codecdoctor.measure.pair.lag import Correlator, estimate_lag
    from codecdoctor.measure.pair.sources import FlatView

    ref, est = CASES["delay_320"]
    ref_view = FlatView(ArraySource(ref, SR), ref.size)
    est_view = FlatView(ArraySource(est, SR), est.size)
    correlator = Correlator(ref_view, float(ref.mean()), float(est.mean()))
    lags, fast = correlator.correlate(est_view, 8000)
    _, precise = correlator.correlate(est_view, 8000, precise=True)
    assert np.max(np.abs(fast - precise)) < 1e-5          # float32 rounding, far below the 1e-4 margin
    chosen = np.array([-8000, -1, 0, 320, 321, 7999])
    assert correlator.searched_in_float32(est_view)
    exact = correlator.exact_at(chosen)
    assert exact == pytest.approx(precise[chosen + 8000], abs=1e-12)
    assert estimate_lag(correlator, est_view, 8000).lag == 320


@pytest.mark.parametrize("name", ["delay_7", "lowpass_4k", "white_noise", "phase_scrambled"])
def test_a_flat_float32_peak_falls_back_to_the_float64_search(name, monkeypatch):
    # with no room for rechecked lags every search takes the float64 fallback: the same numbers
    from codecdoctor.measure.pair import lag

    monkeypatch.setattr(lag, "EXACT_LAGS", 0)
    ref, est = CASES[name]
    whole = measure_pair_whole(ref, est, SR, subject="pair")
    streamed = measure_pair_stream(ArraySource(ref, SR), ArraySource(est, SR), SR, subject="pair")
    assert streamed.lag_samples == whole.lag_samples
    assert streamed.correlation == pytest.approx(whole.correlation, abs=1e-9)
    assert streamed.lag_fraction_samples == pytest.approx(whole.lag_fraction_samples, abs=1e-9)


@pytest.mark.parametrize("file_rate", [8000, 44100])
def test_file_source_resamples_in_segments_exactly_like_the_whole_file(tmp_path, file_rate):
    x = np.random.default_rng(0).standard_normal((2, file_rate * 3))
    sf.write(str(tmp_path / "x.wav"), x.T, file_rate, subtype="DOUBLE")
    whole = resample(x, file_rate, SR)
    source = FileSource(tmp_path / "x.wav", SR)
    assert source.frames == whole.shape[1]
    pieces = np.concatenate([source.read(a, a + 5000) for a in range(0, source.frames, 5000)], axis=1)
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("container, subtype", [("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"),
                                                ("WAV", "PCM_32"), ("WAV", "FLOAT"), ("WAV", "DOUBLE"),
                                                ("FLAC", "PCM_S8"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24"),
                                                ("AIFF", "PCM_32")])
def test_file_source_reads_the_samples_libsndfile_gives_as_float64(tmp_path, container, subtype):
    # integer PCM is read as integers and scaled in numpy (3x faster): the very same samples,
    # full scale and the most negative code included
    x = np.clip(np.random.default_rng(0).standard_normal((6000, 2)) * 0.4, -1.0, 1.0)
    x[:2] = [[-1.0, 1.0], [1.0, -1.0]]
    path = tmp_path / f"x.{container.lower()}"
    sf.write(str(path), x, SR, subtype=subtype, format=container)
    expected, _ = sf.read(str(path), dtype="float64", always_2d=True)
    source = FileSource(path)
    np.testing.assert_array_equal(source.read(0, source.frames), expected.T)
    source.close()


def _write_pair(folder: Path, seconds: float, sample_rate: int, est_name: str = "est.wav") -> tuple[Path, Path]:
    """REF speech-like audio, EST = 0.9 x REF, 240 samples late, light noise (PCM16), written ten
    seconds at a time so the test process stays small."""
    base = speech_like(10.0, sample_rate, seed=1)
    rng = np.random.default_rng(0)
    total = int(seconds * sample_rate)
    previous = np.zeros(240)
    with sf.SoundFile(str(folder / "ref.wav"), "w", sample_rate, 1, "PCM_16") as ref_file, \
            sf.SoundFile(str(folder / est_name), "w", sample_rate, 1, "PCM_16") as est_file:
        for index, start in enumerate(range(0, total, base.size)):
            ref = base[: min(base.size, total - start)] * (0.4, 1.0, 0.6, 0.8)[index % 4]
            delayed = np.concatenate([previous, ref])[: ref.size]
            previous = np.concatenate([previous, ref])[-240:]
            ref_file.write(ref)
            est_file.write(0.9 * delayed + rng.standard_normal(ref.size) * 1e-3)
    return folder / "ref.wav", folder / est_name


def test_compare_on_files_equals_the_whole_file_diagnosis(tmp_path):
    ref_path, est_path = _write_pair(tmp_path, 20.0, SR)
    report = compare(ref_path, est_path)
    record = report.measurements["pairs"][0]
    ref, _ = sf.read(str(ref_path), dtype="float64")
    est, _ = sf.read(str(est_path), dtype="float64")
    whole, findings, _ = diagnose_pair(ref, est, SR, subject=record["ref"] + " vs " + record["est"])
    assert record["lag_samples"] == whole.lag_samples == 240
    for key in ("snr_db", "si_snr_db", "seg_snr_db"):
        _close_db(whole.__dict__[key], record[key], key)
    for key, value in whole.what_if.items():
        _close_db(value, record["what_if"][key], key)
    pair_ids = [f.id for f in report.findings if f.id != "R313"]
    assert pair_ids == [f.id for f in findings]
    assert pair_ids[0] == "R304"


# VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork + exec into
# ru_maxrss, so a child of a big pytest process would report the parent's size. Without the quality
# metrics: they are their own pass over at most three 20 s segments (measure/quality.py bounds it
# to 1.5 segments), and PESQ under tracemalloc takes minutes.
MEMORY_PROBE = textwrap.dedent("""
    import json, sys, tracemalloc
    from codecdoctor.compare import compare
    tracemalloc.start()
    report = compare(sys.argv[1], sys.argv[2], quality=False)
    peak = tracemalloc.get_traced_memory()[1]
    hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(json.dumps({"traced_peak": peak, "hwm_kb": hwm_kb, "lag": report.measurements["pairs"][0]["lag_samples"]}))
""")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_compare_peak_memory_does_not_grow_from_10_to_40_minutes(tmp_path):
    # 8 kHz PCM16 keeps the files small (9.6 and 38 MB); a whole-file read of the 40-minute pair
    # would hold about 300 MB of float64 on its own. The STFT keeps each side's log-mels of at most
    # MEL_FRAMES_LONG frames (float32): from 10 minutes on, that store is full and stays so.
    from codecdoctor.measure.pair.stft_sums import MEL_FRAMES_LONG

    peaks = {}
    for minutes in (10, 40):
        folder = tmp_path / f"m{minutes}"
        folder.mkdir()
        ref, est = _write_pair(folder, minutes * 60.0, 8000)
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(ref), str(est)], capture_output=True,
                             text=True, timeout=600, check=True)
        peaks[minutes] = json.loads(out.stdout.strip().splitlines()[-1])
        assert peaks[minutes]["lag"] == 240
    growth_mb = (peaks[40]["traced_peak"] - peaks[10]["traced_peak"]) / 2 ** 20
    # 4x the audio; what may grow is 56 bytes per 0.25 s segment, 16 per 1 s chunk and 12 per 20 ms
    # frame (under 2 MB)
    assert growth_mb < 4.0, peaks
    store_mb = MEL_FRAMES_LONG * 64 * 4 * 2 / 2 ** 20
    assert peaks[40]["traced_peak"] < (100 + store_mb) * 2 ** 20, peaks
    rss_growth_mb = (peaks[40]["hwm_kb"] - peaks[10]["hwm_kb"]) / 1024
    assert rss_growth_mb < 24.0, peaks


def _corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4000] = b"\x55" * 4000
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated_wav", "corrupt_flac"])
def test_a_damaged_estimate_is_scored_up_to_the_damage_and_named_with_its_offset(tmp_path, damage):
    ref_path, est_path = _write_pair(tmp_path, 40.0, SR, "est.flac" if damage == "corrupt_flac" else "est.wav")
    if damage == "truncated_wav":
        content = est_path.read_bytes()
        est_path.write_bytes(content[: 44 + 2 * SR * 25])  # a transfer cut at 25 s
        expected_s = 25.0
    else:
        _corrupt_middle(est_path)
        expected_s = None
    report = compare(ref_path, est_path)
    r315 = [f for f in report.findings if f.id == "R315"]
    assert len(r315) == 1 and r315[0].severity.name.lower() == "error"
    offset_s = r315[0].evidence["readable_until_s"]
    offset_samples = r315[0].evidence["readable_until_samples"]
    assert offset_samples == round(offset_s * SR)
    assert f"{offset_s:.3f} s" in r315[0].message and f"sample {offset_samples}" in r315[0].message
    if expected_s is not None:
        assert offset_s == pytest.approx(expected_s, abs=1e-3)
    else:
        assert 5.0 < offset_s < 35.0      # somewhere in the middle, where the bytes were damaged
    record = report.measurements["pairs"][0]
    assert record["compared_samples"] == offset_samples
    assert record["lag_samples"] == 240 and math.isfinite(record["snr_db"])
    assert record["error"] and "cannot be read past" in record["error"]
    ids = [f.id for f in report.findings]
    assert "R304" in ids and "R300" in ids            # the readable part is still diagnosed


@pytest.mark.parametrize("subtype, frame_bytes", [("PCM_16", 4), ("PCM_24", 6), ("ULAW", 2)])
def test_the_audit_and_the_pair_reader_name_a_truncated_wav_with_one_text(tmp_path, subtype, frame_bytes):
    """One reader: the audit's row and compare's file source read the same header and give the
    same error, at the frame where the bytes run out (A-law/u-law WAVs hold one byte a sample)."""
    from codecdoctor.measure.audio.file import measure_file

    path = tmp_path / "cut.wav"
    sf.write(str(path), np.random.default_rng(0).uniform(-0.5, 0.5, (SR, 2)), SR, subtype=subtype)
    header = len(path.read_bytes()) - SR * frame_bytes
    path.write_bytes(path.read_bytes()[: header + 3000 * frame_bytes])  # a copy cut after 3000 frames
    source = FileSource(path)
    row = measure_file(path)
    assert source.declared_frames == row.declared_frames == SR
    assert source.error_frame == source.frames == row.frames == 3000
    assert source.error == row.error == ("truncated: the header declares 16000 frames (1.000 s) "
                                         "but the file holds 3000 (0.188 s)")
    source.close()


def test_an_estimate_that_is_not_audio_is_r315_naming_the_side_in_the_readers_words(tmp_path):
    ref_path, _ = _write_pair(tmp_path, 2.0, SR)
    (tmp_path / "est.wav").write_bytes(b"NOPE" + bytes(200))
    report = compare(ref_path, tmp_path / "est.wav", quality=False)
    r315 = [f for f in report.findings if f.id == "R315"]
    assert len(r315) == 1
    assert r315[0].message.startswith("Cannot read the pair: EST est.wav: not audio: no known audio header "
                                      "(first bytes 4e4f5045)")
    assert str(tmp_path) not in r315[0].message      # libsndfile's absolute path is not repeated


def test_correlation_chance_is_the_estimate_rotated_within_the_lag_search_frame():
    """The definition, computed the slow way: the estimate zero-padded to the lag search's FFT
    length, rotated by a third and two thirds of its length, correlated lag by lag."""
    from pair_reference import _correlation_chance

    from codecdoctor.measure.pair.lag import lag_frame_size

    rng = np.random.default_rng(5)
    n, max_lag = 4000, 400
    ref = rng.standard_normal(n)
    est = np.convolve(ref, [0.5, 0.3, 0.2])[:n] + 0.1 * rng.standard_normal(n) + 0.05
    size = lag_frame_size(n + max_lag + 1)
    r = ref - ref.mean()
    padded = np.zeros(size)
    padded[:n] = est - est.mean()
    norm = math.sqrt(float(r @ r) * float(padded[:n] @ padded[:n]))
    window = min(max_lag, n // 4)
    best = 0.0
    for shift in (n // 3, 2 * n // 3):
        rotated = np.roll(padded, shift)
        for k in range(-window, window + 1):
            best = max(best, abs(float(r @ np.roll(rotated, -k)[:n])))
    assert _correlation_chance(ref, est, max_lag) == pytest.approx(best / norm, rel=1e-9)
    # and it is a chance level: far below the aligned pair's correlation (~0.8 here)
    assert best / norm < 0.1
