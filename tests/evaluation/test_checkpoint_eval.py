"""The PATH branch of `lara eval sim`: a real (tiny, barely trained) LARA checkpoint runs
through the harness with chunking, the dynamics-check candidates and spawned workers."""
import json

import pytest

from lara_policy import cli


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    from lara_policy.core.configuration import ModelConfig, TrainConfig   # a broken core import fails here
    from lara_policy.core.train import train
    from lara_policy.formats.demos import GenConfig, generate
    from lara_policy.formats.sources import write_train_seeds
    d = tmp_path_factory.mktemp("ckpt_eval")
    store = d / "demos.hdf5"
    generate(GenConfig(tasks=["reach-v3"], episodes=3, image_size=(32, 32)), store, progress=False)
    m = ModelConfig(name="tiny", variant="dit_only")
    m.vla.image_size, m.vla.width, m.vla.depth, m.vla.heads = 32, 32, 2, 2
    m.vla.vision_channels = [8, 16, 32]
    m.vla.horizon, m.vla.euler_steps = 8, 2
    cfg = TrainConfig(data=[str(store)], out=str(d / "run"), steps=5, batch_size=8, warmup_steps=1, threads=1,
                      progress=False, log_every=5, save_every=0, model=m, variant="dit_only")
    final = train(cfg)
    write_train_seeds(final, [store])
    return final


def test_checkpoint_through_the_harness(tiny_checkpoint, tmp_path, capsys):
    seeds = json.loads((tiny_checkpoint / "train_seeds.json").read_text())
    assert seeds == {"reach-v3": [0, 1, 2]}
    out = tmp_path / "e"
    rc = cli.main(["eval", "sim", "--policy", str(tiny_checkpoint), "--tasks", "reach", "--episodes", "2",
                   "--max-steps", "16", "--execute-k", "4", "--workers", "2", "--videos", "1",
                   "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["per_task"]["reach-v3"]["episodes"] == 2 and res["policy"]["horizon"] == 8
    assert [e["policy_calls"] for e in res["episodes"]] == [4, 4]     # 16 steps / k=4
    # the checkpoint's recorded training seeds are refused
    rc = cli.main(["eval", "sim", "--policy", str(tiny_checkpoint), "--tasks", "reach", "--episodes", "2",
                   "--seed-start", "2", "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 2 and "reach-v3: 1 seeds (2)" in capsys.readouterr().err
