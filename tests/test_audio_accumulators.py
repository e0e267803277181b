"""Accumulator and per-file statistics against straightforward numpy (and ffmpeg astats when present)."""
from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from audio_fixtures import speech_like, write_audio

from codecdoctor.measure.audio.accumulator import ENVELOPE_MAX_BINS, SignalAccumulator
from codecdoctor.measure.audio.file import measure_file
from codecdoctor.measure.audio.formats import frame_length, pcm_rails

SR = 16000


def oracle(x: np.ndarray, sample_rate: int, *, rails=(-1.0, 1.0), exact_rails=True, min_run=3,
           silence_db=-60.0) -> dict:
    """The plain, obviously-correct computation (float64, whole file in memory)."""
    x2 = x.reshape(len(x), -1).astype(np.float64)
    flat = x2.reshape(-1)
    finite = flat[np.isfinite(flat)]
    fl = frame_length(sample_rate) * x2.shape[1]
    frames = [x2.reshape(-1)[i:i + fl] for i in range(0, x2.size, fl)]
    frame_ms = [np.mean(np.where(np.isfinite(f), f, 0.0) ** 2 * (fl / max(1, np.isfinite(f).sum()))) for f in frames]
    silent = sum(ms < 10 ** (silence_db / 10) for ms in frame_ms)
    overs = np.abs(finite) > 1
    clipped = 0
    for c in range(x2.shape[1]):
        col = x2[:, c]
        at = (col == rails[0]) | (col == rails[1]) if exact_rails else (col <= rails[0]) | (col >= rails[1])
        run = 0
        for v in list(at) + [False]:
            if v:
                run += 1
            else:
                clipped += run if run >= min_run else 0
                run = 0
    excess = np.sum((finite - np.clip(finite, -1, 1)) ** 2)
    rms = math.sqrt(np.mean(finite ** 2))
    return {
        "min": finite.min(), "max": finite.max(), "peak": np.abs(finite).max(), "rms": rms,
        "rms_db": 20 * math.log10(rms), "peak_db": 20 * math.log10(np.abs(finite).max()),
        "dc_offset": finite.mean(), "crest_factor": np.abs(finite).max() / rms,
        "silence_fraction": silent / len(frames), "overs": int(overs.sum()),
        "clip_ceiling_snr_db": 10 * math.log10(np.sum(finite ** 2) / excess) if excess > 0 else None,
        "clipped_samples": clipped, "nonfinite": int((~np.isfinite(flat)).sum()), "frames": len(x2),
    }


def assert_matches(measured, expected: dict, rel=1e-6):
    for key, want in expected.items():
        got = getattr(measured, key)
        if want is None:
            assert got is None, key
        elif isinstance(want, (int, np.integer)) and not isinstance(want, bool):
            assert got == want, (key, got, want)
        else:
            # relative to the value, or to the signal scale (rms) for quantities that can be ~0 (DC)
            assert got == pytest.approx(float(want), rel=rel, abs=1e-9), (key, got, want)


def test_float_file_statistics_match_numpy_and_keep_values_beyond_one(tmp_path):
    x = speech_like(7.3, SR, seed=4, peak=1.0129)
    x[100:140] = -1.0129  # a stretch beyond -1: true values must survive (sox clips them to ±1)
    path = write_audio(tmp_path / "f.wav", x)
    m = measure_file(path)
    want = oracle(x, SR)
    assert_matches(m, want)
    assert m.min == pytest.approx(-1.0129, rel=1e-6) and m.max == pytest.approx(1.0129, rel=1e-6)
    assert m.overs > 40 and m.clip_ceiling_snr_db is not None


def test_pcm16_rails_are_both_full_scale_codes(tmp_path):
    x = speech_like(3.0, SR, seed=5, peak=0.8)
    ints = np.round(x * 32768 * 3.0).clip(-32768, 32767).astype(np.int16)  # driven into both rails
    path = tmp_path / "c16.wav"
    sf.write(path, ints, SR, subtype="PCM_16")
    low, high = pcm_rails("PCM_16")
    assert (low, high) == (-1.0, 32767 / 32768)
    m = measure_file(path)
    as_float = ints.astype(np.float64) / 32768
    want = oracle(as_float, SR, rails=(low, high), exact_rails=False)
    assert_matches(m, want)
    assert m.clipped_samples > 100 and m.overs == 0
    assert m.max == pytest.approx(32767 / 32768) and m.min == -1.0


