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
from lara_policy.core.train_data import global_batch_plan, instruction_embeddings, make_batch

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
    # 3. post-training: same architecture, starting weights from the pretrained VLA. With 0
    #    steps the result IS the init (every weight loaded, EMA started from them)...
    init = run / "final"
    assert lara_main(["train", "--paradigm", "posttrain", "--variant", "lara", "--data", demos,
                      "--init", str(init), "--out", str(tmp_path / "post0"), "--steps", "0", *TINY]) == 0
    w_init, w_post0 = _weights(init), _weights(tmp_path / "post0" / "final")
    assert set(w_init) == set(w_post0)
    for k in w_init:
        if k != "lam.latent_mean":               # re-estimated over the (same) data at the end
            assert torch.equal(w_init[k], w_post0[k]), k
    # ... and training moves it; the normalisation stays the init's
    assert lara_main(["train", "--paradigm", "posttrain", "--variant", "lara", "--data", demos,
                      "--init", str(init), "--out", str(tmp_path / "post"), "--steps", "5", *TINY]) == 0
    w_post = _weights(tmp_path / "post" / "final")
    assert not torch.equal(w_init["action_head.action_out.weight"], w_post["action_head.action_out.weight"])
    assert json.loads((tmp_path / "post" / "final" / "stats.json").read_text()) == \
        json.loads((init / "stats.json").read_text())
    policy = LaraPolicy.from_checkpoint(tmp_path / "post" / "final", device="cpu")
    assert policy.meta.horizon == 8
    # 4. LAM refinement: joint objective, the (changed) LAM exported alone
    assert lara_main(["train", "--paradigm", "lam-refine", "--data", demos, "--init", str(init),
                      "--out", str(tmp_path / "refine"), "--steps", "5", *TINY]) == 0
    refined, _ = read_config(tmp_path / "refine" / "final")
    assert refined.components == ["lam"]
    w_ref = _weights(tmp_path / "refine" / "final")
    assert set(w_ref) == {k for k in w_init if k.startswith("lam.")}
    assert not torch.equal(w_ref["lam.idm_encoder.net.0.weight"], w_init["lam.idm_encoder.net.0.weight"])
    # posttrain without --init is refused with a clear message
    capsys.readouterr()
    assert lara_main(["train", "--paradigm", "posttrain", "--data", demos, "--out", str(tmp_path / "x"),
                      "--steps", "1", *TINY]) == 2
    assert "--init" in capsys.readouterr().err


def _weights(ckpt) -> dict:
    from safetensors.torch import load_file
    return load_file(str(Path(ckpt) / "model.safetensors"))


def _store_like(path, cameras=("corner4",), state_names=None, action_space="ee_delta_xyz_gripper", seed=5):
    """A tiny synthetic store whose cameras / state names / action space can differ."""
    from synthetic import STATE_NAMES, TASKS, make_episode
    from lara_policy.formats.store import EpisodeStore, StoreMeta
    meta = StoreMeta(env="synthetic-square", action_space=action_space, action_dim=4, state_dim=7,
                     cameras=list(cameras), image_size=(40, 40), dt=0.0125,
                     state_names=list(state_names or STATE_NAMES), phrasings={k: [v] for k, v in TASKS.items()})
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(path, meta, overwrite=True) as store:
        for task in TASKS:
            store.append(make_episode(rng, task, 20, 40, False, list(cameras)))
    return str(path)


def test_posttrain_refuses_data_that_does_not_fit_the_init(stores, trained_run, tmp_path, capsys):
    """Cameras, state names and action space of the store must be the init checkpoint's; a LAM
    trained on another frame offset C is refused; every refusal is exit 2 with the reason on stderr."""
    from synthetic import STATE_NAMES
    cases = {
        "wrist": (_store_like(tmp_path / "wrist.hdf5", cameras=("wrist",)), "corner4"),
        "state": (_store_like(tmp_path / "state.hdf5", state_names=["q%d" % i for i in range(7)]), "state names"),
        "space": (_store_like(tmp_path / "space.hdf5", action_space="joint_delta"), "action space"),
    }
    for paradigm in ("posttrain", "lam-refine"):
        for name, (store, why) in cases.items():
            capsys.readouterr()
            assert lara_main(["train", "--paradigm", paradigm, "--data", store, "--init", str(trained_run),
                              "--out", str(tmp_path / f"{paradigm}-{name}"), "--steps", "1", *TINY]) == 2, name
            err = capsys.readouterr().err
            assert why in err and "Traceback" not in err, (paradigm, name, err)
    # a two-camera store that HAS the init's camera: the model reads exactly the init's camera set
    from lara_policy.core.train import train
    final = train(tiny_train_config(tmp_path / "two", [stores["two_cams"]], paradigm="posttrain",
                                    init=str(trained_run), steps=1))
    assert read_config(final)[0].vla.cameras == ["corner4"]
    assert STATE_NAMES == read_config(final)[0].state_names
    # --lam from a run with another C (horizon 8 -> C = 8) under a horizon-4 run
    capsys.readouterr()
    assert lara_main(["train", "--paradigm", "pretrain", "--data", str(stores["demos"]), "--lam", str(trained_run),
                      "--out", str(tmp_path / "c4"), "--steps", "1", *TINY, "--horizon", "4"]) == 2
    assert "C=8" in capsys.readouterr().err
    # a post-trained checkpoint also refuses the layouts its init was trained on
    seeds = json.loads((final / "train_seeds.json").read_text())
    init_seeds = json.loads((trained_run / "train_seeds.json").read_text())
    assert all(set(v) <= set(seeds[t]) for t, v in init_seeds.items())


