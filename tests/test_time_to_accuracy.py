"""benchmarks/time_to_accuracy.py: the target, crossing, CI and ratio arithmetic on hand-made rows,
the label -> TrainConfig mapping, and resuming on tiny real runs."""

import csv
import doctest
import math
import re

import pytest

from lab.config import TrainConfig
import importlib



def _load():
    return importlib.import_module("benchmarks.time_to_accuracy")


tta = _load()


def _rows(label, seed, accs, every=10, per_step=64, sec_per_step=0.5, **extra):
    """One run's eval rows: accuracy ``accs[i]`` at step ``i * every``."""
    return [{"label": label, "estimator": label.split("_g")[0], "rollouts_per_prompt": 8, "prompts_per_step": 8,
             "prompt_reuse": 1, "seed": seed, "step": i * every, "rollouts": i * every * per_step,
             "elapsed_s": i * every * sec_per_step, "eval_accuracy": a, **extra} for i, a in enumerate(accs)]


def test_module_examples_hold():
    assert doctest.testmod(tta, optionflags=doctest.ELLIPSIS).failed == 0


def test_target_is_start_plus_0_8_of_grpo_g8_mean_final_rise():
    rows = (_rows("grpo_g8", 0, [0.10, 0.30, 0.50, 0.60, 0.70])      # final (last 3) = 0.6
            + _rows("grpo_g8", 1, [0.20, 0.40, 0.40, 0.50, 0.60])    # final = 0.5
            + _rows("kae_g2", 0, [0.30, 0.90, 0.90, 0.90, 0.90]))    # counts for the start, not the final
    start, ref, goal = tta.target(rows)
    assert start == pytest.approx((0.10 + 0.20 + 0.30) / 3)           # 0.2
    assert ref == pytest.approx((0.6 + 0.5) / 2)                       # 0.55
    assert goal == pytest.approx(0.2 + 0.8 * (0.55 - 0.2))             # 0.48
    assert tta.target(rows, window=1)[1] == pytest.approx((0.70 + 0.60) / 2)
    assert math.isnan(tta.target(_rows("kae_g2", 0, [0.1, 0.2]))[2])  # no reference run: no target


def test_first_crossing_uses_the_centred_3_eval_mean_not_one_lucky_eval():
    run = _rows("grpo_g8", 0, [0.1, 0.8, 0.2, 0.2, 0.6, 0.6, 0.6])
    # raw: the lucky eval at step 10 crosses 0.5; smoothed (.45, .37, .4, .33, .47, .6, .6) first at step 50
    assert tta.first_crossing(run, 0.5, window=1) == (640, 5.0)
    assert tta.first_crossing(run, 0.5) == (50 * 64, 25.0)
    assert tta.first_crossing(run, 0.61) is None
    assert tta.first_crossing(run, math.nan) is None
    assert tta.first_crossing(list(reversed(run)), 0.5) == (50 * 64, 25.0)  # order of the rows does not matter


def test_mean_ci_is_the_student_t_half_width():
    m, half = tta.mean_ci([640.0, 1280.0, 1920.0])
    # sd = 640, t_0.975(2) = 4.302653 (tables), n = 3
    assert m == 1280.0 and half == pytest.approx(4.302653 * 640 / math.sqrt(3), abs=1e-3)
    m, half = tta.mean_ci([0.4, 0.6])                                    # sd = 0.1414, t(1) = 12.7062
    assert m == pytest.approx(0.5) and half == pytest.approx(12.7062 * math.sqrt(0.02) / math.sqrt(2), abs=1e-3)
    assert math.isnan(tta.mean_ci([3.0])[1]) and math.isnan(tta.mean_ci([])[0])


