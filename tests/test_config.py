"""TrainConfig validation and the CLI generated from it."""

import json

import pytest

from lab import cli
from lab.cliargs import field_docs
from lab.config import ConfigError, TrainConfig


@pytest.mark.parametrize(
    "changes, field, fix",
    [
        ({"estimator": "grpox"}, "estimator", "choose one of"),
        ({"estimator": "kae", "estimator_params": {"bandwidth": 2}}, "estimator_params", "valid parameters"),
        ({"loss": "ppo2"}, "loss", "choose one of"),
        ({"clip_measure": "kl9"}, "clip_measure", "choose one of"),
        ({"clip_delta": 0.0}, "clip_delta", "must be > 0"),
        ({"clip_delta": -0.1}, "clip_delta", "must be > 0"),
        ({"clip_delta": float("nan")}, "clip_delta", "finite"),
        ({"clip_delta_low": 1.2}, "clip_delta_low", "< 1"),
        ({"clip_measure": "kl3", "clip_delta_high": 0.3}, "clip_delta_high", "ratio only"),
        ({"loss_agg": "mean"}, "loss_agg", "choose one of"),
        ({"rollouts_per_prompt": 0}, "rollouts_per_prompt", ">= 1"),
        ({"prompts_per_step": 2.5}, "prompts_per_step", "integer"),
        ({"steps": 0}, "steps", ">= 1"),
        ({"lr": 0.0}, "lr", "> 0"),
        ({"kl_coef": 0.1}, "kl_coef", "--use-ref-model"),
        ({"kl_estimator": "k4"}, "kl_estimator", "choose one of"),
        ({"top_p": 1.5}, "top_p", "<= 1"),
        ({"temperature": 0}, "temperature", "> 0"),
        ({"minibatches": 1000}, "minibatches", "lower --minibatches"),
        ({"probe_samples": 1}, "probe_samples", ">= 2"),
        ({"probe_set": "all"}, "probe_set", "fixed or batch"),
        ({"device": "tpu"}, "device", "choose auto"),
        ({"task": "chess"}, "task", "choose one of"),
        ({"run_name": "a/b"}, "run_name", "plain folder name"),
        ({"rollout_backend": "sglang"}, "rollout_backend", "choose one of"),
    ],
)
def test_invalid_values_name_the_field_and_the_fix(changes, field, fix):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**changes)
    assert str(e.value).startswith(f"{field}:")
    assert fix in str(e.value)


def test_config_round_trips_through_json():
    c = TrainConfig(estimator="kae", estimator_params={"h": 0.3}, shadow_estimators=("grpo", "rloo"), clip_delta_high=0.28)
    back = TrainConfig.from_dict(json.loads(c.to_json()))
    assert back == c


def test_unknown_fields_in_a_saved_config_are_rejected():
    with pytest.raises(ConfigError, match="unknown config fields"):
        TrainConfig.from_dict({"estimatr": "grpo"})


def test_every_field_has_a_one_line_help_docstring():
    docs = field_docs(TrainConfig)
    import dataclasses

    for f in dataclasses.fields(TrainConfig):
        assert docs.get(f.name), f"TrainConfig.{f.name} has no docstring"


def test_every_config_field_is_a_train_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    import dataclasses

    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in out
    for flag in ("--estimator", "--loss", "--rollouts-per-prompt", "--prompts-per-step", "--steps", "--seed",
                 "--output-dir", "--device", "--quiet", "--resume", "--config"):
        assert flag in out


def test_config_file_sets_defaults_and_flags_override(tmp_path, monkeypatch):
    import argparse

    from lab.cliargs import add_dataclass_args, build_config, load_config_file

    f = tmp_path / "c.yaml"
    f.write_text("estimator: rloo\nsteps: 7\nestimator-params: {}\nshadow_estimators: [grpo]\n")
    p = argparse.ArgumentParser()
    add_dataclass_args(p, TrainConfig)
    args = p.parse_args(["--steps", "9", "--quiet"])
    c = build_config(TrainConfig, args, load_config_file(f))
    assert (c.estimator, c.steps, c.quiet, c.shadow_estimators) == ("rloo", 9, True, ("grpo",))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stepz": 3}))
    with pytest.raises(ValueError, match="unknown field 'stepz'"):
        build_config(TrainConfig, p.parse_args([]), load_config_file(bad))


