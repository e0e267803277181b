"""Training under faults: kill -9 at random points then --resume; a disk that fills up mid-write.

Specification (issue 8): no run ever loses more than one checkpoint interval (`save_every` steps),
no checkpoint file is ever unreadable (every `*.pt` loads with torch.load(weights_only=True) at any
moment a kill can leave it), and a failing checkpoint write leaves the previous checkpoint intact,
byte for byte, and says so.

"Steps done" is measured, not assumed: the child process runs the real `codecdoctor train` with
Trainer.train_step wrapped to append every completed step to a progress file, so lost work =
steps done at the kill - step stored in last.pt (bench/fault_campaign.py: kill_resume_campaign).
"""
from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest
from bench_modules import load_bench_module

torch = pytest.importorskip("torch")
trainer_mod = pytest.importorskip("codecdoctor_model.trainer")
from codecdoctor_model.checkpoint import load_checkpoint  # noqa: E402
from codecdoctor_model.config import CodecConfig  # noqa: E402

SAVE_EVERY = 2
STEPS_PER_EPOCH = 6
EPOCHS = 3
TOTAL_STEPS = STEPS_PER_EPOCH * EPOCHS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from codecdoctor.measure.stimuli import speech_like, write_audio

    folder = tmp_path_factory.mktemp("corpus")
    for i in range(3):
        write_audio(folder / f"utt{i}.wav", speech_like(2.0, 16000, seed=i), 16000)
    return folder


def _options(corpus: Path, ckpt_dir: Path, **changes):
    base = dict(data_dir=str(corpus), checkpoint_dir=str(ckpt_dir), experiment_name="run", batch_size=2,
                num_epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH, save_every=SAVE_EVERY,
                segment_seconds=0.25, max_val_crops=2, log_every=1, seed=0)
    base.update(changes)
    return trainer_mod.TrainOptions(**base)


# --------------------------------------------------------------------------------------------
# kill -9
# --------------------------------------------------------------------------------------------
fc = load_bench_module("fault_campaign")


def train_argv(corpus: Path, ckpt_dir: Path, resume: bool) -> list[str]:
    return fc.train_argv(corpus, ckpt_dir, resume=resume, save_every=SAVE_EVERY,
                         steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS)


@pytest.mark.slow
def test_kill_9_at_random_points_loses_at_most_one_checkpoint_interval(tmp_path):
    """4 runs of `codecdoctor train` killed after a random number of steps plus a random delay,
    each followed by --resume, then one run to the end (the bench does 20 kills)."""
    stats = fc.kill_resume_campaign(4, workdir=tmp_path, seed=8, save_every=SAVE_EVERY,
                                    steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS)
    print(fc.format_kill_row(stats))
    assert stats.kills >= 3, "the runs finished before they could be killed: nothing was tested"
    assert not stats.unreadable, stats.unreadable
    assert not stats.restart_errors, stats.restart_errors
    assert stats.max_lost <= SAVE_EVERY, stats.steps_lost
    assert stats.final_step == TOTAL_STEPS  # the resumed runs complete the planned schedule


# --------------------------------------------------------------------------------------------
# disk full while writing a checkpoint
# --------------------------------------------------------------------------------------------
def _failing_save(real_save):
    """torch.save that writes half the checkpoint, then fails like a full disk."""
    def save(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        if hasattr(f, "write"):
            f.write(data[: len(data) // 2])
            f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")
    return save


def test_disk_full_during_checkpoint_write_keeps_previous_checkpoint_intact(corpus, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    ckpt_dir = tmp_path / "ckpts"
    first = trainer_mod.Trainer(CodecConfig.tiny(), _options(corpus, ckpt_dir, max_steps=SAVE_EVERY))
    first.fit()
    last = ckpt_dir / "run" / "last.pt"
    before = last.read_bytes()
    assert load_checkpoint(last)["step"] == SAVE_EVERY

    resumed = trainer_mod.Trainer(CodecConfig.tiny(), _options(corpus, ckpt_dir, resume=True))
    monkeypatch.setattr(torch, "save", _failing_save(torch.save))
    with pytest.raises(trainer_mod.CheckpointWriteError) as info:
        resumed.fit()
    monkeypatch.undo()
    assert info.value.details["errno"] == errno.ENOSPC
    assert "previous last.pt is intact" in str(info.value)
    assert resumed.step == 2 * SAVE_EVERY  # it trained on, then failed at the next save
    assert last.read_bytes() == before  # previous checkpoint untouched, byte for byte
    assert load_checkpoint(last)["step"] == SAVE_EVERY
    leftovers = [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"half-written temp files left behind: {leftovers}"


def test_cli_train_says_so_when_the_disk_fills_up_and_keeps_the_previous_checkpoint(corpus, tmp_path, cli,
                                                                                    monkeypatch):
    """The same fault through `codecdoctor train`: the user must read that the checkpoint could not
    be written and that the previous one is intact, in one line, not an internal error."""
    ckpt_dir = tmp_path / "ckpts"
    argv = train_argv(corpus, ckpt_dir, resume=False)
    code, out, err = cli(*argv, "--max-steps", str(SAVE_EVERY))
    assert code in (0, 1), err
    last = ckpt_dir / "run" / "last.pt"
    before = last.read_bytes()

    real_save = torch.save
    monkeypatch.setattr(torch, "save", _failing_save(real_save))
    code, out, err = cli(*train_argv(corpus, ckpt_dir, resume=True))
    monkeypatch.setattr(torch, "save", real_save)
    text = out + err
    assert last.read_bytes() == before
    assert "internal error" not in text and "Traceback" not in text, text[-1500:]
    assert code in (1, 2)
    assert "No space left on device" in text or "ENOSPC" in text, text[-1500:]
    assert str(last) in " ".join(text.split()), "the message should name the checkpoint that is still intact"
