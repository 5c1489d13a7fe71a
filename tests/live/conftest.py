"""Fixtures for the live tests: a JACK server (the running one, or one started and ended here)
and the subprocesses the tests start, always cleaned up."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tools.bench.load import Load
from tools.link_scenario import netns_command
from tools.peers import MidiDump, Serve


@pytest.fixture(scope="session", autouse=True)
def busy_machine(request):
    """With `pytest --load`, every live test runs beside a CPU-and-disk load (the stage: a DAW
    on the cores, a disk busy with writes): two busy processes and one disk writer."""
    if not request.config.getoption("--load"):
        yield None
        return
    with Load(procs=2, threads=0, disk=1) as load:
        yield load


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


@pytest.fixture
def netns():
    """Network namespaces can be made here (`unshare --net`, root): the tests that run peers in
    one of their own (Link, the OSC flood) skip, saying why, where they cannot."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2)")
    probe = subprocess.run(netns_command(["true"]), capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here (root needed): {probe.stderr.strip()}")