def test_config_validation(stores, tmp_path, capsys):
    """--depth 2 (align_block -1 -> block 0) is a clear error, not a crash in the DiT."""
    from lara_policy.core.configuration import ModelConfig
    assert lara_main(["train", "--data", str(stores["demos"]), "--out", str(tmp_path / "d2"), "--steps", "1",
                      *TINY, "--depth", "2"]) == 2
    err = capsys.readouterr().err
    assert "align" in err and "depth" in err and "Traceback" not in err
    cfg = ModelConfig()
    cfg.vla.depth, cfg.vla.align_block = 2, 1
    LaraModel(cfg)                                   # an explicit block works
    cfg.vla.align_block = 3
    with pytest.raises(ValueError, match="align"):
        LaraModel(cfg)
    cfg.vla.align_block, cfg.components = 0, ["vla", "lam"]
    cfg.variant = "dit_only"                          # no alignment: any depth
    LaraModel(cfg)


def test_frozen_lam_training_leaves_the_lam_bit_identical(stores, tmp_path):
    """frozen_lam through train(): every LAM tensor of the --lam checkpoint, latent_mean
    included, comes out unchanged (the VLA trains)."""
    from lara_policy.core.train import train
    lam = train(tiny_train_config(tmp_path / "lam", [stores["demos"]], paradigm="lam-pretrain", steps=10))
    final = train(tiny_train_config(tmp_path / "frozen", [stores["demos"]], variant="frozen_lam", lam=str(lam),
                                    steps=6, lr=1e-2))
    before, after = _weights(lam), _weights(final)
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert any(k.startswith("action_head.") for k in after)


def test_frozen_targets_equal_the_lam_forward(stores):
    """LatentActionModel.frozen_targets (encode only, no FDM) gives forward()'s z and codes."""
    from synthetic import tiny_model_config
    torch.manual_seed(0)
    lam = LaraModel(tiny_model_config()).lam.eval()
    ds = ChunkDataset([str(stores["demos"])], image_size=32, horizon=8, offset=8)
    ds.attach_text(*instruction_embeddings(ds.instructions, 16))
    b = ds.batch(np.arange(0, 60, 5), ds.fit_stats())
    with torch.no_grad():
        full = lam(b["image_t"], b["image_tc"])
    fast = lam.frozen_targets(b["image_t"], b["image_tc"])
    assert torch.equal(full["z"], fast["z"]) and torch.equal(full["indices"], fast["indices"])


