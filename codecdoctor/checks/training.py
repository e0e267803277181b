"""T6xx: live training checks. They judge `TrainingMeasurements` that `codecdoctor.Monitor` reads
back from the device on a schedule; they do no I/O and no tensor work.

Subjects name steps ("step 137", "steps 100-124"): the step is the monitor's count of `on_batch`
calls (0-based), or the step the training loop passed in.
"""
from __future__ import annotations

import math

from codecdoctor.core.findings import Severity
from codecdoctor.core.registry import NotApplicable, check, finding
from codecdoctor.measure.training import DISC_TERMS, TrainingMeasurements, find_term, median_finite, step_span

# Output louder than input by amplitude ratio 2 (6 dB): a pure gain error g caps SNR at
# −20·log10|1−g|, 0 dB at g = 2. A loss optimum never makes the output louder than the target.
RMS_DRIFT_DB = 6.0
# Output quieter: an L1/L2-trained estimate is shrunk toward zero by its own uncertainty (the
# L2-optimal gain equals the correlation with the target), so early low-capacity models run
# 6-12 dB quiet (measured on the tiny codec: -9 to -12 dB over its first 120 steps). 20 dB quieter
# means a correlation of 0.1: beyond what shrinkage explains.
RMS_QUIET_DB = -20.0
# A window must move back toward 0 dB by at least this much to count as "still converging".
RMS_IMPROVING_DB = 1.0
# Gradient jumps of two orders of magnitude over the run's median are far beyond the ~3x
# step-to-step spread of healthy Adam training.
GRAD_EXPLOSION_RATIO = 100.0
# Adam divides by sqrt(v) + eps with eps = 1e-8: gradients whose RMS per element falls below eps
# no longer move the weights at the learning rate, they move them ~rms/eps times slower.
GRAD_VANISH_RMS = 1e-8
# GradScaler halves the scale once per skipped step and grows it back only every 2000 good steps,
# so in steady fp16 training skips are rare; skipping a fifth of the steps discards a fifth of the data.
SCALER_SKIP_FRACTION = 0.2
# Median loss of the newest third of the recent history must be at least 2% below the oldest third.
PLATEAU_MIN_IMPROVEMENT = 0.02
PLATEAU_MIN_POINTS = 40
# EMA perplexity halving means half of the effective codebook stopped being used.
PERPLEXITY_FALL_RATIO = 0.5
# Negative SNR: the output is further from the reference than silence would be. Below 3 dB the
# error carries at least half the reference's energy.
VAL_SNR_LOW_DB = 3.0
# Hinge / least-squares discriminator losses sit near 1-2 (hinge) or 0.25-0.5 (LSGAN) at
# equilibrium; a median below 0.05 means the discriminator separates real from decoded with margin.
DISC_DOMINATION_LOSS = 0.05
# Codebooks of DDP replicas are all-reduced, so they agree to float rounding (~1e-7 relative).
DDP_SPREAD_RELATIVE = 1e-5


def _window(m: TrainingMeasurements):
    if m.window is None or not m.window.steps:
        raise NotApplicable
    return m.window


def _first(steps, values, predicate):
    for s, v in zip(steps, values):
        if predicate(v):
            return s
    return None


def _item(value: float) -> int | None:
    return int(value) if math.isfinite(value) and value >= 0 else None


@check("T601", scope="training", severity=Severity.WARNING)
def input_range(m: TrainingMeasurements):
    """Input batch out of range or non-finite.

    What: Per batch, on the device: non-finite samples, samples beyond ±1 (beyond the decoder's
    output bound when it has one) and the clip error energy Σ(x − clip(x))². With a bounded decoder
    (tanh, clamp) it states the SNR ceiling 10·log10(Σx² / Σ(x − clip(x))²) over the data seen so far.
    Any non-finite input sample is an error; any sample beyond the bound is a warning (info when the
    decoder is unbounded).
    Why: A tanh decoder can never output 1.01, so every sample beyond the bound is error the model is
    pushed to reduce and cannot; the gradient saturates the tanh. Data peaking at 1.01 put the
    Telugu codec's ceiling at a finite SNR no training could pass. A NaN sample poisons every loss.
    Fix: Scale the data into [-1, 1] once in the dataset (peak-normalize the corpus, not each crop)
    or give the decoder headroom (tanh × 1.05, or no bound); drop or repair non-finite files
    (`codecdoctor audit-data`).
    """
    w = _window(m)
    out = []
    bad_step = _first(w.steps, w.columns["in_nonfinite"], lambda v: v > 0)
    if bad_step is not None:
        i = w.steps.index(bad_step)
        count = int(sum(v for v in w.columns["in_nonfinite"] if math.isfinite(v)))
        out.append(finding(
            "T601", f"{count} non-finite input samples in {step_span(w.steps)}; first at step {bad_step}, "
                    f"batch item {_item(w.columns['in_nonfinite_item'][i])}",
            subject=f"step {bad_step}", severity=Severity.ERROR,
            evidence={"step": bad_step, "item": _item(w.columns["in_nonfinite_item"][i]), "nonfinite_samples": count}))
    overs = [v for v in w.columns["in_over"] if math.isfinite(v)]
    if overs and sum(overs) > 0:
        bound = m.output_bound if m.output_bound is not None else 1.0
        peaks = w.columns["in_peak"]
        worst = max(range(len(peaks)), key=lambda i: peaks[i] if math.isfinite(peaks[i]) else -1.0)
        first = _first(w.steps, w.columns["in_over"], lambda v: v > 0)
        energy, clip_err = m.state.input_energy, m.state.input_clip_error_energy
        ceiling_db = 10 * math.log10(energy / clip_err) if clip_err > 0 and energy > 0 else math.inf
        samples = int(sum(overs))
        evidence = {"samples_over": samples, "max_abs": peaks[worst], "bound": bound, "first_step": first,
                    "worst_step": w.steps[worst], "worst_item": _item(w.columns["in_peak_item"][worst]),
                    "snr_ceiling_db": ceiling_db}
        if m.output_bound is not None:
            message = (f"{samples} input samples beyond ±{bound:g} in {step_span(w.steps)} (first at step {first}); "
                       f"max |x| = {peaks[worst]:.4f} at step {w.steps[worst]}, batch item {evidence['worst_item']}. "
                       f"The decoder is bounded at ±{bound:g}, so the SNR it can reach on the data seen so far "
                       f"is capped at 10·log10(Σx²/Σ(x−clip(x))²) = {ceiling_db:.1f} dB")
            out.append(finding("T601", message, subject=f"step {first}", evidence=evidence))
        else:
            message = (f"{samples} input samples beyond ±1 in {step_span(w.steps)}; max |x| = {peaks[worst]:.4f} at "
                       f"step {w.steps[worst]}. The decoder is unbounded, so it can follow them, but a bounded "
                       f"(tanh) decoder would be capped at {ceiling_db:.1f} dB")
            out.append(finding("T601", message, subject=f"step {first}", severity=Severity.INFO, evidence=evidence))
    return out


# T602's docstring speaks of range; a non-finite output has another cause and another fix
NONFINITE_OUTPUT_CAUSE = ("A NaN/Inf in the output makes every loss term and gradient computed from it NaN, and one "
                          "optimizer step spreads it into every weight: the run is lost from that step on.")