def test_cli_reports_a_bad_flag_value_without_writing_a_run(tmp_path, capsys):
    rc = cli.main(["train", "--clip-delta", "-1", "--output-dir", str(tmp_path), "--quiet"])
    assert rc == 2
    assert "clip_delta" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", sorted(__import__("lab.estimators", fromlist=["available"]).available()))
def test_the_g1_no_baseline_warning_counts_the_reference_stage_for_estimators_that_take_it(name):
    """With G = 1 the warning names an estimator only if it has no baseline in the run as configured: an
    estimator that wants reference samples gets them from the reference stage, so BASIS's zero
    fallback (baseline 0 without them) is warned about only when the run has no reference stage."""
    from lab import estimators
    from lab.config import config_warnings

    params = {"fallback": "zero"} if name == "basis" else {}
    cfg = dict(estimator=name, estimator_params=params, shadow_estimators=(), rollouts_per_prompt=1,
               prompts_per_step=8, prompt_reuse=4, train_pool_size=16, probe_every=0, eval_every=0)

    def warned(ref: int) -> bool:
        return any("have no baseline" in w and f" {name} have" in w for w in config_warnings(TrainConfig(**cfg, reference_samples=ref)))

    wants = getattr(estimators.ESTIMATORS.get(name), "wants_reference", False)
    if name == "basis":  # the case the reference stage decides
        assert warned(0) and not warned(4)
    elif not wants:  # the reference stage changes nothing for an estimator that does not take it
        assert warned(0) == warned(4)
    else:
        assert not warned(4)


SIZING = [("prompts_per_step", "rollouts_per_prompt"), ("eval_prompts", "eval_samples"),
          ("probe_prompts", "probe_samples"), ("train_pool_size", None)]
"""Every integer field that sizes an allocation before a run starts (with the field it multiplies)."""


@pytest.mark.parametrize("first, second", SIZING)
def test_every_field_that_sizes_an_allocation_is_capped_with_its_field_and_fix_named(first, second):
    # the class: a flag or a config file's integer that sizes lists and tensors (10**12 for 16 filled the memory)
    from hypothesis import given, settings, strategies as st
    from lab.config import INT_MAX, MAX_ROLLOUTS

    other = 2 if second else None
    big = st.integers(MAX_ROLLOUTS // (other or 1) + 1, INT_MAX)

    @settings(max_examples=40, deadline=None)
    @given(big)
    def refused(n):
        changes = {first: n, **({second: other} if second else {})}
        with pytest.raises(ConfigError) as e:
            TrainConfig(**changes)
        msg = str(e.value)
        assert msg.startswith(f"{first}:") and str(MAX_ROLLOUTS) in msg and f"--{first.replace('_', '-')}" in msg, msg

    refused()
    at_cap = {first: MAX_ROLLOUTS // (other or 1), **({second: other} if second else {})}
    TrainConfig(**at_cap)  # the cap itself is allowed
    if second:  # the larger factor is the one named, whichever field holds it
        with pytest.raises(ConfigError, match=f"^{second}:"):
            TrainConfig(**{first: 2, second: MAX_ROLLOUTS})


def test_a_huge_batch_from_a_flag_or_a_config_file_fails_at_once_and_writes_no_run(tmp_path, capsys):
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"eval_prompts": 10**12}))
    out = tmp_path / "runs"
    for args in (["--prompts-per-step", str(10**12)], ["--config", str(conf)]):
        rc = cli.main(["train", *args, "--output-dir", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and "more than the cap of" in err, err
    assert not out.exists() or list(out.iterdir()) == []
