"""The `lab` command line: runs list/show, pretrain flags, and a tiny demo end to end."""

import dataclasses

import pytest

from lab import cli
from lab.models.pretrain import PretrainConfig


def test_pretrain_help_lists_every_config_field(capsys):
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--help"])
    out = capsys.readouterr().out
    for f in dataclasses.fields(PretrainConfig):
        assert "--" + f.name.replace("_", "-") in out


@pytest.mark.slow
def test_demo_trains_both_runs_and_prints_the_comparison(tmp_path, capsys):
    from lab import demo

    dirs = demo.run_demo(output_dir=tmp_path, steps=2, quiet=True)
    out = capsys.readouterr().out
    assert [d.name for d in dirs] == ["grpo", "kae"]
    assert "heldout_acc_end" in out and "Value MSE" in out
    for name in ("grpo", "kae", "rloo", "basis", "krpo"):
        assert name in out
    # the runs are listed and shown by the CLI
    assert cli.main(["runs", "list", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "grpo" in listing and "kae" in listing and "finished" in listing
    assert cli.main(["runs", "show", str(dirs[0])]) == 0
    shown = capsys.readouterr().out
    assert "status   finished" in shown and "eval/accuracy" in shown


def test_runs_show_names_a_missing_run(tmp_path, capsys):
    assert cli.main(["runs", "show", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert cli.main(["runs", "list", str(tmp_path)]) == 0
    assert "no runs" in capsys.readouterr().out


# --- issue 21, class 4: every exception becomes one line with the right exit code ------------------
def _exceptions():
    import errno

    from lab import runs
    from lab.config import ConfigError
    from lab.errors import LabError, RewardCrashed, RunFailed, TaskDataError, TaskFileNotFound, UsageError
    from lab.train import TrainingFailed

    lab_errors = [cls("a message\nwith a second line") for cls in (UsageError, ConfigError, TaskDataError, TaskFileNotFound,
                                                                      runs.RunReadError, runs.RunPathError, runs.RunLockedError)]
    lab_errors += [cls("x") for cls in _all_subclasses(LabError) if cls.__module__.startswith("lab")]
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load

        load(b"")
    except Exception as e:  # noqa: BLE001 - the real error an empty model.safetensors gives
        safetensors_error = e
    else:  # pragma: no cover
        raise AssertionError("safetensors read an empty file")
    vllm_missing = ImportError("the 'vllm' rollout backend needs vLLM, which is not installed")
    return [(e, 2) for e in lab_errors] + [
        (safetensors_error, 2), (vllm_missing, 2), (ModuleNotFoundError("No module named 'vllm'"), 2),
        (TrainingFailed("step 3: non-finite weights"), 1), (RunFailed("failed"), 1), (RewardCrashed("SystemExit on sample 0"), 1),
        (OSError(errno.ENOSPC, "No space left on device", "runs/r/checkpoints/.tmp_step_000002"), 1),
        (PermissionError(errno.EACCES, "Permission denied", "runs"), 1), (FileNotFoundError(2, "No such file", "x"), 1),
        (RuntimeError("probability tensor contains either `inf`, `nan` or element < 0"), 1), (MemoryError(), 1),
        (RecursionError("maximum recursion depth exceeded"), 1), (ValueError("bad"), 1), (TypeError("bad"), 1), (KeyError("k"), 1),
        (AssertionError(), 1), (ZeroDivisionError("division by zero"), 1), (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"), 1),
        (GeneratorExit(), 1), (StopIteration(), 1), (KeyboardInterrupt(), 130), (type("Hostile", (Exception,), {"__str__": lambda s: 1 / 0})(), 1),
    ]


def _all_subclasses(cls):
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


@pytest.mark.parametrize("argv, command", [(["runs", "list", "."], "_cmd_runs_list"), (["train", "--steps", "1"], "_cmd_train")])
def test_every_exception_a_command_lets_through_is_one_line_with_its_exit_code(monkeypatch, capsys, argv, command):
    cases = _exceptions()
    assert len(cases) > 30
    for exc, code in cases:
        def raise_it(args, exc=exc):
            raise exc

        monkeypatch.setattr(cli, command, raise_it)
        monkeypatch.delenv("LAB_TRACEBACK", raising=False)
        rc = cli.main(argv)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert rc == code, (exc, captured.err)
        assert len(lines) == 1 and "Traceback" not in captured.err and not captured.out, (exc, captured.err)
        assert lines[0].startswith(f"lab {argv[0]}: "), lines
        if code == 2:
            assert ": error: " in lines[0]


def test_the_messages_say_what_to_do_for_a_full_disk_missing_memory_and_a_bug(monkeypatch, capsys):
    import errno

    for exc, words in [(OSError(errno.ENOSPC, "No space left on device", "runs/r"), "the disk is full"),
                       (MemoryError(), "lower --prompts-per-step"), (ValueError("oops"), "LAB_TRACEBACK=1"),
                       (ImportError("the 'vllm' rollout backend needs vLLM"), "a package this needs is missing")]:
        monkeypatch.setattr(cli, "_cmd_runs_list", lambda args, exc=exc: (_ for _ in ()).throw(exc))
        cli.main(["runs", "list", "."])
        assert words in capsys.readouterr().err
    monkeypatch.setenv("LAB_TRACEBACK", "1")
    assert cli.main(["runs", "list", "."]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_runs_list_of_a_folder_that_does_not_exist_fails_in_one_line(tmp_path, capsys, monkeypatch):
    rc = cli.main(["runs", "list", str(tmp_path / "nonexistent")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "nonexistent" in err and "no such folder" in err, err
    monkeypatch.chdir(tmp_path)  # the default root `runs` may be absent: nothing to list is not an error
    assert cli.main(["runs", "list"]) == 0
    assert "no runs under runs" in capsys.readouterr().out


@pytest.mark.parametrize("text, suffix, key", [
    ("lr: 0.1\nsteps: 3\nlr: 0.2\n", ".yaml", "'lr'"), ('{"lr": 0.1,\n "steps": 3,\n "lr": 0.2}', ".json", "'lr'"),
    ('{"estimator_params": {"h": 1, "h": 2}}', ".json", "'h'"), ("estimator_params:\n  h: 1\n  h: 2\n", ".yaml", "'h'"),
    ('{"max-new-tokens": 3, "max_new_tokens": 4}', ".json", "'max_new_tokens'"),
])
def test_a_config_file_with_a_key_given_twice_is_refused_naming_the_key(tmp_path, capsys, text, suffix, key):
    f = tmp_path / f"c{suffix}"
    f.write_text(text)
    rc = cli.main(["train", "--config", str(f), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and key in err and "twice" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
    if "steps" in text:
        assert "line 3" in err


def test_yaml_merge_keys_may_still_override():
    from lab.cliargs import load_config_file
    import tempfile, pathlib

    f = pathlib.Path(tempfile.mkdtemp()) / "m.yaml"
    f.write_text("base: &b {h: 1}\nestimator_params:\n  <<: *b\n  h: 2\n")
    assert load_config_file(f)["estimator_params"] == {"h": 2}