NONFINITE_OUTPUT_FIX = ("Find where the NaN/Inf starts: in the module named (when its own parameters are non-finite, a "
                        "weight was loaded or updated with NaN/Inf: restart from the last finite checkpoint, lower "
                        "the learning rate or clip gradients); otherwise in its input or an operation inside it "
                        "(log or sqrt of 0, division by a zero norm, exp or half-precision overflow): add an epsilon "
                        "or compute it in float32. Skip the step when the loss is non-finite.")


@check("T602", scope="training", severity=Severity.ERROR)
def output_range(m: TrainingMeasurements):
    """Decoder output out of range or non-finite.

    What: Per batch, on the device: non-finite output samples (error; the batch is re-run under
    forward hooks, as for T604, to name the first module whose output is non-finite); output beyond
    the declared output bound (error: the bound in the config is not what the code does); with an unbounded
    decoder, output peaks beyond full scale (1.0) and more than 1.1× the input's peak (warning).
    Why: Output beyond ±1 clips when written to a file and is the signature of an unbounded decoder
    whose level drifts upward: the reconstruction loss pulls the level back only as fast as the
    learning rate allows, and validation SNR drops with it. A non-finite output means the run is lost.
    Fix: End the decoder in tanh (with headroom if the data exceeds ±1) or a clamp used only at
    inference; if the output grows, check the loss's level term (L1/L2 on the waveform) is present.
    """
    w = _window(m)
    out = []
    bad_step = _first(w.steps, w.columns["out_nonfinite"], lambda v: v > 0)
    if bad_step is not None:
        i = w.steps.index(bad_step)
        count = int(sum(v for v in w.columns["out_nonfinite"] if math.isfinite(v)))
        trace = m.nonfinite if m.nonfinite is not None and m.nonfinite.step == bad_step else None
        module = trace.module if trace is not None else None
        where = ""
        if module:
            where = (f"; the first module with a non-finite output is '{module}'"
                     + (" (its own parameters are non-finite)" if trace.module_params_nonfinite else ""))
        out.append(finding("T602", f"{count} non-finite output samples in {step_span(w.steps)}; first at step "
                                   f"{bad_step}, batch item {_item(w.columns['out_nonfinite_item'][i])}{where}",
                           subject=f"step {bad_step}", cause=NONFINITE_OUTPUT_CAUSE, fix=NONFINITE_OUTPUT_FIX,
                           evidence={"step": bad_step, "nonfinite_samples": count, "module": module,
                                     "module_params_nonfinite": trace.module_params_nonfinite if trace else None}))
    peaks = [p if math.isfinite(p) else -1.0 for p in w.columns["out_peak"]]
    if not peaks or max(peaks) < 0:
        return out
    worst = max(range(len(peaks)), key=peaks.__getitem__)
    out_peak, in_peak = peaks[worst], w.columns["in_peak"][worst]
    evidence = {"output_peak": out_peak, "input_peak": in_peak, "step": w.steps[worst], "bound": m.output_bound}
    if m.output_bound is not None and out_peak > m.output_bound * (1 + 1e-4):
        out.append(finding("T602", f"output peaks at {out_peak:.4f} at step {w.steps[worst]}, beyond the declared "
                                   f"output bound ±{m.output_bound:g}: the decoder is not bounded as configured",
                           subject=f"step {w.steps[worst]}", evidence=evidence))
    elif m.output_bound is None and out_peak > 1.0 and out_peak > 1.1 * in_peak:
        out.append(finding("T602", f"output peaks at {out_peak:.4f} at step {w.steps[worst]} while the input peaks at "
                                   f"{in_peak:.4f}: the unbounded decoder overshoots full scale",
                           subject=f"step {w.steps[worst]}", severity=Severity.WARNING, evidence=evidence))
    return out


@check("T603", scope="training", severity=Severity.WARNING)
def rms_ratio_drift(m: TrainingMeasurements):
    """Output/input RMS ratio drifting away from 1.

    What: 20·log10(rms(output)/rms(input)) per batch (median over each read-back window) and over the
    validation pairs. Flags a training window after the warm-up whose median is above +6 dB or below
    −20 dB and did not move at least 1 dB toward 0 since the previous window, and a validation set
    outside the same range. +6 dB is an amplitude factor 2: a pure gain error g caps the SNR at
    −20·log10|1−g| (0 dB at g = 2), and a loss optimum never makes the output louder than the
    target. The quiet side is wider because uncertainty shrinks an L1/L2 estimate toward zero (the
    L2-optimal gain is its correlation with the target): early low-capacity models run 6-12 dB
    quiet; −20 dB is a correlation of 0.1. In the first FIRST_PART_STEPS (100) optimizer steps a
    quiet output is info, "not learned yet": a decoder near its initialisation is quiet by
    construction (see T608's rule); a loud one is judged from the start.
    Why: This is the signature of the two saga mistakes: per-sample normalization (the model never
    sees the true level, so its output level is wrong on raw-scale audio) and an unbounded decoder
    whose output level grows. Level is the first thing a waveform loss fixes, so a persistent ratio
    means the loss cannot see the level.
    Fix: Normalize the corpus once (or not at all) so train and validation share one scale; compare
    at the scale you feed; bound the decoder; keep an L1/L2 waveform term in the loss.
    """
    out = []
    if m.validation is not None and math.isfinite(m.validation.rms_ratio_db):
        v = m.validation
        if not RMS_QUIET_DB <= v.rms_ratio_db <= RMS_DRIFT_DB:
            # A decoder in the first part of a run is still near its initialisation, whose output
            # is quiet by construction: quiet then is "not learned yet" (as T608 reads an SNR near
            # 0), loud never is (nothing in the loss pushes an output above its target).
            early = v.rms_ratio_db < 0 and v.trained_steps is not None and v.trained_steps < FIRST_PART_STEPS
            note = f" (not learned yet: step {v.trained_steps} is early in training)" if early else ""
            out.append(finding("T603", f"validation output/input RMS ratio is {v.rms_ratio_db:+.1f} dB over {v.pairs} "
                                       f"pairs at step {v.step}: the output level does not follow the input level{note}",
                               subject=f"validation at step {v.step}", severity=Severity.INFO if early else None,
                               evidence={"rms_ratio_db": v.rms_ratio_db, "step": v.step,
                                         "direction": 1 if v.rms_ratio_db > 0 else -1}))
    if m.window is None or not m.window.steps:
        if m.validation is None:
            raise NotApplicable
        return out
    w = m.window
    ratio_db = median_finite(w.rms_ratio_db())
    if not math.isfinite(ratio_db) or w.steps[-1] < m.warmup_steps:
        return out
    previous = [r for s, r in m.state.rms_ratio_db if s < w.steps[0] and math.isfinite(r)]
    improving = bool(previous) and abs(previous[-1]) - abs(ratio_db) >= RMS_IMPROVING_DB
    if not RMS_QUIET_DB <= ratio_db <= RMS_DRIFT_DB and not improving:
        trend = f"; previous window {previous[-1]:+.1f} dB" if previous else ""
        limit = f"above +{RMS_DRIFT_DB:g} dB" if ratio_db > 0 else f"below {RMS_QUIET_DB:g} dB"
        early = ratio_db < 0 and w.steps[-1] < FIRST_PART_STEPS   # quiet near initialisation: see above
        note = f" (not learned yet: step {w.steps[-1]} is early in training)" if early else ""
        out.append(finding("T603", f"output/input RMS ratio is {ratio_db:+.1f} dB (median over {step_span(w.steps)}"
                                   f"{trend}), {limit} and not converging{note}",
                           subject=step_span(w.steps), severity=Severity.INFO if early else None,
                           evidence={"rms_ratio_db": ratio_db, "previous_db": previous[-1] if previous else None,
                                     "direction": 1 if ratio_db > 0 else -1,
                                     "first_step": w.steps[0], "last_step": w.steps[-1]}))
    return out