def test_summary_rows_ratio_and_unreached_labels():
    rows = (_rows("grpo_g8", 0, [0.2, 0.2, 0.2, 0.6, 0.6, 0.6]) + _rows("grpo_g8", 1, [0.2, 0.2, 0.6, 0.6, 0.6, 0.6])
            + _rows("kae_g2", 0, [0.2, 0.6, 0.6, 0.6, 0.6, 0.6], sec_per_step=0.25)
            + _rows("kae_g2", 1, [0.2, 0.2, 0.2, 0.2, 0.2, 0.2])      # never reaches the target
            + _rows("rloo_g8", 0, [0.2, 0.2, 0.2, 0.2, 0.2, 0.2]))
    s = {r["label"]: r for r in tta.summarise(rows)}
    assert list(s) == ["grpo_g8", "rloo_g8", "kae_g2"]                    # the sweep's order
    # start 0.2; grpo finals 0.6 and 0.6; target 0.2 + 0.8 * 0.4 = 0.52
    assert s["grpo_g8"]["start_accuracy"] == 0.2 and s["grpo_g8"]["target_accuracy"] == 0.52
    # smoothed grpo s0: .2 .2 .333 .467 .6 .6 -> step 40; s1: .2 .333 .467 .6 -> step 30
    assert s["grpo_g8"]["rollouts_to_target"] == (40 * 64 + 30 * 64) / 2
    assert s["grpo_g8"]["rollouts_to_target_ci95"] == pytest.approx(12.7062 * (10 * 64 / math.sqrt(2)) / math.sqrt(2), abs=0.1)
    assert s["grpo_g8"]["seconds_to_target"] == (20.0 + 15.0) / 2 and s["grpo_g8"]["reached_seeds"] == 2
    # kae s0: smoothed .4 .467 .6 -> step 20 (1280 rollouts, 5 s); s1 never: mean over 1 of 2 seeds
    assert (s["kae_g2"]["rollouts_to_target"], s["kae_g2"]["seconds_to_target"]) == (1280.0, 5.0)
    assert (s["kae_g2"]["reached_seeds"], s["kae_g2"]["seeds"], s["kae_g2"]["rollouts_to_target_ci95"]) == (1, 2, "")
    assert s["kae_g2"]["rollout_ratio_to_grpo"] == round(1280 / 2240, 4)
    assert s["kae_g2"]["final_accuracy"] == pytest.approx((0.6 + 0.2) / 2)
    assert s["grpo_g8"]["rollout_ratio_to_grpo"] == 1.0
    assert s["rloo_g8"]["rollouts_to_target"] == "" and s["rloo_g8"]["rollout_ratio_to_grpo"] == ""
    assert set(tta.SUMMARY_FIELDS) <= set(s["grpo_g8"])


def test_a_powered_labels_added_seeds_get_their_own_final_accuracy_in_the_summary():
    # the confirmatory sample: seeds from len(DECIDING_SEEDS) on, for a POWERED label only
    label, first = "basis_g1_pool256_ref8", len(tta.DECIDING_SEEDS)
    finals = {s: 0.1 + 0.01 * s for s in range(first + 3)}  # one eval a run: its final accuracy is that eval
    rows = [{"label": lb, "estimator": lb.split("_g")[0], "rollouts_per_prompt": 1, "prompts_per_step": 64,
             "prompt_reuse": 1, "seed": s, "step": 0, "rollouts": 0, "elapsed_s": 1.0, "eval_accuracy": a}
            for lb in (label, "basis_g1") for s, a in finals.items()]
    s = {r["label"]: r for r in tta.summarise(rows, window=1)}
    added = [finals[k] for k in range(first, first + 3)]
    assert s[label]["confirm_seeds"] == 3 and s[label]["seeds"] == first + 3
    assert s[label]["planned_seeds"] == tta.POWERED[label] and s["basis_g1"]["planned_seeds"] == len(tta.DECIDING_SEEDS)
    assert s[label]["confirm_final_accuracy"] == pytest.approx(sum(added) / 3)
    assert s[label]["confirm_final_ci95"] == pytest.approx(tta.mean_ci(added)[1])
    assert s["basis_g1"]["confirm_seeds"] == s["basis_g1"]["confirm_final_accuracy"] == ""  # not a powered label


