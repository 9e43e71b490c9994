"""Training entry points: paradigms through the `lara train` CLI, resume, and a real 2-process
gloo DDP step compared with one process on the same global batch."""
from __future__ import annotations

import csv
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from synthetic import tiny_model_config, tiny_train_config
from lara_policy.cli import main as lara_main
from lara_policy.core.checkpoint import read_config
from lara_policy.core.modeling import LaraModel
from lara_policy.core.policy import LaraPolicy
from lara_policy.core.processing import ChunkDataset
from lara_policy.core.train import global_batch_plan, instruction_embeddings, make_batch

TINY = ["--image-size", "32", "--width", "64", "--horizon", "8", "--euler-steps", "4", "--lam-image-size", "16",
        "--num-queries", "4", "--latent-dim", "8", "--codebook-size", "16", "--threads", "1", "--no-progress",
        "--batch-size", "16", "--log-every", "5"]


def test_cli_paradigms_end_to_end(stores, tmp_path, capsys):
    demos, video = str(stores["demos"]), str(stores["video"])
    # 1. LAM pre-training on video + demos (actions ignored) -> a LAM-only checkpoint
    assert lara_main(["train", "--paradigm", "lam-pretrain", "--data", demos, "--video", video,
                      "--out", str(tmp_path / "lam"), "--steps", "10", *TINY]) == 0
    lam_cfg, _ = read_config(tmp_path / "lam" / "final")
    assert lam_cfg.components == ["lam"]
    with pytest.raises(Exception, match="LAM-only"):
        LaraPolicy.from_checkpoint(tmp_path / "lam" / "final")
    # 2. joint pre-training from that LAM
    assert lara_main(["train", "--paradigm", "pretrain", "--variant", "lara", "--data", demos,
                      "--lam", str(tmp_path / "lam" / "final"), "--out", str(tmp_path / "pre"),
                      "--steps", "10", *TINY]) == 0
    run = tmp_path / "pre"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [5, 10] and float(rows[-1]["loss_lara"]) >= 0
    assert (run / "training_curves.png").stat().st_size > 1000
    assert (run / "checkpoints" / "step_0000010" / "optimizer.safetensors").exists()
    pre_cfg, _ = read_config(run / "final")
    assert pre_cfg.variant == "lara" and pre_cfg.action_space == "ee_delta_xyz_gripper"
    # 3. post-training: same architecture, starting weights from the pretrained VLA
    assert lara_main(["train", "--paradigm", "posttrain", "--variant", "lara", "--data", demos,
                      "--init", str(run / "final"), "--out", str(tmp_path / "post"), "--steps", "5", *TINY]) == 0
    policy = LaraPolicy.from_checkpoint(tmp_path / "post" / "final", device="cpu")
    assert policy.meta.horizon == 8
    # 4. LAM refinement: joint objective, the LAM exported alone
    assert lara_main(["train", "--paradigm", "lam-refine", "--data", demos, "--init", str(run / "final"),
                      "--out", str(tmp_path / "refine"), "--steps", "5", *TINY]) == 0
    refined, _ = read_config(tmp_path / "refine" / "final")
    assert refined.components == ["lam"]
    # posttrain without --init is refused with a clear message
    assert lara_main(["train", "--paradigm", "posttrain", "--data", demos, "--out", str(tmp_path / "x"),
                      "--steps", "1", *TINY]) == 2
    assert "--init" in capsys.readouterr().out


def test_resume_continues_from_checkpoint(stores, tmp_path):
    from lara_policy.core.train import train
    cfg = tiny_train_config(tmp_path, [stores["demos"]], steps=10, save_every=5)
    train(cfg)
    latest = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 10
    cfg2 = tiny_train_config(tmp_path, [stores["demos"]], steps=15, save_every=5, resume=True)
    train(cfg2)
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "metrics.csv"))]
    assert steps == [5, 10, 15], steps                  # continued, not restarted
    assert read_config(tmp_path / "final")[1]["step"] == 15
    # step checkpoints keep raw weights + EMA + optimizer; final/ holds the EMA weights
    from safetensors.torch import load_file
    raw_dir = tmp_path / "checkpoints" / "step_0000015"
    assert (raw_dir / "ema.safetensors").exists() and (raw_dir / "optimizer.safetensors").exists()
    ema, final, raw = (load_file(str(p)) for p in (raw_dir / "ema.safetensors", tmp_path / "final" / "model.safetensors",
                                                     raw_dir / "model.safetensors"))
    key = "action_head.action_out.weight"
    assert torch.equal(ema[key], final[key]) and not torch.equal(raw[key], final[key])


# -- DDP ------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step_inputs(stores_demos: str):
    ds = ChunkDataset([stores_demos], image_size=32, horizon=8, offset=8)
    ds.attach_text(*instruction_embeddings(ds.instructions, 16))
    cfg = tiny_train_config(Path("/tmp"), [stores_demos], batch_size=16)
    return ds, ds.fit_stats(), cfg


def _ddp_worker(rank: int, world: int, port: int, demos: str, text: tuple, out_dir: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ds = ChunkDataset([demos], image_size=32, horizon=8, offset=8)
        ds.attach_text(*text)
        cfg = tiny_train_config(Path("/tmp"), [demos], batch_size=16)
        torch.manual_seed(0)
        model = LaraModel(tiny_model_config("lara"))
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        batch = make_batch(ds, ds.fit_stats(), global_batch_plan(3, cfg, len(ds), 8, 4), cfg, rank, world,
                           torch.device("cpu"))
        loss = ddp(batch, "lara", 0.01, 0.01)["loss"]
        loss.backward()                                   # DDP all-reduces (averages) the gradients
        global_loss = loss.detach().clone()
        dist.all_reduce(global_loss)
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        if rank == 0:
            np.save(Path(out_dir) / "ddp.npy", np.concatenate([[float(global_loss) / world], grads.numpy()]))
    finally:
        dist.destroy_process_group()


def test_ddp_two_process_gloo_step_matches_single_process(stores, tmp_path):
    demos = str(stores["demos"])
    ds, stats, cfg = _step_inputs(demos)
    text = ds.text[0].numpy(), ds.text[1].numpy()
    mp.spawn(_ddp_worker, args=(2, _free_port(), demos, text, str(tmp_path)), nprocs=2, join=True)
    ddp = np.load(tmp_path / "ddp.npy")
    torch.manual_seed(0)
    model = LaraModel(tiny_model_config("lara"))
    batch = make_batch(ds, stats, global_batch_plan(3, cfg, len(ds), 8, 4), cfg, 0, 1, torch.device("cpu"))
    loss = model(batch, "lara", 0.01, 0.01)["loss"]
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).numpy()
    loss = loss.detach()
    assert abs(ddp[0] - float(loss)) < 1e-5 * max(1.0, abs(float(loss))), (ddp[0], float(loss))
    assert ddp.shape[0] - 1 == grads.shape[0]
    np.testing.assert_allclose(ddp[1:], grads, rtol=1e-3, atol=1e-6)