@check("T604", scope="training", severity=Severity.ERROR)
def nonfinite_loss(m: TrainingMeasurements):
    """Non-finite loss term.

    What: Every loss term of every step is kept on the device and checked for NaN/Inf; a cheap
    on-device alarm makes the monitor read back at once. The offending batch is then re-run under
    forward hooks (same parameters, buffers and RNG restored afterwards) to name the first module,
    in execution order, whose output is non-finite. Any non-finite term is an error.
    Why: One NaN loss makes every gradient NaN; Adam then writes NaN into every weight and the run is
    lost from that step on, while a checkpoint saved afterwards overwrites the last good one. Naming
    the term and module separates data faults (input NaN), numeric faults in a layer (overflow,
    log of 0) and faults in the loss computation itself (half-precision spectrograms).
    Fix: Follow the named module: an input NaN is a data fault (audit-data); a layer overflowing in
    half precision needs fp32 or a smaller scale; a loss term that is non-finite with finite model
    outputs is computed unsafely (log without eps, STFT in float16).
    """
    w = m.window
    trace = m.nonfinite
    if trace is not None and not trace.terms:
        trace = None  # traced for a non-finite output (T602) while every loss term was finite
    if trace is None:
        if w is None:
            raise NotApplicable
        bad = [(s, name) for name, vals in w.losses.items() for s, v in zip(w.steps, vals)
               if v is not None and not math.isfinite(v)]
        if not bad:
            return []
        step = min(s for s, _ in bad)
        terms = sorted({name for s, name in bad if s == step})
        return [finding("T604", f"non-finite loss term(s) {', '.join(repr(t) for t in terms)} at step {step}; the "
                                f"batch was no longer available to re-run under hooks",
                        subject=f"step {step}", evidence={"step": step, "terms": terms})]
    where = (f"the first module with a non-finite output is '{trace.module}'"
             + (" (its own parameters are non-finite)" if trace.module_params_nonfinite else "")
             if trace.module else "every module output was finite when the batch was re-run, so the "
                                  "non-finite value arose in the loss computation")
    values = ", ".join(f"{t} = {trace.term_values.get(t)}" for t in trace.terms)
    item = f", batch item {trace.item}" if trace.item is not None else ""
    return [finding("T604", f"non-finite loss at step {trace.step}{item}: {values}; {where}"
                            + (f". {trace.detail}" if trace.detail else ""),
                    subject=f"step {trace.step}",
                    evidence={"step": trace.step, "terms": trace.terms, "module": trace.module,
                              "module_params_nonfinite": trace.module_params_nonfinite, "item": trace.item})]


@check("T605", scope="training", severity=Severity.WARNING)
def gradient_norm(m: TrainingMeasurements):
    """Gradient norm exploding, vanishing or non-finite.

    What: The total L2 norm of all gradients per step (after backward, before clipping), on the
    device. Explosion: a step's norm above 100× the median of the run so far (after 20 steps);
    vanishing: the window's median RMS gradient per element below 1e-8, Adam's eps; non-finite
    gradients with a finite loss and no grad scaler (a scaler skips such steps by design) are errors.
    Why: 100× is two orders of magnitude beyond healthy step-to-step variation and precedes NaN
    weights; gradients below Adam's eps move weights slower than the learning rate says; non-finite
    gradients without a scaler are written straight into the weights.
    Fix: Clip gradients (`clip_grad_norm_`, e.g. 1.0), lower the learning rate or warm it up; for
    vanishing gradients check for saturated tanh (inputs beyond ±1, T601) and detached graphs.
    """
    w = _window(m)
    norms = w.columns["grad_norm"]
    if not any(math.isfinite(g) for g in norms) and not any(v > 0 for v in w.columns["grad_nonfinite"] if math.isfinite(v)):
        raise NotApplicable
    out = []
    loss_bad_steps = {s for vals in w.losses.values() for s, v in zip(w.steps, vals)
                      if v is not None and not math.isfinite(v)}
    if not m.scaler_used:
        bad = [s for s, v in zip(w.steps, w.columns["grad_nonfinite"]) if v > 0 and s not in loss_bad_steps]
        if bad:
            out.append(finding("T605", f"non-finite gradients at {len(bad)} step(s) from step {bad[0]} with a finite "
                                       f"loss and no grad scaler to skip them",
                               subject=f"step {bad[0]}", severity=Severity.ERROR,
                               evidence={"first_step": bad[0], "steps": len(bad), "nonfinite_steps": len(bad)}))
    reference = m.state.grad_norm_median()
    if reference is not None and reference > 0:
        jumps = [(s, g) for s, g in zip(w.steps, norms) if math.isfinite(g) and g > GRAD_EXPLOSION_RATIO * reference]
        if jumps:
            s, g = max(jumps, key=lambda p: p[1])
            out.append(finding("T605", f"gradient norm {g:.3g} at step {s} is {g / reference:.0f}× the run's median "
                                       f"{reference:.3g} ({len(jumps)} step(s) above {GRAD_EXPLOSION_RATIO:g}×)",
                               subject=f"step {s}",
                               evidence={"grad_norm": g, "median_grad_norm": reference, "step": s, "steps": len(jumps)}))
    median = median_finite(norms)
    if w.grad_elements and math.isfinite(median) and w.steps[-1] >= m.warmup_steps:
        rms = median / math.sqrt(w.grad_elements)
        if rms < GRAD_VANISH_RMS:
            out.append(finding("T605", f"median gradient RMS per element is {rms:.2e} over {step_span(w.steps)}, below "
                                       f"Adam's eps 1e-8: the weights barely move",
                               subject=step_span(w.steps), evidence={"grad_rms": rms, "grad_norm": median}))
    return out


def _scaler_steps(m: TrainingMeasurements, w) -> list[tuple[int, float, bool]]:
    """(step, scale, skipped) for each step with a scaler reading. Skipped comes from the scaler's
    growth tracker (0 after a step with inf/NaN gradients, unless the scale just grew); without it,
    from a falling scale."""
    growth = w.columns.get("scaler_growth", [math.nan] * len(w.steps))
    previous = m.state.last_scale
    out = []
    for step, scale, tracker in zip(w.steps, w.columns["scale"], growth):
        if not math.isfinite(scale):
            continue
        if math.isfinite(tracker):
            skipped = tracker == 0 and not (previous is not None and scale > previous)
        else:
            skipped = previous is not None and scale < previous
        out.append((step, scale, skipped))
        previous = scale
    return out