def test_summary_ratio_interval_is_welch_t_on_the_log_of_reaching_seeds():
    from scipy import stats as sps

    grpo = [[0.2, 0.2, 0.2, 0.6, 0.6, 0.6], [0.2, 0.2, 0.6, 0.6, 0.6, 0.6], [0.2, 0.2, 0.2, 0.2, 0.6, 0.6]]
    kae = [[0.2, 0.6, 0.6, 0.6, 0.6, 0.6], [0.2, 0.2, 0.6, 0.6, 0.6, 0.6], [0.2] * 6]   # seed 2 never reaches
    rows = [r for i, a in enumerate(grpo) for r in _rows("grpo_g8", i, a)]
    rows += [r for i, a in enumerate(kae) for r in _rows("kae_g2", i, a)]
    s = {r["label"]: r for r in tta.summarise(rows)}
    g = [math.log(r) for r in (40 * 64, 30 * 64, 50 * 64)]     # smoothed crossings at steps 40, 30, 50
    k = [math.log(r) for r in (20 * 64, 30 * 64)]
    va, vb = sps.tvar(k) / 2, sps.tvar(g) / 3
    df = (va + vb) ** 2 / (va ** 2 / 1 + vb ** 2 / 2)
    d, half = sum(k) / 2 - sum(g) / 3, sps.t.ppf(0.975, df) * math.sqrt(va + vb)
    row = s["kae_g2"]
    assert row["rollout_ratio_geomean"] == pytest.approx(math.exp(d), abs=1e-4)
    assert (row["rollout_ratio_ci_low"], row["rollout_ratio_ci_high"]) == pytest.approx((math.exp(d - half), math.exp(d + half)), abs=1e-4)
    one = tta.summarise([r for r in rows if not (r["label"] == "kae_g2" and r["seed"] == 1)])
    assert [r["rollout_ratio_ci_low"] for r in one if r["label"] == "kae_g2"] == [""]   # one reaching seed: no interval


def test_ratio_is_empty_without_a_reference():
    assert tta.ratio(1.0, 0.0) is None and tta.ratio(math.nan, 2.0) is None and tta.ratio(3.0, 4.0) == 0.75


def test_labels_map_to_default_configs_with_equal_rollouts_per_step():
    defaults = TrainConfig().to_dict()
    changed = {"estimator", "rollouts_per_prompt", "prompts_per_step", "prompt_reuse", "shadow_estimators",
               "probe_every", "eval_every", "steps", "seed", "output_dir", "run_name", "quiet", "train_pool_size",
               "reference_samples"}
    expect = {"grpo_g8": ("grpo", 8, 1), "rloo_g8": ("rloo", 8, 1), "kae_g2": ("kae", 2, 1), "krpo_g2": ("krpo", 2, 1),
              "basis_g1": ("basis", 1, 1), "blend_g1": ("blend", 1, 1), "reinforce_plus_plus_g1": ("reinforce_plus_plus", 1, 1),
              "kae_g2_reuse10": ("kae", 2, 10), "basis_g1_reuse10": ("basis", 1, 10), "kae_g4_reuse10": ("kae", 4, 10),
              "grpo_g4_reuse10": ("grpo", 4, 10), "basis_g1_pool256_ref8": ("basis", 1, 1, 256, 8),
              "reinforce_plus_plus_g1_pool256": ("reinforce_plus_plus", 1, 1, 256), "grpo_g8_pool256": ("grpo", 8, 1, 256)}
    assert set(tta.LABELS) == set(expect)
    assert set(tta.DECIDING) <= set(expect)
    for label, spec in expect.items():
        est, g, reuse, pool, ref = (*spec, 0, 0)[:5] if len(spec) == 3 else (*spec, 0)[:5]
        c = tta.label_config(label, seed=2, output_dir="/tmp/x")
        assert (c.estimator, c.rollouts_per_prompt, c.prompt_reuse, c.seed) == (est, g, reuse, 2)
        assert (c.train_pool_size, c.reference_samples) == (pool, ref)
        assert c.rollouts_per_prompt * c.prompts_per_step == defaults["rollouts_per_prompt"] * defaults["prompts_per_step"] == 64
        assert c.shadow_estimators == () and c.probe_every == 0 and c.steps == tta.STEPS
        assert c.eval_every == tta.EVAL_EVERY == 5 and c.eval_prompts == defaults["eval_prompts"]
        assert {k: v for k, v in c.to_dict().items() if k not in changed} == {k: v for k, v in defaults.items() if k not in changed}
    assert tta.label_name(*tta.LABELS["basis_g1_reuse10"]) == "basis_g1_reuse10"
    with pytest.raises(ValueError, match="unknown label 'grpo_g4'; valid labels: grpo_g8"):
        tta.label_config("grpo_g4", seed=0)


