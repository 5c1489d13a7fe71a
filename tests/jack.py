"""The JACK server the MIDI tests talk to: is one running, and which ports it has."""

from __future__ import annotations

import os
import shutil
import subprocess

# JACK clients start a server on demand unless told not to; a test must never do that.
NO_AUTOSTART = {**os.environ, "JACK_NO_START_SERVER": "1"}
START_HINT = "start one: jackd -d dummy -r 48000 -p 128 & jack_wait -w -t 10"


def jack_running() -> bool:
    if shutil.which("jack_lsp") is None:
        return False
    try:
        result = subprocess.run(["jack_lsp"], capture_output=True, env=NO_AUTOSTART, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def jack_ports() -> list[str]:
    result = subprocess.run(
        ["jack_lsp"], capture_output=True, text=True, env=NO_AUTOSTART, check=True, timeout=10
    )
    return result.stdout.splitlines()


def start_jack_server() -> subprocess.Popen[bytes] | None:
    """Start a JACK server on the dummy driver if none runs and jackd is installed.

    Returns the process to stop later, or None when one was already running or jackd is missing
    (then the JACK tests skip and say why).
    """
    if jack_running() or shutil.which("jackd") is None:
        return None
    process = subprocess.Popen(
        ["jackd", "-d", "dummy", "-r", "48000", "-p", "128"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        subprocess.run(["jack_wait", "-w", "-t", "10"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        process.terminate()
        process.wait(timeout=10)
        return None
    return process