@check("T606", scope="training", severity=Severity.WARNING)
def scaler_skips(m: TrainingMeasurements):
    """AMP grad scaler skipping steps, collapsed, or stuck at its floor.

    What: The GradScaler's own state, copied on the device after every `update()`: its scale and
    its growth tracker, which `update()` resets to 0 on a step whose gradients held inf/NaN (the
    step was skipped) and counts up on a good one. Flags: more than 20% of the steps in a window
    after the warm-up (where the initial 65536 calibrates down) skipped (warning); the scale below 1
    (error: collapsed); every one of at least 5 steps skipped while the scale stays put (error: stuck
    at a floor - a min-scale clamp, or 0 after float32 underflow - where falling-scale counting sees
    nothing). Read from the scaler, so it holds when the weights are already non-finite.
    Why: A skipped step throws away its batch; growth back takes 2000 good steps per doubling, so
    frequent skips mean a layer overflows fp16 every few steps. A scale below 1 means gradients
    overflow even unscaled: the values themselves are too large for float16. A healthy scaler halves
    on every skip, so a scale that stops falling while every step skips is no longer adapting:
    nothing trains.
    Fix: Find the overflowing layer (run a few steps in fp32 and watch activations), keep STFT/mel
    losses and the quantizer in fp32, prefer bf16 autocast where supported, clip gradients.
    """
    w = _window(m)
    steps = _scaler_steps(m, w)
    if not steps:
        raise NotApplicable
    counted = [(s, skipped) for s, _, skipped in steps if s >= m.warmup_steps]
    skipped = [s for s, was_skipped in counted if was_skipped]
    latest = steps[-1][1]
    out = []
    if counted and len(skipped) / len(counted) > SCALER_SKIP_FRACTION:
        out.append(finding("T606", f"the grad scaler skipped {len(skipped)} of {len(counted)} steps in "
                                   f"{step_span(w.steps)} (first at step {skipped[0]}, from its growth tracker); "
                                   f"scale now {latest:g}",
                           subject=step_span(w.steps),
                           evidence={"skipped": len(skipped), "steps": len(counted), "scale": latest,
                                     "first_step": skipped[0]}))
    if latest < 1.0:
        out.append(finding("T606", f"grad scaler scale collapsed to {latest:.3g} ({len([1 for *_, k in steps if k])} "
                                   f"of {len(steps)} steps in {step_span(w.steps)} skipped): gradients overflow even "
                                   f"unscaled",
                           subject=f"step {w.steps[-1]}", severity=Severity.ERROR,
                           evidence={"scale": latest, "skipped": sum(1 for *_, k in steps if k), "steps": len(steps)}))
    elif len(steps) >= 5 and all(k for *_, k in steps) and len({scale for _, scale, _ in steps}) == 1:
        out.append(finding("T606", f"grad scaler stuck at its floor: scale {latest:g} unchanged while all "
                                   f"{len(steps)} steps in {step_span(w.steps)} were skipped",
                           subject=step_span(w.steps), severity=Severity.ERROR,
                           evidence={"scale": latest, "skipped": len(steps), "steps": len(steps), "stuck": 1}))
    return out


@check("T614", scope="training", severity=Severity.ERROR)
def optimizer_outside_scaler(m: TrainingMeasurements):
    """Optimizer stepped outside the GradScaler.

    What: Under `watch` and the Lightning callback, `GradScaler.step` is wrapped and the model
    optimizer's step pre-hook asks whether the step runs inside it. A step taken while a scaler is
    active (it scaled a loss since its last `update()`) but outside `scaler.step(optimizer)` - a
    bare `optimizer.step()`, also after `scaler.unscale_(optimizer)` - bypassed the scaler. One such
    step is enough: the finding is raised at the first and counts the rest.
    Why: `scaler.step` is what skips a step whose gradients hold inf/NaN; a bare `optimizer.step()`
    writes them into the weights, which stay non-finite for the rest of the run. Without
    `unscale_` it also applies gradients still multiplied by the scale (65536 at the start): SGD
    steps 65536x too far, and gradient clipping clips the scaled norm.
    Fix: Step through the scaler: `scaler.scale(loss).backward(); scaler.unscale_(optimizer)` (if
    clipping) `; scaler.step(optimizer); scaler.update()`, for every optimizer whose loss was scaled.
    """
    b = m.scaler_bypass
    if b is None:
        raise NotApplicable
    if not b.bypassed_steps:
        return []
    where = f"step {b.first_step}" if b.first_step is not None else "the first step"
    return [finding("T614", f"{b.optimizer}.step() ran outside scaler.step() at {where} while a GradScaler was "
                            f"active ({b.scaler_steps} step(s) went through the scaler before it): inf/NaN "
                            f"gradients are no longer skipped", subject=where,
                    evidence={"bypassed_steps": b.bypassed_steps, "scaler_steps": b.scaler_steps,
                              "first_step": b.first_step if b.first_step is not None else -1})]
# A level that emits at most 2 distinct codes carries at most 1 bit per frame, whatever its size.
# A uniform draw of 100 tokens from 16 codes already gives ~15 distinct ones and even a steeply
# skewed healthy level gives tens, so 2 on 100 or more frames is a collapse, not chance.
EMITTED_COLLAPSE_DISTINCT = 2
EMITTED_MIN_FRAMES = 100
EMITTED_MIN_CODEBOOK = 16


def _buffers_of(m: TrainingMeasurements, emitted) -> dict[int, object]:
    """For each emitted level, the EMA-buffer level of the same module (by name, else by order)."""
    levels = m.levels or []
    out = {}
    for lv in emitted:
        match = next((b for b in levels if b.name == lv.name or b.name.startswith(lv.name + ".")
                      or lv.name.startswith(b.name + ".")), None)
        if match is None and len(levels) == len(emitted):
            match = levels[lv.level]
        if match is not None:
            out[lv.level] = match
    return out


def _emitted_collapse(m: TrainingMeasurements) -> tuple[list, set[int]]:
    """T607 findings for levels whose emitted codes collapsed, and the buffer levels they cover."""
    out, covered = [], set()
    buffers = _buffers_of(m, m.emitted or [])
    for lv in m.emitted or []:
        if lv.frames < EMITTED_MIN_FRAMES or lv.distinct > EMITTED_COLLAPSE_DISTINCT:
            continue
        if 0 < lv.codebook_size < EMITTED_MIN_CODEBOOK:
            continue
        size = f"{lv.codebook_size} codes" if lv.codebook_size else "codebook size unknown"
        buffer = buffers.get(lv.level)
        second = ""
        if buffer is not None:
            covered.add(buffer.level)
            second = (f"; its EMA buffers read perplexity {buffer.perplexity:.1f}, which the emitted codes "
                      f"contradict" if buffer.perplexity > 2 * EMITTED_COLLAPSE_DISTINCT else
                      f"; its EMA buffers agree (perplexity {buffer.perplexity:.1f})")
        out.append(finding(
            "T607", f"level {lv.level} ({lv.name}) emitted {lv.distinct} distinct code"
                    f"{'s' if lv.distinct != 1 else ''} on {lv.frames} frames of the training batch at step "
                    f"{lv.step} ({size}){second}",
            subject=f"level {lv.level} ({lv.name})", severity=Severity.ERROR,
            evidence={"level": lv.level, "module": lv.name, "step": lv.step, "distinct_codes": lv.distinct,
                      "frames": lv.frames, "emitted_perplexity": lv.perplexity, "codebook_size": lv.codebook_size,
                      "source": "emitted codes",
                      "buffer_perplexity": buffer.perplexity if buffer is not None else None}))
    return out, covered