TINY = ["--steps", "2", "--eval-every", "1", "--eval-prompts", "4", "--eval-samples", "2", "--seeds", "0"]


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_resume_skips_finished_runs_and_redoes_an_interrupted_one(tmp_path, capsys):
    out = tmp_path / "tta.csv"
    tta.main([*TINY, "--labels", "grpo_g8", "basis_g1", "--jobs", "1", "--out", str(out)])
    first = _read(out)
    assert [(r["label"], r["step"], r["rollouts"], r["final"]) for r in first] == [
        ("grpo_g8", "0", "0", "0"), ("grpo_g8", "1", "64", "1"), ("basis_g1", "0", "0", "0"), ("basis_g1", "1", "64", "1")]
    assert (tmp_path / "tta_summary.csv").is_file() and (tmp_path / "tta.png").stat().st_size > 0
    summary = _read(tmp_path / "tta_summary.csv")
    assert [r["label"] for r in summary] == ["grpo_g8", "basis_g1"] and summary[0]["rollout_ratio_to_grpo"] in ("1.0", "")
    # interrupt basis_g1 after its step-0 eval: its final row is gone
    tta._write_all(out, first[:3], list(first[0]))
    capsys.readouterr()
    tta.main([*TINY, "--labels", "grpo_g8", "basis_g1", "--jobs", "1", "--out", str(out)])
    assert "resuming: 1 of 2 runs already in" in capsys.readouterr().out
    again = _read(out)
    assert again[:2] == first[:2]                                    # grpo_g8 kept as it was, not rerun
    redo = [r for r in again if r["label"] == "basis_g1"]
    assert [r["step"] for r in redo] == ["0", "1"] and redo[0]["created"] >= first[2]["created"]
    # the same seed on CPU gives the same evals: the redone run is the run, not a mix of two attempts
    assert [r["eval_accuracy"] for r in redo] == [r["eval_accuracy"] for r in first[2:]]
    with pytest.raises(SystemExit):
        tta.main([*TINY[:1], "3", *TINY[2:], "--labels", "grpo_g8", "--out", str(out)])
    assert "holds runs with steps = 2, not 3: pass --steps 2" in capsys.readouterr().err
    assert {r["model_sha256"] for r in again} == {tta.model_sha256("data/models/tiny-arith")} and len(again[0]["model_sha256"]) == 16
    tta._write_all(out, [{**r, "model_sha256": "0" * 16} for r in again], list(again[0]))  # made with other weights
    with pytest.raises(SystemExit):
        tta.main([*TINY, "--labels", "grpo_g8", "--out", str(out)])
    assert "holds runs with model_sha256 = 0000000000000000" in capsys.readouterr().err


@pytest.mark.slow
def test_two_runs_side_by_side_write_whole_rows(tmp_path):
    out = tmp_path / "tta.csv"
    tta.main([*TINY, "--labels", "grpo_g8", "kae_g2", "--jobs", "2", "--out", str(out)])
    rows = _read(out)
    assert sorted((r["label"], r["step"]) for r in rows) == [("grpo_g8", "0"), ("grpo_g8", "1"), ("kae_g2", "0"), ("kae_g2", "1")]
    assert all(r["created"] and r["torch_threads"] == "1" for r in rows)
    assert out.read_text().count("label,estimator,") == 1  # one header: the two children once raced to write it


def test_resume_repairs_a_file_with_a_second_header_inside_and_keeps_every_run(tmp_path, capsys):
    out = tmp_path / "tta.csv"
    tta.main([*TINY, "--labels", "grpo_g8", "--jobs", "1", "--out", str(out)])
    lines = out.read_text().splitlines()
    out.write_text("\n".join([lines[0], lines[1], lines[0], *lines[2:]]) + "\n")  # what the racing --jobs 2 left
    capsys.readouterr()
    tta.main([*TINY, "--labels", "grpo_g8", "--jobs", "1", "--out", str(out)])
    assert "resuming: 1 of 1 runs already in" in capsys.readouterr().out
    assert out.read_text().splitlines() == lines  # the stray header gone, every row kept as it was


