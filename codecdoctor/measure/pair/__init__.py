"""Measure a (reference, estimate) pair once: every number the R3xx judges read.

One streaming engine (`passes.measure_pair_stream`) reads a pair in blocks from two sources (an
array, or a file read by seeking through the one audio reader, `measure.audio.reader.FileSource`,
re-exported here) in two passes of small accumulators, memory bounded whatever the length.
`measure_pair(ref, est, sample_rate)` is the same engine over arrays (any array-like; time is the
last axis, leading axes are joined end to end). Nothing here raises on bad values; judging is
`codecdoctor.diagnose`.
"""
from codecdoctor.measure.audio.reader import FileSource
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
from codecdoctor.measure.pair.sources import ArraySource, SignalSource

__all__ = ["ArraySource", "ChunkEnergies", "ChunkSetMeasurements", "FileSource", "MAX_LAG_SECONDS", "PairMeasurements",
           "SEGMENT_SECONDS", "SILENT_REF_RMS_DB", "SignalSource", "WHAT_IF_KEYS", "chunk_energies",
           "chunk_set_from_energies", "drift_search_seconds", "measure_chunk_set", "measure_pair", "measure_pair_stream"]