@check("T607", scope="training", severity=Severity.WARNING)
def codebook_usage(m: TrainingMeasurements):
    """Codebook usage falling, measured from the codes the quantizer emits.

    What: First opinion, the integer codes the quantizer really emits: on the first step and the
    first step of each read-back window, the codes returned by the model's innermost code-emitting
    modules (forward outputs or `encode()` calls), per level: distinct codes and perplexity on that
    batch. A level that emits 2 distinct codes or fewer on a batch of 100 frames or more (codebook
    of 16 or more) is an error whatever its buffers say: it carries at most 1 bit per frame, while
    a uniform draw of 100 tokens from 16 codes already gives ~15 distinct ones. Second opinion, the
    perplexity exp(entropy) of the quantizer's EMA usage counts (`cluster_size`) and its dead codes
    (EMA count below 1% of the uniform share): a level whose buffer perplexity fell below half of its
    own peak, or below 2 while the codebook has 16 or more codes, is a warning (info when the codes
    it emitted contradict it: more than 2 distinct on the newest captured batch). Peaks count only
    after the codebook warm-up (default 4× the monitor's warm-up): k-means initialisation starts
    the EMA counts near uniform and the EMA forgets that over 1/(1 − decay) steps.
    Why: Perplexity is the number of codes effectively in use; a level emitting one code is a
    constant and the residual levels after it must do its work. EMA buffers can disagree with the
    codes: a codebook blown up by k-means on a tiny first batch keeps near-uniform counts for
    hundreds of steps while every frame picks the same code.
    Fix: Initialise k-means on enough frames (many times the codebook size), enable dead-code
    revival (replace codes whose EMA count falls below a threshold with recent encoder outputs), a
    lower commitment weight, or l2-normalised codes.
    """
    if not m.levels and not m.emitted:
        raise NotApplicable
    out, covered = _emitted_collapse(m)
    emitted_at = {buffer.level: next(e for e in m.emitted if e.level == index)
                  for index, buffer in _buffers_of(m, m.emitted or []).items()}
    for lv in m.levels or []:
        if lv.level in covered or not lv.initted or not math.isfinite(lv.perplexity):
            continue
        found = _buffer_usage_finding(lv, m.state.perplexity_peak.get(lv.level))
        emitted = emitted_at.get(lv.level)
        if found is not None and emitted is not None and emitted.distinct > EMITTED_COLLAPSE_DISTINCT:
            # the codes are the first opinion: a level that emits many codes is not collapsed
            found.severity = Severity.INFO
            found.message += (f"; but the codes it emitted at step {emitted.step} are {emitted.distinct} distinct "
                              f"on {emitted.frames} frames: its EMA counts lag behind its use")
            found.evidence["emitted_distinct_codes"] = emitted.distinct
        if found is not None:
            out.append(found)
    return out


# T608 "near 0": an output unrelated to the reference at the reference's own level scores
# 10·log10(Σr² / Σ(r² + e²)) = -3.01 dB, a silent one 0 dB. An untrained decoder lies between; below
# -3 dB the output is further off than any unrelated output at the right level (louder, or inverted).
VAL_SNR_NEAR_ZERO_DB = -3.02
# The first part of a run: Adam moves each weight by at most about lr per step, so in 100 steps at
# 1e-4..3e-4 a weight moves 0.01-0.03, below the ~0.05 spread of a conv layer's initial weights
# (1/sqrt(fan_in) for fan_in ~ 400): the decoder can still be its initialisation.
FIRST_PART_STEPS = 100
# Diagnosis findings that describe "not learned yet" rather than a cause: the summary, the
# symptom, and an output unrelated to the input (what an untrained decoder produces).
NOT_LEARNED_SIGNS = ("R300", "R301", "R313", "R314")


def _loss_improvement(m: TrainingMeasurements) -> tuple[float | None, int]:
    """(relative improvement of the median total loss, newest third against the oldest third of the
    last 300 steps; None below PLATEAU_MIN_POINTS steps), number of steps it was read over."""
    points = [v for _, v in list(m.state.loss_total)[-300:] if math.isfinite(v)]
    if len(points) < PLATEAU_MIN_POINTS:
        return None, len(points)
    third = len(points) // 3
    old, new = median_finite(points[:third]), median_finite(points[-third:])
    return ((old - new) / abs(old) if old else 0.0), len(points)


def _validation_headline(m: TrainingMeasurements) -> str:
    """The latest validation and the best one so far (the first says little once training moves)."""
    v = m.validation
    best = max(m.state.validation_history, key=lambda p: p[1], default=None) if m.state.validation_history else None
    text = f"validation SNR is {v.snr_db:.2f} dB over {v.pairs} pairs at step {v.step} (latest"
    if best is not None and best[0] != v.step and math.isfinite(best[1]):
        text += f"; best {best[1]:.2f} dB at step {best[0]}"
    count = max(len(m.state.validation_history), 1)
    return text + f" of {count} validation{'s' if count != 1 else ''})"


def _validation_stage(m: TrainingMeasurements, causes: list[str]) -> tuple[Severity, str]:
    """T608's severity and the reason for it (see the rule in T608's doc)."""
    v = m.validation
    failing = Severity.ERROR if not math.isfinite(v.snr_db) or v.snr_db < 0 else Severity.WARNING
    if v.trained_steps == 0:
        return Severity.INFO, "a baseline: the validation ran before the first optimizer step"
    if causes:
        return failing, f"a cause is measured ({', '.join(causes)})"
    if not v.snr_db >= VAL_SNR_NEAR_ZERO_DB:
        return failing, "below the -3 dB an unrelated output at the reference's level scores"
    improvement, points = _loss_improvement(m)
    if improvement is not None and improvement < PLATEAU_MIN_IMPROVEMENT:
        return failing, (f"the total loss stopped improving ({100 * improvement:.1f}% between the oldest and "
                         f"newest third of the last {points} steps)")
    steps = v.trained_steps if v.trained_steps is not None else v.step
    if m.run_ended and v.snr_db < 0 and steps >= FIRST_PART_STEPS:
        return failing, f"the run ended after {steps} steps with the SNR below 0 dB"
    still = "the run ended" if m.run_ended else "the loss is still falling" if improvement is not None else \
        f"{points} steps so far"
    return Severity.INFO, f"not learned yet: step {steps} is early in training and no cause is measured ({still})"
