"""Issue 13: the `lara` CLI as one interface. Parse-level only (no training, no ROS graph): every
option of every subcommand has help; one list syntax (space- or comma-separated, or repeated);
`--json FILE` for summaries; `--quiet`, `--seed` / `--seed-start` with one meaning each; renamed
flags still parse (deprecated aliases, one line on stderr); the bag tools and the recorder
benchmark are `lara` subcommands with the common error path."""
import argparse
import importlib
import json

import pytest

from lara_policy import cli


def _parser(name: str) -> argparse.ArgumentParser:
    """The parser cli.main builds for `lara <name>`."""
    module_name, help_ = cli.COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"lara {name}", description=help_, formatter_class=cli.HelpFormatter)
    parser.set_defaults(lara_command=name)
    importlib.import_module(module_name).add_arguments(parser)
    return parser


def _parse(name: str, argv: list[str]) -> argparse.Namespace:
    return _parser(name).parse_args(argv)


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_option_has_help(name):
    parser = _parser(name)
    missing = [a.option_strings or [a.dest] for a in parser._actions
               if a.help != argparse.SUPPRESS and not (a.help or "").strip()]
    assert not missing, f"lara {name}: options without help: {missing}"
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: )" not in text, text
    formatter = parser._get_formatter()
    doubled = [a.option_strings for a in parser._actions if a.help != argparse.SUPPRESS
               and formatter._get_help_string(a).lower().count("(default:") > 1]
    assert not doubled, f"lara {name}: default shown twice: {doubled}"


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_exits_0_through_main(name, capsys):
    assert cli.main([*name.split(), "--help"]) == 0
    assert f"usage: lara {name}" in capsys.readouterr().out


# (command, fixed argv, list option, dest)
LISTS = [
    ("train", ["--out", "o"], "--data", "data"),
    ("train", ["--data", "d", "--out", "o"], "--video", "video"),
    ("train", ["--data", "d", "--out", "o"], "--val", "val"),
    ("train", ["--data", "d", "--out", "o"], "--cameras", "cameras"),
    ("demos", [], "--tasks", "tasks"),
    ("demos", [], "--cameras", "cameras"),
    ("eval sim", ["--policy", "oracle", "--out", "o"], "--tasks", "tasks"),
    ("eval sim", ["--policy", "oracle", "--out", "o"], "--train-store", "train_store"),
    ("probe", ["--lam", "ck"], "--data", "data"),
    ("bringup", ["sim"], "--bag", "bag"),
]


@pytest.mark.parametrize("name, fixed, flag, dest", LISTS)
def test_one_list_syntax(name, fixed, flag, dest):
    spaced = getattr(_parse(name, [*fixed, flag, "a", "b", "c"]), dest)
    commas = getattr(_parse(name, [*fixed, flag, "a,b,c"]), dest)
    mixed = getattr(_parse(name, [*fixed, flag, "a,b", flag, "c"]), dest)   # repeated: the values add up
    assert spaced == commas == mixed == ["a", "b", "c"]


def test_list_items_are_typed_and_checked(capsys):
    assert _parse("demos", ["--bench-workers", "1", "2,4"]).bench_workers == [1, 2, 4]
    assert _parse("demos", ["--image-size", "64,48"]).image_size == [64, 48]
    assert _parse("demos", []).bench_workers == [1, 2]          # the default when not given
    for argv in (["demos", "--bench", "--bench-workers", "1", "0"], ["doctor", "--only", "nosuch"]):
        assert cli.main(argv) == 2
        assert f"argument {argv[-3] if argv[0] == 'demos' else '--only'}" in capsys.readouterr().err


def test_doctor_names_without_spaces_and_old_names(capsys):
    names = [n for n, _, _ in importlib.import_module("lara_policy.doctor").CHECKS]
    assert not [n for n in names if " " in n]
    assert _parse("doctor", ["--only", "ros2 dds", "language_model,dds-range"]).only == \
        ["ros2-dds", "language-model", "dds-range"]


@pytest.mark.parametrize("name, argv, dest, value, old", [
    ("train", ["--data", "d", "--out", "o", "--no-progress"], "quiet", True, "--no-progress"),
    ("probe", ["--lam", "ck", "--data", "d", "--out", "p.json"], "json", "p.json", "--out"),
    ("bench model", ["--out", "b.json"], "json", "b.json", "--out"),
    ("bench ros", ["--out", "b.json"], "json", "b.json", "--out"),
    ("bench ros", ["--seed", "7"], "seed_start", 7, "--seed"),
    ("bringup", ["sim", "--seed", "7"], "seed_start", 7, "--seed"),
    ("eval sim", ["--policy", "random", "--out", "o", "--random-seed", "3"], "random_seed", 3, "--random-seed"),
])
def test_deprecated_aliases_still_parse(name, argv, dest, value, old, capsys):
    assert getattr(_parse(name, argv), dest) == value
    err = capsys.readouterr().err
    assert f"{old} is deprecated" in err
    parser = _parser(name)
    assert old not in parser.format_help().replace(f"{old}-", "")   # hidden from --help


