"""D1xx: is this corpus fit to train an audio codec on?

File-level checks (`level="file"`) take one `FileMeasurement` and the `DataThresholds`; corpus-level
checks (`level="corpus"`) take a `CorpusView` (all rows plus totals) and the thresholds, because
their judgement is relative to the rest of the corpus (majority sample rate, level outliers,
duplicates). No check reads a file: all numbers come from codecdoctor.audio's single pass.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from codecdoctor.core.findings import Severity
from codecdoctor.core.registry import NotApplicable, check, finding
from codecdoctor.measure.audio.file import FileMeasurement
from codecdoctor.measure.audio.formats import frame_length


@dataclass
class DataThresholds:
    """Every number a D1xx check judges against; all configurable from `audit_data` / the CLI."""

    silence_threshold_db: float = -60.0      # a 20 ms frame below this RMS is silence (D107)
    max_silence_fraction: float = 0.30       # D107 above this fraction of silent frames
    sample_rate: int | None = None           # D108 target; None = the corpus majority
    dc_fraction_of_rms: float = 0.10         # D105: |DC| at or above 10% of the RMS ...
    dc_floor: float = 1e-4                   # ... and above -80 dBFS (below that it is inaudible)
    quiet_active_db: float = -40.0           # D106: active (non-silent) RMS below this is too quiet
    hot_active_db: float = -6.0              # D106: active RMS above this is too hot
    outlier_db: float = 15.0                 # D106: this far from the corpus median active RMS
    outlier_min_files: int = 5               # D106: a median needs at least this many files
    min_bandwidth_fraction: float = 0.70     # D110: bandwidth below this fraction of Nyquist
    long_file_s: float = 600.0               # D113: longer than this needs seek-based cropping

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataThresholds":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


@dataclass
class CorpusView:
    files: list[FileMeasurement]
    summary: dict[str, Any] = field(default_factory=dict)


# ---- helpers --------------------------------------------------------------------------------------

def _fmt_db(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "-inf dB" if value == -math.inf else f"{value:.1f} dB"


def _is_measured(f: FileMeasurement) -> bool:
    """Audio that was read at all (possibly with a truncation warning)."""
    return f.kind == "audio" and f.frames is not None and f.frames > 0 and f.sample_rate is not None


def _signal(f: FileMeasurement) -> FileMeasurement:
    """The file has at least one 20 ms frame of finite samples: signal checks apply. Else NotApplicable."""
    if not _is_measured(f) or f.frames < frame_length(f.sample_rate) or f.nonfinite == f.frames * (f.channels or 1):
        raise NotApplicable
    return f


def _audible(f: FileMeasurement) -> FileMeasurement:
    """A signal check that also needs a non-zero signal (all-zero files are D114's alone)."""
    _signal(f)
    if not f.peak:
        raise NotApplicable
    return f


def _usable(files: list[FileMeasurement]) -> list[FileMeasurement]:
    return [f for f in files if _is_measured(f)]


# ---- file-level ----------------------------------------------------------------------------------

@check("D100", scope="data", severity=Severity.ERROR, level="file")
def unreadable(f: FileMeasurement, t: DataThresholds):
    """Audio file unreadable, corrupt or truncated.

    What: The file has an audio extension but libsndfile cannot open it (corrupt or missing
    header, random bytes, no read permission, a symlink that resolves to itself), or it stopped
    decoding part-way, or its WAV header declares more frames than the file holds (a truncated copy;
    what is present is still audited and the finding is a warning).
    Why: A data loader that meets such a file crashes mid-epoch or, worse, a lenient one returns a
    shorter or empty clip that silently skews batches; a truncated copy usually means an interrupted
    transfer, so other files from the same copy may be damaged too.
    Fix: Re-copy or re-export the file from its source (check sizes/checksums against the origin),
    fix permissions (`chmod a+r`), or remove it from the corpus list.
    """
    if f.kind in ("unreadable", "symlink_loop"):
        return [finding("D100", f"{f.path}: cannot be read: {f.error}", subject=f.path,
                        evidence={"size_bytes": f.size_bytes or 0})]
    if f.kind != "audio" or not f.error or f.error.startswith("empty file"):
        return []
    if f.error.startswith("truncated"):
        return [finding("D100", f"{f.path}: {f.error}; the present part was audited", subject=f.path,
                        severity=Severity.WARNING,
                        evidence={"declared_frames": f.declared_frames, "frames": f.frames})]
    return [finding("D100", f"{f.path}: {f.error}", subject=f.path, evidence={"frames": f.frames or 0})]


@check("D101", scope="data", severity=Severity.ERROR, level="file")
def too_short(f: FileMeasurement, t: DataThresholds):
    """Empty file, or shorter than one 20 ms frame.

    What: Flags files of 0 bytes, files whose header is valid but hold no samples, and files shorter
    than one 20 ms frame (320 samples at 16 kHz, one hop of a 50 Hz codec).
    Why: A codec consumes whole frames; a clip shorter than one frame cannot be encoded, and a
    random-crop loader asked for a 1 s crop from it either crashes or pads it to pure padding.
    Fix: Delete the file or re-export it from the source; filter the training list by duration.
    """
    if f.kind != "audio":
        raise NotApplicable
    if f.error and f.error.startswith("empty file"):
        return [finding("D101", f"{f.path}: empty file (0 bytes)", subject=f.path, evidence={"frames": 0})]
    if f.frames is None or f.sample_rate is None:
        raise NotApplicable
    need = frame_length(f.sample_rate)
    if f.frames < need:
        ms = 1000.0 * f.frames / f.sample_rate
        return [finding("D101", f"{f.path}: holds {f.frames} frames ({ms:.2f} ms), less than one 20 ms frame "
                        f"({need} samples at {f.sample_rate} Hz)", subject=f.path,
                        evidence={"frames": f.frames, "frame_samples": need})]
    return []


@check("D102", scope="data", severity=Severity.ERROR, level="file")
def non_finite(f: FileMeasurement, t: DataThresholds):
    """Non-finite samples (NaN or Inf).

    What: Counts NaN and ±Inf samples (possible only in float formats); any count above zero is an
    error. All other statistics of the file are computed over its finite samples.
    Why: One NaN in a batch makes the loss NaN, and through the optimizer every weight NaN, in a
    single step; Inf does the same through x². Nothing downstream recovers from it.
    Fix: Re-export the file from its source; if it came from a processing step (normalisation by a
    zero peak, a resampler), fix that step, or replace non-finite samples with 0 and re-check.
    """
    if not _is_measured(f):
        raise NotApplicable
    if not f.nonfinite:
        return []
    total = f.frames * (f.channels or 1)
    return [finding("D102", f"{f.path}: {f.nonfinite} non-finite samples ({f.nan} NaN, {f.inf} Inf) "
                    f"= {100.0 * f.nonfinite / total:.4g}% of {total} samples", subject=f.path,
                    evidence={"nan": f.nan, "inf": f.inf, "samples": total})]


@check("D103", scope="data", severity=Severity.WARNING, level="file")
def beyond_full_scale(f: FileMeasurement, t: DataThresholds):
    """Samples beyond [-1, 1] (float overs), with the SNR ceiling of a bounded decoder.

    What: Counts samples with |x| > 1.0 (float and lossy formats; integer PCM cannot exceed its
    rails) and computes the best SNR any output bounded to [-1, 1] (a tanh or clamp decoder) can
    reach on this file: 10·log10(Σx² / Σ(x − clip(x, −1, 1))²). Warning for any over; error when
    that ceiling is below 10 dB.
    Why: A decoder ending in tanh can never reproduce |x| > 1, so the reconstruction error on those
    samples is irreducible: the ceiling is a hard limit on the SNR the model can show. Removing the
    tanh instead makes the output unbounded; normalising per sample destroys scale.
    Fix: Scale the corpus once by a fixed gain so the global peak is ≤ 1 (e.g. divide by the corpus
    max |x|), or clip the few overs at data preparation; keep the decoder bounded.
    """
    _signal(f)
    if not f.overs:
        return []
    peak_over = max(abs(f.min or 0.0), abs(f.max or 0.0))
    ceiling = f.clip_ceiling_snr_db
    ceiling_text = f"{ceiling:.1f} dB" if ceiling is not None else "n/a"
    message = (f"{f.path}: {f.overs} samples ({100.0 * (f.overs_fraction or 0):.4g}%) exceed |1.0|; "
               f"min {f.min:.4f}, max {f.max:.4f}; a tanh/bounded decoder can reach at most "
               f"SNR = {ceiling_text} on this file")
    severity = Severity.ERROR if ceiling is not None and ceiling < 10.0 else Severity.WARNING
    return [finding("D103", message, subject=f.path, severity=severity,
                    evidence={"overs": f.overs, "overs_fraction": f.overs_fraction, "max_abs": peak_over,
                              "min": f.min, "max": f.max, "snr_ceiling_db": ceiling})]


@check("D104", scope="data", severity=Severity.WARNING, level="file")
def clipping(f: FileMeasurement, t: DataThresholds):
    """Clipping: runs of consecutive samples at the format's rails.

    What: Counts samples in runs of 3 or more consecutive samples at a rail, per channel. Rails
    are the format's real full scale as soundfile returns it: for PCM16 both -32768/32768 = -1.0
    and 32767/32768 = 0.99997 (for N-bit PCM: -1 and 1 - 2^(1-N)); for float files exactly ±1.0,
    what a hard clip leaves. One full-scale sample occurs naturally; three in a row essentially
    never do for band-limited audio. Warning for any run; error above 1% of samples.
    Why: Flat tops are broadband distortion the codec must learn to reproduce, and they teach
    the model that loud means square; metrics computed on clipped references understate quality.
    Fix: Re-export with lower gain from a source that was not clipped; clipped material cannot be
    repaired exactly (declipping tools only estimate), so dropping heavily clipped files is often best.
    """
    _audible(f)
    if not f.clipped_samples:
        return []
    total = f.frames * (f.channels or 1)
    fraction = f.clipped_samples / total
    return [finding("D104", f"{f.path}: {f.clipped_samples} samples ({100 * fraction:.4g}%) in {f.clip_runs} "
                    f"runs at the rails {f.rail_low:.6g}/{f.rail_high:.6g} ({f.subtype}); longest run "
                    f"{f.longest_clip_run_samples} samples", subject=f.path,
                    severity=Severity.ERROR if fraction > 0.01 else Severity.WARNING,
                    evidence={"clipped_samples": f.clipped_samples, "clip_runs": f.clip_runs,
                              "longest_run_samples": f.longest_clip_run_samples, "fraction": fraction,
                              "rail_low": f.rail_low, "rail_high": f.rail_high})]


@check("D105", scope="data", severity=Severity.WARNING, level="file")
def dc_offset(f: FileMeasurement, t: DataThresholds):
    """DC offset.

    What: Mean of all samples (channels pooled). Flagged when |DC| is at least 10% of the file's
    RMS (the DC is then within 20 dB of the signal) and above 1e-4 (-80 dBFS, a few 16-bit LSBs).
    Speech from a microphone chain with a high-pass has |DC| below 0.1% of its RMS.
    Why: A constant offset is energy at 0 Hz the codec must spend bits and capacity on, it eats
    headroom (the peak on one side comes closer to ±1), and L1/L2 waveform losses weight it fully.
    Fix: Subtract the mean per file, or high-pass at 20-40 Hz, when preparing the data.
    """
    _audible(f)
    if f.dc_offset is None or not f.rms:
        raise NotApplicable
    dc = abs(f.dc_offset)
    if dc < t.dc_floor or dc < t.dc_fraction_of_rms * f.rms:
        return []
    return [finding("D105", f"{f.path}: DC offset {f.dc_offset:+.5f} ({_fmt_db(20 * math.log10(dc))}FS) is "
                    f"{100 * dc / f.rms:.1f}% of the RMS {f.rms:.5f}", subject=f.path,
                    evidence={"dc_offset": f.dc_offset, "rms": f.rms, "dc_to_rms": dc / f.rms})]


@check("D107", scope="data", severity=Severity.WARNING, level="file")
def silence_fraction(f: FileMeasurement, t: DataThresholds):
    """Too much silence.

    What: The fraction of 20 ms frames whose RMS (all channels pooled) is below -60 dBFS
    (`--silence-db`); flagged above 30% (`--max-silence`). Read speech has 10-20% pauses; above
    30%, random 1 s training crops are often mostly silent.
    Why: Silent crops waste batches and push the model toward outputting near-silence; they also
    bias chunked metrics (mean segmental SNR is dominated by silent chunks, R313).
    Fix: Trim leading/trailing silence and shorten long pauses (e.g. VAD-based) at data preparation,
    or make the loader reject crops below an energy threshold.
    """
    _audible(f)
    if f.silence_fraction is None:
        raise NotApplicable
    if f.silence_fraction <= t.max_silence_fraction:
        return []
    return [finding("D107", f"{f.path}: {100 * f.silence_fraction:.1f}% of 20 ms frames are below "
                    f"{t.silence_threshold_db:g} dBFS (limit {100 * t.max_silence_fraction:.0f}%)",
                    subject=f.path,
                    evidence={"silence_fraction": f.silence_fraction, "silent_frames": f.silent_frames,
                              "frames_20ms": f.level_frames, "threshold_db": t.silence_threshold_db})]


@check("D110", scope="data", severity=Severity.WARNING, level="file")
def bandwidth(f: FileMeasurement, t: DataThresholds):
    """Effective bandwidth far below Nyquist (upsampled content).

    What: Averages the power spectrum of the loudest 20 ms frame in each eighth of every block
    (Hann, 1024 points at ≤ 24 kHz) and finds the frequency above which less than -50 dB of the
    energy lies. Flagged below 70% of Nyquist. Resampling filters leave > 70 dB of attenuation
    above the original Nyquist, so audio upsampled from 8 kHz to 16 kHz shows an edge near 4 kHz.
    Why: A codec trained on such files learns that the upper band is empty and reproduces nothing
    there, and reported sample rates overstate the data's real quality; mixing band-limited and
    full-band files makes the model's high band inconsistent.
    Fix: Train at the real sample rate (resample down to 2 × bandwidth), or drop/segregate the
    band-limited files; check the pipeline step that upsampled them.
    """
    _audible(f)
    if f.bandwidth_hz is None:
        raise NotApplicable
    nyquist = f.sample_rate / 2.0
    if f.bandwidth_hz >= t.min_bandwidth_fraction * nyquist:
        return []
    return [finding("D110", f"{f.path}: effective bandwidth {f.bandwidth_hz:.0f} Hz is "
                    f"{100 * f.bandwidth_hz / nyquist:.0f}% of Nyquist ({nyquist:.0f} Hz); looks upsampled from "
                    f"about {2 * f.bandwidth_hz:.0f} Hz", subject=f.path,
                    evidence={"bandwidth_hz": f.bandwidth_hz, "nyquist_hz": nyquist})]


@check("D111", scope="data", severity=Severity.INFO, level="file")
def bit_depth(f: FileMeasurement, t: DataThresholds):
    """Bit depth: the container is deeper than the content.

    What: On the analysed windows, finds the coarsest grid 2^-(N-1), N in {8, 16, 24}, that
    every sample sits on, and compares N with the container (PCM_16: 16, FLOAT: 32, ...).
    Info when the content is 16 bits or finer in a deeper container (harmless, only larger
    files); warning when the content is 8-bit or coarser, whose quantisation noise caps the SNR
    at about 6.02·N + 1.76 = 50 dB.
    Why: A codec cannot be evaluated above the SNR of its reference's quantisation noise, and it
    learns to reproduce the noise; an 8-bit source hidden in a 16-bit file is otherwise invisible.
    Fix: For coarse content, find a better source; for deep containers of 16-bit content, store as
    PCM_16 to halve the size (no information is lost).
    """
    _audible(f)
    if f.content_bits is None or f.container_bits is None:
        raise NotApplicable
    if f.content_bits >= f.container_bits or (f.subtype == "FLOAT" and f.content_bits >= 32):
        return []
    ceiling = 6.02 * f.content_bits + 1.76
    severity = Severity.WARNING if f.content_bits <= 8 else Severity.INFO
    return [finding("D111", f"{f.path}: {f.subtype} container ({f.container_bits} bits) holds {f.content_bits}-bit "
                    f"content; quantisation limits its SNR to about {ceiling:.0f} dB", subject=f.path,
                    severity=severity,
                    evidence={"content_bits": f.content_bits, "container_bits": f.container_bits,
                              "quantisation_snr_db": ceiling})]


@check("D113", scope="data", severity=Severity.INFO, level="file")
def long_file(f: FileMeasurement, t: DataThresholds):
    """Very long file (needs seek-based random crops).

    What: Flags files longer than 10 minutes (`long_file_s`). A 1.8 h file at 16 kHz is 104 M
    samples, 415 MB as float32: loading it whole per training item is slow and multiplies memory
    by the number of loader workers.
    Why: Loaders that read the whole file then crop spend nearly all their time on I/O and can
    run out of memory; with few long files, per-file sampling also weights them like short ones.
    Fix: Crop with seek (soundfile `frames=`/`start=`; the built-in dataset does), or cut the file
    into 10-30 s segments once; sample crops proportional to duration.
    """
    _signal(f)
    if f.duration_s is None or f.duration_s <= t.long_file_s:
        return []
    return [finding("D113", f"{f.path}: {f.duration_s / 3600:.2f} h ({f.duration_s:.0f} s; "
                    f"{f.frames * (f.channels or 1) * 4 / 1e6:.0f} MB as float32); load random crops by seeking",
                    subject=f.path, evidence={"duration_s": f.duration_s, "frames": f.frames})]


@check("D114", scope="data", severity=Severity.WARNING, level="file")
def digital_silence(f: FileMeasurement, t: DataThresholds):
    """Digital silence: every sample is exactly zero.

    What: The file has at least one 20 ms frame and its peak |x| is exactly 0.
    Why: An all-zero file teaches nothing and breaks per-file normalisation (division by a zero
    peak or RMS gives NaN, D102); it usually means a failed export or a muted channel.
    Fix: Remove the file, or re-export it from the source.
    """
    _signal(f)
    if f.peak:
        return []
    return [finding("D114", f"{f.path}: all {f.frames * (f.channels or 1)} samples are exactly zero "
                    f"({f.duration_s:.2f} s)", subject=f.path, evidence={"frames": f.frames})]


@check("D115", scope="data", severity=Severity.INFO, level="file")
def skipped(f: FileMeasurement, t: DataThresholds):
    """Non-audio entries skipped.

    What: Files without an audio extension (transcripts, metadata, '._' macOS sidecars), special
    files, directories named like audio files, and directory links that loop back to a folder
    already searched. They are listed, not opened.
    Why: A loader that globs `*` or trusts extensions may try to decode them; a loop makes naive
    recursive walkers run forever.
    Fix: Nothing if expected; otherwise move non-audio files out of the audio folder, rename the
    directory, or remove the looping link.
    """
    if f.kind not in ("non_audio", "directory", "directory_loop"):
        raise NotApplicable
    return [finding("D115", f"{f.path}: skipped: {f.error}", subject=f.path, evidence={})]


# D116: integer full scales a float file's peak may betray (int16, int24, int32 PCM).
_INTEGER_SCALES = ((16, 32768.0), (24, 8388608.0), (32, 2147483648.0))
# A float file peaking at or above this is integer-scale data: 64 is 36 dB over full scale, far past
# any overshoot of a [-1, 1] signal (a resampler or decoder overshoots by a few dB; D103's 1.01),
# and int16 audio stored unscaled reaches it whenever its peak is above -54 dBFS (64 / 32768).
_INTEGER_SCALE_MIN_PEAK = 64.0


@check("D116", scope="data", severity=Severity.ERROR, level="file")
def float_at_integer_scale(f: FileMeasurement, t: DataThresholds):
    """Float data stored at integer scale: int16 samples written as float without dividing by 32768.

    What: Fires for a FLOAT or DOUBLE file whose peak |x| is 64 or more. A float signal in [-1, 1]
    that overshoots does so by a few dB (a peak of 1.01-1.4; D103); 64 is 36 dB over full scale.
    Integer PCM written as float without scaling keeps its integer values: speech recorded at a
    normal level peaks in the thousands (-20 dBFS is 3277 in int16), quiet speech in the hundreds
    (-40 dBFS is 328), so any int16 recording peaking above -54 dBFS reaches 64. The message names
    the smallest integer full scale (int16 32768, int24 8388608, int32 2^31) that holds the peak and
    the levels the file would have once divided by it.
    Why: A codec trained on it sees inputs thousands of times too loud: a tanh decoder can never
    follow (R307: the SNR ceiling is near 0 dB), an unbounded one learns outputs thousands of times
    the range of correctly scaled files, losses and gradient norms explode, and files mixed with
    correctly scaled ones look like 90 dB level outliers.
    Fix: Divide the samples by the integer full scale (32768 for int16) before writing the float
    file (soundfile does this when reading PCM as float; `np.int16` data cast with astype(float32)
    does not), or write the integers as PCM_16. Re-export the affected files.
    """
    _audible(f)
    subtype = (f.subtype or "").upper()
    if subtype not in ("FLOAT", "DOUBLE") or not f.peak or f.peak < _INTEGER_SCALE_MIN_PEAK:
        return []
    bits, scale = next(((b, s) for b, s in _INTEGER_SCALES if f.peak <= s), (None, None))
    if scale is None:
        message = (f"{f.path}: {subtype} samples peak at {f.peak:.6g} (min {f.min:.6g}, max {f.max:.6g}), beyond even "
                   "int32 full scale: the data is not audio in [-1, 1] at any integer scale")
        return [finding("D116", message, subject=f.path, evidence={"peak": f.peak, "min": f.min, "max": f.max})]
    peak_db = 20.0 * math.log10(f.peak / scale)
    rms_db = (f.rms_db - 20.0 * math.log10(scale)) if f.rms_db is not None and math.isfinite(f.rms_db) else None
    rms_text = f", RMS {rms_db:.1f} dBFS" if rms_db is not None else ""
    message = (f"{f.path}: {subtype} samples peak at {f.peak:.6g} (min {f.min:.6g}, max {f.max:.6g}): integer PCM "
               f"stored without scaling. Divided by the int{bits} full scale {scale:.0f} the file would peak at "
               f"{peak_db:.1f} dBFS{rms_text}.")
    return [finding("D116", message, subject=f.path,
                    evidence={"peak": f.peak, "min": f.min, "max": f.max, "integer_bits": bits, "integer_scale": scale,
                              "peak_dbfs_after_scaling": peak_db, "rms_dbfs_after_scaling": rms_db})]


# ---- corpus-level --------------------------------------------------------------------------------

@check("D106", scope="data", severity=Severity.WARNING, level="corpus")
def level(corpus: CorpusView, t: DataThresholds):
    """Level too low, too hot, or an outlier against the corpus.

    What: Uses each file's active level: the RMS over its non-silent 20 ms frames, so pauses do not
    count. Warning below -40 dBFS (too quiet) or above -6 dBFS (too hot: a crest factor under 6
    dB means heavy limiting for speech, whose peaks sit 12-20 dB above its RMS). With at least 5
    files, info for files more than 15 dB from the corpus median active level.
    Why: Codecs are level-sensitive: quiet files put the signal near the quantiser's noise and
    loss floor, hot ones near the output bound; a wide spread makes the model learn levels instead
    of timbre. Per-sample normalisation is NOT the fix (it destroys the scale the model must keep).
    Fix: Apply one fixed gain per file toward a common active level (e.g. -26 dBFS, ITU-T P.56
    practice) at data preparation, keeping peaks ≤ 1.
    """
    rows = [f for f in _usable(corpus.files) if f.peak and f.active_rms_db is not None
            and f.frames >= frame_length(f.sample_rate)]
    if not rows:
        raise NotApplicable
    out = []
    absolute: set[str] = set()
    for f in rows:
        if f.active_rms_db < t.quiet_active_db:
            absolute.add(f.path)
            out.append(finding("D106", f"{f.path}: too quiet: active level {_fmt_db(f.active_rms_db)}FS "
                               f"(limit {t.quiet_active_db:g} dBFS); peak {_fmt_db(f.peak_db)}FS", subject=f.path,
                               evidence={"active_rms_db": f.active_rms_db, "peak_db": f.peak_db}))
        elif f.active_rms_db > t.hot_active_db:
            absolute.add(f.path)
            out.append(finding("D106", f"{f.path}: too hot: active level {_fmt_db(f.active_rms_db)}FS "
                               f"(limit {t.hot_active_db:g} dBFS); crest factor {_fmt_db(f.crest_factor_db)}",
                               subject=f.path, evidence={"active_rms_db": f.active_rms_db, "peak_db": f.peak_db}))
    if len(rows) >= t.outlier_min_files:
        median = statistics.median(f.active_rms_db for f in rows)
        for f in rows:
            deviation = f.active_rms_db - median
            if f.path not in absolute and abs(deviation) > t.outlier_db:
                out.append(finding("D106", f"{f.path}: active level {_fmt_db(f.active_rms_db)}FS is "
                                   f"{deviation:+.1f} dB from the corpus median {_fmt_db(median)}FS",
                                   subject=f.path, severity=Severity.INFO,
                                   evidence={"active_rms_db": f.active_rms_db, "corpus_median_db": median,
                                             "deviation_db": deviation}))
    return out


@check("D108", scope="data", severity=Severity.WARNING, level="corpus")
def sample_rate_mismatch(corpus: CorpusView, t: DataThresholds):
    """Sample-rate mismatch (across the corpus or against the target).

    What: Compares each file's sample rate with `--sample-rate` when given (error), otherwise
    with the corpus majority (warning).
    Why: A codec has one sample rate; a 44.1 kHz file read as 16 kHz plays 2.76× slower (pitch
    and formants shifted), and loaders that resample silently cost time and can alias.
    Fix: Resample the odd files once at data preparation (e.g. `sox in.wav -r 16000 out.wav`, or
    torchaudio/soxr), or pass the intended rate to the loader explicitly.
    """
    rows = [f for f in _usable(corpus.files)]
    if not rows:
        raise NotApplicable
    counts = Counter(f.sample_rate for f in rows)
    if t.sample_rate:
        target, basis, severity = int(t.sample_rate), "the target --sample-rate", Severity.ERROR
    else:
        target = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        basis, severity = f"the corpus majority ({counts[target]} of {len(rows)} files)", Severity.WARNING
    return [finding("D108", f"{f.path}: {f.sample_rate} Hz differs from {basis}, {target} Hz", subject=f.path,
                    severity=severity, evidence={"sample_rate": f.sample_rate, "expected_sample_rate": target})
            for f in rows if f.sample_rate != target]


@check("D109", scope="data", severity=Severity.WARNING, level="corpus")
def channel_mismatch(corpus: CorpusView, t: DataThresholds):
    """Channel-count mismatch across the corpus.

    What: Compares each file's channel count with the corpus majority.
    Why: A mono codec fed a stereo file either crashes on the shape or, after a careless reshape,
    interleaves the channels into one signal at twice the length; averaging channels that are out
    of phase cancels the signal.
    Fix: Convert the odd files once (e.g. `sox in.wav -c 1 out.wav`, or take one channel) at data
    preparation, after checking the channels are not inverted copies.
    """
    rows = _usable(corpus.files)
    if not rows:
        raise NotApplicable
    counts = Counter(f.channels for f in rows)
    majority = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    return [finding("D109", f"{f.path}: {f.channels} channels; the corpus majority is {majority} "
                    f"({counts[majority]} of {len(rows)} files)", subject=f.path,
                    evidence={"channels": f.channels, "majority_channels": majority})
            for f in rows if f.channels != majority]


@check("D112", scope="data", severity=Severity.WARNING, level="corpus")
def duplicates(corpus: CorpusView, t: DataThresholds):
    """Duplicate content.

    What: Files whose decoded samples fingerprint identically (hash of the first 65,536 frames
    plus the exact frame count, channel count, Σx and Σx² over the whole file). The first file of
    each group in path order is the original; each later one gets a finding naming it. All-zero
    files are left to D114.
    Why: Duplicates overweight some material, and a duplicate across the train/validation split
    leaks: validation SNR then measures memorisation, not generalisation.
    Fix: Keep one copy; make the split by speaker or recording, then de-duplicate across splits.
    """
    rows = [f for f in _usable(corpus.files) if f.fingerprint and f.peak]
    if not rows:
        raise NotApplicable
    groups: dict[str, list[FileMeasurement]] = defaultdict(list)
    for f in sorted(rows, key=lambda r: r.path):
        groups[f.fingerprint].append(f)
    out = []
    for members in groups.values():
        for dup in members[1:]:
            out.append(finding("D112", f"{dup.path}: same content as {members[0].path} "
                               f"({dup.duration_s:.2f} s, {len(members)} copies)", subject=dup.path,
                               evidence={"copies": len(members), "duration_s": dup.duration_s}))
    return out
