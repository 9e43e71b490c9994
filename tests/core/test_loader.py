"""GPU-ready training on CPU with tiny shapes (issue 23, item 4): the lazy loader (HDF5 stores and
LeRobot v3 folders read frame by frame, in DataLoader worker processes) gives the batches of the
in-memory path bit for bit; gradient accumulation equals one big batch; bf16 autocast; --device."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synthetic import make_store, tiny_model_config, tiny_train_config
from lara_policy.cli import main as lara_main
from lara_policy.core.loader import LazyChunkDataset, StepLoader
from lara_policy.core.modeling import LaraModel
from lara_policy.core.optim import make_optimizer, module_groups
from lara_policy.core.processing import ChunkDataset
from lara_policy.core.step import train_step
from lara_policy.core.train_data import instruction_embeddings, step_batches

CPU = torch.device("cpu")


def _pair(paths, video=(), size=32):
    a = ChunkDataset([str(p) for p in paths], [str(v) for v in video], image_size=size, horizon=8, offset=8)
    b = LazyChunkDataset([str(p) for p in paths], [str(v) for v in video], image_size=size, horizon=8, offset=8)
    text = instruction_embeddings(a.instructions, 16)
    a.attach_text(*text)
    b.attach_text(*text)
    return a, b


def _same_batches(x: dict, y: dict) -> None:
    assert x["act_weights"] == y["act_weights"]
    assert len(x["micro"]) == len(y["micro"])
    for bx, by in zip(x["micro"], y["micro"]):
        assert bx.keys() == by.keys()
        for k in bx:
            assert torch.equal(bx[k], by[k]), k


@pytest.mark.parametrize("which", ["demos+video", "two_cams"])
def test_lazy_reader_gives_the_in_memory_batches(stores, which):
    paths, video = ([stores["demos"]], [stores["video"]]) if which == "demos+video" else ([stores["two_cams"]], [])
    mem, lazy = _pair(paths, video)
    for k in ("states", "actions", "has_action", "ep_end", "instruction_id"):
        np.testing.assert_array_equal(getattr(mem, k), getattr(lazy, k))
    assert mem.info == lazy.info and mem.instructions == lazy.instructions
    assert not hasattr(lazy, "images")                         # no image is held in memory
    cfg = tiny_train_config("/tmp", paths, video=list(video), batch_size=8, grad_accum=2, aug_shift=2,
                            aug_photometric=0.5)
    stats = mem.fit_stats()
    for step in (0, 7):
        _same_batches(step_batches(mem, stats, cfg, step, 0, 1, 8, 4, CPU),
                      step_batches(lazy, stats, cfg, step, 0, 1, 8, 4, CPU))
    lazy.close()


def test_lazy_reader_of_a_lerobot_folder_decodes_the_frames_of_the_whole_episode_decode(stores, tmp_path):
    """Frames decoded one by one (seek to the keyframe before) equal those ChunkDataset gets by
    decoding each whole episode, so lazy training on a v3 folder sees the same samples."""
    from lara_policy.formats.lerobot import write_lerobot
    root = tmp_path / "v3"
    write_lerobot(str(stores["two_cams"]), root)
    mem, lazy = _pair([root])
    cfg = tiny_train_config("/tmp", [root], batch_size=8)
    stats = mem.fit_stats()
    for step in (0, 3):
        _same_batches(step_batches(mem, stats, cfg, step, 0, 1, 8, 4, CPU),
                      step_batches(lazy, stats, cfg, step, 0, 1, 8, 4, CPU))
    assert len(lazy.timestamps) == 2                           # per-frame times kept for the seek
    lazy.close()


def test_worker_processes_do_not_inherit_a_video_decoder_to_free(stores, tmp_path, monkeypatch):
    """Garbage left in the parent holding a PyAV decoder with live threads (a LeRobot reader in a
    reference cycle): freed in a forked worker, it waited forever for threads the fork did not
    copy (seen: the suite hung). The loader collects before forking and freezes what the workers
    inherit; a stuck worker would fail here after 60 s instead of hanging."""
    import gc
    from lara_policy.core import loader as loader_mod
    from lara_policy.formats.frames import open_frame_reader
    from lara_policy.formats.lerobot import write_lerobot
    monkeypatch.setattr(loader_mod, "WORKER_TIMEOUT_S", 60)
    root = tmp_path / "v3"
    write_lerobot(str(stores["two_cams"]), root)
    mem, lazy = _pair([root])
    cfg = tiny_train_config("/tmp", [root], batch_size=8)
    stats = mem.fit_stats()
    gc.collect()
    for _ in range(3):                 # made last: still uncollected when the loader forks
        reader = open_frame_reader(root)
        low = reader.lowdim(0)
        reader.frames(0, reader.meta.cameras[0], [3], low.timestamps)      # decoder threads running
        reader.cycle = reader                                                # garbage only gc frees
        del reader
    loader = StepLoader(lazy, stats, cfg, 0, 1, 8, 4, start=0, stop=3, device=CPU, workers=1)
    for step in range(3):
        _same_batches(loader.get(step), step_batches(mem, stats, cfg, step, 0, 1, 8, 4, CPU))
    loader.close()
    lazy.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_step_loader_in_worker_processes_keeps_the_steps(stores, workers):
    """A DataLoader item is a whole step: worker processes (own file handles) deliver each step's
    batches, in order, equal to the plan of (seed, step) made in this process; DDP ranks get
    their slices."""
    mem, lazy = _pair([stores["demos"]], [stores["video"]])
    cfg = tiny_train_config("/tmp", [stores["demos"]], video=[str(stores["video"])], batch_size=8, grad_accum=2)
    stats = mem.fit_stats()
    data = lazy if workers else mem
    for rank, world in ((0, 1), (1, 2)):
        loader = StepLoader(data, stats, cfg, rank, world, 8, 4, start=2, stop=6, device=CPU, workers=workers)
        for step in range(2, 6):
            got = loader.get(step)
            assert got["micro"][0]["state"].shape[0] == 8 // world
            _same_batches(got, step_batches(mem, stats, cfg, step, rank, world, 8, 4, CPU))
        loader.close()


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("variant", ["dit_only", "frozen_lam"])
def test_grad_accumulation_equals_one_batch_of_the_whole_size(stores, variant):
    """accum 2 x batch 4 == batch 8: the same 8 samples, noise and flow times (one plan of 8), the
    gradient summed over the two micro-batches equals the one-batch gradient. The micro-batches
    hold different numbers of labelled samples (action-free video mixed in), so weighting each
    by 1/2 instead of its labelled share would be wrong; no clipping, so a wrong scale shows."""
    ds, _ = _pair([stores["demos"]], [stores["video"]])
    stats = ds.fit_stats()
    base = dict(video=[str(stores["video"])], grad_clip=0.0, ema_decay=0.0, variant=variant, aug_shift=2)
    one = tiny_train_config("/tmp", [stores["demos"]], batch_size=8, grad_accum=1, **base)
    two = tiny_train_config("/tmp", [stores["demos"]], batch_size=4, grad_accum=2, **base)
    step = next(k for k in range(200)
                if len(set(step_batches(ds, stats, two, k, 0, 1, 8, 4, CPU)["act_weights"])) == 2
                and 0 not in step_batches(ds, stats, two, k, 0, 1, 8, 4, CPU)["act_weights"])
    results = []
    for cfg in (one, two):
        torch.manual_seed(0)
        model = LaraModel(tiny_model_config(variant)).train()
        if variant == "frozen_lam":
            model.lam.requires_grad_(False)
            model.lam.eval()
        opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
        got = step_batches(ds, stats, cfg, step, 0, 1, 8, 4, CPU)
        losses = train_step(model, model, opt, module_groups(model), None, got["micro"], cfg, variant, False, step,
                            act_weights=got["act_weights"])
        results.append((_grads(model), float(losses["loss"].detach()), float(losses["loss_act"].detach())))
    (g1, l1, a1), (g2, l2, a2) = results
    assert torch.equal(torch.cat([b["state"] for b in step_batches(ds, stats, two, step, 0, 1, 8, 4, CPU)["micro"]]),
                       step_batches(ds, stats, one, step, 0, 1, 8, 4, CPU)["micro"][0]["state"])
    assert l2 == pytest.approx(l1, rel=1e-5) and a2 == pytest.approx(a1, rel=1e-5)
    torch.testing.assert_close(g2, g1, rtol=1e-4, atol=1e-7)
    # the labelled share matters: equal weights would give another gradient
    w = step_batches(ds, stats, two, step, 0, 1, 8, 4, CPU)["act_weights"]
    assert abs(w[0] - 0.5) > 0.05


def test_grad_accumulation_run_trains_the_one_batch_run(stores, tmp_path):
    """Whole runs: 6 steps of batch 4 x accum 2 end at the weights of 6 steps of batch 8 (dit_only):
    the two differ by float summation order only, ~1e-3 of how far training moved the weights
    (Adam divides by sqrt(v), so near-zero gradients amplify rounding; the exact check of the
    gradient is the test above)."""
    from lara_policy.core.train import train
    from safetensors.torch import load_file
    common = dict(variant="dit_only", steps=6, ema_decay=0.0, video=[str(stores["video"])])
    a = train(tiny_train_config(tmp_path / "b8", [stores["demos"]], batch_size=8, **common))
    b = train(tiny_train_config(tmp_path / "b4x2", [stores["demos"]], batch_size=4, grad_accum=2, **common))
    c = train(tiny_train_config(tmp_path / "b4", [stores["demos"]], batch_size=4, **common))
    wa, wb, wc = (load_file(str(x / "model.safetensors")) for x in (a, b, c))
    torch.manual_seed(0)
    init = LaraModel(tiny_model_config("dit_only")).state_dict()
    keys = [k for k in wa if k in init and wa[k].is_floating_point()]

    def dist(x, y):
        return float(torch.sqrt(sum(((x[k] - y[k]).double() ** 2).sum() for k in keys)))
    moved = dist(wa, init)
    assert moved > 0.1                                   # the runs trained
    assert dist(wb, wa) < 1e-2 * moved, (dist(wb, wa), moved)
    assert dist(wc, wa) > 0.1 * moved                    # batch 4 alone is another run


def test_bf16_lara_run_keeps_the_lam_statistics_in_fp32(stores, tmp_path):
    """bf16 autocast makes the LAM's batch mean and latents bfloat16; the running mean and the
    codebook it maintains stay fp32 (a mixed-dtype lerp_ failed at the second step)."""
    from lara_policy.core.train import train
    from safetensors.torch import load_file
    for accum in (1, 2):
        final = train(tiny_train_config(tmp_path / f"a{accum}", [stores["demos"]], video=[str(stores["video"])],
                                        steps=4, batch_size=8, grad_accum=accum, precision="bf16"))
        w = load_file(str(final / "model.safetensors"))
        assert w["lam.latent_mean"].dtype == torch.float32 and torch.isfinite(w["lam.latent_mean"]).all()
        assert w["lam.quantizer.codebook"].dtype == torch.float32


def test_bf16_autocast_runs_the_forward_in_bfloat16(stores):
    """--precision bf16: the forward's matmuls run in bfloat16 (seen by a hook), the weights and
    gradients stay fp32, and the loss is close to the fp32 loss of the same batch."""
    ds, _ = _pair([stores["demos"]])
    stats = ds.fit_stats()
    dtypes, losses = [], {}
    for precision in ("fp32", "bf16"):
        cfg = tiny_train_config("/tmp", [stores["demos"]], batch_size=8, precision=precision, variant="lara")
        torch.manual_seed(0)
        model = LaraModel(tiny_model_config("lara")).train()
        hook = model.action_head.action_out.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        opt = make_optimizer(list(model.parameters()), cfg)
        got = step_batches(ds, stats, cfg, 1, 0, 1, 8, 4, CPU)
        out = train_step(model, model, opt, module_groups(model), None, got["micro"], cfg, "lara", False, 1)
        hook.remove()
        losses[precision] = float(out["loss"].detach())
        assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
                   for p in model.parameters())
        assert np.isfinite(losses[precision])
    assert dtypes == [torch.float32, torch.bfloat16]
    assert losses["bf16"] != losses["fp32"] and losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


TINY = ["--image-size", "32", "--width", "64", "--horizon", "8", "--euler-steps", "4", "--lam-image-size", "16",
        "--num-queries", "4", "--latent-dim", "8", "--codebook-size", "16", "--threads", "1", "--quiet",
        "--batch-size", "8", "--log-every", "2"]


def test_cli_lazy_workers_bf16_accum_on_cpu(stores, tmp_path, capsys):
    """The GPU recipe's flags, run with device=cpu: the same code path a CUDA run takes (lazy
    loader in 2 worker processes, bf16 autocast, accumulation, validation and calibration on the
    device); --device cuda without CUDA is one clear error line."""
    import csv
    out = tmp_path / "run"
    assert lara_main(["train", "--data", str(stores["demos"]), "--video", str(stores["video"]), "--val",
                      str(stores["demos"]), "--val-every", "2", "--out", str(out), "--steps", "4", "--device", "cpu",
                      "--precision", "bf16", "--grad-accum", "2", "--workers", "2", *TINY]) == 0
    text = capsys.readouterr().out
    assert "precision=bf16 grad_accum=2 workers=2 (lazy)" in text
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4] and all(float(r["val_loss_act"]) > 0 for r in rows)
    assert (out / "final" / "model.safetensors").exists()
    if not torch.cuda.is_available():
        assert lara_main(["train", "--data", str(stores["demos"]), "--out", str(tmp_path / "c"), "--steps", "1",
                          "--device", "cuda", *TINY]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_lazy_memory_does_not_hold_images(tmp_path):
    """The lazy dataset's arrays grow with the frames' low-dimensional part only: 10x the
    episodes, ~10x ~90 bytes a frame, not the images (40x40x3 = 4800 bytes a frame here)."""
    small = make_store(tmp_path / "s.hdf5", episodes=2, steps=30, size=40)
    big = make_store(tmp_path / "b.hdf5", episodes=20, steps=30, size=40)

    def held(ds):
        return sum(getattr(ds, k).nbytes for k in ("states", "actions", "has_action", "ep_end", "instruction_id",
                                                   "where"))
    s, b = LazyChunkDataset([str(small)], image_size=32), LazyChunkDataset([str(big)], image_size=32)
    assert len(b) == 10 * len(s)
    assert held(b) / len(b) < 120                              # bytes per frame
    assert ChunkDataset([str(big)], image_size=32).images.numel() / len(b) == 3 * 32 * 32


def test_lazy_workers_run_trains_the_in_memory_run_bit_for_bit(stores, tmp_path):
    """--workers 2 (lazy, worker processes) vs --workers 0 (in memory): identical final weights.
    (Without its own generator the DataLoader's seed draw advanced the global RNG, which the
    LAM's dead-code re-seeding uses: the runs drifted apart.)"""
    from lara_policy.core.train import train
    from safetensors.torch import load_file
    common = dict(video=[str(stores["video"])], steps=8, aug_photometric=0.3)
    a = train(tiny_train_config(tmp_path / "mem", [stores["demos"]], **common))
    b = train(tiny_train_config(tmp_path / "lazy", [stores["demos"]], workers=2, **common))
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])][:5]


