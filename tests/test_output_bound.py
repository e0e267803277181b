"""measure/bound.py: one OutputBound value and one inference, used by watch, train, check-ckpt,
compare and the demo. A clamp keeps its limit wherever the bound is read."""
from __future__ import annotations

import pytest
from torch import nn

from codecdoctor.measure.bound import OutputBound, bound_value, infer_output_bound, module_name_bound, parse_output_bound


class Clamp(nn.Module):
    def __init__(self, limit: float) -> None:
        super().__init__()
        self.max_val = limit

    def forward(self, x):
        return x.clamp(-self.max_val, self.max_val)


@pytest.mark.parametrize("said, value", [("tanh", 1.0), ("Hardtanh", 1.0), ("clamp", 1.0), ("none", None),
                                         ("off", None), ("0.95", 0.95), (0.5, 0.5), (-2, 2.0)])
def test_words_and_numbers_name_one_bound(said, value):
    bound = parse_output_bound(said, "config")
    assert bound == OutputBound(value, "config") and bound.bounded == (value is not None)
    assert bound_value(said) == value


def test_an_unsaid_bound_is_unknown_and_an_unknown_word_is_an_error():
    assert parse_output_bound(None) is None and bound_value(None) is None
    with pytest.raises(ValueError):
        parse_output_bound("banana")


def test_a_final_module_gives_its_own_limit_not_one():
    assert infer_output_bound(module=nn.Hardtanh(-0.8, 0.8)) == OutputBound(0.8, "final Hardtanh")
    assert infer_output_bound(module=nn.Hardtanh(-0.3, 0.6)).value == pytest.approx(0.6)
    assert infer_output_bound(module=Clamp(0.5)) == OutputBound(0.5, "final Clamp")
    assert infer_output_bound(module=nn.Tanh()).value == 1.0
    unbounded = infer_output_bound(module=nn.Conv1d(1, 1, 3))
    assert not unbounded.bounded and "not bounded" in unbounded.source


def test_sources_are_read_in_order_given_module_config_architecture_peaks():
    config = {"output_bound": "0.7"}
    assert infer_output_bound(given=0.9, module=nn.Tanh(), config=config).value == 0.9
    assert infer_output_bound(module=nn.Tanh(), config=config).source == "final Tanh"
    # an unbounded last module does not hide what the config says (a functional clamp after it)
    assert infer_output_bound(module=nn.Conv1d(1, 1, 3), config=config) == OutputBound(0.7, "config output_bound='0.7'")
    assert infer_output_bound(architecture="dac") == OutputBound(1.0, "dac as published")
    assert not infer_output_bound(architecture="encodec").bounded
    assert infer_output_bound(peak=0.99).value == 1.0 and infer_output_bound(peak=1.2) is None
    assert infer_output_bound() is None


def test_a_traced_output_module_name_bounds_or_not():
    assert module_name_bound("Tanh").value == 1.0
    assert not module_name_bound("ConvTranspose1d").bounded
    assert module_name_bound("Identity") is None


def test_the_monitor_takes_a_clamp_limit_from_the_codec_config():
    from codecdoctor.monitor.monitor import Monitor

    model = nn.Sequential(nn.Conv1d(1, 1, 3, padding=1))
    model.config = type("Config", (), {"output_bound": "0.5"})()
    assert Monitor(model, 16000).output_bound == 0.5
    assert Monitor(model, 16000, output_bound="tanh").output_bound == 1.0