def test_block_splits_do_not_change_any_number():
    x = speech_like(4.0, SR, seed=6, channels=2, peak=1.05)
    x[5000:5010, 0] = 1.0  # a rail run crossing the split points below
    whole = SignalAccumulator(SR, 2, subtype="FLOAT")
    whole.update(x)
    a = whole.result()
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), 40, replace=False))
    cuts = np.concatenate([cuts, [5003, 5007]])
    pieces = SignalAccumulator(SR, 2, subtype="FLOAT")
    for part in np.split(x, np.sort(cuts)):
        pieces.update(part)
    b = pieces.result()
    for name in ("frames", "min", "max", "overs", "clipped_samples", "clip_runs", "silent_frames", "level_frames",
                 "nan", "inf", "rail_samples"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("sum", "sum_squares", "overs_excess_energy", "active_sum_squares"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9), name
    assert a.clipped_samples == 10


def test_combine_pools_independent_streams_like_one_concatenated_count():
    x = speech_like(2.0, SR, seed=7)
    y = speech_like(3.0, SR, seed=8) * 1.2
    a, b = SignalAccumulator(SR), SignalAccumulator(SR)
    a.update(x)
    b.update(y[:1001])  # an open partial frame: combine must finish it without touching b
    frames_before = (a.frames, b.frames)
    pooled_acc = a.combine(b)
    assert pooled_acc is not a and pooled_acc is not b
    assert (a.frames, b.frames) == frames_before  # neither input changed
    b.update(y[1001:])  # b still streams after being combined
    pooled = a.combine(b).result()
    both = np.concatenate([x, y]).astype(np.float64)
    assert pooled.frames == len(both)
    assert pooled.sum_squares == pytest.approx(np.sum(both ** 2), rel=1e-7)
    assert pooled.max == pytest.approx(both.max()) and pooled.min == pytest.approx(both.min())
    assert pooled.overs == int((np.abs(both) > 1).sum())
    assert pooled_acc.result().frames == len(x) + 1001


def test_combine_refuses_streams_configured_differently():
    with pytest.raises(ValueError, match="configured differently"):
        SignalAccumulator(SR).combine(SignalAccumulator(48000))


def test_every_accumulator_field_declares_how_it_combines():
    from dataclasses import fields

    from codecdoctor.measure.audio.accumulator import same

    rules = {f.name: f.metadata.get("combine", same) for f in fields(SignalAccumulator)}
    assert rules["frames"].__name__ == "add" and rules["max"].__name__ == "largest"
    assert rules["envelope"] is None and rules["sample_rate"] is same


def test_nan_and_inf_are_counted_and_excluded_from_statistics(tmp_path):
    x = speech_like(2.0, SR, seed=9)
    x[1000] = np.nan
    x[2000:2003] = np.inf
    x[3000] = -np.inf
    path = write_audio(tmp_path / "nan.wav", x)
    m = measure_file(path)
    assert (m.nan, m.inf, m.nonfinite) == (1, 4, 5)
    assert_matches(m, {k: v for k, v in oracle(x, SR).items() if k != "silence_fraction"})


def test_envelope_is_bounded_so_memory_is_flat_in_file_length():
    acc = SignalAccumulator(SR)
    block = speech_like(10.0, SR, seed=10)
    for _ in range(60):  # 10 minutes, fed as 60 blocks
        acc.update(block)
    env = acc.result().envelope
    assert len(env["rms_db"]) <= 2 * ENVELOPE_MAX_BINS
    assert env["start_s"][-1] + env["duration_s"][-1] == pytest.approx(600.0, abs=0.05)


def test_upsampled_file_shows_its_real_bandwidth(tmp_path):
    from scipy.signal import resample_poly

    narrow = resample_poly(speech_like(4.0, 8000, seed=11), 2, 1).astype(np.float32)
    full = speech_like(4.0, SR, seed=11)
    m_narrow = measure_file(write_audio(tmp_path / "up.wav", narrow))
    m_full = measure_file(write_audio(tmp_path / "full.wav", full))
    assert 3500 <= m_narrow.bandwidth_hz <= 4300
    assert m_full.bandwidth_hz >= 7000


def test_content_bit_depth_sees_16_bit_content_in_a_float_file(tmp_path):
    x = np.round(speech_like(2.0, SR, seed=12) * 32768) / 32768
    m = measure_file(write_audio(tmp_path / "q.wav", x.astype(np.float32)))
    assert (m.content_bits, m.container_bits) == (16, 32)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_matches_ffmpeg_astats(tmp_path):
    x = speech_like(3.0, SR, seed=13, peak=0.9)
    path = write_audio(tmp_path / "a.wav", x)
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "astats=measure_overall=all",
                          "-f", "null", "-"], capture_output=True, text=True, timeout=60).stderr
    overall = out.split("Overall")[-1]

    def stat(name: str) -> float:
        for line in overall.splitlines():
            if f"] {name}:" in line:
                return float(line.split(":")[-1])
        raise AssertionError(f"{name} not in ffmpeg output")

    m = measure_file(path)
    assert m.min == pytest.approx(stat("Min level"), rel=1e-6)
    assert m.max == pytest.approx(stat("Max level"), rel=1e-6)
    assert m.rms_db == pytest.approx(stat("RMS level dB"), abs=1e-3)  # ffmpeg prints 6 decimals of dB
    assert m.peak_db == pytest.approx(stat("Peak level dB"), abs=1e-3)
    assert m.dc_offset == pytest.approx(stat("DC offset"), abs=1e-6)


