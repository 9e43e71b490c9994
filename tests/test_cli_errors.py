"""Issue 13: one error path for the whole `lara` CLI. Bad input gives exit 2, a message on stderr that
names the file/flag, and no traceback; `cli.main` returns the code (never raises SystemExit)."""
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from lara_policy import cli
from lara_policy.common.errors import LaraError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "lara-metaworld-mt3"


def _lara(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "lara_policy.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


def _err(capsys) -> str:
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    return cap.err


def test_domain_errors_share_one_base():
    from lara_policy.core.checkpoint import CheckpointError
    from lara_policy.formats.rosbag import ConvertError
    from lara_policy.formats.store import StoreError
    from lara_policy.evaluation.harness import SeedOverlapError
    from lara_policy.sim.metaworld_env import UnknownTaskError
    for cls, old in [(StoreError, RuntimeError), (CheckpointError, RuntimeError), (ConvertError, ValueError),
                     (SeedOverlapError, ValueError), (UnknownTaskError, ValueError)]:
        # one base for the CLI, and the old base kept for existing `except` clauses
        assert issubclass(cls, LaraError) and issubclass(cls, old), cls
    # the data modules raise one ConvertError (defined in errors, re-exported by formats.rosbag);
    # LeRobot v3 input errors are StoreErrors
    from lara_policy.formats.lerobot import LeRobotError
    from lara_policy.common.errors import ConvertError as ConvertError2
    assert ConvertError is ConvertError2 and issubclass(LeRobotError, StoreError)


def test_main_turns_a_lara_error_into_exit_2_on_stderr(monkeypatch, capsys):
    mod = types.ModuleType("lara_fake_cmd")
    mod.add_arguments = lambda p: p.add_argument("--n", type=int, default=1)

    def run(args):
        raise LaraError(f"store /x/y.hdf5 is broken (n={args.n})")
    mod.run = run
    monkeypatch.setitem(sys.modules, "lara_fake_cmd", mod)
    monkeypatch.setitem(cli.COMMANDS, "fakecmd", ("lara_fake_cmd", "a test command"))
    assert cli.main(["fakecmd", "--n", "3"]) == 2
    assert _err(capsys).strip() == "lara fakecmd: store /x/y.hdf5 is broken (n=3)"
    # argparse errors: returned as 2 (not raised), message on stderr
    assert cli.main(["fakecmd", "--n", "x"]) == 2
    assert "--n" in _err(capsys)
    assert cli.main(["fakecmd", "--help"]) == 0
    # a bug (not a LaraError) still raises with its traceback
    mod.run = lambda args: 1 / 0
    with pytest.raises(ZeroDivisionError):
        cli.main(["fakecmd"])


def test_no_command_is_a_usage_error(capsys):
    assert cli.main([]) == 2
    assert "usage: lara" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0


@pytest.mark.parametrize("argv, flag", [
    (["demos", "--bench", "--bench-workers", "a"], "--bench-workers"),
    (["demos", "--bench", "--bench-workers", "1,0"], "--bench-workers"),
    (["demos", "--episodes", "0", "--out", "x.hdf5"], "--episodes"),
    (["demos", "--workers", "-1", "--out", "x.hdf5"], "--workers"),
    (["eval", "sim", "--policy", "oracle", "--episodes", "0", "--out", "o"], "--episodes"),
    (["eval", "sim", "--policy", "oracle", "--execute-k", "0", "--out", "o"], "--execute-k"),
    (["eval", "sim", "--policy", "oracle", "--workers", "0", "--out", "o"], "--workers"),
    (["eval", "sim", "--tasks", "reach", "--out", "o"], "--policy"),   # no silent oracle
])
def test_bad_flag_values_are_refused_by_argparse(argv, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert flag in _err(capsys)
    assert not list(tmp_path.iterdir())           # nothing written


@pytest.mark.parametrize("cmd", [["train", "--steps", "1"], ["probe", "--lam"]])
def test_train_and_probe_on_missing_or_corrupt_store(cmd, tmp_path, capsys):
    missing = tmp_path / "nope.hdf5"
    corrupt = tmp_path / "garbage.hdf5"
    corrupt.write_bytes(b"not an hdf5 file" * 8)
    for store in (missing, corrupt):
        argv = ([*cmd, "--data", str(store), "--out", str(tmp_path / "run")] if cmd[0] == "train"
                else [*cmd, str(SHIPPED), "--data", str(store)])
        assert cli.main(argv) == 2
        assert str(store) in _err(capsys)


def test_eval_sim_corrupt_checkpoint_and_missing_train_store(tmp_path, capsys):
    bad = tmp_path / "ckpt"
    shutil.copytree(SHIPPED, bad)
    data = (SHIPPED / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[:len(data) // 2])
    assert cli.main(["eval", "sim", "--policy", str(bad), "--tasks", "reach", "--episodes", "1",
                     "--out", str(tmp_path / "e"), "--quiet"]) == 2
    assert str(bad / "model.safetensors") in _err(capsys)
    assert cli.main(["eval", "sim", "--policy", "oracle", "--tasks", "reach", "--episodes", "1",
                     "--train-store", str(tmp_path / "nope.hdf5"), "--out", str(tmp_path / "e2"), "--quiet"]) == 2
    assert "nope.hdf5" in _err(capsys)


def test_real_process_prints_no_traceback(tmp_path):
    """The installed entry point (a real process): exit 2, one line on stderr, nothing on stdout.
    (argparse errors are checked in-process above; this is the LaraError path end to end.)"""
    out = _lara("train", "--data", tmp_path / "missing.hdf5", "--out", tmp_path / "r", "--steps", "1")
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stdout == ""
    assert "missing.hdf5" in out.stderr


def test_bringup_bad_yaml_and_zero_budgets(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text("policy_node:\n  ros__parameters: [\n")
    assert cli.main(["bringup", str(bad)]) == 2
    err = _err(capsys)
    assert str(bad) in err and "not valid YAML" in err and "line" in err
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    assert cli.main(["bringup", str(listy)]) == 2
    assert str(listy) in _err(capsys)
    # 0 is refused (it used to be read as "unset" and silently replaced by the config's value)
    for flag in ("--max-steps", "--num-candidates", "--episodes"):
        assert cli.main(["bringup", "sim", flag, "0"]) == 2
        assert f"argument {flag}: must be >= 1, got 0" in _err(capsys)


def test_demos_bad_camera_leaves_no_store_and_max_steps_range(tmp_path, capsys):
    out = tmp_path / "x.hdf5"
    assert cli.main(["demos", "--tasks", "reach", "--episodes", "1", "--cameras", "bogus", "--quiet",
                     "--out", str(out)]) == 2
    assert "bogus" in _err(capsys)
    assert not out.exists()              # a rerun is not blocked by "exists"
    for argv in (["demos", "--max-steps", "600", "--out", str(out)],
                 ["eval", "sim", "--policy", "oracle", "--max-steps", "501", "--out", str(tmp_path / "o")]):
        assert cli.main(argv) == 2
        assert "--max-steps: must be in [1, 500]" in _err(capsys)
    assert not list(tmp_path.iterdir())


def test_group_help_lists_its_commands(capsys):
    assert cli.main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert "bench model" in out and "bench ros" in out and "usage: lara bench <model|ros|recorder>" in out
    assert cli.main(["bench"]) == 2          # a group without a command is still a usage error
    assert "did you mean one of: bench model, bench ros, bench recorder" in capsys.readouterr().err
