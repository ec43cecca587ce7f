"""``lab``: the command line. Subcommands: train, pretrain, runs (list | show), demo, app.

Flags of ``lab train`` and ``lab pretrain`` are generated from their config dataclasses
(``lab.config.TrainConfig``, ``lab.models.pretrain.PretrainConfig``): one line of help per
field, the field's docstring.

Errors: one handler in :func:`main` turns the lab's own error types (``lab.errors.LabError``:
bad config values, files, run directories, model folders, devices) into one or two lines on
stderr and exit code 2, with nothing written; a failed run exits 1; any other exception is a
bug and keeps its traceback. ``lab train`` stops cleanly on Ctrl-C or SIGTERM at the next
step boundary (checkpoint kept, status ``interrupted``, exit 130 / 143); a second signal
stops at once.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from lab.cliargs import add_dataclass_args, build_config, load_config_file


def _train_parser(sub) -> None:
    from lab.config import TrainConfig

    p = sub.add_parser("train", help="train a policy with RLVR and write a run directory",
                       usage="lab train [--config FILE] [--FIELD VALUE ...] | lab train --resume RUN_DIR [--steps N]",
                       description="Train with RLVR. Every config field is a flag; --config FILE sets defaults that flags override.")
    p.add_argument("--config", metavar="FILE", help="JSON or YAML file of config fields (flags override it)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue RUN_DIR from its newest usable checkpoint with its saved config; only --steps N may be "
                        "given with it (the new total, e.g. to extend a finished run)")
    add_dataclass_args(p, TrainConfig, lenient=True)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    import dataclasses

    from lab.config import TrainConfig
    from lab.errors import UsageError
    from lab.train import train

    if args.resume:
        given = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(TrainConfig) if f.name != "steps" and hasattr(args, f.name)]
        given += ["--config"] if args.config else []
        if given:
            raise UsageError(f"--resume continues a run with its saved config; only --steps N may be given with it, not {', '.join(given)}")
        kwargs = {"resume": args.resume, "steps": getattr(args, "steps", None)}
    else:
        file_values = load_config_file(args.config) if args.config else {}
        kwargs = {"config": build_config(TrainConfig, args, file_values)}
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt  # the second signal: stop now
        received.append(signum)
        stop.set()
        print(f"\nlab train: {signal.Signals(signum).name}: stopping after this step (a checkpoint is kept); "
              "send it again to stop at once", file=sys.stderr)

    old = {}
    if threading.current_thread() is threading.main_thread():  # handlers can only be installed there
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, on_signal)
    try:
        run_dir = train(**kwargs, stop_event=stop)
    except KeyboardInterrupt:
        print("lab train: interrupted; continue with `lab train --resume RUN_DIR` (from its newest checkpoint)", file=sys.stderr)
        return 130
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    from lab.runs import read_status

    if received and read_status(run_dir).get("status") != "finished":  # the signal may come during the last step
        print(f"lab train: stopped; continue with `lab train --resume {run_dir}`", file=sys.stderr)
        print(run_dir)
        return 128 + received[0]
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
    except (ValueError, TypeError) as e:  # PretrainConfig's own checks (the lab's errors are caught in main too)
        print(f"lab pretrain: error: {e}", file=sys.stderr)
        return 2
    print(run_pretrain(cfg))
    return 0


def _runs_parser(sub) -> None:
    p = sub.add_parser("runs", help="list or show run directories")
    rs = p.add_subparsers(dest="runs_cmd", required=True)
    pl = rs.add_parser("list", help="one line per run under ROOT (broken runs too, with their problem)")
    pl.add_argument("root", nargs="*", default=["runs"], help="folder(s) holding run directories (default: runs)")
    pl.set_defaults(func=_cmd_runs_list)
    ps = rs.add_parser("show", help="config, status and last metrics of one run")
    ps.add_argument("run_dir", help="a run directory")
    ps.set_defaults(func=_cmd_runs_show)


LIST_COLUMNS = ["name", "status", "step", "estimator", "loss", "clip_measure", "rollouts_per_prompt", "seed",
                "eval_accuracy", "reward_mean", "problem"]


def _cmd_runs_list(args) -> int:
    from lab.runs import list_runs

    roots = args.root
    df = list_runs(roots)
    if df.empty:
        print(f"no runs under {', '.join(roots)}")
        return 0
    import pandas as pd

    if len(roots) > 1:
        df = df.assign(name=[str(Path(r) / n) for r, n in zip(df["root"], df["name"])])
    shown = df[LIST_COLUMNS].rename(columns={"rollouts_per_prompt": "G"})
    for col in ("step", "G", "seed"):  # integers stay integers where a broken run leaves a gap
        try:
            shown[col] = pd.to_numeric(shown[col]).astype("Int64")
        except (TypeError, ValueError):
            pass
    shown = shown.astype(object).where(shown.notna(), "")
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 80):
        print(shown.to_string(index=False))
    broken = df["problem"].notna().sum()
    if broken:
        print(f"{broken} of {len(df)} runs have a problem (see the last column; `lab runs show RUN` for details)")
    return 0


def _cmd_runs_show(args) -> int:
    from lab.runs import load_run

    from lab.runs import check_step_files

    run = load_run(args.run_dir, samples=False, probes=False)  # a LabError naming the file is reported by main
    run.problems += check_step_files(run.path)
    print(f"run      {run.path}")
    print(f"status   {run.status.get('status')} (step {run.status.get('step')})" + (f": {run.status['error']}" if run.status.get("error") else ""))
    print(f"format   {run.format_version}")
    print("config   " + json.dumps(run.config, sort_keys=True))
    for p in run.problems:
        print(f"problem  {p}")
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
    from lab.applaunch import demo_roots, serve_or_print  # the dashboard on the demo + sample runs
    return serve_or_print(demo_roots(args.output_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab", description="An interactive lab for RL with verifiable rewards.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _train_parser(sub)
    _pretrain_parser(sub)
    _runs_parser(sub)
    _demo_parser(sub)
    from lab.applaunch import add_parser as _app_parser

    _app_parser(sub)
    args = parser.parse_args(argv)
    from lab.errors import LabError

    try:
        return int(args.func(args) or 0)
    except LabError as e:  # the user's input: one or two lines, no traceback
        print(f"lab {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `lab runs show RUN | head`: the reader left, nothing went wrong
        sys.stderr.close()
        return 0
    except Exception as e:
        train_mod = sys.modules.get("lab.train")  # a run that failed (status failed, error recorded)
        if train_mod is not None and isinstance(e, train_mod.TrainingFailed):
            print(f"lab {args.cmd}: run failed: {e}", file=sys.stderr)
            return 1
        raise  # anything else is a bug: keep its traceback


if __name__ == "__main__":
    sys.exit(main())
