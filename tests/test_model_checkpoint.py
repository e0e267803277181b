"""Checkpoints: weights_only round trip and atomic writes."""
from __future__ import annotations

import pytest
import torch

from codecdoctor_model import Codec, CodecConfig, build_codec, load_checkpoint, save_checkpoint
from codecdoctor_model.checkpoint import FORMAT, rng_state


def _state(codec: Codec, step: int) -> dict:
    opt = torch.optim.AdamW(codec.parameters(), lr=1e-3)
    codec(0.3 * torch.randn(2, 1, 800)).audio.pow(2).mean().backward()
    opt.step()
    return {"config": codec.config.to_dict(), "model": codec.state_dict(), "optimizer": opt.state_dict(),
            "scaler": torch.amp.GradScaler("cuda", enabled=False).state_dict(),
            "scheduler": {"kind": "warmup_cosine", "warmup_steps": 5}, "step": step, "epoch": 0,
            "history": [{"epoch": 1, "step": step, "train_loss": 0.5, "val_snr_db": 3.0, "val_si_snr_db": 2.0,
                         "val_mel_distance": 0.4, "lr": 1e-3}],
            "train_args": {"learning_rate": 1e-3, "batch_size": 2}, "rng": rng_state()}


def test_round_trip_loads_with_weights_only_and_rebuilds_the_same_codec(tmp_path):
    torch.manual_seed(0)
    codec = Codec(CodecConfig.tiny())
    path = save_checkpoint(tmp_path / "last.pt", _state(codec, 7))
    raw = torch.load(path, weights_only=True)  # the acceptance criterion, literally
    assert raw["format"] == FORMAT and raw["step"] == 7
    assert isinstance(raw["rng"]["torch"], torch.Tensor)
    state = load_checkpoint(path)
    rebuilt = build_codec(state)
    assert rebuilt.config == codec.config
    for name, tensor in codec.state_dict().items():
        assert torch.equal(tensor, rebuilt.state_dict()[name]), name
    assert bool(rebuilt.quantizer.levels[0].initted)
    x = 0.3 * torch.randn(1, 1, 400)
    codec.eval()
    assert torch.equal(codec(x).audio, rebuilt(x).audio)


def test_interrupted_write_leaves_previous_checkpoint_intact(tmp_path):
    torch.manual_seed(0)
    codec = Codec(CodecConfig.tiny())
    path = save_checkpoint(tmp_path / "last.pt", _state(codec, 1))
    before = path.read_bytes()

    def dies_half_way(state, handle):
        handle.write(b"PK\x03\x04 half a zip file")  # bytes hit the disk, then the process "dies"
        raise KeyboardInterrupt("killed during write")

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _state(codec, 2), writer=dies_half_way)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_foreign_file_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a codecdoctor-codec/1 checkpoint"):
        load_checkpoint(path)
