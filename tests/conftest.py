"""Session set-up: a JACK server for the tests that need one.

It is started before collection (some JACK tests decide at import whether to skip) and only if
none is running — CI starts its own — and it is stopped, by its PID, when the session ends.
"""

from __future__ import annotations

import os
import sys

import pytest
import rtmidi

from tests.jack import START_HINT, jack_running, start_jack_server

_started_jack = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--load",
        action="store_true",
        help="run the live tests beside a CPU-and-disk load: two busy processes and a writer "
        "that syncs 300 MB to disk and compresses it, over and over (tools.bench.load)",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    global _started_jack
    _started_jack = start_jack_server()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _started_jack is not None:
        # PortAudio's JACK host API aborts the interpreter at exit (an assertion in Pa_Terminate)
        # if its server is gone by then, so close PortAudio while the server still runs.
        sounddevice = sys.modules.get("sounddevice")
        while sounddevice is not None and sounddevice._initialized:
            sounddevice._terminate()
        _started_jack.terminate()
        _started_jack.wait(timeout=10)


@pytest.fixture(scope="session")
def jack_server() -> None:
    """A running JACK server (see `pytest_sessionstart`); a test that needs one skips without.

    Clients are told never to start one of their own (JACK_NO_START_SERVER)."""
    if not jack_running():
        pytest.skip(f"no JACK server running (install jackd2, or {START_HINT})")
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        pytest.skip("this python-rtmidi was built without JACK")
    os.environ["JACK_NO_START_SERVER"] = "1"
