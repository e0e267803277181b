"""MonitorConfig: the monitor's settings as one value, and the keyword form it replaces still working."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from monitor_loops import PassThroughCodec, host_reads_per_step, speech_bank

import codecdoctor
from codecdoctor.core.errors import InputError
from codecdoctor.monitor import MonitorConfig

# Monitor's keyword defaults before the config existed (its signature then): the config must keep them
KEYWORD_DEFAULTS = {
    "mode": "strict", "stop_on": "errors", "output_bound": None, "read_every": 25, "warmup_steps": None,
    "codebook_warmup_steps": None, "spectral_terms": None, "spectral_fft_sizes": None, "spectral_eps": None,
    "dead_code_share": None, "ddp_check": True, "loss_balance": True, "event_log": None,
}
# what the monitor resolves from the model and the other settings; none of it may depend on the form
RESOLVED = ("mode", "stop_on", "output_bound", "read_every", "warmup_steps", "codebook_warmup_steps",
            "dead_code_share", "ddp_check", "loss_balance", "event_log")


def _train(monitor, model, steps: int) -> list[int]:
    """Train a few steps over too-loud speech; returns the steps whose hooks read from the device."""
    per_step = host_reads_per_step(monitor, model, speech_bank(2.0, peak=1.2), steps)
    return [step for step, reads in enumerate(per_step) if reads]


def test_a_config_runs_the_same_schedule_and_findings_as_the_keywords():
    torch.manual_seed(0)
    by_keywords = codecdoctor.Monitor(PassThroughCodec(tanh=True), 16000, mode="warn", read_every=5, output_bound=1.0)
    by_config = codecdoctor.Monitor(PassThroughCodec(tanh=True), 16000,
                                    config=MonitorConfig(mode="warn", read_every=5, output_bound=1.0))
    # the read-back schedule: the first step of each 5-step window after the first reads the previous one
    assert _train(by_keywords, by_keywords.model, 12) == [5, 10]
    assert _train(by_config, by_config.model, 12) == [5, 10]
    assert by_keywords.read_backs == by_config.read_backs == 2
    keyword_report, config_report = by_keywords.close(), by_config.close()
    # tanh cannot reach a 1.2 peak: both judge the same T601 with the same measured evidence
    assert [f.id for f in keyword_report.findings] == [f.id for f in config_report.findings]
    assert "T601" in {f.id for f in config_report.findings}
    assert [f.evidence for f in keyword_report.findings] == [f.evidence for f in config_report.findings]
    assert by_keywords.config == by_config.config


def test_config_and_a_keyword_together_is_a_type_error_naming_both():
    with pytest.raises(TypeError, match=r"config=.*read_every="):
        codecdoctor.Monitor(PassThroughCodec(), 16000, config=MonitorConfig(read_every=5), read_every=5)


def test_an_unknown_keyword_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="'readevery'"):
        codecdoctor.Monitor(PassThroughCodec(), 16000, readevery=5)


def test_the_config_keeps_every_keyword_default():
    assert {f.name: f.default for f in dataclasses.fields(MonitorConfig)} == KEYWORD_DEFAULTS


def test_defaults_resolve_the_same_with_and_without_a_config():
    plain = codecdoctor.Monitor(PassThroughCodec(), 16000)
    configured = codecdoctor.Monitor(PassThroughCodec(), 16000, config=MonitorConfig())
    assert plain.config == configured.config == MonitorConfig()
    assert {name: getattr(plain, name) for name in RESOLVED} == {name: getattr(configured, name) for name in RESOLVED}
    # the derived defaults: drift waits two read-backs, codebooks four times that, dead codes below 1% of uniform
    assert (plain.warmup_steps, plain.codebook_warmup_steps, plain.dead_code_share) == (50, 200, 0.01)


def test_the_old_positional_mode_still_works():
    assert codecdoctor.Monitor(PassThroughCodec(), 16000, "warn").mode == "warn"
    with pytest.raises(TypeError, match="'mode'"):
        codecdoctor.Monitor(PassThroughCodec(), 16000, "warn", mode="strict")


def test_a_bad_setting_fails_when_the_config_is_built():
    with pytest.raises(ValueError, match="read_every"):
        MonitorConfig(read_every=0)
    with pytest.raises(ValueError, match="stop_on"):
        MonitorConfig(stop_on="never")
    with pytest.raises(ValueError, match="mode"):
        MonitorConfig(mode="loud")


def test_check_levels_map_to_mode_and_stop_policy():
    assert (MonitorConfig.for_checks("nonfinite").mode, MonitorConfig.for_checks("nonfinite").stop_on) == ("strict", "nonfinite")
    assert (MonitorConfig.for_checks("strict").mode, MonitorConfig.for_checks("strict").stop_on) == ("strict", "errors")
    assert MonitorConfig.for_checks("warn", read_every=7) == MonitorConfig(mode="warn", read_every=7)
    with pytest.raises(ValueError, match="checks"):
        MonitorConfig.for_checks("off")


def test_a_config_is_a_frozen_hashable_value():
    config = MonitorConfig(spectral_terms=["mel"], spectral_fft_sizes=[512, 2048])
    assert config.spectral_terms == ("mel",) and config.spectral_fft_sizes == (512, 2048)
    assert hash(config) == hash(MonitorConfig(spectral_terms=("mel",), spectral_fft_sizes=(512, 2048)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.read_every = 5  # type: ignore[misc]


def test_watch_turns_a_bad_read_every_into_an_input_error(tmp_path):
    from codecdoctor.watch import WatchRequest, watch

    script = tmp_path / "train.py"
    script.write_text("print('never runs')\n", encoding="utf-8")
    with pytest.raises(InputError, match="read_every"):
        watch(WatchRequest(script=str(script), read_every=0))


def test_the_config_and_the_check_levels_load_without_torch():
    # train and watch read the check levels at import; torch must wait until a monitor is built
    code = ("import sys; import codecdoctor.train, codecdoctor.watch; from codecdoctor.monitor import MonitorConfig; "
            "MonitorConfig.for_checks('nonfinite'); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
