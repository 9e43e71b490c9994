"""`lara experiment run`: spec validation, grid expansion, the bootstrap, and one real tiny grid
(real demos, real training in child processes, real Meta-World evaluation) that is skipped
when finished and resumed from its checkpoint when interrupted."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lara_policy import cli
from lara_policy.core.configuration import ModelConfig
from lara_policy.formats.store import EpisodeStore
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
    # where each run was trained: the data's sha256 and the machine; one fingerprint, no looser pair
    prov = json.loads((out / "runs" / "variant-lara__seed-0" / "train" / "provenance.json").read_text())
    with EpisodeStore("data/tiny.hdf5") as store:
        assert prov["data"] == {"data/tiny.hdf5": store.content_digest()}
    assert prov["cpu"] and prov["torch"]
    assert len({r["trained_on"] for r in summary["runs"]}) == 1 and summary["runs"][0]["trained_on"]
    assert diff["mixed_seeds"] == [] and "looser" not in (out / "results.md").read_text()
    other = out / "runs" / "variant-lara__seed-0" / "train" / "provenance.json"
    other.write_text(json.dumps({**prov, "cpu": "another CPU"}))
    assert cli.main(["experiment", "run", str(spec), "--report"]) == 0
    assert json.loads((out / "summary.json").read_text())["paired_differences"][
        "variant=lara - variant=dit_only"]["mixed_seeds"] == [0]
    assert "looser: variant=lara - variant=dit_only: seed 0." in (out / "results.md").read_text()
    other.write_text(json.dumps(prov))

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


def _fake_lara(tmp_path, calls):
    """A stand-in for the `lara` child processes that writes what train / eval sim / probe would
    (orchestration tests only; the real children run in test_tiny_grid_runs_skips_and_resumes)."""

    def fake_lara(argv, log, wall=None):
        calls.append(argv)
        opt = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
        if argv[0] == "train":
            out = tmp_path / opt["--out"] if not opt["--out"].startswith("/") else Path(opt["--out"])
            (out / "final").mkdir(parents=True, exist_ok=True)
            model = ModelConfig(variant=opt.get("--variant", "lara"),
                                components=["lam"] if opt.get("--paradigm") == "lam-pretrain" else ["vla", "lam"])
            (out / "final" / "config.json").write_text(json.dumps({"model": model.to_dict()}))
            (out / "train_config.json").write_text(json.dumps({"variant": opt.get("--variant", "lara"),
                                                               "seed": int(opt.get("--seed", 0)), "steps": 4}))
        elif argv[0] == "eval":
            out = Path(opt["--out"])
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps({
                "mean_success": 0.5, "per_task": {"reach-v3": {"success_rate": 0.5, "successes": 1, "episodes": 2}},
                "episodes": [{"task": "reach-v3", "seed": s, "success": s == 1 or opt.get("--num-candidates") == "8"}
                             for s in (0, 1)],
                "policy": {"model_id": "m"}, "config": {}}))
        elif argv[0] == "probe":
            assert Path(opt["--lam"]).name == "final" and "--data" in argv
            Path(opt["--json"]).write_text(json.dumps({"r2": 0.4, "kind": "linear", "r2_shuffled_control": -0.1,
                                                       "latent_dims": 3.0, "test_samples": 9}))

    return fake_lara


def test_probe_steps_run_once_per_checkpoint_and_land_in_the_summary(tmp_path, monkeypatch):
    """The `probes:` step, orchestration only (the probes themselves are tested in tests/core): the
    `lara` children are replaced by a fake that writes what train / eval sim / probe would."""
    from lara_policy.evaluation import experiment as ex

    calls = []
    fake_lara = _fake_lara(tmp_path, calls)

    monkeypatch.setattr(ex, "_lara", fake_lara)
    monkeypatch.chdir(tmp_path)
    spec_text = """
name: probed
shared:
  lam_video: {paradigm: lam-pretrain, data: [d.hdf5], steps: 2}
train: {paradigm: pretrain, data: [d.hdf5], steps: 4}
eval: {tasks: reach, episodes: 2}
grid: {seed: [0, 1], eval.num_candidates: [1, 8]}
overrides: {seed=1: {variant: dit_only}}
probes:
  action: {data: [held.hdf5], kind: mlp}
