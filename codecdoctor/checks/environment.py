"""E7xx: is this Python environment able to run codec training and diagnostics correctly?"""
from __future__ import annotations

from codecdoctor.core.findings import Severity
from codecdoctor.core.registry import NotApplicable, check, finding
from codecdoctor.measure.environment import TESTED_TORCH, EnvMeasurements


def _minor(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    try:
        major, minor = version.split("+")[0].split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


@check("E701", scope="environment", severity=Severity.ERROR)
def torchaudio_abi(env: EnvMeasurements):
    """torchaudio does not import or does not match torch.

    What: Imports torchaudio, compares its major.minor version with torch's (they are released in
    lockstep, 2.11 with 2.11) and runs one real resample call to exercise its compiled parts.
    Why: torchaudio built for another torch fails at import or, worse, at the first transform deep
    inside training (undefined symbols, wrong ABI). The codec's mel loss and resampling need it;
    codecdoctor's diagnostics do not, so they keep working and report this instead.
    Fix: Install the matching pair, e.g. `pip install torch==2.11.0 torchaudio==2.11.0` (the
    project's constraints.txt), in a fresh virtual environment.
    """
    if env.torch_import_error:
        return [finding("E701", f"torch does not import: {env.torch_import_error}", subject="torch",
                        severity=Severity.CRITICAL, evidence={})]
    if env.torchaudio_import_error:
        return [finding("E701", f"torchaudio does not import: {env.torchaudio_import_error}", subject="torchaudio",
                        evidence={})]
    torch_v, audio_v = env.versions.get("torch"), env.versions.get("torchaudio")
    if _minor(torch_v) != _minor(audio_v):
        return [finding("E701", f"torchaudio {audio_v} was built for a different torch than the installed {torch_v}",
                        subject="torchaudio", evidence={})]
    if env.torchaudio_smoke_error:
        return [finding("E701", f"torchaudio imports but a resample call failed: {env.torchaudio_smoke_error}",
                        subject="torchaudio", evidence={})]
    return []


@check("E702", scope="environment", severity=Severity.INFO)
def autocast_support(env: EnvMeasurements):
    """CUDA presence and which autocast dtypes actually run.

    What: Reports whether CUDA is available and, for each device, whether a small matmul under
    `torch.autocast` with bfloat16 and float16 really runs and returns finite values of that dtype.
    Why: `--amp bf16` on a GPU without bf16 support (or a dtype an older torch cannot autocast on
    the CPU) either fails at the first step or silently runs in another precision; spectral losses
    in fp16 overflow (S501).
    Fix: Use `--amp bf16` where it is listed as working, `--amp fp16` with a GradScaler otherwise
    (torch's CPU autocast runs both; on the CPU it saves memory more than time), and no AMP where
    neither is listed.
    """
    if not env.autocast:
        raise NotApplicable
    working = [f"{r.device}/{r.dtype}" for r in env.autocast if r.works]
    failing = [f"{r.device}/{r.dtype} ({r.detail})" for r in env.autocast if not r.works]
    cuda = f"CUDA {env.cuda_version} with {', '.join(env.cuda_devices)}" if env.cuda_available else "no CUDA device"
    message = f"{cuda}; autocast works for: {', '.join(working) or 'none'}"
    if failing:
        message += f"; fails for: {'; '.join(failing)}"
    cuda_broken = env.cuda_available and not any(r.works for r in env.autocast if r.device == "cuda")
    return [finding("E702", message, subject="autocast",
                    severity=Severity.WARNING if cuda_broken else Severity.INFO,
                    evidence={"cuda_devices": len(env.cuda_devices), "autocast_working": len(working),
                              "autocast_failing": len(failing)})]


@check("E703", scope="environment", severity=Severity.INFO)
def versions(env: EnvMeasurements):
    """Versions of Python, torch, torchaudio and the audio stack.

    What: Lists the versions in use and warns when torch differs from the version this release of
    codecdoctor and its codec were tested with.
    Why: Numerical behaviour (STFT padding, autocast rules, weight-norm parametrisations) changes
    between torch releases; a report is only reproducible with its versions attached.
    Fix: Nothing to fix when it is informational; to reproduce the tested setup install the pins in
    constraints.txt.
    """
    listed = ", ".join(f"{k} {v}" for k, v in env.versions.items() if v)
    torch_v = env.versions.get("torch")
    untested = bool(torch_v) and not str(torch_v).startswith(TESTED_TORCH)
    message = f"Python {env.python}; {listed}"
    if untested:
        message += f"; torch {torch_v} differs from the tested {TESTED_TORCH}"
    return [finding("E703", message, subject="versions",
                    severity=Severity.WARNING if untested else Severity.INFO, evidence={})]
