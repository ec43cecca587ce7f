"""``lab app``: start the Streamlit dashboard (``app/main.py``) on one or more run roots.

Roots come from ``--runs DIR`` (repeatable), else ``LAB_RUNS_DIR`` (``:``-separated), else
``runs/``; they reach the Streamlit process in the environment variable
``LAB_APP_ROOTS`` (a JSON list, read by ``app/data.py``). The server listens on
127.0.0.1 unless ``--host`` says otherwise and prints its URL; Ctrl-C stops it.

>>> resolve_roots(["a", "b"], {"LAB_RUNS_DIR": "x:y"}), resolve_roots(None, {"LAB_RUNS_DIR": "x:y"})
(['a', 'b'], ['x', 'y'])
>>> resolve_roots(None, {})
['runs']
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping, Sequence

from lab.paths import resource_path

APP_MAIN = resource_path("app/main.py")  # the checkout's app/, or the copy inside an installed wheel
ROOTS_ENV = "LAB_APP_ROOTS"
DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"


def resolve_roots(runs: Sequence[str] | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """``--runs`` values, else ``LAB_RUNS_DIR`` split on ``:``, else ``["runs"]``."""
    env = os.environ if environ is None else environ
    if runs:
        return [str(r) for r in runs]
    if env.get("LAB_RUNS_DIR"):
        return [r for r in env["LAB_RUNS_DIR"].split(":") if r]
    return ["runs"]


def port_free(port: int, host: str = DEFAULT_HOST) -> bool:
    """Can a server bind ``host:port`` now?

    Asked the way the server asks: with ``SO_REUSEADDR``, as tornado (Streamlit's server)
    binds. A port whose last connections sit in TIME_WAIT after a dashboard stopped is free
    to it; a port some process listens on is not.

    >>> with socket.socket() as s:
    ...     s.bind((DEFAULT_HOST, 0)); s.listen(); port_free(s.getsockname()[1])
    False
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let two servers share a port
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(start: int = DEFAULT_PORT, host: str = DEFAULT_HOST, tries: int = 50) -> int:
    """The first free port from ``start`` on (then any free port the OS gives)."""
    for p in range(start, start + tries):
        if port_free(p, host):
            return p
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def url(host: str, port: int) -> str:
    """The address to open; a wildcard bind (0.0.0.0) is shown as 127.0.0.1.

    >>> url("0.0.0.0", 8501)
    'http://127.0.0.1:8501'
    """
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}"


def streamlit_command(port: int, host: str = DEFAULT_HOST) -> list[str]:
    """The ``streamlit run`` command line of the dashboard (headless, no usage statistics),
    through :mod:`lab.appserver`, which imports the pages' heavy modules before serving."""
    return [
        sys.executable, "-m", "lab.appserver", "run", str(APP_MAIN),
        "--server.port", str(port), "--server.address", host, "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--global.developmentMode", "false", "--client.toolbarMode", "minimal",
    ]


def app_env(roots: Sequence[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the Streamlit process: the caller's plus ``LAB_APP_ROOTS``."""
    env = dict(os.environ if environ is None else environ)
    env[ROOTS_ENV] = json.dumps([str(r) for r in roots])
    return env


def start(roots: Sequence[str], port: int, host: str = DEFAULT_HOST, **popen) -> subprocess.Popen:
    """Start the dashboard as a child process (tests and benchmarks stop it themselves)."""
    return subprocess.Popen(streamlit_command(port, host), env=app_env(roots), **popen)


def serve(roots: Sequence[str], port: int = DEFAULT_PORT, host: str = DEFAULT_HOST) -> int:
    """Run the dashboard in the foreground until Ctrl-C; prints its URL first."""
    missing = [r for r in roots if not Path(r).exists()]
    for r in missing:
        print(f"lab app: note: runs root {r} does not exist (yet); it is listed once it does", file=sys.stderr)
    if not port_free(port, host):
        print(f"lab app: error: port {port} on {host} is in use; pass another with --port", file=sys.stderr)
        return 2
    print(f"lab app: dashboard on {url(host, port)} (runs: {', '.join(roots)}); Ctrl-C stops it", flush=True)
    proc = start(roots, port, host)
    # SIGTERM (a service manager, a test's terminate()) stops the dashboard like Ctrl-C does: without
    # this the streamlit child outlived `lab app` and kept its port
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print("lab app: stopped", flush=True)
        return 0
    finally:
        if main:
            signal.signal(signal.SIGTERM, old)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def command_text(roots: Sequence[str], port: int | None = None, host: str | None = None) -> str:
    """The ``lab app`` command for these roots.

    >>> command_text(["runs/demo", "data/sample_runs"])
    'lab app --runs runs/demo --runs data/sample_runs'
    """
    parts = ["lab", "app"] + [x for r in roots for x in ("--runs", str(r))]
    if port is not None:
        parts += ["--port", str(port)]
    if host is not None:
        parts += ["--host", host]
    return shlex.join(parts)


SAMPLE_RUNS = resource_path("data/sample_runs")


def demo_roots(output_dir: str | Path) -> list[str]:
    """The demo's runs plus the committed sample runs (when present): what ``make demo`` shows."""
    roots = [str(output_dir)]
    if SAMPLE_RUNS.is_dir():
        try:
            roots.append(os.path.relpath(SAMPLE_RUNS))
        except ValueError:  # another drive (Windows)
            roots.append(str(SAMPLE_RUNS))
    return roots


def serve_or_print(roots: Sequence[str], port: int | None = None, host: str = DEFAULT_HOST, *,
                   stream=None) -> int:
    """Start the dashboard when standard output is a terminal; otherwise print how to.

    ``make demo`` ends with this: a person lands on the dashboard, while CI and scripts
    (stdout not a TTY) get the command and the demo exits.
    """
    stream = sys.stdout if stream is None else stream
    if not (hasattr(stream, "isatty") and stream.isatty()):
        print(f"\nExplore these runs in the dashboard:  {command_text(roots)}", file=stream, flush=True)
        return 0
    return serve(roots, free_port(DEFAULT_PORT if port is None else port, host), host)


def add_parser(subparsers) -> None:
    """Register ``lab app`` on the CLI's subparsers."""
    p = subparsers.add_parser("app", help="start the Streamlit dashboard over run directories",
                              description="Explore runs in the browser: curves, advantages of every estimator on "
                                          "the same rollouts, value MSE, groups, clipping.")
    p.add_argument("--runs", action="append", metavar="DIR",
                   help="a folder of run directories (repeat for several; default: $LAB_RUNS_DIR, ':'-separated, else runs)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind (default {DEFAULT_HOST}: this machine only; 0.0.0.0 exposes it to the network)")
    p.set_defaults(func=_cmd_app)


def _cmd_app(args) -> int:
    return serve(resolve_roots(args.runs), args.port, args.host)
