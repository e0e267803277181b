"""DDP on CPU (gloo): two ranks train a few steps; codebooks and EMA buffers end identical.

DDP is built with broadcast_buffers=False, so equality comes from the quantizer all-reducing its
batch statistics (and broadcasting k-means seeds / revived codes), not from rank 0 overwriting.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent("""
    import os, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {root!r})
    from codecdoctor_model import CodecConfig
    from codecdoctor_model.trainer import Trainer, TrainOptions
    opts = TrainOptions(data_dir={data!r}, checkpoint_dir={ckpt!r}, experiment_name="ddp", batch_size=2,
                        num_epochs=1, steps_per_epoch=4, segment_seconds=0.25, max_val_crops=2, learning_rate=2e-3)
    trainer = Trainer(CodecConfig.tiny(), opts)
    trainer.fit()
    buffers = {{k: v for k, v in trainer.model.state_dict().items() if "quantizer" in k}}
    params = {{k: v for k, v in trainer.model.state_dict().items() if "quantizer" not in k}}
    torch.save({{"buffers": buffers, "params": params, "revived": [l.revived_total for l in trainer.model.quantizer.levels]}},
               os.path.join({out!r}, "rank%d.pt" % trainer.rank))
    trainer.close()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_rank_gloo_run_keeps_codebooks_identical(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        t = np.arange(32000) / 16000
        x = 0.3 * np.sin(2 * np.pi * (120 + 60 * i) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(str(data / f"f{i}.wav"), x.astype(np.float32), 16000, subtype="FLOAT")
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT), data=str(data), ckpt=str(tmp_path / "ckpt"), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    names = [k for k in r0["buffers"] if k.endswith(("embed", "embed_avg", "cluster_size", "initted"))]
    assert len(names) == 4 * 2  # two levels × four buffers
    for name in names:
        assert torch.equal(r0["buffers"][name], r1["buffers"][name]), name
    for name in r0["params"]:  # DDP's gradient all-reduce keeps the weights equal too
        assert torch.allclose(r0["params"][name], r1["params"][name], atol=1e-6), name
    assert bool(r0["buffers"]["quantizer.levels.0.initted"])
    assert (tmp_path / "ckpt" / "ddp" / "last.pt").exists()