# -- frozen-feature cache ----------------------------------------------------------------------

def _frozen_model_config(mode: str = "frozen"):
    m = tiny_model_config("dit_only")
    m.vla.vision_backbone, m.vla.vision_train, m.vla.vision_weights = "efficientnet_lite0", mode, ""
    return m


def test_feature_cache_feeds_the_frozen_features_of_each_frame(stores, tmp_path):
    """A frozen backbone, no augmentation: every frame's frozen features computed once into a
    memory-mapped float16 file; a batch carries them (== vision.features of its images within
    float16 rounding) and the model's loss on it equals the loss on the images."""
    from lara_policy.core.features import build_feature_cache, cache_reason
    ds, _ = _pair([stores["two_cams"]])
    stats = ds.fit_stats()
    cfg = tiny_train_config("/tmp", [stores["two_cams"]], batch_size=8, aug_shift=0, variant="dit_only",
                            model=_frozen_model_config())
    torch.manual_seed(0)
    model = LaraModel(_frozen_model_config()).train()
    assert cache_reason(model, cfg) is None
    plain = step_batches(ds, stats, cfg, 2, 0, 1, 8, 4, CPU)["micro"][0]
    ds.feature_cache = build_feature_cache(model, ds, CPU, tmp_path / "fc", log=lambda m: None)
    cached = step_batches(ds, stats, cfg, 2, 0, 1, 8, 4, CPU)["micro"][0]
    assert ds.feature_cache.array.dtype == np.float16 and len(ds.feature_cache) == len(ds)
    assert isinstance(ds.feature_cache.array, np.memmap)
    vision = model.observation_encoder.vision
    direct = vision.features(plain["images"].flatten(0, 1)).view(8, 2, *vision.feature_shape)
    torch.testing.assert_close(cached["vision_features"], direct, rtol=2e-3, atol=2e-3)
    enc = model.observation_encoder
    with torch.no_grad():
        args = (cached["state"], cached["text"], cached["text_mask"])
        from_images = enc(plain["images"], *args)[0]
        from_cache = enc(cached["images"], *args, cached["vision_features"])[0]
        noise_in = enc(cached["images"], *args, torch.randn_like(cached["vision_features"]))[0]
        a = float(model(plain, "dit_only")["loss_act"])
        b = float(model(cached, "dit_only")["loss_act"])
    torch.testing.assert_close(from_cache, from_images, rtol=1e-2, atol=1e-2)
    assert (noise_in - from_images).abs().max() > 0.1          # the tokens come from the features given
    assert b == pytest.approx(a, rel=1e-3)
    # not cacheable: a fully trained backbone, or augmentation
    assert "trains fully" in cache_reason(LaraModel(_frozen_model_config("full")), cfg)
    assert "augmentation" in cache_reason(model, tiny_train_config("/tmp", [], aug_shift=2))
    assert cache_reason(model, tiny_train_config("/tmp", [], aug_shift=0, feature_cache="off")) == "--feature-cache off"


