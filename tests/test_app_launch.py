"""`lab app` and the end of `lab demo`: roots, binding, and printing instead of serving off a TTY."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from lab import applaunch
from lab.cli import main


def test_roots_from_flags_then_environment_then_default(monkeypatch):
    monkeypatch.setenv("LAB_RUNS_DIR", "a:b")
    assert applaunch.resolve_roots(None) == ["a", "b"]
    assert applaunch.resolve_roots(["x", "y"]) == ["x", "y"]
    monkeypatch.delenv("LAB_RUNS_DIR")
    assert applaunch.resolve_roots(None) == ["runs"]


def test_the_server_binds_loopback_unless_told_otherwise_and_gets_the_roots():
    cmd = applaunch.streamlit_command(8600)
    assert cmd[1:5] == ["-m", "lab.appserver", "run", str(applaunch.APP_MAIN)]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8600"
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    env = applaunch.app_env(["runs/demo", "data/sample_runs"], {})
    assert json.loads(env["LAB_APP_ROOTS"]) == ["runs/demo", "data/sample_runs"]


def test_serve_or_print_prints_the_command_when_stdout_is_not_a_terminal():
    out = io.StringIO()
    assert applaunch.serve_or_print(["runs/demo", "data/sample_runs"], stream=out) == 0
    assert "lab app --runs runs/demo --runs data/sample_runs" in out.getvalue()


def test_demo_roots_add_the_committed_sample_runs():
    roots = applaunch.demo_roots("runs/demo")
    assert roots[0] == "runs/demo"
    assert len(roots) == (2 if applaunch.SAMPLE_RUNS.is_dir() else 1)


def test_lab_app_refuses_a_port_in_use(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["app", "--runs", "runs", "--port", str(port)]) == 2
    assert f"port {port}" in capsys.readouterr().err


def test_a_port_left_in_time_wait_counts_as_free_and_a_listening_one_does_not():
    # a server that closes its side of a connection first leaves it in TIME_WAIT (what a
    # dashboard does after the health check): binding as a server binds (SO_REUSEADDR) works
    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert not applaunch.port_free(port)
        cli = socket.create_connection(("127.0.0.1", port))
        conn, _ = srv.accept()
        conn.close()  # the server's side closes first -> TIME_WAIT on the server's port
        cli.recv(1)
        cli.close()
    assert applaunch.port_free(port)


@pytest.mark.slow
def test_lab_app_serves_the_dashboard_and_prints_its_url(tmp_path):
    port = applaunch.free_port(8700)
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "app", "--runs", str(tmp_path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in first
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "lab app did not come up"
                time.sleep(0.5)
    finally:
        proc.terminate()
        rc = proc.wait(timeout=30)  # lab app waits for its streamlit child before it exits
    assert rc == 0, proc.stdout.read()
    assert "lab app: stopped" in proc.stdout.read()
    # so once lab app has exited nothing listens on the port, and a new dashboard may bind it
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert applaunch.port_free(port), "the dashboard outlived lab app (SIGTERM not passed on)"
