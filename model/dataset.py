"""Training data: random fixed-length crops read by seeking, never loading a whole file.

- Every audio file under the folder is opened once with `soundfile.info` (header only). Unreadable
  or empty files are skipped with a warning naming them.
- Validation is held out by utterance when the corpus allows it (`split` says how, in words too):
  a separate folder (`val_dir`); else whole files, when several files make up the validation
  share (`val_fraction`, at least one crop) without spending more than `WHOLE_FILE_MAX_SHARE` of
  the audio on it; else the tail of each file, with a gap of `gap_samples` (the trainer passes the
  codec's receptive field) that no training crop reaches into. Validation crops are cut at fixed
  positions, so every epoch scores the same audio.
- A training crop is a pure function of (seed, global index): resuming at step k reproduces exactly
  the batches an uninterrupted run would have seen, with any number of loader workers.
- A file whose rate differs from the model's is resampled per crop (torchaudio), with one warning
  naming the files (or refused with `strict_rate`). Multi-channel files are averaged to mono.
- Files shorter than one crop are zero-padded (default) or skipped (`short_files="skip"`); either
  way a warning says which.
- `data_dir` may also be a WebDataset tar shard (or a folder holding shards: every audio member
  is a training file, read by seeking inside the uncompressed tar, never extracted) or a lhotse
  manifest (`recordings.jsonl[.gz]`: each recording; `cuts.jsonl[.gz]`: each cut's region of its
  recording).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".au", ".snd", ".w64",
                    ".caf", ".rf64", ".mp3", ".opus")


TAR_SUFFIX = ".tar"
MANIFEST_SUFFIXES = (".jsonl", ".jsonl.gz")
# Whole files are held out only while they cost at most this share of the audio (or twice the
# asked `val_fraction` when that is larger): a corpus of four equal files would otherwise train on
# 75%. Beyond it, each file's tail is held out instead.
WHOLE_FILE_MAX_SHARE = 0.2
# frames hashed per file to recognise a validation file that is a copy of a training file
_FINGERPRINT_FRAMES = 4096


class DataError(ValueError):
    """The data folder cannot be used for training (missing, no audio, strict-rate violation)."""


class _Window(io.RawIOBase):
    """A read-only, seekable view of bytes [offset, offset + size) of a file: one tar member."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self._file = open(path, "rb")
        self._offset, self._size, self._pos = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + pos))
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        self._file.seek(self._offset + self._pos)
        got = self._file.readinto(memoryview(buffer)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        self._file.close()
        super().close()


@dataclass
class _Source:
    """Where a training file's samples are: a file, a member of a tar (byte range), a region."""

    path: Path
    rel: str
    member: tuple[int, int] | None = None  # (byte offset, byte size) inside an uncompressed tar
    start_s: float = 0.0  # a lhotse cut: its region of the recording
    duration_s: float | None = None

    def open(self) -> sf.SoundFile:
        if self.member is None:
            return sf.SoundFile(str(self.path))
        return sf.SoundFile(_Window(self.path, *self.member))


def _is_audio(name: str) -> bool:
    return name.lower().endswith(AUDIO_EXTENSIONS) and not os.path.basename(name).startswith("._")


def _tar_sources(path: Path, rel: str) -> list[_Source]:
    with tarfile.open(path, "r:") as tar:  # uncompressed: members are byte ranges we can seek in
        return [_Source(path, f"{rel}:{m.name}", member=(m.offset_data, m.size))
                for m in tar.getmembers() if m.isreg() and _is_audio(m.name)]


def _lhotse_sources(path: Path) -> list[_Source]:
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.name.endswith(".gz") else raw).decode("utf-8")
    base = path.parent
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        recording = item.get("recording") if isinstance(item.get("recording"), dict) else item
        sources = [s for s in recording.get("sources") or [] if s.get("type") == "file"]
        if not sources:
            continue
        where = Path(sources[0]["source"])
        if not where.is_absolute() and (base / where).exists():
            where = base / where
        if recording is item:
            out.append(_Source(where, str(item.get("id"))))
        else:  # a cut: its [start, start + duration) of the recording
            out.append(_Source(where, str(item.get("id")), start_s=float(item.get("start") or 0.0),
                               duration_s=float(item.get("duration") or 0.0)))
    return out