def _buffer_usage_finding(lv, peak: float | None):
    """T607's second opinion on one level: its EMA usage buffers' perplexity fell or collapsed."""
    evidence = {"level": lv.level, "perplexity": lv.perplexity, "peak_perplexity": peak,
                "codebook_size": lv.codebook_size, "dead_codes": lv.dead_codes, "source": "EMA buffers"}
    subject = f"level {lv.level} ({lv.name})"
    if peak is not None and lv.perplexity < PERPLEXITY_FALL_RATIO * peak:
        return finding("T607", f"level {lv.level} ({lv.name}) buffer perplexity fell to {lv.perplexity:.1f} from a "
                               f"peak of {peak:.1f} (codebook {lv.codebook_size}; {lv.dead_codes:.0f} dead codes)",
                       subject=subject, evidence=evidence)
    if lv.codebook_size >= 16 and lv.perplexity < 2.0:
        return finding("T607", f"level {lv.level} ({lv.name}) collapsed: buffer perplexity {lv.perplexity:.2f} of "
                               f"{lv.codebook_size} codes ({lv.dead_codes:.0f} dead)",
                       subject=subject, evidence=evidence)
    return None


@check("T608", scope="training", severity=Severity.ERROR)
def validation_snr(m: TrainingMeasurements):
    """Validation SNR negative or low.

    What: SNR = 10·log10(Σref² / Σ(ref − est)²) over all validation pairs, below 3 dB (the error
    still carries half the reference's energy); runs the R3xx differential diagnosis on the worst
    pair, whose findings (gain, polarity, lag, bound, ...) are reported next to this one. The
    headline quotes the latest validation and the best one so far. The rule:
    a validation before the first optimizer step is a baseline (info). An SNR near 0 (above the
    -3.01 dB that an unrelated output at the reference's level scores) is "not learned yet" (info)
    while the loss still improves, unless a cause is measured: a finding of the diagnosis other
    than the signs of an untrained output (R301, R314), or a warning-or-worse training finding of
    the run (data beyond the bound, codebook collapse, a learning rate out of range, ...). It
    becomes an error (below 0 dB; a warning from 0 to 3 dB) when a cause is measured, when the
    SNR is below -3 dB, when the total loss has stopped improving (the median of the newest third
    of the last 300 steps less than 2% below the oldest third), or when the run has ended with the
    SNR below 0 dB after its first part (100 optimizer steps: at lr 1e-4..3e-4 Adam has moved each
    weight by at most 0.01-0.03, less than the ~0.05 spread of a conv layer's initial weights).
    Why: Negative validation SNR is where the saga started; the R3xx what-if table tells a scale
    error (R302: SNR after optimal gain far higher) from an alignment or polarity error and from a
    model that has not learned. A model that has not trained yet scores near 0 dB: that is not a
    fault, and a smoke test of a few steps must not fail on it.
    Fix: Follow the R3xx findings listed with it; R302 usually means train and validation do not
    share one amplitude scale. "Not learned yet": train longer, and check the loss falls.
    """
    v = m.validation
    if v is None:
        raise NotApplicable
    if math.isfinite(v.snr_db) and v.snr_db >= VAL_SNR_LOW_DB:
        return []
    found = [f.id for f in v.diagnosis if f.id != "R300"]
    measured = [f.id for f in v.diagnosis if f.id not in NOT_LEARNED_SIGNS and f.severity >= Severity.WARNING]
    causes = list(dict.fromkeys(measured + [c for c in m.run_causes if c != "T608"]))
    severity, reason = _validation_stage(m, causes)
    explained = f"; the diagnosis of the worst pair ({v.worst_pair}) finds {', '.join(found)}" if found else ""
    what_if = ", ".join(f"{k} {val:.1f} dB" for k, val in v.what_if.items()
                        if isinstance(val, (int, float)) and math.isfinite(val))
    best = max((snr for _, snr in m.state.validation_history if math.isfinite(snr)), default=None)
    return [finding("T608", f"{_validation_headline(m)}: {reason}{explained}"
                            + (f" (what-if on that pair: {what_if})" if what_if else ""),
                    subject=f"validation at step {v.step}", severity=severity,
                    evidence={"snr_db": v.snr_db, "pairs": v.pairs, "worst_pair": v.worst_pair, "step": v.step,
                              "best_snr_db": best, "trained_steps": v.trained_steps, "run_ended": m.run_ended,
                              "worst_pair_snr_db": v.pair_snr_db[v.worst_pair] if v.pair_snr_db else None,
                              "diagnosis": found, "causes": causes, "reason": reason,
                              **{f"what_if_{k}_db": val for k, val in v.what_if.items()}})]


# The usual peak learning rates per optimizer family, (low, high). Adam-family generators: 1e-4
# (DAC, SoundStream, HiFi-GAN 2e-4) to 3e-4 (EnCodec), up to 1e-3..1e-2 for small models, down to
# 1e-5 for fine-tuning. Lion's sign update is ~3-10x larger per step, so its rates are that much
# lower. SGD's step is lr × gradient, not lr × a unit-scaled direction, so its rates span 1e-4 to 1
# (0.01-0.1 for conv nets with momentum). Anything else is judged against the Adam range.
LR_USUAL_RANGE = {"adam": (1e-5, 1e-2), "lion": (1e-6, 1e-3), "sgd": (1e-4, 1.0)}
# A rise counts as a warm-up when, continued at its latest slope, it reaches the usual range within
# this many steps (warm-ups in codec and vocoder recipes last 500-10k steps).
WARMUP_HORIZON_STEPS = 10_000


def _lr_range(kind: str | None) -> tuple[str, tuple[float, float]]:
    low = (kind or "").lower()
    family = "sgd" if "sgd" in low else "lion" if "lion" in low else "adam"
    return family, LR_USUAL_RANGE[family]


def _warming_up_into_range(m: TrainingMeasurements, step: int, low: float) -> bool:
    """The rate still rises and, continued at its latest slope, reaches `low` within the horizon."""
    history = m.state.lr_history
    if not history or not m.lr > history[-1][1] * (1 + 1e-6):
        return False
    last_step, last_lr = history[-1]
    slope = (m.lr - last_lr) / max(step - last_step, 1)
    return m.lr + slope * max(WARMUP_HORIZON_STEPS - step, 0) >= low


