"""``lab``: the command line. Subcommands: train, pretrain, runs (list | show), demo, app.

Flags of ``lab train`` and ``lab pretrain`` are generated from their config dataclasses
(``lab.config.TrainConfig``, ``lab.models.pretrain.PretrainConfig``): one line of help per
field, the field's docstring.

Errors: :func:`main` is the one place an exception becomes what the user sees: one line on
stderr, ``lab <command>: error: ...`` or ``lab <command>: run failed: ...``, never a
traceback (``LAB_TRACEBACK=1`` prints it too). The exit code (:func:`describe_failure`):

* **2, refused**: the lab's input errors (``lab.errors.LabError``: config values, files, run
  directories, model folders, devices, task files; nothing is written), a missing optional
  package (``ImportError``, e.g. ``--rollout-backend vllm`` without vLLM) and unreadable model
  weights (a truncated or empty ``model.safetensors``);
* **1, failed**: a run that failed (``lab.errors.RunFailed``, ``TrainingFailed``: status
  ``failed``), a full disk or any other ``OSError``, ``MemoryError``, torch's
  ``RuntimeError`` s, and anything else (those also ask for a bug report);
* **130 / 143**: Ctrl-C / SIGTERM. ``lab train`` stops cleanly at the next step boundary
  (checkpoint kept, status ``interrupted``); a second signal stops at once.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
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
    pl.add_argument("root", nargs="*", default=None, help="folder(s) holding run directories (default: runs)")
    pl.set_defaults(func=_cmd_runs_list)
    ps = rs.add_parser("show", help="config, status and last metrics of one run")
    ps.add_argument("run_dir", help="a run directory")
    ps.set_defaults(func=_cmd_runs_show)


LIST_COLUMNS = ["name", "status", "step", "estimator", "loss", "clip_measure", "rollouts_per_prompt", "seed",
                "eval_accuracy", "reward_mean", "problem"]


def _cmd_runs_list(args) -> int:
    from lab.runs import list_runs

    roots = args.root or ["runs"]
    df = list_runs(roots, missing_ok=not args.root)  # a folder named on the command line must exist
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
    status = run.status if isinstance(run.status, dict) else {}
    print(f"run      {run.path}")
    print(f"status   {status.get('status')} (step {status.get('step')})" + (f": {status['error']}" if status.get("error") else ""))
    print(f"format   {run.format_version}")
    print("config   " + json.dumps(run.config, sort_keys=True, default=str))
    for p in run.problems:  # whatever the reader found: wrong-typed files, empty metrics, torn lines ...
        print(f"problem  {p}")
    metrics = getattr(run, "metrics", None)
    if metrics is not None and not metrics.empty:
        last = metrics.iloc[-1].dropna()
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


def _first_line(e: BaseException, limit: int = 400) -> str:
    from lab.errors import reason

    return reason(e, limit, join=True)


def _is_training_failed(e: BaseException) -> bool:
    train_mod = sys.modules.get("lab.train")  # a run that failed (status failed, error recorded)
    failed = getattr(train_mod, "TrainingFailed", None)
    return isinstance(failed, type) and isinstance(e, failed)


def describe_failure(e: BaseException) -> tuple[int, str]:
    """``(exit code, "error: ..." or "run failed: ...")`` for an exception that escaped a command.

    See the module docstring for the codes. ``SystemExit`` is not passed here (it is an exit).

    >>> from lab.errors import UsageError
    >>> describe_failure(UsageError("steps: must be an integer"))
    (2, 'error: steps: must be an integer')
    >>> describe_failure(OSError(errno.ENOSPC, "No space left on device"))[0]
    1
    """
    from lab.errors import LabError, RunFailed

    msg = _first_line(e)
    if isinstance(e, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(e, LabError):
        return 2, f"error: {msg}"
    if isinstance(e, RunFailed) or _is_training_failed(e):
        return 1, f"run failed: {msg}"
    if isinstance(e, ImportError):
        return 2, f"error: a package this needs is missing: {msg}"
    if type(e).__module__.split(".")[0] in ("safetensors", "safetensors_rust"):
        return 2, f"error: model weights are not readable ({type(e).__name__}: {msg}); the file is truncated, empty or not safetensors"
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return 1, (f"run failed: the disk is full ({msg}); free some space, then `lab train --resume RUN_DIR` "
                   "continues a run from its newest checkpoint")
    if isinstance(e, OSError):
        return 1, f"run failed: {type(e).__name__}: {msg}"
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return 1, (f"run failed: out of memory ({type(e).__name__}{': ' + msg if msg != type(e).__name__ else ''}); "
                   "lower --prompts-per-step, --rollouts-per-prompt or --max-new-tokens")
    return 1, (f"run failed: {type(e).__name__}: {msg} (unexpected; set LAB_TRACEBACK=1 to see where, "
               "and please report it)")


def main(argv: list[str] | None = None) -> int:
    """Run ``lab ARGV``; return the exit code. Every exception becomes one line (see the module docstring)."""
    prog = "lab"
    try:
        parser = argparse.ArgumentParser(prog="lab", description="An interactive lab for RL with verifiable rewards.")
        sub = parser.add_subparsers(dest="cmd", required=True)
        _train_parser(sub)
        _pretrain_parser(sub)
        _runs_parser(sub)
        _demo_parser(sub)
        from lab.applaunch import add_parser as _app_parser

        _app_parser(sub)
        args = parser.parse_args(argv)
        prog = f"lab {args.cmd}"
        return int(args.func(args) or 0)
    except SystemExit:
        raise  # argparse's usage errors and --help, or a command's own exit code
    except BrokenPipeError:  # e.g. `lab runs show RUN | head`: the reader left, nothing went wrong
        try:
            sys.stderr.close()
        except OSError:
            pass
        return 0
    except BaseException as e:  # noqa: BLE001 - the one place an exception meets the user
        code, line = describe_failure(e)
        if os.environ.get("LAB_TRACEBACK"):
            import traceback

            traceback.print_exc()
        try:
            print(f"{prog}: {line}", file=sys.stderr)
        except (OSError, ValueError):  # stderr closed or full: the exit code still tells
            pass
        return code


if __name__ == "__main__":
    sys.exit(main())
