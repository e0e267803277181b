"""report/raster.py: the PNG a spectrogram is drawn as, without matplotlib."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from codecdoctor.report.raster import colour_map, heatmap_data_uri, png_bytes


def _decode(data: bytes) -> np.ndarray:
    from matplotlib import image

    return image.imread(io.BytesIO(data), format="png")


def test_png_round_trips_through_a_real_decoder():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 13, 3), dtype=np.uint8)
    decoded = _decode(png_bytes(rgb))
    np.testing.assert_array_equal(np.round(decoded * 255).astype(np.uint8), rgb)


def test_heat_map_puts_the_low_end_of_y_at_the_bottom_and_follows_magma():
    import matplotlib

    values = np.zeros((4, 5))
    values[0, :] = 1.0                       # the lowest frequency row, loudest
    uri = heatmap_data_uri(values, 0.0, 1.0)
    assert uri.startswith("data:image/png;base64,")
    decoded = _decode(base64.b64decode(uri.split(",", 1)[1]))
    assert decoded.shape == (4, 5, 3)
    assert decoded[-1].mean() > decoded[0].mean()     # bottom row bright, top row dark
    unit = np.linspace(0.0, 1.0, 101)
    reference = matplotlib.colormaps["magma"](unit)[:, :3]
    assert np.abs(colour_map(unit) / 255.0 - reference).max() < 0.06


def test_bad_shapes_are_refused_and_nan_is_the_floor():
    with pytest.raises(ValueError):
        png_bytes(np.zeros((0, 3, 3), np.uint8))
    assert tuple(colour_map(np.array([np.nan]))[0]) == tuple(colour_map(np.array([0.0]))[0])