def test_training_with_the_feature_cache_trains_the_uncached_run_and_reuses_it(stores, tmp_path, capsys):
    from lara_policy.core.train import train
    from safetensors.torch import load_file
    common = dict(variant="dit_only", steps=6, ema_decay=0.0, aug_shift=0, batch_size=8,
                  model=_frozen_model_config())
    a = train(tiny_train_config(tmp_path / "cached", [stores["demos"]], **common))
    text = capsys.readouterr().out
    assert "feature cache: 180 frames x 1 cameras" in text
    files = list((tmp_path / "cached" / "feature_cache").glob("*.npy"))
    assert len(files) == 1
    b = train(tiny_train_config(tmp_path / "plain", [stores["demos"]], feature_cache="off", **common))
    assert not (tmp_path / "plain" / "feature_cache").exists()
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    torch.manual_seed(0)
    init = LaraModel(_frozen_model_config()).state_dict()
    keys = [k for k in wa if k in init and wa[k].is_floating_point()]
    moved = sum(float(((wa[k] - init[k]) ** 2).sum()) for k in keys) ** 0.5
    diff = sum(float(((wa[k] - wb[k]) ** 2).sum()) for k in keys) ** 0.5
    assert moved > 0.05 and diff < 0.05 * moved, (diff, moved)
    trunk = [k for k in keys if ".vision.trunk." in k]
    assert trunk and all(torch.equal(wa[k], init[k]) for k in trunk)         # frozen: untouched
    # the same run again (resume, or a rerun into the folder): the cache is reused, not rebuilt
    train(tiny_train_config(tmp_path / "cached", [stores["demos"]], **{**common, "steps": 7}))
    assert "feature cache: reusing" in capsys.readouterr().out