@dataclass
class AudioFile:
    path: Path
    rel: str
    frames: int  # in the file's own rate
    sample_rate: int
    channels: int
    train_stop: int  # train region is [0, train_stop)
    val_start: int | None  # validation region is [val_start, frames) when not None
    source: _Source | None = None  # a tar member or a lhotse cut (frames are then relative to it)
    offset: int = 0  # first frame of this item in the underlying file (lhotse cut start)


@dataclass
class _Info:
    samplerate: int
    frames: int
    channels: int


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


@dataclass
class CropSource:
    data_dir: Path
    sample_rate: int = 16000
    channels: int = 1
    segment_samples: int = 16000
    val_fraction: float = 0.05
    max_val_crops: int = 32
    strict_rate: bool = False
    short_files: str = "pad"  # or "skip"
    min_crop_rms_db: float | None = None  # skip near-silent training crops (None = keep all)
    seed: int = 0
    on_warning: Callable[[str], None] | None = None
    val_dir: Path | None = None  # a separate validation folder (every file under data_dir trains)
    gap_samples: int = 0  # at the model's rate: between a file's training and validation regions
    speed_perturb: float = 0.0  # training crops played up to this much faster or slower (0.05: +-5 %)
    gain_db: float = 0.0  # training crops scaled by a random gain within +-gain_db (peak kept <= 0.95)
    files: list[AudioFile] = field(default_factory=list, init=False)
    warnings: list[str] = field(default_factory=list, init=False)
    split: dict = field(default_factory=dict, init=False)  # how validation was held out (see _describe)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.val_dir = Path(self.val_dir) if self.val_dir else None
        if self.short_files not in ("pad", "skip"):
            raise ValueError("short_files must be 'pad' or 'skip'")
        self._scan()

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(message)

    # -- discovery ---------------------------------------------------------------------------
    def _sources(self, root: Path) -> list[_Source]:
        """Every training item: audio files and tar shard members under a folder, one shard, or
        the recordings / cuts of a lhotse manifest."""
        try:
            if root.is_file() and root.name.lower().endswith(MANIFEST_SUFFIXES):
                return _lhotse_sources(root)
            if root.is_file() and root.name.lower().endswith(TAR_SUFFIX):
                return _tar_sources(root, root.name)
        except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
            raise DataError(f"{root}: not a readable shard or manifest ({str(exc).splitlines()[0][:120]})") from None
        if not root.is_dir():
            raise DataError(f"data folder not found: {root} (a folder, a .tar shard or a lhotse .jsonl[.gz] manifest)")
        out: list[_Source] = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = str(path.relative_to(root))
            if _is_audio(path.name):
                out.append(_Source(path, rel))
            elif path.name.lower().endswith(TAR_SUFFIX):
                try:
                    out.extend(_tar_sources(path, rel))
                except (OSError, tarfile.TarError) as exc:
                    self._warn(f"skipped shard {rel} ({str(exc).splitlines()[0][:80]})")
        return out

    def _scan(self) -> None:
        self.files = self._read_headers(self.data_dir)
        if self.val_dir is not None:
            self._split_val_dir()
        else:
            self._split()
        if not any(f.train_stop > 0 for f in self.files):
            raise DataError(f"no training audio left under {self.data_dir} after holding out validation")

    def _read_headers(self, root: Path) -> list[AudioFile]:
        """Every usable item under `root` (headers only), with one warning per kind of problem."""
        candidates = self._sources(root)
        files: list[AudioFile] = []
        unreadable, empty, other_rate, short, multi = [], [], [], [], []
        for source in candidates:
            rel = source.rel
            try:
                with source.open() as handle:
                    rate, frames, channels = int(handle.samplerate), int(handle.frames), int(handle.channels)
            except Exception as exc:  # corrupt header, unsupported codec: skip, keep training
                unreadable.append(f"{rel} ({str(exc).splitlines()[0][:80]})")
                continue
            offset = 0
            if source.duration_s is not None:  # a lhotse cut: its region of the recording
                offset = min(frames, int(round(source.start_s * rate)))
                frames = max(0, min(frames - offset, int(round(source.duration_s * rate))))
            info = _Info(rate, frames, channels)
            if info.frames <= 0:
                empty.append(rel)
                continue
            if info.channels != self.channels:
                if self.channels != 1:
                    unreadable.append(f"{rel} ({info.channels} channels, model wants {self.channels})")
                    continue
                multi.append(rel)
            if info.samplerate != self.sample_rate:
                other_rate.append(f"{rel} ({info.samplerate} Hz)")
            crop_src = self._src_len(self.segment_samples, info.samplerate)
            if info.frames < crop_src:
                short.append(rel)
                if self.short_files == "skip":
                    continue
            files.append(AudioFile(source.path, rel, int(info.frames), int(info.samplerate), int(info.channels),
                                   int(info.frames), None, source=source, offset=offset))
        if unreadable:
            self._warn(f"skipped {len(unreadable)} unreadable file(s): {_names(unreadable)}")
        if empty:
            self._warn(f"skipped {len(empty)} empty file(s): {_names(empty)}")
        if other_rate:
            if self.strict_rate:
                raise DataError(f"{len(other_rate)} file(s) not at {self.sample_rate} Hz (--strict-rate): {_names(other_rate)}")
            self._warn(f"resampling {len(other_rate)} file(s) to {self.sample_rate} Hz per crop: {_names(other_rate)}")
        if multi:
            self._warn(f"averaging {len(multi)} multi-channel file(s) to mono: {_names(multi)}")
        if short:
            action = "zero-padded to one crop" if self.short_files == "pad" else "skipped"
            self._warn(f"{len(short)} file(s) shorter than one {self.segment_samples / self.sample_rate:.2f} s crop "
                       f"{action}: {_names(short)}")
        if not files:
            found = f"{len(candidates)} audio-named file(s), none usable" if candidates else "no audio files"
            raise DataError(f"{found} under {root}")
        return files

    def _src_len(self, n_target: int, rate: int) -> int:
        return int(math.ceil(n_target * rate / self.sample_rate))

    # -- holding out validation ---------------------------------------------------------------
    def _split(self) -> None:
        """Whole files when several make up the validation share cheaply, else each file's tail
        behind a gap, else (several files, all too short for a tail) whole files at any share."""
        if len(self.files) > 1 and self._hold_out_whole_files(max(WHOLE_FILE_MAX_SHARE, 2 * self.val_fraction)):
            return
        if self._hold_out_tails():
            return
        if len(self.files) > 1 and self._hold_out_whole_files(1.0):
            return
        only = self.files[0]
        only.val_start = 0
        self._warn(f"{only.rel} is the only file and too short to hold out a region of it: validation overlaps training")
        self._describe("overlap", [only], shared=[only.rel])

    def _hold_out_whole_files(self, max_share: float) -> bool:
        """The fewest evenly spread files whose audio reaches `val_fraction` of the corpus (at least
        one crop), leaving at least one file to train on; False when that costs more than
        `max_share` of the audio."""
        seconds = [f.frames / f.sample_rate for f in self.files]
        total = sum(seconds)
        target = max(self.val_fraction * total, self.segment_samples / self.sample_rate)
        n = len(self.files)
        for count in range(1, n):
            chosen = sorted({min(n - 1, int((j + 0.5) * n / count)) for j in range(count)})
            held = sum(seconds[i] for i in chosen)
            if held >= target or count == n - 1:
                break
        if held > max_share * total:
            return False
        for i in chosen:
            self.files[i].val_start, self.files[i].train_stop = 0, 0
        self._describe("files", [self.files[i] for i in chosen])
        return True

    def _hold_out_tails(self) -> bool:
        """The last `val_fraction` (at least one crop) of every file long enough for a training
        crop, the gap and a validation crop; training crops end a gap before it."""
        held = []
        for f in self.files:
            crop = self._src_len(self.segment_samples, f.sample_rate)
            gap = self._src_len(self.gap_samples, f.sample_rate) if self.gap_samples else 0
            if f.frames < 2 * crop + gap:
                continue
            val_len = min(max(crop, int(f.frames * self.val_fraction)), f.frames - crop - gap)
            f.val_start = f.frames - val_len
            f.train_stop = f.val_start - gap
            held.append(f)
        if held:
            self._describe("regions", held, shared=[f.rel for f in held])
        return bool(held)

    def _split_val_dir(self) -> None:
        """Every file under data_dir trains; validation comes from val_dir. Files of val_dir that
        also lie under data_dir are left out of training; copies (same samples) are named."""
        val_root = self.val_dir.resolve()
        try:
            val_files = self._read_headers(self.val_dir)
        except DataError as exc:
            raise DataError(f"validation folder: {exc}") from None
        inside = [f for f in self.files if f.path.resolve().is_relative_to(val_root)]
        if inside:
            self.files = [f for f in self.files if f not in inside]
            self._warn(f"{len(inside)} file(s) of the validation folder lie under the data folder; "
                       f"left out of training: {_names([f.rel for f in inside])}")
        for f in val_files:
            f.val_start, f.train_stop = 0, 0
        copies = self._copies(val_files)
        if copies:
            self._warn(f"the validation folder shares {len(copies)} file(s) with training (same samples): "
                       f"{_names(copies)}; validation is not held out for them")
        self.files.extend(val_files)
        self._describe("val_dir", val_files, shared=copies)

    def _fingerprint(self, f: AudioFile) -> tuple:
        """(frames, rate, hash of samples from the middle): equal for a file and its copy in any
        lossless container."""
        with (f.source.open() if f.source is not None else sf.SoundFile(str(f.path))) as handle:
            handle.seek(f.offset + max(0, f.frames // 2 - _FINGERPRINT_FRAMES // 2))
            block = handle.read(min(f.frames, _FINGERPRINT_FRAMES), dtype="float32", always_2d=True)
        return f.frames, f.sample_rate, hashlib.blake2b(np.ascontiguousarray(block).tobytes()).hexdigest()

    def _copies(self, val_files: list[AudioFile]) -> list[str]:
        """Validation files whose samples a training file also holds (only same-length pairs are read)."""
        lengths = {(f.frames, f.sample_rate) for f in self.files}
        candidates = [f for f in val_files if (f.frames, f.sample_rate) in lengths]
        if not candidates:
            return []
        try:
            train = {self._fingerprint(f) for f in self.files if (f.frames, f.sample_rate) in
                     {(v.frames, v.sample_rate) for v in candidates}}
            return [f"{f.rel} = a training file" for f in candidates if self._fingerprint(f) in train]
        except Exception:  # a file that cannot be read again: its crops will say so
            return []

    def _describe(self, method: str, held: list[AudioFile], shared: list[str] = ()) -> None:
        """`split`: how validation was held out, in numbers and in one sentence for the report."""
        seconds = sum((f.frames - (f.val_start or 0)) / f.sample_rate for f in held)
        gap_s = self.gap_samples / self.sample_rate
        sentence = {
            "files": f"held out by whole files: {len(held)} of {len(self.files)} files ({seconds:.1f} s) "
                     "never trained on",
            "regions": f"held out by region: the last {seconds:.1f} s of {len(held)} file(s), "
                       f"{self.gap_samples} samples ({gap_s:.2f} s, one receptive field) after the last "
                       "training sample; validation shares these recordings with training (pass --val_dir "
                       "or several files to hold out by utterance)",
            "val_dir": f"a separate validation folder: {len(held)} file(s) ({seconds:.1f} s) from {self.val_dir}",
            "overlap": "not held out: validation is the training audio itself",
        }[method]
        if method == "val_dir" and shared:
            sentence += f"; {len(shared)} of them are also training files"
        self.split = {"method": method, "description": sentence, "validation_files": [f.rel for f in held],
                      "validation_seconds": seconds,
                      "gap_samples": self.gap_samples if method == "regions" else 0,
                      "shares_files_with_training": bool(shared), "shared_files": list(shared),
                      # absolute, so a reader elsewhere can tell whether its data was trained on
                      "data_dir": str(self.data_dir.resolve()),
                      "val_dir": str(self.val_dir.resolve()) if self.val_dir is not None else None}

    # -- reading ------------------------------------------------------------------------------
    @property
    def train_files(self) -> list[AudioFile]:
        return [f for f in self.files if f.train_stop > 0]

    @property
    def validation_files(self) -> list[AudioFile]:
        return [f for f in self.files if f.val_start is not None]

    @property
    def train_seconds(self) -> float:
        return sum(f.train_stop / f.sample_rate for f in self.train_files)

    def read(self, f: AudioFile, start: int, n_target: int) -> torch.Tensor:
        """[channels, n_target] float32 from `f` starting at source frame `start` (seek, no full load)."""
        n_src = min(self._src_len(n_target, f.sample_rate), max(0, f.frames - max(0, min(start, f.frames - 1))))
        with (f.source.open() if f.source is not None else sf.SoundFile(str(f.path))) as handle:
            handle.seek(f.offset + max(0, min(start, f.frames - 1)))
            block = handle.read(n_src, dtype="float32", always_2d=True)
        x = torch.from_numpy(np.ascontiguousarray(block.T))
        if x.shape[0] != self.channels:
            x = x.mean(dim=0, keepdim=True)
        if f.sample_rate != self.sample_rate and x.shape[-1] > 0:
            import torchaudio.functional as AF

            x = AF.resample(x, f.sample_rate, self.sample_rate)
        x = x[:, :n_target]
        if x.shape[-1] < n_target:
            x = torch.nn.functional.pad(x, (0, n_target - x.shape[-1]))
        return x

    def train_crop(self, index: int) -> torch.Tensor:
        """Crop number `index` of the training stream: a pure function of (seed, index)."""
        rng = np.random.default_rng([self.seed, index])
        files = self.train_files
        weights = np.array([f.train_stop / f.sample_rate for f in files])
        weights /= weights.sum()
        # speed: read `factor` x the crop and resample it to the crop's length (pitch and rate change
        # together, as in Kaldi's speed perturbation); steps of 1/50 keep the resampling kernel short
        factor = 1.0 + round(50 * rng.uniform(-self.speed_perturb, self.speed_perturb)) / 50 if self.speed_perturb else 1.0
        n_read = int(round(self.segment_samples * factor))
        x = None
        for _attempt in range(10):
            f = files[int(rng.choice(len(files), p=weights))]
            crop = self._src_len(n_read, f.sample_rate)
            start = int(rng.integers(0, max(1, f.train_stop - crop + 1)))
            try:
                x = self.read(f, start, n_read)
            except Exception:  # a file that breaks mid-way: try another crop
                continue
            if self.min_crop_rms_db is None:
                break
            rms = float(x.pow(2).mean().sqrt())
            if rms > 0 and 20 * math.log10(rms) >= self.min_crop_rms_db:
                break
        if x is None:
            raise DataError(f"could not read a training crop after 10 attempts (index {index})")
        # all attempts near-silent: the last one is kept rather than stall
        return self._augment(x, factor, rng)

    def _augment(self, x: torch.Tensor, factor: float, rng: np.random.Generator) -> torch.Tensor:
        if factor != 1.0:
            import torchaudio.functional as AF

            x = AF.resample(x, int(round(50 * factor)), 50)[:, : self.segment_samples]
            if x.shape[-1] < self.segment_samples:
                x = torch.nn.functional.pad(x, (0, self.segment_samples - x.shape[-1]))
        if self.gain_db:
            gain = 10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20)
            peak = float(x.abs().max())
            x = x * (min(gain, 0.95 / peak) if peak > 0 else gain)
        return x

    def validation_crops(self) -> torch.Tensor:
        """Deterministic validation set [N, channels, segment]: consecutive crops from each file's
        held-out tail, taken round-robin across files up to `max_val_crops`."""
        positions: list[list[tuple[AudioFile, int]]] = []
        for f in self.files:
            if f.val_start is None:
                continue
            crop = self._src_len(self.segment_samples, f.sample_rate)
            starts = list(range(f.val_start, max(f.val_start + 1, f.frames - crop + 1), crop))
            positions.append([(f, s) for s in starts])
        chosen: list[tuple[AudioFile, int]] = []
        depth = 0
        while len(chosen) < self.max_val_crops and any(depth < len(p) for p in positions):
            for p in positions:
                if depth < len(p) and len(chosen) < self.max_val_crops:
                    chosen.append(p[depth])
            depth += 1
        return torch.stack([self.read(f, s, self.segment_samples) for f, s in chosen])


class TrainCropDataset(torch.utils.data.Dataset):
    """Map-style view: item i is `source.train_crop(i)`; indices come from `StepBatchSampler`."""

    def __init__(self, source: CropSource):
        self.source = source

    def __len__(self) -> int:
        return 2 ** 62

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.source.train_crop(int(index))


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches for global steps [start_step, stop_step): batch of step s on rank r holds indices
    ((s · world) + r) · B + b, so the stream does not depend on where a run was interrupted."""

    def __init__(self, batch_size: int, start_step: int, stop_step: int, rank: int = 0, world_size: int = 1):
        self.batch_size, self.start_step, self.stop_step = batch_size, start_step, stop_step
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)

    def __iter__(self):
        for step in range(self.start_step, self.stop_step):
            base = (step * self.world_size + self.rank) * self.batch_size
            yield list(range(base, base + self.batch_size))
