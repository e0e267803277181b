"""D116: float files holding integer-scale samples (int16 written as float without / 32768)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from speech_sources import SR, speech

from codecdoctor.audit import audit_data


def audit(tmp_path, files):
    for name, (data, subtype) in files.items():
        sf.write(str(tmp_path / name), data, SR, subtype=subtype)
    report = audit_data(tmp_path, jobs=1)
    return report, {f.subject: [g.id for g in report.findings if g.subject == f.subject] for f in report.findings}


def int16_samples(x, peak_dbfs):
    return np.round(x / np.max(np.abs(x)) * 10 ** (peak_dbfs / 20) * 32767).astype(np.int16)


@pytest.mark.parametrize("name", ["te-default", "synthetic", "sox-vowels"])
@pytest.mark.parametrize("peak_dbfs", [-3.0, -20.0, -45.0])
def test_int16_written_as_float_without_scaling_is_named_with_its_true_level(tmp_path, name, peak_dbfs):
    samples = int16_samples(speech(name, max_seconds=2.0), peak_dbfs)
    report, ids = audit(tmp_path, {"unscaled.wav": (samples.astype(np.float32), "FLOAT")})
    d116 = [f for f in report.findings if f.id == "D116"]
    assert len(d116) == 1 and d116[0].subject == "unscaled.wav" and d116[0].severity.label == "error"
    assert d116[0].evidence["integer_bits"] == 16
    # the peak is rounded to an integer: 1/184 of it at -45 dBFS is 0.05 dB
    assert d116[0].evidence["peak_dbfs_after_scaling"] == pytest.approx(peak_dbfs, abs=0.05)
    assert f"{d116[0].evidence['peak_dbfs_after_scaling']:.1f} dBFS" in d116[0].message


def test_int24_scale_in_a_double_file_names_int24(tmp_path):
    x = speech("te-fast-high", max_seconds=2.0)
    data = np.round(x / np.max(np.abs(x)) * 0.5 * 8388607)
    report, _ = audit(tmp_path, {"unscaled24.wav": (data, "DOUBLE")})
    d116 = next(f for f in report.findings if f.id == "D116")
    assert d116.evidence["integer_bits"] == 24
    assert d116.evidence["peak_dbfs_after_scaling"] == pytest.approx(-6.02, abs=0.01)


def test_correctly_scaled_pcm_and_slight_float_overs_are_not_integer_scale(tmp_path):
    samples = int16_samples(speech("te-default", max_seconds=2.0), -6.0)
    overs = speech("synthetic", max_seconds=2.0) / 0.5 * 1.01           # the saga's 1.01 peak: D103, not D116
    report, ids = audit(tmp_path, {"scaled.wav": (samples.astype(np.float32) / 32768, "FLOAT"),
                                   "pcm.wav": (samples, "PCM_16"),
                                   "overs.wav": (overs.astype(np.float32), "FLOAT")})
    assert "D116" in report.checks_run
    assert not [f for f in report.findings if f.id == "D116"]
    assert "D103" in ids["overs.wav"]


def test_explain_shows_d116(cli):
    code, out, _ = cli("explain", "D116")
    assert code == 0
    assert "32768" in out and "What it checks" in out and "Why it matters" in out
