"""A notebook launcher for short training runs: a form, Start/Stop/Resume, and a live figure.

``Launcher()`` builds an ipywidgets form from :class:`~lab.config.TrainConfig` itself: one
input per field, its help text the docstring under the field (``lab.cliargs.field_docs``),
choices read from the registries (estimators, loss rules, clip measures, tasks, ...). A
field added to ``TrainConfig`` appears in the form with no edit here: its type picks the input.

**Where training runs.** Start launches ``lab.train.train(config, stop_event=..., callback=...)``
in a separate Python process (``multiprocessing`` with the *spawn* method), not in a thread of
the kernel. ``train`` seeds the global RNGs of torch, numpy and ``random``, and torch's thread
pool is per process; in a thread those would be the notebook's own and would interleave with
whatever the notebook does meanwhile. In a child process the kernel's RNG states and
``torch.get_num_threads()`` are never touched, and a crash in training cannot take the kernel
down. The child sends each step's metrics (``train``'s per-step ``callback``) through a queue;
a small follower thread in the kernel appends them to a plotly ``FigureWidget``: reward,
held-out accuracy and the probe value error of each estimator. Stop sets the shared stop
event: the run ends at the next step boundary with status ``interrupted`` and can be resumed
(Resume, or ``lab train --resume RUN_DIR``). The run directory is an ordinary one under
``output_dir`` (``runs/`` of the repository by default), and the launcher shows the command
that opens it in the dashboard.

Everything the buttons do is a method (``start``, ``stop``, ``resume``, ``wait``), so the
launcher is tested headlessly (``tests/test_widgets.py``) and scriptable from a notebook cell.

>>> la = Launcher(steps=3, prompts_per_step=2)
>>> la.config().steps, la.config().prompts_per_step
(3, 2)
>>> from lab import estimators
>>> list(la.fields["estimator"].options) == estimators.available()
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import os
import queue
import threading
import time
import types
import typing
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.cliargs import field_docs
from lab.config import ConfigError, TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

MAIN_FIELDS = (
    "estimator", "shadow_estimators", "loss", "clip_measure", "clip_delta", "rollouts_per_prompt",
    "prompts_per_step", "steps", "lr", "prompt_reuse", "task", "model", "device",
)
"""Fields shown first; every other field of TrainConfig is under "More settings"."""

LAUNCHER_DEFAULTS = dict(steps=60, prompt_reuse=2, probe_every=2, probe_prompts=16, probe_samples=32, eval_every=5,
                         checkpoint_every=10)
"""Where the form starts (besides device, output_dir and quiet), chosen so the shadow estimators
differ visibly in a short run on CPU: probes every 2 steps on a fixed prompt set (KAE's probe
instance sees its previous probe: its window floor of 3 steps covers 2), each prompt reused
for 2 steps (KAE and BLEND use their history in training too), 32 Monte-Carlo samples per
probe prompt (a value-error standard error small enough to tell the estimators apart), 60
steps. Every other field starts at ``TrainConfig``'s default."""

PANELS = ("reward/mean", "eval/accuracy", "probe value MSE")
"""The live figure's three panels (columns)."""


def _choices() -> dict[str, Callable[[], list[str]]]:
    """Fields whose valid values are a known list: read from the registries at form-build time."""
    import torch

    from lab import estimators, losses, rollout, tasks

    return {
        "estimator": estimators.available,
        "shadow_estimators": lambda: ["all", *estimators.available()],
        "loss": losses.available_rules,
        "clip_measure": losses.available_measures,
        "loss_agg": lambda: list(losses.AGG_MODES),
        "kl_estimator": losses.available_kl,
        "task": tasks.available,
        "rollout_backend": rollout.available,
        "device": lambda: ["cuda", "cpu", "auto"] if torch.cuda.is_available() else ["cpu", "auto", "cuda", "mps"],
        "dtype": lambda: ["auto", "float32", "bfloat16", "float16"],
        "probe_set": lambda: ["fixed", "batch"],
    }