# -- DDP with the lazy loader and accumulation -----------------------------------------------

def _ddp_train(rank: int, world: int, port: int, cfg_dict: dict):
    import os
    from lara_policy.core.configuration import TrainConfig
    from lara_policy.core.train import train
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train(TrainConfig.from_dict(cfg_dict))


def test_two_process_ddp_run_with_workers_and_accumulation_trains_the_single_process_run(stores, tmp_path):
    """What torchrun starts (RANK/WORLD_SIZE env, gloo): 2 ranks, each with its own lazy DataLoader
    worker and 2 micro-batches a step (DDP syncs once), end at the single-process run's weights."""
    import socket
    import torch.multiprocessing as mp
    from lara_policy.core.train import train
    from safetensors.torch import load_file
    common = dict(variant="dit_only", steps=4, ema_decay=0.0, batch_size=8, grad_accum=2, workers=1,
                  video=[str(stores["video"])])
    single = train(tiny_train_config(tmp_path / "one", [stores["demos"]], **common))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tiny_train_config(tmp_path / "ddp", [stores["demos"]], **common).to_dict()
    mp.spawn(_ddp_train, args=(2, port, cfg), nprocs=2, join=True)
    wa = load_file(str(single / "model.safetensors"))
    wb = load_file(str(tmp_path / "ddp" / "final" / "model.safetensors"))
    torch.manual_seed(0)
    init = LaraModel(tiny_model_config("dit_only")).state_dict()
    keys = [k for k in wa if k in init and wa[k].is_floating_point() and k.startswith(("observation", "action"))]
    moved = sum(float(((wa[k] - init[k]) ** 2).sum()) for k in keys) ** 0.5
    diff = sum(float(((wa[k] - wb[k]) ** 2).sum()) for k in keys) ** 0.5
    assert moved > 0.05 and diff < 1e-2 * moved, (diff, moved)