def test_an_eval_setting_that_disables_evals_is_refused_before_any_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        tta.main(["--eval-every", "0", "--out", str(tmp_path / "t.csv")])
    assert "--eval-every must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


def test_the_labels_of_counted_accuracy_checks_get_more_seeds_by_default(tmp_path, monkeypatch):
    # what a plain run would train: every label its default seeds, the deciding ones 12, and --seeds overrides both
    from lab.analysis import claims

    asked = []
    monkeypatch.setattr(tta, "_run_all", lambda todo, *a, **k: asked.extend(todo))
    monkeypatch.setattr(tta, "write_summary", lambda rows, out: [])
    tta.main(["--out", str(tmp_path / "t.csv"), "--labels", "grpo_g8", "basis_g1"])
    assert sorted(s for lb, s in asked if lb == "grpo_g8") == list(tta.SEEDS)
    assert sorted(s for lb, s in asked if lb == "basis_g1") == list(tta.DECIDING_SEEDS) and len(tta.DECIDING_SEEDS) >= 12
    asked.clear()
    tta.main(["--out", str(tmp_path / "t.csv"), "--labels", "basis_g1_pool256_ref8"])  # a powered label: its own count
    assert sorted(s for lb, s in asked) == list(range(tta.POWERED["basis_g1_pool256_ref8"]))
    assert set(tta.POWERED) <= set(tta.DECIDING) and min(tta.POWERED.values()) > len(tta.DECIDING_SEEDS)
    asked.clear()
    tta.main(["--out", str(tmp_path / "t.csv"), "--labels", "grpo_g8", "basis_g1", "--seeds", "5"])
    assert asked == [("grpo_g8", 5), ("basis_g1", 5)]
    # every label of an accuracy check the claims count gets the deciding seeds
    counted = {lab for k in claims.evaluate() for c in k[1] if c.reading == "paper" and "(accuracy)" in c.setting
               for lab in re.findall(r"label=(\w+)", c.source)}
    assert counted <= set(tta.DECIDING) and "basis_g1_pool256_ref8" in counted


def test_a_label_with_a_reference_stage_counts_its_rollouts_before_step_0(tmp_path):
    out = tmp_path / "t.csv"
    tta.main(["--out", str(out), "--labels", "basis_g1_pool256_ref8", *TINY])
    rows = _read(out)
    assert rows and all(r["reference_rollouts"] == str(8 * 256) and r["train_pool_size"] == "256" for r in rows)
    assert [int(r["rollouts"]) for r in rows] == [int(r["step"]) * 64 + 8 * 256 for r in rows]


def test_an_older_file_without_the_pool_columns_is_rewritten_with_them_and_its_rows_kept(tmp_path, monkeypatch):
    import csv as _csv

    out = tmp_path / "t.csv"
    probe = tta.label_config("grpo_g8", seed=0)
    row = {**dict.fromkeys(tta.fieldnames(), ""), "label": "grpo_g8", "estimator": "grpo", "seed": 0, "step": 0,
           "final": 1, **{k: getattr(probe, k) for k in tta.MUST_MATCH if k != "model_sha256"},
           "model_sha256": tta.model_sha256(probe.model)}
    old_names = [k for k in tta.fieldnames() if k not in tta.ADDED_FIELDS]
    with open(out, "w", newline="") as f:  # written before the pool/reference columns existed
        w = _csv.DictWriter(f, old_names, extrasaction="ignore")
        w.writeheader()
        w.writerow(row)
    monkeypatch.setattr(tta, "_run_all", lambda todo, *a, **k: None)
    monkeypatch.setattr(tta, "write_summary", lambda rows, out: [])
    tta.main(["--out", str(out), "--labels", "grpo_g8", "--seeds", "0"])
    (got,) = _read(out)
    assert list(got) == tta.fieldnames()
    assert {k: got[k] for k in tta.ADDED_FIELDS} == {k: "0" for k in tta.ADDED_FIELDS}
    assert (got["label"], got["final"], got["model_sha256"]) == ("grpo_g8", "1", row["model_sha256"])
