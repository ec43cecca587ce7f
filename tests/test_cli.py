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