probe_shared: [lam_video]
"""
    spec = _write(tmp_path / "p.yaml", spec_text)
    assert cli.main(["experiment", "run", str(spec)]) == 0
    probes = [c for c in calls if c[0] == "probe"]
    # 2 trainings (the eval axis shares them), one of them dit_only (no LAM), + the shared LAM:
    # 2 probes, not 5
    assert len(probes) == 2 and all(c[c.index("--kind") + 1] == "mlp" for c in probes)
    assert not any("seed-1" in c[c.index("--lam") + 1] for c in probes)
    assert any("shared/lam_video/final" in c[c.index("--lam") + 1] for c in probes)
    out = tmp_path / "results" / "probed"
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["runs"]) == 4
    assert [r.get("probes", {}).get("action", {}).get("r2") for r in summary["runs"]] == [0.4, 0.4, None, None]
    assert summary["shared_probes"]["lam_video"]["action"]["r2"] == 0.4
    md = (out / "results.md").read_text()
    assert "| lam_video | action | R^2 0.400" in md
    # the per-group probe table: the shared LAM, then the seed-0 runs (two eval axes, one training)
    assert "| shared lam_video | 0.400 |" in md
    assert "| eval.num_candidates=1 | 0.400 |" in md
    # a second sitting probes nothing again; a deleted probe is redone alone
    calls.clear()
    (out / "runs" / "seed-0" / "probe_action.json").unlink()
    assert cli.main(["experiment", "run", str(spec)]) == 0
    assert [c[0] for c in calls] == ["probe"] and "seed-0/train/final" in calls[0][calls[0].index("--lam") + 1]
    # --report keeps the probes; specs that cannot work are refused, naming the key
    assert cli.main(["experiment", "run", str(spec), "--report"]) == 0
    assert "probes" in json.loads((out / "summary.json").read_text())["runs"][0]
    for bad, key in (("probe_shared: [nosuch]", "probe_shared"), ("probes: {x: {lam: a}}", "probes.x"),
                     ("probes: [a]", "probes")):
        text = spec_text.replace("probe_shared: [lam_video]", "").replace(
            "probes:\n  action: {data: [held.hdf5], kind: mlp}", bad)
        with pytest.raises(ExperimentError, match=key):
            load_spec(_write(tmp_path / "bad.yaml", text))


def test_two_only_sittings_each_leave_a_summary_of_every_finished_run(tmp_path, monkeypatch):
    """Two runner processes with different --only (one per core) used to overwrite each other's
    summary with their own runs alone."""
    from lara_policy.evaluation import experiment as ex
    monkeypatch.setattr(ex, "_lara", _fake_lara(tmp_path, []))
    monkeypatch.chdir(tmp_path)
    spec = _write(tmp_path / "s.yaml", """
name: split
train: {paradigm: pretrain, data: [d.hdf5], steps: 4}
eval: {tasks: reach, episodes: 2}
grid: {seed: [0, 1]}
""")
    assert cli.main(["experiment", "run", str(spec), "--only", "seed-1"]) == 0
    out = tmp_path / "results" / "split"
    assert [r["run"] for r in json.loads((out / "summary.json").read_text())["runs"]] == ["seed-1"]
    assert cli.main(["experiment", "run", str(spec), "--only", "seed-0"]) == 0
    assert [r["run"] for r in json.loads((out / "summary.json").read_text())["runs"]] == ["seed-0", "seed-1"]
    assert not list(out.glob(".*.tmp"))


def test_a_childs_wall_time_is_recorded_while_it_runs(tmp_path, monkeypatch):
    """A sitting killed part-way keeps the time its training had spent (the runner used to add it
    only when the child finished)."""
    import sys
    import threading
    import time
    from lara_policy.evaluation import experiment as ex
    monkeypatch.setattr(ex, "LARA_CMD", [sys.executable, "-c", "import time; time.sleep(1.0)"])
    monkeypatch.setattr(ex, "WALL_FLUSH_S", 0.05)
    wall = tmp_path / "run"
    (wall / "wall_s.json").parent.mkdir()
    (wall / "wall_s.json").write_text(json.dumps({"wall_s": 10.0}))    # an earlier sitting's time
    t = threading.Thread(target=ex._lara, args=(["train"], tmp_path / "train.log"), kwargs={"wall": wall})
    t.start()
    seen = []
    while t.is_alive():
        seen.append(json.loads((wall / "wall_s.json").read_text())["wall_s"])
        time.sleep(0.02)
    t.join()
    final = json.loads((wall / "wall_s.json").read_text())["wall_s"]
    assert any(10.0 < v < final for v in seen), seen       # grew while the child ran
    assert 10.9 <= final < 13.0, final
    # a failing child raises with its exit status and the log's path
    monkeypatch.setattr(ex, "LARA_CMD", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    with pytest.raises(ExperimentError, match=r"exit 3\); log .*bad.log:\n(.|\n)*boom"):
        ex._lara(["train"], tmp_path / "bad.log")


def test_a_list_of_baselines_gives_one_set_of_paired_differences_each(tmp_path, monkeypatch):
    """ablations.yaml pairs every configuration with the default recipe AND the dynamics check
    (N=8) with N=1 on the same weights."""
    from lara_policy.evaluation import experiment as ex
    monkeypatch.setattr(ex, "_lara", _fake_lara(tmp_path, []))   # its N=8 evaluation solves both layouts
    monkeypatch.chdir(tmp_path)
    text = """
name: twobase
train: {paradigm: pretrain, data: [d.hdf5], steps: 4}
eval: {tasks: reach, episodes: 2}
grid: {seed: [0, 1], name: [default, other], eval.num_candidates: [1, 8]}
baseline: [name=default, eval.num_candidates=1]
"""
    assert cli.main(["experiment", "run", str(_write(tmp_path / "b.yaml", text))]) == 0
    diffs = json.loads((tmp_path / "results" / "twobase" / "summary.json").read_text())["paired_differences"]
    assert set(diffs) == {"name=other,eval.num_candidates=1 - name=default",
                          "name=other,eval.num_candidates=8 - name=default",
                          "name=default,eval.num_candidates=8 - eval.num_candidates=1",
                          "name=other,eval.num_candidates=8 - eval.num_candidates=1"}
    assert diffs["name=other,eval.num_candidates=8 - eval.num_candidates=1"]["mean"] == pytest.approx(0.5)
    assert diffs["name=other,eval.num_candidates=8 - eval.num_candidates=1"]["pairs"] == 2
    assert diffs["name=other,eval.num_candidates=1 - name=default"]["mean"] == 0.0
    with pytest.raises(ExperimentError, match="baseline 'eval.num_candidates=4'"):
        load_spec(_write(tmp_path / "bad.yaml", text.replace("eval.num_candidates=1]", "eval.num_candidates=4]")))