def test_quiet_seed_and_json_mean_one_thing():
    assert _parse("train", ["--data", "d", "--out", "o", "--quiet"]).quiet is True
    for name, fixed in (("demos", []), ("eval sim", ["--policy", "oracle", "--out", "o"])):
        assert _parse(name, [*fixed, "--quiet"]).quiet is True
    # --seed-start: the first layout seed wherever layouts are chosen
    for name, fixed in (("demos", []), ("eval sim", ["--policy", "oracle", "--out", "o"]), ("bench ros", []),
                        ("bringup", ["sim"])):
        assert _parse(name, [*fixed, "--seed-start", "42"]).seed_start == 42
    # --seed: an RNG seed
    assert _parse("train", ["--data", "d", "--out", "o", "--seed", "3"]).seed == 3
    assert _parse("eval sim", ["--policy", "random", "--out", "o", "--seed", "3"]).random_seed == 3
    # --json FILE: the machine-readable summary
    for name, fixed in (("doctor", []), ("probe", ["--lam", "c", "--data", "d"]), ("bench model", []),
                        ("bench ros", []), ("bench recorder", []), ("bringup", ["sim"]), ("demos", [])):
        assert _parse(name, [*fixed, "--json", "s.json"]).json == "s.json", name


@pytest.mark.parametrize("argv, flag", [
    (["train", "--data", "d", "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["train", "--data", "d", "--out", "o", "--steps", "-1"], "--steps"),
    (["train", "--data", "d", "--out", "o", "--lr", "0"], "--lr"),
    (["train", "--data", "d", "--out", "o", "--ema-decay", "1"], "--ema-decay"),
    (["train", "--out", "o"], "--data"),                                  # required, by argparse
    (["bench", "model", "--repeats", "0"], "--repeats"),
    (["bench", "ros", "--num-candidates", "0"], "--num-candidates"),
    (["bench", "recorder", "--minutes", "0"], "--minutes"),
    (["experiment", "run", "spec.yaml", "--workers", "0"], "--workers"),
    (["probe", "--lam", "c", "--data", "d", "--holdout", "1"], "--holdout"),
    (["probe", "--lam", "c", "--data", "d", "--alignment", "--dynamics-check"], "--dynamics-check"),
])
def test_out_of_range_values_exit_2_on_stderr(argv, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    cap = capsys.readouterr()
    assert flag in cap.err and "Traceback" not in cap.err + cap.out
    assert not list(tmp_path.iterdir())


def test_probe_refuses_action_probe_options_in_other_modes(capsys):
    assert cli.main(["probe", "--alignment", "--kind", "mlp", "--lam", "nosuch", "--data", "nosuch.hdf5"]) == 2
    err = capsys.readouterr().err
    assert "--kind" in err and "--alignment" in err


def test_bag_commands(tmp_path, capsys):
    missing = tmp_path / "no_such_episode"
    for cmd in ("info", "recover", "dump"):
        assert cli.main(["bag", cmd, str(missing)]) == 2
        cap = capsys.readouterr()
        assert cap.err.startswith(f"lara bag {cmd}: ") and str(missing) in cap.err and "Traceback" not in cap.err
        assert cap.out == ""
    empty = tmp_path / "ep"
    empty.mkdir()
    assert cli.main(["bag", "info", str(empty)]) == 2
    assert str(empty / "metadata.yaml") in capsys.readouterr().err
    assert cli.main(["bag", "--help"]) == 0
    assert "usage: lara bag <info|recover|dump>" in capsys.readouterr().out
    assert cli.main(["bag"]) == 2
    assert "did you mean one of: bag info, bag recover, bag dump" in capsys.readouterr().err


def test_bag_info_reads_a_real_bag(tmp_path, capsys):
    """A bag written by `rosbags` (the library the recorder uses): info and dump through `lara bag`."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore
    store = get_typestore(Stores.ROS2_HUMBLE)
    String = store.types["std_msgs/msg/String"]
    bag = tmp_path / "ep"
    with Writer(bag, version=8) as w:
        conn = w.add_connection("/lara/instruction", String.__msgtype__, typestore=store)
        for i in range(3):
            w.write(conn, 1_000_000_000 + i, store.serialize_cdr(String(data=f"m{i}"), String.__msgtype__))
    assert cli.main(["bag", "info", str(bag)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["messages"] == 3 and info["topics"]["/lara/instruction"]["count"] == 3
    assert cli.main(["bag", "dump", str(bag)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(" /lara/instruction std_msgs/msg/String" in ln for ln in lines)


def test_bench_recorder_is_a_subcommand(capsys):
    assert cli.main(["bench", "recorder", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--minutes" in out and "--json FILE" in out and "recorder" in out


def test_write_json_creates_parent_folders(tmp_path):
    path = cli.write_json(tmp_path / "a" / "b" / "s.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