def test_resume_equals_an_uninterrupted_run(stores, tmp_path):
    """15 steps straight == 10 steps, stop, resume to 15 (same batches): same final weights.
    And a checkpoint without ema.safetensors restarts the EMA from the RESUMED weights."""
    import shutil
    from lara_policy.core.train import train
    straight = tmp_path / "straight"
    train(tiny_train_config(straight, [stores["demos"]], steps=15, save_every=5))
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints" / "step_0000010", resumed / "checkpoints" / "step_0000010")
    (resumed / "checkpoints" / "latest.json").write_text(json.dumps({"path": "checkpoints/step_0000010", "step": 10}))
    train(tiny_train_config(resumed, [stores["demos"]], steps=15, save_every=5, resume=True))
    for which in ("checkpoints/step_0000015", "final"):
        a, b = _weights(straight / which), _weights(resumed / which)
        for k in a:
            assert torch.equal(a[k], b[k]), (which, k)
    # no EMA file: the EMA must start from the step-10 weights, not from a fresh initialisation
    noema = tmp_path / "noema"
    (noema / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints" / "step_0000010", noema / "checkpoints" / "step_0000010")
    (noema / "checkpoints" / "step_0000010" / "ema.safetensors").unlink()
    raw10 = _weights(noema / "checkpoints" / "step_0000010")
    (noema / "checkpoints" / "latest.json").write_text(json.dumps({"path": "checkpoints/step_0000010", "step": 10}))
    train(tiny_train_config(noema, [stores["demos"]], steps=10, resume=True))     # 0 more steps
    final = _weights(noema / "final")
    for k in raw10:
        if k != "lam.latent_mean":
            assert torch.equal(raw10[k], final[k]), k


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


def _step_inputs(stores_demos: str, video: list[str] = ()):
    ds = ChunkDataset([stores_demos], list(video), image_size=32, horizon=8, offset=8)
    ds.attach_text(*instruction_embeddings(ds.instructions, 16))
    cfg = tiny_train_config(Path("/tmp"), [stores_demos], video=list(video), batch_size=16)
    return ds, ds.fit_stats(), cfg


def _plan(ds, cfg, step: int = 3):
    return global_batch_plan(step, cfg, len(ds), 8, 4, ds.has_action > 0)


def _ddp_worker(rank: int, world: int, port: int, demos: str, video: list, step: int, text: tuple, out_dir: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ds, stats, cfg = _step_inputs(demos, video)
        ds.attach_text(*text)
        torch.manual_seed(0)
        model = LaraModel(tiny_model_config("lara"))
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        batch = make_batch(ds, stats, _plan(ds, cfg, step), cfg, rank, world, torch.device("cpu"))
        loss = ddp(batch, "lara", 0.01, 0.01)["loss"]
        loss.backward()                                   # DDP all-reduces (averages) the gradients
        global_loss = loss.detach().clone()
        dist.all_reduce(global_loss)
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        if rank == 0:
            np.save(Path(out_dir) / "ddp.npy", np.concatenate([[float(global_loss) / world], grads.numpy()]))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("mixed", [False, True], ids=["labelled", "labelled+action-free"])
def test_ddp_two_process_gloo_step_matches_single_process(stores, tmp_path, mixed):
    """A 2-rank gloo step equals one process on the same global batch, also when the ranks' slices
    hold different numbers of labelled samples (L_ACT / L_LARA normalised by the global count)."""
    demos = str(stores["demos"])
    video = [str(stores["video"])] if mixed else []
    ds, stats, cfg = _step_inputs(demos, video)
    step = 3
    if mixed:   # the case that broke rank-local normalisation: unequal labelled counts per rank
        def labelled(k):
            return ds.has_action[_plan(ds, cfg, k)["index"]] > 0
        step = next(k for k in range(100) if labelled(k)[:8].sum() != labelled(k)[8:].sum())
        assert 0 < labelled(step).sum() < 16
    text = ds.text[0].numpy(), ds.text[1].numpy()
    mp.spawn(_ddp_worker, args=(2, _free_port(), demos, video, step, text, str(tmp_path)), nprocs=2, join=True)
    ddp = np.load(tmp_path / "ddp.npy")
    torch.manual_seed(0)
    model = LaraModel(tiny_model_config("lara"))
    batch = make_batch(ds, stats, _plan(ds, cfg, step), cfg, 0, 1, torch.device("cpu"))
    loss = model(batch, "lara", 0.01, 0.01)["loss"]
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).numpy()
    loss = loss.detach()
    assert abs(ddp[0] - float(loss)) < 1e-5 * max(1.0, abs(float(loss))), (ddp[0], float(loss))
    assert ddp.shape[0] - 1 == grads.shape[0]
    np.testing.assert_allclose(ddp[1:], grads, rtol=1e-3, atol=1e-6)


# -- gradient clipping per module group (issue 26) ------------------------------------------

def _vla_weights(run) -> dict:
    return {k: v for k, v in _weights(run).items() if k.startswith(("observation_encoder.", "action_head."))}


@pytest.mark.parametrize("scope", ["group", "global"])
def test_lara_at_zero_alignment_weight_trains_the_dit_only_vla(stores, tmp_path, scope):
    """With clipping per module group, lara at w_LARA = 0 trains bit-for-bit the VLA that dit_only
    trains (same seed, batches and noise): the LAM's gradient cannot reach the VLA's step. With one
    global clip (the old behaviour) the LAM's gradient norm shrinks the VLA's step and they differ.
    A tight clip (0.05) keeps clipping active on every step."""
    from lara_policy.core.train import train
    common = dict(video=[str(stores["video"])], steps=8, lr=5e-3, grad_clip=0.05, grad_clip_scope=scope,
                  ema_decay=0.0)
    dit = train(tiny_train_config(tmp_path / "dit", [stores["demos"]], variant="dit_only", **common))
    lara = train(tiny_train_config(tmp_path / "lara", [stores["demos"]], variant="lara", w_lara=0.0, **common))
    a, b = _vla_weights(dit), _vla_weights(lara)
    assert a.keys() == b.keys() and len(a) > 10
    same = all(torch.equal(a[k], b[k]) for k in a)
    if scope == "group":
        assert same, [k for k in a if not torch.equal(a[k], b[k])][:5]
    else:
        assert not same


def test_alignment_gradient_ratio_scales_with_the_weight_and_is_logged(stores, tmp_path):
    """grad_ratio_lara_act = ||w grad L_LARA|| / ||grad L_ACT|| on the VLA weights both reach:
    linear in w on one batch, absent for dit_only, and logged to metrics.csv when asked."""
    from lara_policy.core.optim import alignment_gradient_ratio, module_groups
    from lara_policy.core.train import train
    torch.manual_seed(0)
    model = LaraModel(tiny_model_config("lara")).train()
    ds = ChunkDataset([str(stores["demos"])], image_size=32, horizon=8, offset=8)
    ds.attach_text(*instruction_embeddings(ds.instructions, 16))
    batch = ds.batch(np.arange(0, 60, 4), ds.fit_stats())
    losses = model(batch, "lara", 0.01, 0.01)
    vla = module_groups(model)["vla"]
    r1, r100 = alignment_gradient_ratio(losses, vla, 0.01), alignment_gradient_ratio(losses, vla, 1.0)
    assert r1 > 0 and r100 == pytest.approx(100 * r1, rel=1e-5)
    # the ratio's backward passes leave the step's own graph usable
    losses["loss"].backward()
    assert all(p.grad is not None for p in vla)
    dit = LaraModel(tiny_model_config("dit_only")).train()
    assert alignment_gradient_ratio(dit(batch, "dit_only"), module_groups(dit)["vla"], 0.01) is None

    run = tmp_path / "ratio"
    train(tiny_train_config(run, [stores["demos"]], steps=10, log_every=5, grad_ratio_every=5))
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [float(r["grad_ratio_lara_act"]) > 0 for r in rows] == [True, True]


def test_photometric_augmentation_reaches_only_the_vla_images(stores):
    """--aug-photometric: brightness/contrast/channel gain on the VLA's images, drawn from the step's
    plan (same plan, same batch), the LAM's pair untouched, and off (0) leaves the plan and the
    batch exactly as before."""
    from lara_policy.core.configuration import TrainConfig
    ds = ChunkDataset([str(stores["demos"])], image_size=32, horizon=8, offset=8)
    ds.attach_text(*instruction_embeddings(ds.instructions, 16))
    stats = ds.fit_stats()
    off, on = TrainConfig(batch_size=16, seed=3), TrainConfig(batch_size=16, seed=3, aug_photometric=1.0)
    p_off, p_on = global_batch_plan(5, off, len(ds), 8, 4), global_batch_plan(5, on, len(ds), 8, 4)
    assert "photometric" not in p_off
    for k in ("index", "shifts", "noise", "tau"):          # the other draws are unchanged
        assert np.array_equal(np.asarray(p_off[k]), np.asarray(p_on[k])), k
    cpu = torch.device("cpu")
    b_off, b_on = make_batch(ds, stats, p_off, off, 0, 1, cpu), make_batch(ds, stats, p_on, on, 0, 1, cpu)
    again = make_batch(ds, stats, global_batch_plan(5, on, len(ds), 8, 4), on, 0, 1, cpu)
    assert torch.equal(b_on["images"], again["images"])
    assert torch.equal(b_off["image_t"], b_on["image_t"]) and torch.equal(b_off["image_tc"], b_on["image_tc"])
    assert b_on["images"].min() >= 0 and b_on["images"].max() <= 1
    change = (b_on["images"] - b_off["images"]).abs().mean((1, 2, 3, 4))
    assert (change > 0.01).float().mean() > 0.8                       # nearly every sample is changed
    # a per-channel gain: the channel means of a sample move by different factors
    ratio = b_on["images"].mean((1, 3, 4)) / b_off["images"].mean((1, 3, 4)).clamp(min=1e-3)
    assert (ratio.max(1).values - ratio.min(1).values).mean() > 0.05