def test_a_long_file_in_parts_gives_one_pass_numbers_sequential_or_parallel(tmp_path, monkeypatch):
    """Parts of a long file (measured one after another, or each by another worker) joined with
    `then` equal one pass: a clipped run across a cut, a part that is all rail, NaN, overs."""
    import pickle

    from codecdoctor.measure.audio import reader
    from codecdoctor.measure.audio.file import (
        FileMeasurement,
        fill_from_stats,
        measure_file_part,
    )

    monkeypatch.setattr(reader, "TARGET_BLOCK_SAMPLES", 4096)  # blocks of 3840 frames ...
    monkeypatch.setattr(reader, "PART_BLOCKS", 2)  # ... parts of 7680 frames: a 2.4 s file has 5
    x = speech_like(2.4, SR, seed=3, peak=0.8)
    cut = 7680
    x[cut - 4:cut + 6] = 1.0  # a 10-sample clip run across the first cut
    x[2 * cut:3 * cut + 3] = -1.0  # the whole third part is one rail run, continuing into the fourth
    x[3 * cut + 100] = np.nan
    x[4 * cut + 50:4 * cut + 60] *= 3.0  # overs in the last part
    path = tmp_path / "long.wav"
    sf.write(path, x.astype(np.float32), SR, subtype="FLOAT")

    sequential = measure_file(path, "long.wav")
    with sf.SoundFile(str(path)) as handle:
        assert len(reader.part_ranges(handle)) == 5
        one = SignalAccumulator(SR, 1, subtype="FLOAT")
        for block in reader.read_blocks(handle, reader.block_frames_for(SR, 1)):
            one.update(block)
    single = FileMeasurement(path="long.wav", size_bytes=sequential.size_bytes, sample_rate=SR, channels=1)
    fill_from_stats(single, one.result())
    assert sequential.clipped_samples == 10 + cut + 3 and sequential.clip_runs == 2
    for name, value in single.to_json().items():
        got = getattr(sequential, name)
        if name in ("path", "format", "subtype", "container_bits", "declared_frames", "fingerprint"):
            continue
        if isinstance(value, float) and math.isfinite(value):
            assert got == pytest.approx(value, rel=1e-12), name
        else:
            assert got == value, name
    assert sequential.envelope == single.envelope and sequential.histogram == single.histogram

    parts = [pickle.loads(pickle.dumps(measure_file_part(path, i))) for i in reversed(range(5))][::-1]
    parallel = measure_file(path, "long.wav", parts=parts)
    assert parallel.to_json() == sequential.to_json()  # bit-identical, fingerprint included
    assert parallel.envelope == sequential.envelope


def _sox_pink_noise(path, seconds: float, volume: float) -> bool:
    if shutil.which("sox") is None:
        return False
    subprocess.run(["sox", "-n", "-r", str(SR), "-c", "1", "-b", "16", str(path), "synth", str(seconds),
                    "pinknoise", "vol", str(volume)], check=True, capture_output=True)
    return True


