"""`check_checkpoint`: static checks on any checkpoint, dynamic checks when the model builds.

Static (always, when the file is readable): C201-C209 from tensors and training state, Q401-Q406
from EMA codebook buffers, S501-S504 for the loss's FFT sizes. Dynamic (this project's codec
automatically; EnCodec 24 kHz and DAC checkpoints with metadata when their packages import; any
other codec through `model="pkg.module:factory"`, see codecdoctor.adapters): probes (C210-C215),
and with `data=DIR` reconstruction of deterministic crops (R3xx via diagnose_pair), code
histograms (Q401, Q402, Q405) and S501-S503 at the data's real peak.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from codecdoctor.core.findings import Finding, Report
from codecdoctor.core.registry import internal_errors, run_checks
from codecdoctor.measure.adapters import build_adapter
from codecdoctor.measure.audio.reader import read_crops
from codecdoctor.measure.bound import bound_value
from codecdoctor.measure.checkpoint import (
    KNOWN_LOSS_FFT_SIZES,
    OWN_FORMAT,
    CheckpointInfo,
    CheckpointMeasurements,
    load_checkpoint_file,
    measure_static,
)
from codecdoctor.measure.quantizer import QuantizerMeasurements, level_stats_from_codes, quantizer_levels_from_state

_AMP_DTYPES = {"fp16": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16",
               "none": "float32", "fp32": "float32", "float32": "float32"}


def _dedupe(findings_per_crop: list[list[Finding]], n_crops: int) -> list[Finding]:
    """One finding per ID (the first crop's), with how many crops showed it."""
    counts: dict[str, int] = {}
    first: dict[str, Finding] = {}
    for found in findings_per_crop:
        for f in {f.id: f for f in found}.values():
            counts[f.id] = counts.get(f.id, 0) + 1
            first.setdefault(f.id, f)
    out = []
    for check_id, f in first.items():
        f.message = f"{f.message} ({counts[check_id]} of {n_crops} crops)"
        f.evidence = {**f.evidence, "crops_with_finding": counts[check_id], "crops": n_crops}
        out.append(f)
    return out


def _reconstruct_on_data(adapter: Any, crops, output_bound: str | None,
                         report: Report) -> tuple[dict[str, Any], list[np.ndarray], list[np.ndarray]]:
    """The R3xx diagnosis of every crop, and the crops with their reconstructions."""
    import torch

    from codecdoctor.diagnose import diagnose_pair
    from codecdoctor.measure.adapters import reconstruct
    from codecdoctor.measure.quality import MULTISCALE_MEL_CONFIG, quality_metrics

    hop = getattr(adapter, "hop_samples", None)
    hop = int(hop) if isinstance(hop, (int, np.integer)) and hop > 1 else None

    per_crop, findings, rows, refs, ests = [], [], [], [], []
    for subject, audio in crops:
        est = reconstruct(adapter, torch.as_tensor(audio)[None]).numpy()[0]
        refs.append(np.asarray(audio, dtype=np.float64))
        ests.append(np.nan_to_num(np.asarray(est, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0))
        bound = bound_value(output_bound)   # a clamp keeps its limit
        pm, found, ran = diagnose_pair(audio, est, int(adapter.sample_rate), subject=subject, output_bound=bound,
                                       hop_samples=hop)
        if not pm.ref_silent and pm.compared_samples > 0:
            quality_metrics(audio, est, int(adapter.sample_rate), lag_samples=pm.lag_samples).apply_to(pm)
        report.add([], ran, internal_errors(pm.notes))
        findings.append(found)
        per_crop.append({"subject": subject, "snr_db": pm.snr_db, "si_snr_db": pm.si_snr_db,
                         "mel_distance": pm.mel_distance, "gain": pm.gain, "lag_samples": pm.lag_samples,
                         "what_if": pm.what_if, "stoi": pm.stoi, "estoi": pm.estoi, "pesq_wb": pm.pesq_wb,
                         "pesq_nb": pm.pesq_nb, "multiscale_mel_distance": pm.multiscale_mel_distance,
                         "quality_notes": pm.quality_notes,
                         # per-crop energies: the total SNR's spread over crops (C219) comes from them
                         "signal_energy": float(np.sum(np.square(refs[-1]))),
                         "error_energy": float(np.sum(np.square(refs[-1] - ests[-1])))})
        rows.append([subject, pm.snr_db, pm.si_snr_db, pm.lag_samples, pm.gain, found[0].id if found else ""])
    report.add(_dedupe(findings, len(crops)))
    from codecdoctor.report.sections import Table

    report.sections.append(Table("Reconstruction of data crops", ["crop", "SNR dB", "SI-SNR dB", "lag", "gain", "top"],
                                 rows))
    snrs = [c["snr_db"] for c in per_crop if math.isfinite(c["snr_db"])]
    # Energy-weighted over all crops: total reference energy / total error energy. A mean of
    # per-crop dB lets one quiet crop with a poor SNR dominate (R313's bias); this one does not.
    signal = sum(float(np.sum(np.square(ref, dtype=np.float64))) for ref in refs)
    error = sum(float(np.sum(np.square(ref - est, dtype=np.float64))) for ref, est in zip(refs, ests))
    total = 10.0 * math.log10(signal / error) if error > 0 and signal > 0 else (math.inf if signal > 0 else None)
    quality = {}
    for key in ("stoi", "estoi", "pesq_wb", "pesq_nb", "multiscale_mel_distance"):
        values = [c[key] for c in per_crop if c[key] is not None]
        quality[f"mean_{key}"] = float(np.mean(values)) if values else None
    return {"crops": per_crop, "mean_snr_db": float(np.mean(snrs)) if snrs else None,
            "total_snr_db": total if total is None or math.isfinite(total) else None, **quality,
            "multiscale_mel_config": dict(MULTISCALE_MEL_CONFIG)}, refs, ests


def _codes_on_data(adapter: Any, crops, max_level_crops: int = 4) -> QuantizerMeasurements | None:
    import torch

    from codecdoctor.measure.adapters import reconstruct  # noqa: F401 - same inference context as reconstruction
    from codecdoctor.measure.metrics import snr_db

    forward_driven = hasattr(adapter, "capture_codes")
    if not forward_driven and not (hasattr(adapter, "encode") and hasattr(adapter, "decode")):
        return None
    all_codes = []
    with torch.inference_mode():
        for _, audio in crops:
            if forward_driven:
                levels = adapter.capture_codes(torch.as_tensor(audio)[None])
                if not levels or len({lv.shape[-1] for lv in levels}) != 1:
                    return None
                codes = torch.stack(levels, dim=1)
            else:
                codes = torch.as_tensor(adapter.encode(torch.as_tensor(audio)[None]))
            if codes.dim() != 3:
                return None
            all_codes.append(codes.long().cpu())
    stacked = torch.cat(all_codes, dim=-1)
    sizes = getattr(adapter, "codebook_size", None)
    sizes = int(stacked.max()) + 1 if sizes is None else sizes
    q = QuantizerMeasurements(levels=level_stats_from_codes(stacked, sizes), source="codes",
                              frames_seen=int(stacked.shape[0] * stacked.shape[-1]))
    for level, module in zip(q.levels, getattr(adapter, "code_modules", None) or []):
        level.source_module = module
    samples = sum(int(np.asarray(audio).shape[-1]) for _, audio in crops)
    q.frame_rate_hz = float(adapter.sample_rate) * stacked.shape[-1] / samples if samples else None
    # What each RVQ level adds: decode with the first k levels (needs a decoder that accepts fewer).
    n_levels = stacked.shape[1]
    if n_levels > 1 and not forward_driven:
        try:
            snr_by_levels = []
            with torch.inference_mode():
                for k in range(1, n_levels + 1):
                    refs, ests = [], []
                    for (_, audio), codes in list(zip(crops, all_codes))[:max_level_crops]:
                        out = torch.as_tensor(adapter.decode(codes[:, :k])).float().numpy()[0]
                        length = min(out.shape[-1], audio.shape[-1])
                        refs.append(audio[..., :length].reshape(-1))
                        ests.append(out[..., :length].reshape(-1))
                    snr_by_levels.append(float(snr_db(np.concatenate(refs), np.concatenate(ests))))
            q.snr_by_levels_db = snr_by_levels
        except Exception:  # noqa: BLE001 - a decoder that needs all levels: Q405 judges usage only
            q.snr_by_levels_db = None
    return q


# --- the library function -------------------------------------------------------------------------

def _stft_setup(info: CheckpointInfo, fft_sizes: Sequence[int] | None,
                amp: str | None) -> tuple[list[int], str | None, str | None, str]:
    """(fft sizes, stft dtype, device, where the sizes came from)."""
    dtype = _AMP_DTYPES.get(str(amp).lower()) if amp else None
    args = info.train_args or {}
    device = args.get("device") if args.get("device") in ("cuda", "cpu") else None
    if info.format == OWN_FORMAT and info.config:
        sizes = list(info.config.get("mel_fft_sizes") or [])
        if args.get("adversarial"):
            sizes += [n for n in info.config.get("disc_fft_sizes") or [] if n not in sizes]
        # model/losses.py runs every STFT in float32 with autocast disabled, whatever --amp says: the
        # autocast run --amp asks for is still measured and kept, but judges a loss this codec does not have
        return (list(fft_sizes) if fft_sizes else sizes), "float32", device, "codec config"
    if fft_sizes:
        return list(fft_sizes), dtype, device, "--fft-sizes"
    if info.architecture in KNOWN_LOSS_FFT_SIZES:
        return KNOWN_LOSS_FFT_SIZES[info.architecture], dtype, device, f"{info.architecture} reference training"
    return [], dtype, device, ""


def check_checkpoint(path: str | Path, *, data: str | Path | None = None, model: str | None = None,
                     model_kwargs: dict | str | None = None, unsafe_load: bool = False,
                     fft_sizes: Sequence[int] | None = None, amp: str | None = None,
                     loss_eps: float | None = None, probes: bool = True, n_crops: int = 8,
                     crop_seconds: float = 2.0) -> Report:
    """Check one checkpoint. Returns a Report; `measurements` holds `format`, `parameters`,
    `tensors_nonfinite`, `quantizer`, `bitrate_bps`, `probes`, `model_load` (with `model`),
    `static`, `stft`, `quantizer_on_data` and `reconstruction` (`mean_snr_db`, `total_snr_db`).
    A file that cannot be read (unsafe pickle refused, truncated, not a checkpoint) is C200 with
    `measurements["unreadable"]` True (and `refused_unsafe` for a refused pickle): the CLI exits 2
    for a single such file; a folder is checked file by file (`measurements.checkpoints[]`) and an
    unreadable file in it is a C200 finding, the rest still checked. `model` is `path/to/file.py:Name` or `pkg.module:Name` (see
    codecdoctor.measure.adapters); a SPEC that does not import or cannot be built raises InputError."""
    path = Path(path)
    if path.is_dir():
        return _check_folder(path, dict(data=data, model=model, model_kwargs=model_kwargs, unsafe_load=unsafe_load,
                                        fft_sizes=fft_sizes, amp=amp, loss_eps=loss_eps, probes=probes,
                                        n_crops=n_crops, crop_seconds=crop_seconds))
    report = Report(command="check-ckpt", args={"ckpt": str(path), "data": str(data) if data else None,
                                                "model": model, "model_kwargs": model_kwargs,
                                                "unsafe_load": unsafe_load,
                                                "fft_sizes": list(fft_sizes) if fft_sizes else None, "amp": amp})
    info = load_checkpoint_file(path, unsafe_load=unsafe_load)
    if unsafe_load:
        report.notes.append("--unsafe-load: the pickle was executed with weights_only=False; only do this for "
                            "files you trust")
    m = measure_static(info)
    report.measurements.update({"format": m.format, "architecture": m.architecture, "parameters": m.parameters,
                                "tensors_nonfinite": [{"name": t.name, "nonfinite": t.nonfinite, "numel": t.numel}
                                                      for t in m.tensors_nonfinite],
                                "refused_unsafe": info.status == "unsafe", "unreadable": not info.readable})
    if not info.readable:
        return _unreadable(path, info, m, report)

    report.notes.extend(info.notes)
    wanted = bool(probes or data is not None or model)  # the model is built only for what needs it
    adapter, build_note, load = _build_model(info, model, model_kwargs, wanted=wanted, report=report)
    crops: list[tuple[str, np.ndarray]] = []
    if data is not None:
        sr = _sample_rate(info, adapter)
        channels = int(getattr(adapter, "channels", 1) or 1)
        crops, m.data_peak, data_notes = read_crops(data, sr, channels, n_crops=n_crops, crop_seconds=crop_seconds)
        report.notes.extend(data_notes)

    if m.output_bound is None and getattr(adapter, "output_bound", None) is not None:
        m.output_bound = adapter.output_bound  # seen in the model's own forward (its last module)
    run = run_checks("checkpoint", m, level="static")
    report.add(run.findings, run.checks_run, run.notes)

    levels = _quantizer_from_buffers(info, adapter, report)
    report.measurements["bitrate_bps"] = (m.bitrate or {}).get("bitrate_bps")
    _stft_risk(info, m, adapter, crops, report, fft_sizes=fft_sizes, amp=amp, loss_eps=loss_eps)

    report.notes.append(build_note)
    if adapter is not None and load is not None and load.checked and not load.clean:
        report.notes.append("dynamic checks not run: the weights do not fit the model (C217), so its unloaded "
                            "layers are random and anything measured on it would describe an untrained model")
        adapter = None
    if adapter is not None:
        _dynamic_contained(adapter, m, crops, probes, report)
    if report.measurements.get("reconstruction"):
        _validation_gap(info, m, data, report)
    report.measurements["model_built"] = adapter is not None
    report.measurements["static"] = m
    _static_sections(report, m, levels)
    from codecdoctor.diagnose import rank_root_causes

    report.findings = rank_root_causes(report.findings)
    return report


def _sample_rate(info: CheckpointInfo, adapter: Any) -> int:
    """The rate the model runs at: the built model's, else the saved config's, else 16 kHz."""
    return int(getattr(adapter, "sample_rate", 0) or (info.config or {}).get("sample_rate") or 16000)


def _unreadable(path: Path, info: CheckpointInfo, m: CheckpointMeasurements, report: Report) -> Report:
    """A file whose contents cannot be read: only the checks on the file itself (C200) run."""
    run = run_checks("checkpoint", m, level="static")
    report.add(run.findings, run.checks_run, run.notes)
    report.notes.append(f"{path.name}: {info.error}; no static or dynamic checks on its contents ran")
    report.measurements["static"] = m
    # the command could not do its job: the report is written, then the CLI exits 2
    report.fatal = f"{path.name}: {info.error} (C200)"
    return report


def _build_model(info: CheckpointInfo, model: str | None, model_kwargs: dict | str | None, *, wanted: bool,
                 report: Report) -> tuple[Any, str, Any]:
    """(adapter or None, a note on how the model was built, the weight-loading result or None); the
    loading result is judged here (C217)."""
    if not wanted:
        return None, "--no-probes without --data: the model was not built (static checks only)", None
    adapter, build_note, load = build_adapter(info, model, model_kwargs)
    if load is not None:
        report.measurements["model_load"] = load
        run = run_checks("checkpoint", load, level="load")
        report.add(run.findings, run.checks_run, run.notes)
    return adapter, build_note, load


def _quantizer_from_buffers(info: CheckpointInfo, adapter: Any, report: Report) -> list:
    """Q4xx on the codebook buffers saved in the checkpoint; returns the levels read."""
    try:
        levels = quantizer_levels_from_state(info.weights)
    except Exception as exc:  # noqa: BLE001 - codebook buffers of an unexpected shape: say so, go on
        levels = []
        report.notes.append(f"codebook buffers could not be read ({type(exc).__name__}: {exc}); Q4xx not run")
    q = QuantizerMeasurements(levels=levels, source=levels[0].source if levels else "ema")
    q.dead_code_threshold, q.dead_code_fraction, q.threshold_source = _dead_code_rule(info, adapter)
    run = run_checks("quantizer", q)
    report.add(run.findings, run.checks_run, run.notes)
    report.measurements["quantizer"] = q.to_list()
    return levels


def _stft_risk(info: CheckpointInfo, m: CheckpointMeasurements, adapter: Any, crops, report: Report, *,
               fft_sizes: Sequence[int] | None, amp: str | None, loss_eps: float | None) -> None:
    """S501-S504 for the spectral loss's FFT sizes, at the data's peak (or full scale)."""
    from codecdoctor.measure.stft_risk import loudest_crops, measure_stft

    sizes, stft_dtype, device, source = _stft_setup(info, fft_sizes, amp)
    if not sizes:
        report.notes.append("S501-S504 not run: the loss's FFT sizes are unknown (pass --fft-sizes 512,1024,2048)")
        return
    peak = m.data_peak if m.data_peak else 1.0
    eps = loss_eps if loss_eps is not None else 1e-5  # model/losses.py clamps mels at 1e-5; EnCodec/DAC use 1e-5
    reference = crops[0][1][0] if crops else None
    autocast = _AMP_DTYPES.get(str(amp).lower()) if amp else None
    if autocast in ("float16", "bfloat16") and crops:
        # --amp: the loss really runs under torch.autocast on the loudest crops (S501-S503 measured)
        reference = loudest_crops([audio for _, audio in crops])
    sm = measure_stft(peak, sizes, eps=eps, stft_dtype=stft_dtype, device=device, source=source,
                      reference=reference, sample_rate=_sample_rate(info, adapter),
                      autocast=autocast if autocast in ("float16", "bfloat16") and crops else None)
    run = run_checks("stft", sm)
    report.add(_judge_precision_unknown(run.findings, m, stft_dtype), run.checks_run, run.notes)
    report.measurements["stft"] = sm
    if not m.data_peak:
        report.notes.append("S501-S503 assume a full-scale peak of 1.0; pass --data to use the data's real peak")


def _dynamic_contained(adapter: Any, m: CheckpointMeasurements, crops, probes: bool, report: Report) -> None:
    """The dynamic checks; a model that fails at run time is a note, and the static results stay."""
    try:
        _dynamic(adapter, m, crops, probes, report)
    except Exception as exc:  # noqa: BLE001 - a model that fails at run time: say so, keep static results
        report.notes.append(f"dynamic checks stopped: the model failed at run time "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})")


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar")


def _check_file(file: Path, options: dict[str, Any]) -> Report:
    """One checkpoint of a folder (the pool's work function)."""
    return check_checkpoint(file, **options)


def _lost_file(file: Path, reason: str) -> Report:
    """The report of a checkpoint whose worker process died while checking it: a C200 naming it."""
    from codecdoctor.core.registry import finding

    sub = Report(command="check-ckpt", args={"ckpt": str(file)})
    sub.add([finding("C200", f"Checking it failed: {reason}.", subject=file.name, severity="error",
                     evidence={})], ["C200"])
    sub.measurements["unreadable"] = True
    return sub


def _checked(files: list[Path], options: dict[str, Any]) -> list[Report]:
    """Each file's report, checked one after another in one worker process of core/pool.py (a
    file that crashes its reader, a bit-flipped pickle say, costs only that file's result: its
    C200) rather than in this process."""
    import functools

    from codecdoctor.core.pool import Lost, run_isolated

    reports: dict[int, Report] = {}
    for index, sub in run_isolated(functools.partial(_check_file, options=options), files, jobs=1):
        reports[index] = _lost_file(files[index], sub.reason) if isinstance(sub, Lost) else sub
    return [reports[index] for index in range(len(files))]


def _check_folder(folder: Path, options: dict[str, Any]) -> Report:
    """Every checkpoint file under `folder`, one after the other: findings named by relative path,
    one row per file in `measurements.checkpoints`. An unreadable file is its C200, never the end
    of the run, nor is a file whose worker process dies."""
    from codecdoctor.core.errors import InputError

    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no checkpoint files ({', '.join('*' + s for s in CHECKPOINT_SUFFIXES)})")
    report = Report(command="check-ckpt", args={"ckpt": str(folder), **{k: (str(v) if isinstance(v, Path) else v)
                                                                      for k, v in options.items()}})
    rows = []
    for file, sub in zip(files, _checked(files, options)):
        relative = file.relative_to(folder).as_posix()
        for f in sub.findings:
            f.subject = relative if f.subject in (None, "", file.name) else f"{relative}: {f.subject}"
        report.add(sub.findings, sub.checks_run)
        report.notes.extend(f"{relative}: {note}" for note in sub.notes)
        m = sub.measurements
        recon = m.get("reconstruction") or {}
        rows.append({"path": relative, "format": m.get("format"), "architecture": m.get("architecture"),
                     "parameters": m.get("parameters"), "unreadable": bool(m.get("unreadable")),
                     "model_built": bool(m.get("model_built")), "bitrate_bps": m.get("bitrate_bps"),
                     "total_snr_db": recon.get("total_snr_db"), "summary": sub.summary(),
                     "top": sub.sorted_findings()[0].id if sub.findings else None})
    report.measurements["checkpoints"] = rows
    from codecdoctor.report.sections import Table

    report.sections.append(Table("Checkpoints", ["checkpoint", "format", "parameters", "top finding", "errors"],
                                 [[r["path"], r["format"], r["parameters"], r["top"], r["summary"].get("error", 0)
                                   + r["summary"].get("critical", 0)] for r in rows]))
    return report


def _dynamic(adapter: Any, m: CheckpointMeasurements, crops, probes: bool, report: Report) -> None:
    refs = ests = None
    probe_findings_at = len(report.findings)   # the probes' findings go before the data's
    if crops:
        report.measurements["reconstruction"], refs, ests = _reconstruct_on_data(adapter, crops, m.output_bound, report)
        _codes_on_data_checked(adapter, crops, report)
    if probes:
        from codecdoctor.measure.probes import measure_probes, response_on_data
        from codecdoctor.probe import run_probe_checks

        pm = measure_probes(adapter)
        if refs:   # C215 weighs the sine sweep against the response on the data
            response_on_data(pm, refs, ests)
        run = run_probe_checks(pm)
        report.findings[probe_findings_at:probe_findings_at] = run.findings
        report.add([], run.checks_run, run.notes)
        report.measurements["probes"] = pm


def _codes_on_data_checked(adapter: Any, crops, report: Report) -> None:
    """Q401, Q402 and Q405 on the codes the codec emits for the crops, ahead of what its buffers say."""
    q = _codes_on_data(adapter, crops)
    if q is None:
        return
    _buffers_as_second_opinion(q, report.measurements.get("quantizer") or [],
                               getattr(adapter, "code_modules", None) or [])
    run = run_checks("quantizer", q, only=("Q401", "Q402", "Q405"))
    for f in run.findings:
        f.subject = f"codes on data: {f.subject}"
    _codes_first(report, run.findings)
    report.add([], run.checks_run, run.notes)
    # DAC's compute_entropy: the bits per frame the codes really carry, and that times the
    # frame rate as the effective bitrate (an entropy coder's rate) next to the nominal one
    entropy = sum(lv.entropy_bits or 0.0 for lv in q.levels)
    nominal = sum(lv.bits for lv in q.levels)
    rate = q.frame_rate_hz
    report.measurements["quantizer_on_data"] = {
        "levels": q.to_list(), "frames": q.frames_seen, "snr_by_levels_db": q.snr_by_levels_db,
        "frame_rate_hz": rate, "entropy_bits_per_frame": entropy, "nominal_bits_per_frame": nominal,
        "effective_bitrate_bps": entropy * rate if rate else None,
        "nominal_bitrate_bps": nominal * rate if rate else None}


def _validation_gap(info: CheckpointInfo, m: CheckpointMeasurements, data, report: Report) -> None:
    """C219: the checkpoint's saved validation SNR against the SNR just measured on `data`."""
    from codecdoctor.measure.heldout import measure_validation_gap

    raw = info.raw if isinstance(info.raw, dict) else {}
    gap = measure_validation_gap(m.history, info.train_args, raw.get("validation_split"), data,
                                 report.measurements["reconstruction"])
    report.measurements["validation_gap"] = gap.to_dict()
    run = run_checks("checkpoint", gap, level="heldout")
    report.add(run.findings, run.checks_run)


def _codes_first(report: Report, found: list[Finding]) -> None:
    """Put the findings on the codes measured on data before what the buffers say; which
    reconstruction findings a measured collapse explains is `diagnose.rank_root_causes`'s job."""
    first_buffer = next((i for i, f in enumerate(report.findings) if f.id.startswith("Q4")), len(report.findings))
    report.findings[first_buffer:first_buffer] = found


def _buffers_as_second_opinion(q: QuantizerMeasurements, buffer_levels: list[dict], code_modules: list[str]) -> None:
    """Give each level measured on data the perplexity the checkpoint's EMA buffers read for it:
    by module name when the codes came from a named quantizer module, else by position when both
    count the same levels."""
    ema = [lv for lv in buffer_levels if lv.get("source") in ("ema", "counts") and lv.get("perplexity") is not None]
    by_name = {lv["name"]: lv for lv in ema}
    same_count = len(ema) == len(q.levels)
    for index, level in enumerate(q.levels):
        module = code_modules[index] if index < len(code_modules) else None
        match = next((by_name[n] for n in by_name if module and (n == module or n.startswith(module + "."))), None)
        if match is None and same_count:
            match = ema[index]
        if match is not None:
            level.buffer_perplexity = float(match["perplexity"])


def _static_sections(report: Report, m: CheckpointMeasurements, levels) -> None:
    from codecdoctor.report.sections import Table

    rows = [["format", m.format], ["architecture", m.architecture], ["file size (MB)", m.file_bytes / 1e6],
            ["tensors", m.tensors], ["parameters", m.parameters], ["bitrate (bit/s)", (m.bitrate or {}).get("bitrate_bps")],
            ["output bound", m.output_bound], ["grad-scaler scale", m.scaler_scale], ["step", m.step],
            ["learning rate", next(iter(m.learning_rates.values()), None)],
            ["largest weight RMS", f"{m.largest_weight_rms:.4g} ({m.largest_weight_rms_name})"
             if m.largest_weight_rms is not None else None]]
    report.sections.insert(0, Table("Checkpoint", ["property", "value"], rows))
    if levels:
        report.sections.insert(1, Table("Codebooks (from the checkpoint's buffers)",
                                        ["level", "size", "used", "perplexity", "entropy (bits)", "source", "initted",
                                         "dtype"],
                                        [[lv.name, lv.codebook_size, lv.used, lv.perplexity, lv.entropy_bits,
                                          lv.count_buffer or lv.source, lv.initted, lv.dtype] for lv in levels]))
    if m.tensors_nonfinite:
        report.sections.insert(1, Table("Non-finite tensors", ["tensor", "non-finite", "elements"],
                                        [[t.name, t.nonfinite, t.numel] for t in m.tensors_nonfinite]))


# S501-S503 describe what happens when the spectral loss runs in float16. Without any sign that the
# run used half precision they are hypothetical: info, worded as such.
_PRECISION_DEPENDENT = ("S501", "S502", "S503")


def _judge_precision_unknown(findings: list[Finding], m: CheckpointMeasurements, stft_dtype: str | None) -> list[Finding]:
    from codecdoctor.core.findings import Severity

    if stft_dtype is not None or m.half_precision_evidence:
        return findings
    for f in findings:
        if f.id in _PRECISION_DEPENDENT and f.severity > Severity.INFO:
            f.severity = Severity.INFO
            f.message = (f"nothing in the checkpoint shows half precision (no GradScaler state, no fp16/bf16 "
                         f"tensor, no amp flag in its saved arguments); were the loss run under float16 "
                         f"autocast: {f.message}")
    return findings


_THRESHOLD_KEYS = ("threshold_ema_dead_code", "dead_code_threshold", "ema_dead_code_threshold",
                   "threshold_dead_code", "dead_code_thresh")
_FRACTION_KEYS = ("dead_code_fraction",)


def _dead_code_rule(info: CheckpointInfo, adapter: Any) -> tuple[float | None, float | None, str | None]:
    """(absolute threshold, fraction of the uniform share, where it was found) for Q407: saved
    config / arguments first, then the built model's quantizer modules."""
    from codecdoctor.measure.adapters import saved_settings

    sources = [("config", info.config or {}), ("args", info.train_args or {})]
    sources += [(where, d) for where, d in saved_settings(info.raw)]
    for where, settings in sources:
        for key in _THRESHOLD_KEYS:
            value = settings.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value), None, f"{key} in the checkpoint's {where}"
        for key in _FRACTION_KEYS:
            value = settings.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return None, float(value), f"{key} in the checkpoint's {where}"
    module = getattr(adapter, "module", None)
    if module is not None and hasattr(module, "named_modules"):
        for name, sub in module.named_modules():
            for key in _THRESHOLD_KEYS:
                value = getattr(sub, key, None)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return float(value), None, f"{name or 'model'}.{key}"
            value = getattr(sub, "dead_code_fraction", None)
            if isinstance(value, float):
                return None, value, f"{name or 'model'}.dead_code_fraction"
    return None, None, None
