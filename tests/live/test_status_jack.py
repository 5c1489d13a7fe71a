"""`serve` on a terminal draws the status view; on a pipe it logs lines as before."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time

from pythonosc.udp_client import SimpleUDPClient


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_command(port: int, tmp_path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "livekomp.cli", "serve", "--midi-api", "jack",
        "--osc-port", str(port), "--composer", "rules", "--voice", "none",
        "--ready-file", str(tmp_path / "ready.json"), *extra,
    ]  # fmt: skip


def read_until(fd: int, wanted: bytes, timeout_s: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
    return seen


def test_on_a_terminal_serve_shows_the_view_and_the_controls(jack_server, tmp_path):
    port = free_udp_port()
    log_file = tmp_path / "serve.log"
    main_fd, child_fd = pty.openpty()
    serve = subprocess.Popen(
        serve_command(port, tmp_path, "--log-file", str(log_file)),
        stdin=child_fd, stdout=child_fd, stderr=child_fd, close_fds=True,
    )  # fmt: skip
    os.close(child_fd)
    try:
        shown = read_until(main_fd, b"composer", 60)
        assert b"transport" in shown and b"composer" in shown
        osc = SimpleUDPClient("127.0.0.1", port)
        osc.send_message("/livekomp/mood", "sad")
        shown = read_until(main_fd, b"mood 'sad' from osc", 20)
        assert b"mood 'sad' from osc" in shown
        osc.send_message("/livekomp/stop", [])
        shown = read_until(main_fd, b"stop from osc", 20)
        assert b"stop from osc" in shown  # the view's last control
    finally:
        serve.send_signal(signal.SIGINT)
        read_until(main_fd, b"\0", 10)  # keep draining until it exits
        serve.wait(20)
        os.close(main_fd)
    assert serve.returncode == 0
    lines = log_file.read_text()
    assert "stop from osc" in lines and "stopped after" in lines
    assert "each bar logs:" in lines  # the log lines went to the file, not over the view


def test_on_a_pipe_serve_logs_lines(jack_server, tmp_path):
    port = free_udp_port()
    serve = subprocess.Popen(
        serve_command(port, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        SimpleUDPClient("127.0.0.1", port).send_message("/livekomp/stop", [])
        time.sleep(1.0)
    finally:
        serve.send_signal(signal.SIGINT)
        out, _ = serve.communicate(timeout=20)
    text = out.decode()
    assert "each bar logs:" in text and "stop from osc" in text
    assert "╭" not in text  # no view drawn on a pipe