@pytest.mark.parametrize("case", ["quiet_speech", "hot_speech_nan_silence", "stereo_pcm16_rails", "sox_pink_noise"])
def test_parts_measured_in_parallel_equal_one_pass_field_by_field(tmp_path, monkeypatch, case):
    """What --jobs does with one long file: contiguous parts (aligned to the 20 ms frames, the
    blocks, hence the histogram's every-8th-frame grid, the spectrum windows and the envelope
    bins) measured by separate processes and joined equal a single pass over the whole file:
    integers exactly, float sums to rounding, envelope and histogram exactly."""
    import pickle

    from codecdoctor.measure.audio import reader
    from codecdoctor.measure.audio.file import FileMeasurement, fill_from_stats, measure_file_part

    monkeypatch.setattr(reader, "TARGET_BLOCK_SAMPLES", 5000)  # odd-sized blocks of 4800 frames ...
    monkeypatch.setattr(reader, "PART_BLOCKS", 3)  # ... parts of 14400 frames (0.9 s)
    path = tmp_path / f"{case}.wav"
    if case == "quiet_speech":
        sf.write(path, speech_like(4.1, SR, seed=11, peak=0.01), SR, subtype="FLOAT")
    elif case == "hot_speech_nan_silence":
        x = speech_like(4.3, SR, seed=12, peak=0.95)
        x[14400 - 30:14400 + 50] = np.linspace(-1.4, 1.4, 80)  # overs on both sides of the first cut
        x[20000:20000 + 3 * 4800] = 0.0  # digital silence across a block edge
        x[28800 + 7] = np.nan  # NaN right after the second cut
        x[40000] = np.inf
        sf.write(path, x.astype(np.float32), SR, subtype="FLOAT")
    elif case == "stereo_pcm16_rails":
        left = speech_like(3.7, SR, seed=13, peak=0.6)
        right = speech_like(3.7, SR, seed=14, peak=0.3)
        x = np.stack([left, right], axis=1)
        x[7200 - 5:7200 + 9, 0] = 1.0  # a rail run across the first (stereo) cut: 7200 frames a part
        x[14400 - 2:14400 + 2, 1] = -1.0
        sf.write(path, np.clip(x, -1.0, 32767 / 32768), SR, subtype="PCM_16")
    elif not _sox_pink_noise(path, 3.9, 0.4):
        pytest.skip("sox is not installed")

    with sf.SoundFile(str(path)) as handle:
        n_parts = len(reader.part_ranges(handle))
        channels, subtype = handle.channels, handle.subtype
        one = SignalAccumulator(SR, channels, subtype=subtype)
        # the reader's block grid: the spectrum (bandwidth, content bits) samples windows per block,
        # so it is defined on that grid; parts start on block edges of the same grid
        for block in reader.read_blocks(handle, reader.block_frames_for(SR, channels)):
            one.update(block)
    assert n_parts >= 4, n_parts
    single = FileMeasurement(path=path.name, sample_rate=SR, channels=channels)
    fill_from_stats(single, one.result())
    parts = [pickle.loads(pickle.dumps(measure_file_part(path, i))) for i in range(n_parts)]  # as from workers
    joined = measure_file(path, path.name, parts=parts)
    assert joined.to_json() == measure_file(path, path.name).to_json()  # parallel == sequential parts, bit for bit
    for name, value in single.to_json().items():
        if name in ("format", "subtype", "container_bits", "declared_frames", "size_bytes", "fingerprint"):
            continue
        got = getattr(joined, name)
        if isinstance(value, float) and math.isfinite(value):
            assert got == pytest.approx(value, rel=1e-12, abs=1e-300), name
        else:
            assert got == value, name
    assert joined.histogram == single.histogram
    assert joined.envelope == single.envelope
    if case == "hot_speech_nan_silence":
        assert joined.overs > 0 and joined.nan == 1 and joined.inf == 1 and joined.silent_frames >= 40
    if case == "stereo_pcm16_rails":
        assert joined.clip_runs == 2 and joined.clipped_samples == 14 + 4


@pytest.mark.parametrize("container, subtype", [("WAV", "PCM_U8"), ("FLAC", "PCM_S8"), ("WAV", "PCM_16"),
                                                ("WAV", "PCM_24"), ("WAV", "FLOAT")])
def test_read_blocks_give_libsndfile_float32_samples(tmp_path, container, subtype):
    # 8- and 16-bit PCM are read as int16 and scaled in numpy (formats.NATIVE_READS): the same
    # samples as libsndfile's float32, full scale and the most negative code included
    x = np.clip(np.random.default_rng(1).standard_normal((9000, 2)) * 0.4, -1.0, 1.0)
    x[:2] = [[-1.0, 1.0], [1.0, -1.0]]
    path = tmp_path / f"x.{container.lower()}"
    sf.write(str(path), x, SR, subtype=subtype, format=container)
    from codecdoctor.measure.audio import reader

    with sf.SoundFile(str(path)) as handle:
        blocks = [block.copy() for block in reader.read_blocks(handle, 4000)]
    np.testing.assert_array_equal(np.concatenate(blocks), sf.read(str(path), dtype="float32", always_2d=True)[0])
