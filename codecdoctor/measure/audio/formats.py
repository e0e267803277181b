"""Facts about audio formats and framing shared by the reader, the accumulator and the file row."""
from __future__ import annotations

import numpy as np

FRAME_MS = 20.0  # silence / level frames: 20 ms is one codec hop at 16 kHz (320 samples)


def frame_length(sample_rate: int) -> int:
    return max(1, int(round(sample_rate * FRAME_MS / 1000.0)))


# Container bit depth per libsndfile subtype (None: lossy or otherwise no fixed depth).
CONTAINER_BITS = {
    "PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64,
    "ALAW": 8, "ULAW": 8,
}
INTEGER_SUBTYPES = {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32"}
# How to read each subtype fast and still get libsndfile's float samples exactly: (soundfile dtype,
# scale). libsndfile returns 8- and 16-bit PCM as int16 and 24- and 32-bit PCM as left-justified
# int32, and its own float conversion multiplies those by this power of two, so the integers scaled
# in numpy are the same samples (3x faster than its double loop); float files come as float32.
# Other subtypes are read as float64 by libsndfile.
NATIVE_READS = {"PCM_S8": ("int16", 2.0 ** -15), "PCM_U8": ("int16", 2.0 ** -15), "PCM_16": ("int16", 2.0 ** -15),
                "PCM_24": ("int32", 2.0 ** -31), "PCM_32": ("int32", 2.0 ** -31), "FLOAT": ("float32", 1.0)}


def pcm_rails(subtype: str | None) -> tuple[float, float] | None:
    """The float values at which an integer format saturates, as soundfile returns them.

    libsndfile scales N-bit integers by 1/2^(N-1), so PCM16's -32768 reads as -1.0 and 32767 as
    32767/32768 = 0.99997: both are rails. Float and lossy formats have no rail; for them ±1.0 is
    used, the value a hard clip in float (np.clip) leaves behind.
    """
    bits = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}.get(subtype or "")
    if bits is None:
        return None
    full = float(2 ** (bits - 1))
    return -1.0, float(np.float32((full - 1.0) / full))
