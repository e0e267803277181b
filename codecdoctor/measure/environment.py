"""Measure the software environment: versions, whether torchaudio really works with this torch,
and which autocast dtypes actually run on each device (by running a small op, not by asking)."""
from __future__ import annotations

import importlib
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

TESTED_TORCH = "2.11.0"


@dataclass
class AutocastResult:
    device: str
    dtype: str
    works: bool
    detail: str = ""


@dataclass
class EnvMeasurements:
    python: str = ""
    platform: str = ""
    versions: dict[str, str | None] = field(default_factory=dict)
    torch_import_error: str | None = None
    torchaudio_import_error: str | None = None
    torchaudio_smoke_error: str | None = None
    cuda_available: bool = False
    cuda_version: str | None = None
    cuda_devices: list[str] = field(default_factory=list)
    autocast: list[AutocastResult] = field(default_factory=list)


def _version(module_name: str) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except Exception:
        return None
    version = getattr(module, "__version__", None)
    if version is None:  # some packages (rich) publish their version only in the distribution metadata
        try:
            from importlib.metadata import version as dist_version

            version = dist_version(module_name)
        except Exception:
            version = "unknown"
    return str(version)


def _autocast_probe(torch: Any, device: str, dtype_name: str) -> AutocastResult:
    """Run a matmul and an STFT-sized reduction under autocast; it works if the result has the
    requested dtype and is finite."""
    dtype = getattr(torch, dtype_name)
    try:
        a = torch.randn(64, 64, device=device)
        b = torch.randn(64, 64, device=device)
        with torch.autocast(device_type=device, dtype=dtype):
            out = a @ b
        if out.dtype != dtype:
            return AutocastResult(device, dtype_name, False, f"autocast produced {out.dtype}, not {dtype}")
        if not bool(torch.isfinite(out).all()):
            return AutocastResult(device, dtype_name, False, "result not finite")
        return AutocastResult(device, dtype_name, True, "matmul ran")
    except Exception as exc:  # unsupported dtype/device combinations raise here
        return AutocastResult(device, dtype_name, False, f"{type(exc).__name__}: {exc}".splitlines()[0][:200])


def measure_environment(run_autocast: bool = True) -> EnvMeasurements:
    m = EnvMeasurements(python=sys.version.split()[0], platform=platform.platform())
    for name in ("numpy", "scipy", "soundfile", "jinja2", "rich", "typer"):
        m.versions[name] = _version(name)
    try:
        import soundfile

        m.versions["libsndfile"] = str(soundfile.__libsndfile_version__)
    except Exception:
        m.versions["libsndfile"] = None
    try:
        import torch
    except Exception as exc:
        m.torch_import_error = f"{type(exc).__name__}: {exc}"
        m.versions["torch"] = None
        return m
    m.versions["torch"] = torch.__version__
    try:
        import torchaudio

        m.versions["torchaudio"] = torchaudio.__version__
        try:  # a real call exercises the compiled parts, not just the Python import
            torchaudio.functional.resample(torch.zeros(1, 160), 16000, 8000)
        except Exception as exc:
            m.torchaudio_smoke_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    except Exception as exc:
        m.versions["torchaudio"] = None
        m.torchaudio_import_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    m.cuda_available = bool(torch.cuda.is_available())
    m.cuda_version = torch.version.cuda
    if m.cuda_available:
        m.cuda_devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if run_autocast:
        devices = ["cpu"] + (["cuda"] if m.cuda_available else [])
        for device in devices:
            for dtype_name in ("bfloat16", "float16"):
                m.autocast.append(_autocast_probe(torch, device, dtype_name))
    return m