@check("T609", scope="training", severity=Severity.WARNING)
def loss_plateau_low_lr(m: TrainingMeasurements):
    """Learning rate below the optimizer's usual range, or decayed to it while the loss is flat.

    What: Reads the optimizer's learning rate at each read-back (after the scheduler), from the
    first read-back on, short runs included. The highest rate the run reaches is the peak so far,
    or the peak its scheduler heads for (`initial_lr` / `max_lr` in the param group) when that is
    higher. Flags a peak below the usual range of the optimizer's family: 1e-5 for Adam/AdamW
    (generators train at 1e-4 DAC/SoundStream, 3e-4 EnCodec, up to 1e-3..1e-2 for small models,
    1e-5 for fine-tuning), 1e-6 for Lion, 1e-4 for SGD (its step is lr × gradient: 0.01-0.1 with
    momentum). A warm-up is a rise toward a peak in range: a schedule heading for a rate in range,
    or a rise that at its latest slope reaches the range within 10k steps; a rate of 1e-7 rising
    slowly is named. A rate that decayed below the range is named when the median total loss of
    the newest third of the recent steps (up to 300, at least 40) is less than 2% below the oldest
    third (a plateau).
    Why: At 1e-7 Adam moves each weight by about 1e-7 per step: the loss creeps down while the model
    has barely left its initialization, and hours of GPU time produce little. A schedule that decays
    the rate to near zero stalls the run the same way.
    Fix: Use 1e-4 to 3e-4 with Adam/AdamW (betas 0.8/0.9, 0.99) and a short warm-up to that peak;
    make the scheduler's floor a fraction (e.g. 0.1) of the peak rate, not zero.
    """
    if m.lr is None:
        raise NotApplicable
    step = m.window.steps[-1] if m.window is not None and m.window.steps else (
        m.state.loss_total[-1][0] if m.state.loss_total else 0)
    family, (low, _) = _lr_range(m.optimizer_kind)
    if m.lr >= low:
        return []
    reached = max([lr for _, lr in m.state.lr_history] + [m.lr])
    peak = max(reached, m.lr_scheduled_peak or 0.0)
    improvement, points = _loss_improvement(m)
    trend = (f"; total loss improved {100 * improvement:.1f}% between the oldest and newest third of the last "
             f"{points} steps" if improvement is not None else "")
    evidence = {"lr": m.lr, "peak_lr": reached, "scheduled_peak_lr": m.lr_scheduled_peak, "usual_min_lr": low,
                "optimizer": m.optimizer_kind, "family": family, "loss_improvement": improvement, "step": step}
    name = m.optimizer_kind or "Adam-family"
    if peak < low:
        if _warming_up_into_range(m, step, low):
            return []
        how_far = f"{low / m.lr:.0f}x below" if m.lr > 0 else "far below"  # lr 0: frozen on purpose?
        planned = f", scheduled peak {m.lr_scheduled_peak:.2g}" if m.lr_scheduled_peak else ""
        return [finding("T609", f"learning rate {m.lr:.2g} at step {step} (highest so far {reached:.2g}{planned}) "
                                f"is {how_far} the usual minimum {low:g} for {name}{trend}",
                        subject=f"step {step}", evidence=evidence)]
    decayed = m.lr < reached * (1 - 1e-6)   # below its own peak so far: not a warm-up still rising
    if decayed and improvement is not None and improvement < PLATEAU_MIN_IMPROVEMENT:
        return [finding("T609", f"learning rate decayed to {m.lr:.2g} (peak {reached:.2g}) and the loss plateaued"
                                f"{trend}", subject=f"step {step}", evidence=evidence)]
    return []


ADV_TERMS = ("adv", "gan", "g_adv", "adversarial", "loss_g_adv", "gen_adv")
FEATURE_MATCHING_TERMS = ("feat", "fm", "feature", "feature_matching")


@check("T610", scope="training", severity=Severity.WARNING)
def discriminator_domination(m: TrainingMeasurements):
    """Discriminator dominating the generator.

    What: Finds the discriminator loss term (named disc*, d_loss, loss_d) and the generator's
    adversarial term (adv*, gan); after the warm-up flags a window whose median discriminator loss is
    below 0.05. Hinge losses sit near 1-2 and least-squares losses near 0.25-0.5 at equilibrium, so
    0.05 means the discriminator separates real from decoded audio with margin.
    Why: A saturated discriminator gives the decoder large, uninformative adversarial gradients that
    drown the reconstruction terms; quality stalls or collapses (buzzy artifacts).
    Fix: Lower the discriminator's learning rate or update it less often, start the adversarial
    loss later, weight feature matching higher, or add gradient penalty / spectral norm.
    """
    w = _window(m)
    disc = find_term(w.losses, DISC_TERMS)
    if disc is None:
        raise NotApplicable
    if w.steps[-1] < m.warmup_steps:
        return []
    d_median = median_finite(w.losses[disc])
    adv = find_term(w.losses, ADV_TERMS)
    a_median = median_finite(w.losses[adv]) if adv else math.nan
    if math.isfinite(d_median) and d_median < DISC_DOMINATION_LOSS:
        adv_text = f"; generator adversarial term '{adv}' median {a_median:.3g}" if adv else ""
        who = f" ({m.discriminator})" if m.discriminator else ""
        return [finding("T610", f"discriminator{who} loss '{disc}' median {d_median:.3g} over {step_span(w.steps)}"
                                f"{adv_text}",
                        subject=step_span(w.steps),
                        evidence={"disc_loss": d_median, "adv_loss": a_median if adv else None,
                                  "discriminator": m.discriminator})]
    return []


@check("T611", scope="training", severity=Severity.ERROR)
def ddp_codebooks_differ(m: TrainingMeasurements):
    """Codebook buffers differ across DDP ranks.

    What: At scheduled read-backs each rank computes float64 checksums (sum, sum of |x|,
    position-weighted sum) of every codebook tensor (embed, embed_avg, cluster_size, codebook
    parameters) and all-reduces them with max and min; a relative spread above 1e-5 on any of them
    is an error. All-reduced EMA statistics agree to float rounding (~1e-7).
    Why: EMA codebooks are buffers, which DDP does not average like gradients: unless the
    quantizer all-reduces its statistics, every rank learns its own codebook, the encoders diverge,
    and the checkpoint (usually rank 0's) does not match what the others trained.
    Fix: All-reduce cluster sizes and embedding sums inside the quantizer's EMA update (as this
    codec does), or broadcast buffers from rank 0 each step (`broadcast_buffers=True` covers only
    forward-time buffers).
    """
    d = m.ddp
    if d is None:
        raise NotApplicable
    bad = [(name, spread) for name, spread in zip(d.tensors, d.spread) if spread > DDP_SPREAD_RELATIVE]
    if not bad:
        return []
    name, spread = max(bad, key=lambda p: p[1])
    return [finding("T611", f"{len(bad)} of {len(d.tensors)} codebook tensors differ across {d.world_size} ranks at "
                            f"step {d.step}; largest relative spread {spread:.3g} in '{name}'",
                    subject=f"step {d.step}",
                    evidence={"tensors_differing": len(bad), "tensors": len(d.tensors), "max_spread": spread,
                              "worst_tensor": name, "world_size": d.world_size})]


# EnCodec's balancer weights the adversarial and feature-matching terms 3 and 3 against 1 (mel) and
# 0.1 (L1): with the balancer each carries 3/7.1 = 42% of the gradient norm at the output and the
# reconstruction terms together 15%. One adversarial or feature-matching term at 80% is about twice
# its share there and leaves every other term together at 20%; the two together at 95% leave the
# reconstruction a third of what that recipe gives it.
BALANCE_SINGLE_SHARE = 0.8
BALANCE_ADVERSARIAL_SHARE = 0.95


