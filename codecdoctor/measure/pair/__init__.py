"""Measure a (reference, estimate) pair once: every number the R3xx judges read.

One streaming engine (`passes.measure_pair_stream`) reads a pair in blocks from two sources (an
array, or a file read by seeking) in two passes of small accumulators, memory flat in length:

* `sources`: what the passes read (ArraySource, FileSource) and flat views of them;
* `sums`: per-side, per-pair and per-frame running sums, and the quadratic forms every what-if
  SNR is read from;
* `lag`: the lag search (one FFT up to LAG_BLOCKS blocks, evenly spaced blocks beyond) and its
  chance level; `drift`: the lag again in windows (R304);
* `stft_sums`: log-mel and long-term spectra sums (mel distance, correlations, bandwidth);
* `corrections`: SNRs after per-segment levels and fractional alignment; `frames`: R317;
* `passes`: the two passes, as named steps, their blocks overlapped by one thread (`blocks`);
  `chunks`: the chunk-set averages (R313).

`measure_pair(ref, est, sample_rate)` over arrays is the same engine over array sources. Arrays:
any array-like (numpy, torch); time is the last axis and leading axes (batch, channels) are joined
end to end. Nothing here raises on bad values; see `codecdoctor.measure.metrics` for the sentinels.
Judging is `codecdoctor.diagnose`.
"""
from codecdoctor.measure.pair.chunks import (
    ChunkEnergies,
    ChunkSetMeasurements,
    chunk_energies,
    chunk_set_from_energies,
    measure_chunk_set,
)
from codecdoctor.measure.pair.drift import drift_search_seconds
from codecdoctor.measure.pair.measurements import (
    MAX_LAG_SECONDS,
    SEGMENT_SECONDS,
    SILENT_REF_RMS_DB,
    WHAT_IF_KEYS,
    PairMeasurements,
)
from codecdoctor.measure.pair.passes import measure_pair, measure_pair_stream
from codecdoctor.measure.pair.sources import ArraySource, FileSource, SignalSource

__all__ = ["ArraySource", "ChunkEnergies", "ChunkSetMeasurements", "FileSource", "MAX_LAG_SECONDS", "PairMeasurements",
           "SEGMENT_SECONDS", "SILENT_REF_RMS_DB", "SignalSource", "WHAT_IF_KEYS", "chunk_energies",
           "chunk_set_from_energies", "drift_search_seconds", "measure_chunk_set", "measure_pair", "measure_pair_stream"]