def default_device() -> str:
    """``"cuda"`` when a CUDA device is present, else ``"cpu"`` (the form's default)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_runs_dir() -> Path:
    """``runs/`` of the repository for a source checkout, else ``./runs``."""
    return REPO_ROOT / "runs" if (REPO_ROOT / "pyproject.toml").exists() else Path("runs")


def notebook_runs_dir(notebook: str) -> Path:
    """Where a notebook's live runs go: ``runs/notebooks/<notebook>/<time>/`` (a fresh folder).

    The root is ``$LAB_NOTEBOOK_RUNS`` when set (the notebook tests point it at a temporary
    folder), else :func:`default_runs_dir` ``/ "notebooks"``. Open them all in the dashboard
    with ``lab app --runs runs/notebooks``.

    >>> import os, tempfile
    >>> os.environ["LAB_NOTEBOOK_RUNS"] = tempfile.mkdtemp()
    >>> p = notebook_runs_dir("01_kernel_smoothing")
    >>> p.is_dir(), p.parent.name
    (True, '01_kernel_smoothing')
    >>> del os.environ["LAB_NOTEBOOK_RUNS"]
    """
    root = Path(os.environ["LAB_NOTEBOOK_RUNS"]) if os.environ.get("LAB_NOTEBOOK_RUNS") else default_runs_dir() / "notebooks"
    base = root / notebook / datetime.now().strftime("%Y%m%d-%H%M%S")
    out, k = base, 1
    while out.exists():
        out, k = base.with_name(f"{base.name}-{k}"), k + 1
    out.mkdir(parents=True)
    return out


def dashboard_command(runs_dir: str | Path) -> str:
    """The shell command that opens the runs under ``runs_dir`` in the dashboard.

    >>> dashboard_command("runs")
    'lab app --runs runs'
    """
    from lab.applaunch import command_text

    return command_text([str(runs_dir)])


# --- form: one input per TrainConfig field ------------------------------------------------------
def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) for ``X``, ``Optional[X]`` and ``X | None``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return tp, False


def _field_widget(name: str, tp: Any, default: Any, choices: list[str] | None, help_text: str) -> W.Widget:
    base, optional = _base_type(tp)
    origin = typing.get_origin(base) or base
    common = dict(description=name, tooltip=help_text, style={"description_width": "150px"},
                  layout=W.Layout(width="380px"))
    if choices is not None and origin in (tuple, list):
        vals = [v for v in default if v in choices]
        return W.SelectMultiple(options=choices, value=tuple(vals), rows=min(6, len(choices)), **common)
    if choices is not None and origin is str and not optional:
        opts = list(choices) if default in choices else [default, *choices]
        return W.Dropdown(options=opts, value=default, **common)
    if origin is bool:
        return W.Checkbox(value=bool(default), indent=False, **common)
    if origin is int and not optional:
        return W.IntText(value=int(default), **common)
    if origin is float and not optional:
        return W.FloatText(value=float(default), **common)
    # everything else is text: dicts as JSON, tuples comma-separated, optional values "none"
    if origin is dict:
        text = json.dumps(default)
    elif origin in (tuple, list):
        text = ",".join(map(str, default))
    else:
        text = "none" if default is None else str(default)
    return W.Text(value=text, **common)


def _parse(name: str, tp: Any, widget: W.Widget) -> Any:
    """The config value of one input; a ``ConfigError`` naming the field when the text is unreadable."""
    base, optional = _base_type(tp)
    origin = typing.get_origin(base) or base
    val = widget.value
    if not isinstance(widget, W.Text):
        return tuple(val) if origin in (tuple, list) else val
    text = val.strip()
    if optional and text.lower() in ("", "none", "null"):
        return None
    try:
        if origin is dict:
            out = json.loads(text or "{}")
            if not isinstance(out, dict):
                raise ValueError
            return out
        if origin in (tuple, list):
            inner = (typing.get_args(base) or (str,))[0]
            return tuple(inner(s.strip()) for s in text.split(",") if s.strip())
        if origin is int:
            return int(text)
        if origin is float:
            return float(text)
    except (ValueError, TypeError):
        raise ConfigError(f"{name}: cannot read {text!r} as {getattr(origin, '__name__', origin)}; fix it in the form") from None
    return text


# --- the training process -------------------------------------------------------------------------
def _plain(metrics: dict) -> dict:
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _exited(proc, timeout: float = 0.0) -> bool:
    """True once the child process has exited, waiting up to ``timeout`` seconds.

    Asks the process's sentinel (a pipe the OS closes when the child dies), not ``is_alive``:
    the Launcher's threads (the follower, the Stop watchdog, ``wait``) may look at one child at
    once, and when two of them join it the loser of the race on ``waitpid`` reads "alive"
    until the winner records the exit code, so ``running`` said True after the run had ended.
    The sentinel's answer does not depend on who reaped the child.
    """
    from multiprocessing.connection import wait as wait_ready

    if not wait_ready([proc.sentinel], timeout):
        return False
    # reap it here if no other thread has. The sentinel closes as the child's files close, a moment before the
    # child can be reaped: a join with a short timeout waits in waitpid for that moment (at once if it is reaped
    # already, and harmless if another thread reaped it: waitpid then says "no such child", which join ignores)
    proc.join(1)
    return True


def _worker(config: dict | None, resume: str | None, steps: int | None, stop_event, messages) -> None:
    """Runs in the child process: train, reporting every step and the end through ``messages``."""
    try:
        from lab.train import train

        def callback(step: int, metrics: dict) -> None:
            messages.put(("step", int(step), _plain(metrics)))

        cfg = TrainConfig.from_dict(config) if config is not None else None
        path = train(cfg, resume=resume, steps=steps, stop_event=stop_event, callback=callback)
        messages.put(("done", str(path), None))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the notebook
        messages.put(("error", f"{type(e).__name__}: {e}", None))


class Launcher:
    """The launcher: ``display(Launcher().widget)`` in a notebook, or drive it by its methods.

    ``overrides`` set the form's starting values (e.g. ``Launcher(steps=20)``); by default
    the form starts from TrainConfig's defaults overridden by :data:`LAUNCHER_DEFAULTS`, with the
    device CUDA when present, else CPU, output under the repository's ``runs/`` and ``quiet`` on
    (the child has no notebook cell to draw a progress bar in).

    Attributes: ``fields`` (name -> input widget), ``figure`` (the live ``FigureWidget``),
    ``run_dir`` (the current or last run), ``history`` (list of (step, metrics) received).
    """

    def __init__(self, **overrides: Any):
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(overrides) - names
        if unknown:
            raise ConfigError(f"unknown config fields {sorted(unknown)}; valid fields: {', '.join(sorted(names))}")
        start = {**LAUNCHER_DEFAULTS, "device": default_device(), "output_dir": str(default_runs_dir()), "quiet": True,
                 **overrides}
        self._hints = typing.get_type_hints(TrainConfig)
        docs = field_docs(TrainConfig)
        choices = _choices()
        self.fields: dict[str, W.Widget] = {}
        self._help: dict[str, str] = {}
        for f in dataclasses.fields(TrainConfig):
            if not f.init:
                continue
            default = start.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
            opts = choices[f.name]() if f.name in choices else None
            self._help[f.name] = docs.get(f.name, "")
            self.fields[f.name] = _field_widget(f.name, self._hints[f.name], default, opts, self._help[f.name])
        self.figure = self._new_figure()
        self.run_dir: Path | None = None
        self.history: list[tuple[int, dict]] = []
        self.error: str | None = None
        self._proc: mp.process.BaseProcess | None = None
        self._stop = None
        self._follower: threading.Thread | None = None
        self._lock = threading.Lock()
        self.start_button = W.Button(description="Start", button_style="success", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.resume_button = W.Button(description="Resume", icon="repeat", disabled=True)
        self.start_button.on_click(lambda _b: self._safe(self.start))
        self.stop_button.on_click(lambda _b: self._safe(self.stop))
        self.resume_button.on_click(lambda _b: self._safe(self.resume))
        self.status = W.HTML("Ready: set the fields and press Start.")
        self.command = W.HTML("")
        self.widget = self._layout()

    # ..... layout ...............................................................................
    def _row(self, name: str) -> W.Widget:
        return W.HBox([self.fields[name], W.HTML(f"<span style='color:#666'>{self._help[name]}</span>",
                                                 layout=W.Layout(width="520px"))])

    def _layout(self) -> W.Widget:
        main = [self._row(n) for n in MAIN_FIELDS if n in self.fields]
        more = [self._row(n) for n in self.fields if n not in MAIN_FIELDS]
        acc = W.Accordion(children=[W.VBox(more)], titles=("More settings",))
        acc.selected_index = None
        buttons = W.HBox([self.start_button, self.stop_button, self.resume_button])
        return W.VBox([W.VBox(main), acc, buttons, self.status, self.command, self.figure])

    def _new_figure(self) -> go.FigureWidget:
        fig = make_subplots(rows=1, cols=3, subplot_titles=PANELS, horizontal_spacing=0.08)
        fig.add_scatter(x=[], y=[], mode="lines+markers", name="reward/mean", row=1, col=1)
        fig.add_scatter(x=[], y=[], mode="lines+markers", name="eval/accuracy", row=1, col=2)
        fig.update_xaxes(title_text="step")
        fig.update_layout(height=340, margin=dict(l=40, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.25))
        return go.FigureWidget(fig)

    def _safe(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except (ConfigError, ValueError, RuntimeError) as e:
            self.status.value = f"<b style='color:#b00'>{e}</b>"

    # ..... config ................................................................................
    def values(self) -> dict[str, Any]:
        """The form's value of every field, parsed (``ConfigError`` naming a field whose text is unreadable)."""
        return {n: _parse(n, self._hints[n], w) for n, w in self.fields.items()}

    def config(self) -> TrainConfig:
        """The TrainConfig the form describes (``ConfigError`` naming the field if it is invalid)."""
        return TrainConfig(**self.values())

    @property
    def running(self) -> bool:
        return self._proc is not None and not _exited(self._proc)

    # ..... actions ...............................................................................
    def start(self) -> Path:
        """Start a new run from the form; returns its run directory (created by the child)."""
        if self.running:
            raise RuntimeError("a run is already going: press Stop first")
        cfg = self.config()
        if cfg.run_name is None:
            from lab.train import default_run_name

            cfg = cfg.replace(run_name=default_run_name(cfg))
        run_dir = Path(cfg.output_dir) / cfg.run_name
        if (run_dir / "config.json").exists():
            raise ConfigError(f"run_name: {run_dir} already holds a run; change run_name or press Resume")
        self._launch(run_dir, cfg.to_dict(), None, None)
        return run_dir

    def resume(self, run_dir: str | Path | None = None, *, steps: int | None = None) -> Path:
        """Continue ``run_dir`` (default: the last run) from its newest checkpoint.

        ``steps`` extends a finished run to that many steps in total.
        """
        if self.running:
            raise RuntimeError("a run is already going: press Stop first")
        target = Path(run_dir) if run_dir is not None else self.run_dir
        if target is None:
            raise ValueError("resume: no run to resume yet; press Start first or give run_dir")
        self._launch(target, None, str(target), steps)
        return target

    def _launch(self, run_dir: Path, config: dict | None, resume: str | None, steps: int | None) -> None:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        messages = ctx.Queue()
        self.run_dir, self.error = run_dir, None
        self.history = []
        self.figure = self._reset_figure()
        if resume is not None:
            self._prefill(run_dir)
        self._proc = ctx.Process(target=_worker, args=(config, resume, steps, self._stop, messages), daemon=True,
                                 name=f"lab-train-{run_dir.name}")
        self._proc.start()
        self._follower = threading.Thread(target=self._follow, args=(self._proc, messages), daemon=True)
        self._follower.start()
        self.start_button.disabled = self.resume_button.disabled = True
        self.stop_button.disabled = False
        self.status.value = f"Running <code>{run_dir}</code> (process {self._proc.pid}) ..."
        self.command.value = (f"Open it in the dashboard: <code>{dashboard_command(run_dir.parent)}</code>; "
                              f"resume from a shell: <code>lab train --resume {run_dir}</code>")

    def stop(self, timeout: float = 120.0, *, wait: bool = False) -> str | None:
        """Ask the run to end at the next step boundary (status ``interrupted``) and return at once
        (the Stop button: the kernel is never blocked); ``wait=True`` waits for the end.

        A watchdog thread terminates the child if it has not finished ``timeout`` seconds later
        (the run then reads as ``interrupted`` by liveness). Returns the run's status on disk
        (still ``running`` when not waiting and the step is not done yet).
        """
        if self._stop is None or self._proc is None:
            return None
        self._stop.set()
        self.status.value = "Stopping at the next step boundary ..."
        proc, follower = self._proc, self._follower
        watchdog = threading.Thread(target=self._end_child, args=(proc, follower, timeout), daemon=True)
        watchdog.start()
        if wait:
            watchdog.join()
        return self.run_status()

    @staticmethod
    def _end_child(proc, follower, timeout: float) -> None:
        if not _exited(proc, timeout):
            proc.terminate()
            _exited(proc, 10)
        if follower is not None:
            follower.join(10)

    def wait(self, *, min_steps: int | None = None, timeout: float = 600.0) -> bool:
        """Block until ``min_steps`` steps were received (or the run ended); True if reached.

        Without ``min_steps``, waits for the run to end.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                n = len(self.history)
            if min_steps is not None and n >= min_steps:
                return True
            if self._follower is None or not self._follower.is_alive():
                if self._proc is not None:
                    _exited(self._proc, 10)  # the child sent its last word: let it exit
                return min_steps is None or n >= min_steps
            time.sleep(0.1)
        return False

    def run_status(self) -> str | None:
        """Status of the current run as ``lab.runs`` reads it (liveness applied)."""
        if self.run_dir is None or not (self.run_dir / "status.json").exists():
            return None
        from lab import runs

        return runs.read_status(self.run_dir).get("status")

    # ..... the live figure .......................................................................
    def _reset_figure(self) -> go.FigureWidget:
        fig = self.figure
        with fig.batch_update():
            fig.data = fig.data[:2]
            for tr in fig.data:
                tr.x, tr.y = (), ()
        return fig

    def _prefill(self, run_dir: Path) -> None:
        from lab import runs

        try:
            metrics = runs.load_run(run_dir, samples=False, probes=False).metrics
        except (ValueError, OSError):
            return
        for rec in metrics.to_dict("records"):
            self._add(int(rec["step"]), _plain({k: v for k, v in rec.items() if v == v}), record=False)

    def _add(self, step: int, metrics: dict, *, record: bool = True) -> None:
        """Append one step's numbers to the figure (and to ``history``)."""
        fig = self.figure
        with self._lock:
            if record:
                self.history.append((step, metrics))
            with fig.batch_update():
                for i, key in enumerate(("reward/mean", "eval/accuracy")):
                    v = metrics.get(key)
                    if v is not None and math.isfinite(v):
                        tr = fig.data[i]
                        tr.x, tr.y = (*tr.x, step), (*tr.y, v)
                for key, v in metrics.items():
                    if not key.startswith("probe/value_mse_corrected/") or not math.isfinite(v):
                        continue
                    est = key.rsplit("/", 1)[1]
                    tr = next((t for t in fig.data if t.name == est), None)
                    if tr is None:
                        fig.add_scatter(x=[], y=[], mode="lines+markers", name=est, row=1, col=3)
                        tr = fig.data[-1]
                    tr.x, tr.y = (*tr.x, step), (*tr.y, v)

    def _follow(self, proc, messages) -> None:
        """Kernel-side thread: move the child's messages into the figure until the run ends."""
        while True:
            try:
                kind, a, b = messages.get(timeout=0.2)
            except queue.Empty:
                if _exited(proc):
                    try:  # the last messages may still be in the pipe
                        kind, a, b = messages.get(timeout=1.0)
                    except queue.Empty:
                        self._finish(None, "the training process ended without a word (killed?)")
                        return
                else:
                    continue
            if kind == "step":
                self._add(a, b)
                self.status.value = f"Running <code>{self.run_dir}</code>: step {a} done."
            elif kind == "done":
                self._finish(a, None)
                return
            else:
                self._finish(None, a)
                return

    def _finish(self, path: str | None, error: str | None) -> None:
        self.error = error
        status = self.run_status()
        if error:
            self.status.value = f"<b style='color:#b00'>Training stopped: {error}</b> (status: {status})"
        else:
            self.status.value = f"Run <code>{path}</code> ended with status <b>{status}</b>."
        self.start_button.disabled = False
        self.resume_button.disabled = self.run_dir is None
        self.stop_button.disabled = True
