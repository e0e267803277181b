"""Property-based tests (hypothesis): metrics and accumulators on the inputs nobody writes by hand.

Metrics (codecdoctor/metrics.py) promise: nothing raises and nothing returns NaN, for zeros,
constants, single samples, empty arrays, huge (1e30) and tiny (1e-30) values, NaN/inf samples and
mismatched lengths; the SNR family is scale-free (the same value at 1e-30x and 1e30x).
Accumulators (codecdoctor/audio.py `SignalAccumulator`) promise: any block split of one stream
gives the same statistics as one pass, and merging per-file accumulators in any grouping and order
gives the same corpus totals.

Example counts are modest so the file runs in well under a minute.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

metrics = pytest.importorskip("codecdoctor.measure.metrics")

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALES = [0.0, 1e-30, 1e-10, 1.0, 1e10, 1e30]


@st.composite
def signals(draw, max_len: int = 300, allow_nonfinite: bool = True) -> np.ndarray:
    """Hostile-but-plausible signals: empty, one sample, zeros, constants, random at any scale,
    a few NaN/inf samples."""
    kind = draw(st.sampled_from(["random", "zeros", "constant", "single", "empty", "impulse", "random"]))
    scale = draw(st.sampled_from(SCALES))
    n = draw(st.integers(1, max_len))
    if kind == "empty":
        return np.zeros(0)
    if kind == "single":
        return np.array([draw(st.floats(-1, 1, allow_nan=False)) * scale])
    if kind == "zeros":
        return np.zeros(n)
    if kind == "constant":
        return np.full(n, draw(st.sampled_from([1.0, -1.0, 0.5, 1.01]))) * scale
    if kind == "impulse":
        x = np.zeros(n)
        x[draw(st.integers(0, n - 1))] = scale
        return x
    seed = draw(st.integers(0, 2**31 - 1))
    x = np.random.default_rng(seed).uniform(-1, 1, n) * scale
    if allow_nonfinite and draw(st.booleans()) and draw(st.booleans()):
        x[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return x


@st.composite
def pairs(draw, max_len: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """(ref, est): independent, or est derived from ref (scaled, inverted, shifted, cropped)."""
    ref = draw(signals(max_len))
    how = draw(st.sampled_from(["independent", "copy", "scaled", "inverted", "shifted", "cropped", "noisy"]))
    if how == "independent" or ref.size == 0:
        return ref, draw(signals(max_len))
    if how == "copy":
        return ref, ref.copy()
    if how == "scaled":
        return ref, ref * draw(st.sampled_from([0.0, 1e-30, 0.1, 2.0, 1e30]))
    if how == "inverted":
        return ref, -ref
    if how == "shifted":
        k = draw(st.integers(1, 20))
        return ref, np.concatenate([np.zeros(k), ref])
    if how == "cropped":
        return ref, ref[: draw(st.integers(0, ref.size))]
    return ref, ref + np.random.default_rng(draw(st.integers(0, 99))).normal(0, 1e-3, ref.size)


def _scalar_results(ref, est) -> dict[str, float]:
    out = {
        "snr_db": metrics.snr_db(ref, est),
        "si_sdr_db": metrics.si_sdr_db(ref, est),
        "si_snr_db": metrics.si_snr_db(ref, est),
        "seg_snr_db": metrics.seg_snr_db(ref, est, 64),
        "chunk_snr_db_eps": metrics.chunk_snr_db_eps(ref, est),
        "optimal_gain": metrics.optimal_gain(ref, est),
        "output_level_ratio": metrics.output_level_ratio(ref, est),
        "correlation": metrics.correlation(ref, est),
    }
    lag, peak = metrics.lag_and_peak(ref, est, 64)
    out["lag"], out["lag_peak"] = float(lag), peak
    out["estimate_lag"] = float(metrics.estimate_lag(ref, est, 64))
    out["polarity"] = float(metrics.polarity(ref, est, 64))
    return out


@FAST
@given(pairs())
def test_time_domain_metrics_never_raise_and_never_return_nan(pair):
    ref, est = pair
    for name, value in _scalar_results(ref, est).items():
        assert isinstance(value, float), (name, type(value))
        assert not math.isnan(value), (name, ref[:5], est[:5], ref.size, est.size)
    assert -1.0 <= metrics.correlation(ref, est) <= 1.0


@SLOW
@given(pairs(max_len=2000), st.sampled_from([8000, 16000, 24000]))
def test_spectral_metrics_never_raise_and_never_return_nan(pair, sample_rate):
    ref, est = pair
    distance = metrics.mel_distance(ref, est, sample_rate, n_mels=16)
    assert not math.isnan(distance) and distance >= 0.0
    corr = metrics.mel_correlation(ref, est, sample_rate, n_mels=16)
    assert not math.isnan(corr) and -1.0 <= corr <= 1.0
    for name, value in metrics.band_transfer(ref, est, sample_rate, n_bands=8).items():
        assert not math.isnan(value), name
    spec = metrics.log_mel_spectrogram(est, sample_rate, n_mels=16)
    assert not np.isnan(spec).any()


@FAST
@given(signals(allow_nonfinite=False), st.sampled_from([1e-30, 1e-10, 1e10, 1e30]),
       st.integers(0, 2**31 - 1))
def test_snr_family_is_scale_free_from_1e_minus_30_to_1e30(ref, factor, seed):
    """Scaling both signals by the same factor changes no ratio: energies are computed on the pair
    divided by its common peak, so 1e30**2 does not overflow and 1e-30**2 does not underflow."""
    # a constant reference has no zero-mean part: SI-SNR of it is rounding noise, not a ratio
    assume(ref.size > 0 and np.ptp(ref) > 1e-6 * np.max(np.abs(ref)))
    est = ref + np.random.default_rng(seed).normal(0, 0.1, ref.size) * (np.max(np.abs(ref)) or 1.0)
    for fn in (metrics.snr_db, metrics.si_sdr_db, metrics.si_snr_db):
        base, scaled = fn(ref, est), fn(ref * factor, est * factor)
        if math.isinf(base):
            assert scaled == base, fn.__name__
        else:
            assert scaled == pytest.approx(base, abs=1e-6), fn.__name__


@FAST
@given(signals(allow_nonfinite=False))
def test_an_exact_copy_scores_infinity_and_an_inverted_copy_is_found(ref):
    assume(ref.size > 0)  # empty input is the -inf sentinel by contract
    assert metrics.snr_db(ref, ref) == math.inf
    if ref.size > 1 and np.ptp(ref) > 0:
        assert metrics.polarity(ref, -ref, 64) == -1
        assert metrics.snr_db(ref, -ref) == pytest.approx(20 * math.log10(0.5), abs=1e-9)  # -6.02 dB


# --------------------------------------------------------------------------------------------
# accumulators
# --------------------------------------------------------------------------------------------
audio = pytest.importorskip("codecdoctor.measure.audio.accumulator")

# Statistics that are exact functions of the samples, whatever the block boundaries. The spectrum
# (loudest frame per eighth of each block), the bit-depth grid read from it and the fingerprint
# (first block's samples) are sampled per block by design and are compared separately.
EXACT_FIELDS = ("frames", "channels", "samples", "finite_samples", "nan", "inf", "min", "max", "peak", "sum",
                "sum_squares", "overs", "overs_excess_energy", "rail_samples", "clipped_samples", "clip_runs",
                "longest_clip_run_samples", "level_frames", "silent_frames", "active_samples",
                "active_sum_squares", "histogram")
# Sample-level statistics: also exact when ONE stream is cut into parts that are combined (combining
# closes frames and rail runs at the cut, so frame counts and run lengths may differ there).
SAMPLE_FIELDS = ("samples", "finite_samples", "nan", "inf", "min", "max", "peak", "sum", "sum_squares",
                 "overs", "overs_excess_energy")


@st.composite
def streams(draw, max_frames: int = 2500, extreme: bool = False) -> np.ndarray:
    """float32 (frames, channels) audio with the features the accumulator branches on: silence,
    overs, exact rails, clipping runs, NaN/inf; with `extreme`, also huge (1e30) and tiny (1e-30)."""
    channels = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(1, max_frames))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    kinds = ["speechy", "zeros", "constant", "clipped", "overs"] + (["huge", "tiny"] if extreme else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "zeros":
        x = np.zeros((n, channels))
    elif kind == "constant":
        x = np.full((n, channels), draw(st.sampled_from([0.25, 1.0, -1.0, 1.01])))
    elif kind == "huge":
        x = rng.uniform(-1, 1, (n, channels)) * 1e30
    elif kind == "tiny":
        x = rng.uniform(-1, 1, (n, channels)) * 1e-30
    else:
        x = rng.normal(0, 0.3, (n, channels)) * (rng.random((n, 1)) > 0.3)  # with silent stretches
        if kind == "clipped":
            x = np.clip(x * 4, -1.0, 1.0)
        elif kind == "overs":
            x = x * 4
    x = x.astype(np.float32)
    if draw(st.booleans()) and draw(st.booleans()):
        x[draw(st.integers(0, n - 1)), 0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return x


def _split_points(draw, n: int) -> list[int]:
    cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=6))))
    return [0, *cuts, n]


def _accumulate(blocks, channels: int, sample_rate: int = 16000, subtype: str | None = None):
    acc = audio.SignalAccumulator(sample_rate, channels, subtype=subtype)
    for block in blocks:
        acc.update(block)
    return acc


def _same(a, b, fields, rel: float = 1e-9) -> None:
    for name in fields:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, float) and isinstance(y, float):
            if math.isinf(x) or math.isinf(y):
                assert x == y, name
            else:
                assert x == pytest.approx(y, rel=rel, abs=1e-300), name
        else:
            assert x == y, name


def _no_nan(stats) -> None:
    derived = {"rms": stats.rms, "dc_offset": stats.dc_offset, "active_rms": stats.active_rms,
               "silence_fraction": stats.silence_fraction, "clip_ceiling_snr_db": stats.clip_ceiling_snr_db,
               "bandwidth_hz": stats.bandwidth_hz(), "rms_db": audio.db(stats.rms), "peak_db": audio.db(stats.peak)}
    for name, value in derived.items():
        assert value is None or not math.isnan(value), name
    for name in EXACT_FIELDS:
        value = getattr(stats, name)
        if isinstance(value, float):
            assert not math.isnan(value), name
    assert not np.isnan(np.asarray(stats.spectrum_power, dtype=float)).any()


@FAST
@given(st.data(), streams(), st.sampled_from([None, "PCM_16", "FLOAT"]))
def test_any_block_split_gives_the_single_pass_statistics(data, x, subtype):
    single = _accumulate([x], x.shape[1], subtype=subtype).result()
    cuts = _split_points(data.draw, x.shape[0])
    split = _accumulate([x[a:b] for a, b in zip(cuts[:-1], cuts[1:])], x.shape[1], subtype=subtype).result()
    # 20 ms frames are squared in float32 on the fast path and in float64 on the NaN path: a split
    # that moves a NaN into another block changes rounding at float32 precision, nothing more
    _same(single, split, EXACT_FIELDS, rel=1e-6)
    _no_nan(single)


INTEGER_FIELDS = ("frames", "samples", "finite_samples", "nan", "inf", "overs", "rail_samples", "level_frames")


@FAST
@given(st.data(), streams(extreme=True))
def test_no_split_of_any_stream_gives_nan_and_counts_never_depend_on_the_split(data, x):
    single = _accumulate([x], x.shape[1]).result()
    cuts = _split_points(data.draw, x.shape[0])
    split = _accumulate([x[a:b] for a, b in zip(cuts[:-1], cuts[1:])], x.shape[1]).result()
    _same(single, split, INTEGER_FIELDS)
    _no_nan(single)
    _no_nan(split)


@FAST
@given(st.data(), streams())
def test_merging_the_parts_of_one_stream_gives_its_sample_statistics(data, x):
    single = _accumulate([x], x.shape[1]).result()
    cuts = _split_points(data.draw, x.shape[0])
    parts = [_accumulate([x[a:b]], x.shape[1]) for a, b in zip(cuts[:-1], cuts[1:])]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.combine(part)
    # whole 20 ms frames square in float32, a cut's partial frame in float64: agree to float32 precision
    _same(single, merged.result(), SAMPLE_FIELDS, rel=1e-6)


@FAST
@given(st.data(), streams(max_frames=4000), st.sampled_from([None, "PCM_16", "FLOAT"]))
def test_parts_of_one_stream_joined_in_order_give_the_single_pass(data, x, subtype):
    """A long file is measured as parts cut on 20 ms frame boundaries and joined with `then`:
    every exact statistic, rail runs across the cuts included, equals one pass over the stream."""
    frame = 320  # 20 ms at 16 kHz
    n_frames = -(-x.shape[0] // frame)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, n_frames - 1)), max_size=4)))) if n_frames > 1 else []
    bounds = [0, *[c * frame for c in cuts if c * frame < x.shape[0]], x.shape[0]]
    single = _accumulate([x], x.shape[1], subtype=subtype)
    joined = None
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = audio.SignalAccumulator(16000, x.shape[1], subtype=subtype, start_frame=a // frame, continues=a > 0)
        part.update(x[a:b])
        joined = part if joined is None else joined.then(part)
    one, many = single.result(), joined.result()
    _same(one, many, EXACT_FIELDS, rel=1e-6)
    assert one.envelope == many.envelope


@SLOW
@given(st.lists(streams(max_frames=1200), min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_merging_files_in_any_grouping_and_order_gives_the_same_corpus_totals(files, rnd):
    channels = files[0].shape[1]
    files = [f if f.shape[1] == channels else f[:, :1].repeat(channels, axis=1) for f in files]

    def corpus(order, group_size):
        accs = [_accumulate([files[i]], channels) for i in order]
        groups = []
        for start in range(0, len(accs), group_size):  # like shards: merge within, then across
            group = accs[start]
            for acc in accs[start + 1:start + group_size]:
                group = group.combine(acc)
            groups.append(group)
        total = groups[0]
        for group in groups[1:]:
            total = total.combine(group)
        return total.result()

    order = list(range(len(files)))
    reference = corpus(order, 1)
    rnd.shuffle(order)
    other = corpus(order, rnd.randint(1, len(files)))
    _same(reference, other, EXACT_FIELDS + ("spectrum_windows",), rel=1e-6)
    assert np.allclose(reference.spectrum_power, other.spectrum_power, rtol=1e-9, atol=0)
    _no_nan(reference)


@FAST
@given(st.sampled_from([0.0, 1e-30, 1e30, 1.0]), st.integers(1, 5), st.sampled_from([1, 2]))
def test_accumulator_handles_single_samples_constants_and_extreme_values(value, n, channels):
    x = np.full((n, channels), value, np.float32)
    stats = _accumulate([x], channels).result()
    assert stats.samples == n * channels and stats.frames == n
    assert stats.peak == pytest.approx(float(np.float32(value)))
    _no_nan(stats)


@pytest.mark.parametrize("value", [1e30, 1e-30])
def test_rms_of_a_constant_stream_is_its_value_even_at_extreme_scales(value):
    stats = _accumulate([np.full((640, 1), value, np.float32)], 1).result()
    assert stats.rms == pytest.approx(float(np.float32(value)), rel=1e-6, abs=0)


# --------------------------------------------------------------------------------------------
# corpus level: shards merged in any split give the single run
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def messy_corpus(tmp_path_factory):
    import soundfile as sf

    from codecdoctor.measure.stimuli import speech_like

    root = tmp_path_factory.mktemp("messy")
    (root / "sub").mkdir()
    sf.write(root / "a.wav", speech_like(1.0, 16000, seed=1), 16000, subtype="PCM_16")
    sf.write(root / "b.flac", speech_like(0.7, 16000, seed=2), 16000)
    sf.write(root / "sub" / "hot.wav", speech_like(0.5, 16000, seed=3, peak=1.2), 16000, subtype="FLOAT")
    sf.write(root / "sub" / "silent.wav", np.zeros(8000, np.float32), 16000, subtype="FLOAT")
    sf.write(root / "stereo.wav", speech_like(0.6, 22050, seed=4, channels=2), 22050)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (root / "notes.txt").write_text("not audio")
    return root


def _comparable(report: dict) -> tuple:
    findings = sorted((f["id"], f["severity"], f["subject"] or "") for f in report["findings"])
    files = sorted((f["path"], f.get("frames"), f.get("peak"), f.get("rms_db"), f.get("error") is None)
                   for f in report["measurements"]["files"])
    corpus = {k: v for k, v in report["measurements"]["corpus"].items() if not isinstance(v, (dict, list))}
    return findings, files, corpus


@pytest.mark.parametrize("count", [2, 3, 7])
def test_shards_merged_give_the_single_run(messy_corpus, tmp_path, count):
    audit = pytest.importorskip("codecdoctor.audit")
    from codecdoctor.report import json as json_out

    single = audit.audit_data(messy_corpus, jobs=1, progress=None).to_dict()
    parts = []
    for index in range(1, count + 1):
        part = audit.audit_data(messy_corpus, jobs=1, progress=None, shard=(index, count))
        path = tmp_path / f"part{index}.json"
        json_out.write(part, path)
        parts.append(path)
    merged = audit.merge_partials(list(reversed(parts))).to_dict()  # order must not matter
    s, m = _comparable(single), _comparable(merged)
    assert s[0] == m[0]  # the same findings on the same subjects
    assert s[1] == m[1]  # the same per-file numbers
    for key, value in s[2].items():
        if isinstance(value, float):
            assert m[2][key] == pytest.approx(value, rel=1e-9), key
        else:
            assert m[2][key] == value, key
