"""`lara experiment run`: spec validation, grid expansion, the bootstrap, and one real tiny grid
(real demos, real training in child processes, real Meta-World evaluation) that is skipped
when finished and resumed from its checkpoint when interrupted."""
import json
import shutil

import numpy as np
import pytest

from lara_policy import cli
from lara_policy.evaluation.experiment import (ExperimentError, expand, hierarchical_bootstrap, load_spec,
                                               to_argv)


def _write(path, text):
    path.write_text(text)
    return path


def test_spec_errors_name_the_key(tmp_path):
    with pytest.raises(ExperimentError, match="unknown keys \\['grdi'\\]"):
        load_spec(_write(tmp_path / "a.yaml", "name: x\ntrain: {}\neval: {}\ngrdi: {seed: [0]}\n"))
    with pytest.raises(ExperimentError, match="missing 'grid'"):
        load_spec(_write(tmp_path / "b.yaml", "name: x\ntrain: {}\neval: {}\n"))
    with pytest.raises(ExperimentError, match="override 'variant=lam'"):
        load_spec(_write(tmp_path / "c.yaml", "name: x\ntrain: {}\neval: {}\ngrid: {variant: [lara]}\n"
                                               "overrides: {variant=lam: {lam: '@x'}}\n"))
    with pytest.raises(ExperimentError, match="not valid YAML"):
        load_spec(_write(tmp_path / "d.yaml", "name: [x\n"))
    rc = cli.main(["experiment", "run", str(tmp_path / "missing.yaml")])
    assert rc == 2


def test_grid_expansion_overrides_and_argv(tmp_path):
    spec = load_spec(_write(tmp_path / "s.yaml", """
name: g
train: {steps: 10, data: [a.hdf5, b.hdf5]}
eval: {episodes: 3}
grid: {variant: [dit_only, frozen_lam], seed: [0, 1], eval.num_candidates: [1, 8]}
overrides: {variant=frozen_lam: {lam: "@lam"}}
"""))
    runs = expand(spec)
    assert len(runs) == 8 and len({r.name for r in runs}) == 8
    frozen = [r for r in runs if r.axes["variant"] == "frozen_lam"]
    assert all(r.train["lam"] == "@lam" for r in frozen)
    assert all("lam" not in r.train for r in runs if r.axes["variant"] == "dit_only")
    assert {r.eval["num_candidates"] for r in runs} == {1, 8} and all("num_candidates" not in r.train for r in runs)
    dirs = {r.dirs(tmp_path)[0] for r in runs}
    assert len(dirs) == 4           # eval-only axes share one training
    assert {r.dirs(tmp_path)[1].name for r in runs} == {"eval__e.num_candidates-1", "eval__e.num_candidates-8"}
    assert to_argv({"w_lara": 0.1, "data": ["a", "b"], "no_progress": True, "resume": False}) == \
        ["--w-lara", "0.1", "--data", "a", "b", "--no-progress"]


def test_hierarchical_bootstrap_interval():
    const = np.ones((3, 40))
    assert hierarchical_bootstrap(const) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(0)
    m = (rng.random((3, 200)) < 0.6).astype(float)
    mean, lo, hi = hierarchical_bootstrap(m)
    assert lo < mean < hi and 0.5 < mean < 0.7 and hi - lo < 0.2
    # a seed that differs a lot widens the interval (seed variance is counted, not only layouts)
    m2 = m.copy()
    m2[0] = 0.0
    _, lo2, hi2 = hierarchical_bootstrap(m2)
    assert hi2 - lo2 > 2 * (hi - lo)


def test_tiny_grid_runs_skips_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = _write(tmp_path / "tiny.yaml", """
name: tiny
description: two variants, one seed, a few steps (test only)
demos:
  - {tasks: reach-v3, episodes: 2, image_size: 32, seed_start: 0, out: data/tiny.hdf5, quiet: true}
train: {paradigm: pretrain, data: [data/tiny.hdf5], steps: 4, batch_size: 8, image_size: 32, width: 32,
        depth: 3, horizon: 8, euler_steps: 2, save_every: 2, log_every: 2, threads: 1}
eval: {tasks: reach, episodes: 2, seed_start: 100000, max_steps: 16, execute_k: 4}
grid: {variant: [dit_only, lara], seed: [0]}
baseline: variant=dit_only
""")
    assert cli.main(["experiment", "run", str(spec)]) == 0
    out = tmp_path / "results" / "tiny"
    summary = json.loads((out / "summary.json").read_text())
    assert [r["variant"] for r in summary["runs"]] == ["dit_only", "lara"]
    for r in summary["runs"]:
        assert r["checkpoint_id"] and r["per_task"]["reach-v3"]["episodes"] == 2 and r["steps"] == 4
        assert r["train_wall_s"] > 0 and len(r["episodes"]) == 2
    diff = summary["paired_differences"]["variant=lara - variant=dit_only"]
    a, b = (r["mean_success"] for r in summary["runs"])
    assert diff["pairs"] == 1 and diff["mean"] == pytest.approx(b - a)
    assert (out / "results.md").read_text().count("| variant=") >= 2 and (out / "success.png").stat().st_size > 0

    # finished runs are skipped: nothing retrains
    lara_run = out / "runs" / "variant-lara__seed-0"
    stamp = (lara_run / "train" / "final" / "config.json").stat().st_mtime
    assert cli.main(["experiment", "run", str(spec)]) == 0
    assert (lara_run / "train" / "final" / "config.json").stat().st_mtime == stamp

    # an interrupted run (checkpoint at step 2, no final, no evaluation) resumes from its checkpoint
    shutil.rmtree(lara_run / "train" / "final")
    shutil.rmtree(lara_run / "eval")
    (lara_run / "train" / "checkpoints" / "latest.json").write_text(
        json.dumps({"path": "checkpoints/step_0000002", "step": 2}))
    assert cli.main(["experiment", "run", str(spec)]) == 0
    log = (lara_run / "train.log").read_text()
    assert "resumed from" in log and "step 2" in log
    assert len(json.loads((out / "summary.json").read_text())["runs"]) == 2