@check("T612", scope="training", severity=Severity.WARNING)
def loss_balance(m: TrainingMeasurements):
    """Loss balance: an adversarial or feature-matching term dominates the gradient at the decoder output.

    What: On the read-back schedule only (the first step of each window, never every step), the
    norm of the gradient each loss term alone sends into the decoder output, ‖∂L_term/∂y‖ (one
    autograd.grad per term through the loss graph, not the model), as EnCodec's balancer measures
    it; a term's share is its norm over the sum of all terms' norms. After the warm-up, flags a
    window where one adversarial (adv*, gan) or feature-matching (feat*, fm) term has more than 80%
    of the gradient, or those terms together more than 95%. EnCodec's balanced recipe gives each of
    them 42% and the reconstruction terms 15% together, so 80% is twice a balanced share.
    Why: When the adversarial side owns the gradient, the decoder follows what the discriminator
    rewards, not the waveform: reconstruction stalls or degrades (buzz, metallic artefacts) while
    the generator loss looks healthy. It is the discriminator-overpowering failure, visible here
    before the validation SNR shows it.
    Fix: Lower the adversarial / feature-matching weights (or scale them by the ratio of the
    gradient norms, as EnCodec's balancer does), start the adversarial loss after the
    reconstruction has converged, or lower the discriminator's learning rate.
    """
    if not m.balance:
        raise NotApplicable
    step = m.balance[-1].step
    if step < m.warmup_steps:
        return []
    terms = m.balance[-1].terms
    shares = {t: median_finite([b.shares[b.terms.index(t)] for b in m.balance if t in b.terms]) for t in terms}
    adversarial = [t for t in terms if find_term([t], ADV_TERMS) or find_term([t], FEATURE_MATCHING_TERMS)]
    if not adversarial:
        return []
    dominant = max(adversarial, key=lambda t: shares[t])
    adversarial_share = sum(shares[t] for t in adversarial)
    if shares[dominant] <= BALANCE_SINGLE_SHARE and adversarial_share <= BALANCE_ADVERSARIAL_SHARE:
        return []
    listed = ", ".join(f"{t} {100 * s:.0f}%" for t, s in sorted(shares.items(), key=lambda p: -p[1]))
    return [finding("T612", f"'{dominant}' carries {100 * shares[dominant]:.0f}% of the gradient at the decoder "
                            f"output at step {step} (adversarial/feature-matching terms together "
                            f"{100 * adversarial_share:.0f}%; reconstruction {100 * (1 - adversarial_share):.0f}%): "
                            f"{listed}",
                    subject=f"step {step}",
                    evidence={"step": step, "dominant_term": dominant, "dominant_share": shares[dominant],
                              "adversarial_share": adversarial_share,
                              **{f"share_{t}": s for t, s in shares.items()}})]


# A hinge discriminator whose outputs sit at 0 on real and decoded audio has loss
# relu(1 − 0) + relu(1 + 0) = 2.0, the margin; a learning one moves below it within its first
# hundred steps. Within 5% of 2.0 is "at the margin".
HINGE_MARGIN = 2.0
MARGIN_TOLERANCE = 0.05
# Adversarial / feature-matching terms whose window median fell below a tenth of their first
# window's have collapsed: the generator no longer gets a signal from the discriminator.
GENERATOR_TERMS_COLLAPSE = 0.1


def _disc_margin_stuck(m: TrainingMeasurements, w) -> tuple[str, float, list[str]] | None:
    """(disc term, its median, collapsed adversarial/feature terms) when the loss sits at the
    hinge margin while the generator's adversarial terms collapse; None otherwise."""
    disc = find_term(w.losses, DISC_TERMS)
    if disc is None:
        return None
    d_median = median_finite(w.losses[disc])
    if not math.isfinite(d_median) or abs(d_median - HINGE_MARGIN) > MARGIN_TOLERANCE * HINGE_MARGIN:
        return None
    collapsed = []
    for name in w.losses:
        if not (find_term([name], ADV_TERMS) or find_term([name], FEATURE_MATCHING_TERMS)):
            continue
        first, now = m.state.first_loss_median.get(name), median_finite(w.losses[name])
        if first is not None and math.isfinite(first) and first > 0 and now < GENERATOR_TERMS_COLLAPSE * first:
            collapsed.append(name)
    return (disc, d_median, collapsed) if collapsed else None


@check("T613", scope="training", severity=Severity.ERROR)
def discriminator_not_learning(m: TrainingMeasurements):
    """Discriminator not learning.

    What: At each step of the discriminator's own optimizer, the norm of its gradients as the step
    sees them (0 when it holds none), and once per read-back window how far that step moved its
    parameters, ‖θ_after − θ_before‖ / ‖θ_before‖. Flags a window where every discriminator step saw
    a gradient norm of exactly 0, or where the measured step left its parameters bitwise unchanged
    (any real update moves a float32 weight). With named loss terms it also flags a discriminator
    loss within 5% of the hinge margin 2.0 (its outputs stuck at 0) while the generator's
    adversarial or feature-matching terms fell below a tenth of their first window's median.
    Why: A `zero_grad()` placed between the discriminator's backward and its `step()` (or a step
    taken before its backward) means the step never sees a gradient: the discriminator stays at its
    initialisation, its loss stays at the margin, and the adversarial and feature-matching losses
    fall toward 0 because a random discriminator is easy to match. The generator trains without an
    adversarial signal while every curve looks calm.
    Fix: Order the discriminator's update as `opt_d.zero_grad(); d_loss.backward(); opt_d.step()`,
    with no `zero_grad()` between the backward and the step; check its optimizer holds its
    parameters and that its loss is computed on `y.detach()` and the reference.
    """
    w = _window(m)
    grads = [g for g in w.columns.get("disc_grad_norm", []) if math.isfinite(g)]
    changes = [(s, c) for s, c in zip(w.steps, w.columns.get("disc_param_change", [])) if math.isfinite(c)]
    margin = _disc_margin_stuck(m, w)
    if not grads and not changes and find_term(w.losses, DISC_TERMS) is None:
        raise NotApplicable
    who = f"discriminator {m.discriminator}" if m.discriminator else "discriminator"
    evidence = {"discriminator": m.discriminator, "disc_steps": len(grads),
                "disc_grad_norm_max": max(grads) if grads else None,
                "disc_param_change": changes[-1][1] if changes else None,
                "first_step": w.steps[0], "last_step": w.steps[-1]}
    if grads and max(grads) == 0:
        steps = "its optimizer step" if len(grads) == 1 else f"all {len(grads)} of its optimizer steps"
        message = (f"the {who}'s gradients were zero at {steps} in {step_span(w.steps)}: its step never sees "
                   f"its loss's gradient")
    elif changes and all(c == 0 for _, c in changes):
        message = (f"the {who}'s parameters did not change across its optimizer step at step "
                   f"{changes[-1][0]}" + (f" (gradient norm up to {max(grads):.3g} in the window)" if grads else ""))
    elif margin is not None:
        disc, d_median, collapsed = margin
        message = (f"{who} loss '{disc}' sits at the hinge margin (median {d_median:.3f} over "
                   f"{step_span(w.steps)}) while {', '.join(repr(t) for t in collapsed)} collapsed below a tenth "
                   f"of their first values: the discriminator gives no adversarial signal")
        evidence.update({"disc_loss": d_median, "collapsed_terms": collapsed})
    else:
        return []
    return [finding("T613", message, subject=f"{who}, {step_span(w.steps)}", evidence=evidence)]
