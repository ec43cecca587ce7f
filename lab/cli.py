"""``lab``: the command line. Subcommands: train, pretrain, runs (list | show), demo.

Flags of ``lab train`` and ``lab pretrain`` are generated from their config dataclasses
(``lab.config.TrainConfig``, ``lab.models.pretrain.PretrainConfig``): one line of help per
field, the field's docstring.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab.cliargs import add_dataclass_args, build_config, load_config_file


def _train_parser(sub) -> None:
    from lab.config import TrainConfig

    p = sub.add_parser("train", help="train a policy with RLVR and write a run directory",
                       description="Train with RLVR. Every config field is a flag; --config FILE sets defaults that flags override.")
    p.add_argument("--config", metavar="FILE", help="JSON or YAML file of config fields (flags override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its newest checkpoint (other flags are ignored)")
    add_dataclass_args(p, TrainConfig)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from lab.config import ConfigError, TrainConfig
    from lab.train import TrainingFailed, train

    try:
        if args.resume:
            run_dir = train(resume=args.resume)
        else:
            file_values = load_config_file(args.config) if args.config else {}
            cfg = build_config(TrainConfig, args, file_values)
            run_dir = train(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"lab train: error: {e}", file=sys.stderr)
        return 2
    except TrainingFailed as e:
        print(f"lab train: run failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab train: interrupted; continue with `lab train --resume RUN_DIR` (from its newest checkpoint)", file=sys.stderr)
        return 130
    print(run_dir)
    return 0


def _pretrain_parser(sub) -> None:
    from lab.models.pretrain import PretrainConfig

    p = sub.add_parser("pretrain", help="supervised warm-start of the tiny model on arithmetic",
                       description="Train the shipped tiny char-level model from scratch (deterministic for a seed).")
    p.add_argument("--config", metavar="FILE", help="JSON or YAML file of config fields (flags override it)")
    add_dataclass_args(p, PretrainConfig)
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args) -> int:
    from lab.models.pretrain import PretrainConfig, run_pretrain

    try:
        cfg = build_config(PretrainConfig, args, load_config_file(args.config) if args.config else {})
    except (ValueError, TypeError) as e:
        print(f"lab pretrain: error: {e}", file=sys.stderr)
        return 2
    print(run_pretrain(cfg))
    return 0


def _runs_parser(sub) -> None:
    p = sub.add_parser("runs", help="list or show run directories")
    rs = p.add_subparsers(dest="runs_cmd", required=True)
    pl = rs.add_parser("list", help="one line per run under ROOT")
    pl.add_argument("root", nargs="?", default="runs", help="folder holding run directories (default: runs)")
    pl.set_defaults(func=_cmd_runs_list)
    ps = rs.add_parser("show", help="config, status and last metrics of one run")
    ps.add_argument("run_dir", help="a run directory")
    ps.set_defaults(func=_cmd_runs_show)


def _cmd_runs_list(args) -> int:
    from lab.runs import list_runs

    df = list_runs(args.root)
    if df.empty:
        print(f"no runs under {args.root}")
        return 0
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        print(df.drop(columns=["path"]).to_string(index=False))
    return 0


def _cmd_runs_show(args) -> int:
    from lab.runs import load_run

    try:
        run = load_run(args.run_dir, samples=False)
    except FileNotFoundError as e:
        print(f"lab runs show: error: {e}", file=sys.stderr)
        return 2
    print(f"run      {run.path}")
    print(f"status   {run.status.get('status')} (step {run.status.get('step')})" + (f": {run.status['error']}" if run.status.get("error") else ""))
    print("config   " + json.dumps(run.config, sort_keys=True))
    if not run.metrics.empty:
        last = run.metrics.iloc[-1].dropna()
        print("last metrics:")
        for k, v in last.items():
            print(f"  {k:38s} {v:.6g}" if isinstance(v, float) else f"  {k:38s} {v}")
    return 0


def _demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="train short GRPO and KAE runs on the tiny model and compare them")
    p.add_argument("--output-dir", default="runs/demo", help="where the demo runs go (default: runs/demo)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: the demo's own)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from lab.demo import run_demo

    run_demo(output_dir=Path(args.output_dir), steps=args.steps, quiet=args.quiet)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab", description="An interactive lab for RL with verifiable rewards.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _train_parser(sub)
    _pretrain_parser(sub)
    _runs_parser(sub)
    _demo_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `lab runs show RUN | head`: the reader left, nothing went wrong
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
