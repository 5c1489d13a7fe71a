"""Session set-up: a JACK server for the tests that need one.

It is started before collection (some JACK tests decide at import whether to skip) and only if
none is running — CI starts its own — and it is stopped, by its PID, when the session ends.
"""

from __future__ import annotations

import sys

import pytest

from tests.jack import start_jack_server

_started_jack = None


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
