"""TensorBoard scalars from the monitor's read-backs (`Monitor(..., writer=SummaryWriter)` and
`train --tensorboard DIR`), read back from the event file with tensorboard's EventAccumulator."""
from __future__ import annotations

import pytest
import torch
from host_reads import HostReadCounter
from monitor_loops import crops, speech_bank, tiny_codec

import codecdoctor

tensorboard = pytest.importorskip("tensorboard", reason="tensorboard (dev extra) is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_monitor_writes_its_read_back_statistics_at_the_training_step(tmp_path):
    model, loss_fn = tiny_codec()
    writer = SummaryWriter(str(tmp_path / "tb"))
    monitor = codecdoctor.Monitor(model, 16000, mode="warn", read_every=5, writer=writer)
    bank = speech_bank(2.0)
    reads_per_step = []

    # the scalars are written from values the read-back already holds: between read-backs the hooks
    # still read nothing from the device
    for step in range(10):
        x = crops(bank, step)
        out = model(x)
        losses = loss_fn(out.audio, x, out.commit_loss)
        with HostReadCounter() as reads:
            monitor.on_batch(x, out.audio, losses)
        monitor.optimizer = monitor.optimizer or torch.optim.Adam(model.parameters(), 1e-3)
        monitor.optimizer.zero_grad()
        losses["total"].backward()
        with HostReadCounter() as reads_after:
            monitor.on_backward(model)
            monitor.on_step()
        monitor.optimizer.step()
        reads_per_step.append(reads.total + reads_after.total)
    assert [s for s, n in enumerate(reads_per_step) if n] == [5]
    ref = torch.stack([crops(bank, 100 + i)[0] for i in range(3)])
    monitor.on_validation(ref, -0.5 * ref)  # inverted and quiet: T608 with a what-if table
    report = monitor.close()
    writer.close()
    scalars = _scalars(tmp_path / "tb")
    assert [s for s, _ in scalars["codecdoctor/input_peak"]] == list(range(10))  # every step, at its step
    # the window's curve point is the maximum of the per-step peaks logged for it
    first_window = [v for s, v in scalars["codecdoctor/input_peak"] if s < 5]
    assert max(first_window) == pytest.approx(report.measurements["curves"][0]["input_peak"], rel=1e-6)
    assert [s for s, _ in scalars["codecdoctor/perplexity/level_0"]] == [4, 9]
    assert {"codecdoctor/output_peak", "codecdoctor/rms_ratio_db", "codecdoctor/grad_norm",
            "codecdoctor/loss/total", "codecdoctor/loss_share/mel"} <= set(scalars)
    val = report.measurements["validation"][0]
    assert scalars["codecdoctor/val/snr_db"] == [(10, pytest.approx(val["snr_db"], abs=1e-4))]
    # est = -0.5 ref: the sign flip alone leaves a gain of 0.5, 20·log10(1/0.5) = 6.02 dB
    assert scalars["codecdoctor/val/what_if_polarity_db"][0][1] == pytest.approx(6.02, abs=0.05)


def test_train_tensorboard_flag_logs_the_run(cli, tmp_path):
    import numpy as np
    import soundfile as sf

    data = tmp_path / "data"
    data.mkdir()
    t = np.arange(3 * 16000) / 16000
    sf.write(str(data / "a.wav"), (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    code, _, err = cli("train", "--data_dir", data, "--checkpoint_dir", tmp_path / "ck", "--batch_size", "2",
                       "--num_epochs", "2", "--config", "tiny", "--segment-seconds", "0.25", "--steps-per-epoch", "2",
                       "--tensorboard", tmp_path / "tb", "--json", "none", "--html", "none")
    assert code in (0, 1), err
    scalars = _scalars(tmp_path / "tb")
    assert [s for s, _ in scalars["codecdoctor/input_peak"]] == [0, 1, 2, 3]
    assert len(scalars["codecdoctor/val/snr_db"]) == 2  # one validation per epoch
