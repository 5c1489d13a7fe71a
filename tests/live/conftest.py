"""Fixtures for the live tests: a JACK server (the running one, or one started and ended here)
and the subprocesses the tests start, always cleaned up."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.live.peers import MidiDump, Serve, jack_running


@pytest.fixture(scope="session")
def jack_server():
    """A JACK server on the dummy driver: the one running, or one started (and ended) here."""
    if jack_running():
        yield
        return
    if shutil.which("jackd") is None:
        pytest.skip("no JACK: install jackd2 (Debian) to run the live MIDI tests")
    process = subprocess.Popen(
        ["jackd", "-d", "dummy", "-r", "48000", "-p", "128"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        subprocess.run(["jack_wait", "-w", "-t", "10"], check=True, capture_output=True)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def serve_factory(tmp_path, jack_server):
    if shutil.which("oscsend") is None:
        pytest.skip("no oscsend: install liblo-tools (Debian) to run the live tests")
    started: list[Serve] = []

    def start(*args: str) -> Serve:
        serve = Serve(tmp_path, *args)
        started.append(serve)
        return serve

    yield start
    for serve in started:
        serve.kill()


@pytest.fixture
def midi_dump(tmp_path, jack_server):
    dumps: list[MidiDump] = []

    def start(name: str = "lkdump") -> MidiDump:
        dump = MidiDump(tmp_path, f"{name}{os.getpid()}")
        dumps.append(dump)
        return dump

    yield start
    for dump in dumps:
        dump.close()
