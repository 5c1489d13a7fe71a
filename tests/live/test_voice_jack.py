"""`livekomp serve` speaks: `/livekomp/say` over OSC (oscsend) is played through sounddevice
on the JACK server and recorded back by a JACK client, with the server's MIDI clock on the same
frame clock — the line starts on the next bar line."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from tools.peers import JackRecorder, connect, oscsend

pytestmark = [pytest.mark.jack, pytest.mark.liblo]

try:  # both raise OSError, not ImportError, when their C library (libjack, PortAudio) is missing
    import jack  # noqa: F401
    import sounddevice  # noqa: F401
except (ImportError, OSError) as exc:
    pytest.skip(f"no JACK-Client or sounddevice/PortAudio: {exc}", allow_module_level=True)


def bar_line_frames(
    midi: list[tuple[int, bytes]], bpm: float, rate: int, beats_per_bar: int = 4
) -> list[int]:
    """The frame of every bar line: the clock tick that starts it, counted from MIDI Start.

    Ticks are numbered by where they fall on the tick grid, not by counting them, so a cycle
    the Python recorder missed under load (and its tick) does not shift every later bar line.
    """
    ticks, started = [], False
    for frame, data in midi:
        if data[0] == 0xFA:
            started, ticks = True, []
        elif data[0] == 0xF8 and started:
            ticks.append(frame)
    period = rate * 60 / (bpm * 24)  # the tempo asked for (`python -m tools.bench clock` checks it)
    per_bar = 24 * beats_per_bar
    return [f for f in ticks if round((f - ticks[0]) / period) % per_bar == 0]


@pytest.fixture
def recorder(jack_server):
    rec = JackRecorder(f"lkrec{time.monotonic_ns() % 100000}")
    yield rec
    rec.close()


def portaudio_out(recorder: JackRecorder) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ports = recorder.client.get_ports("PortAudio", is_audio=True, is_output=True)
        if ports:
            return ports[0].name
        time.sleep(0.1)
    raise AssertionError("the server's audio output never appeared on the JACK server")


def test_a_line_sent_over_osc_is_heard_from_the_next_bar_line(serve_factory, recorder):
    serve = serve_factory("--bpm", "120", "--audio-out", "system", "--no-responses")
    connect(serve.port_label(), recorder.midi_in.name)
    recorder.client.connect(portaudio_out(recorder), recorder.audio_in.name)
    serve.wait_ready()
    time.sleep(2.3)  # into the second bar, away from a bar line
    sent_frame = recorder.frame_time
    oscsend(serve.osc_port, "/livekomp/say", "s", "Hello from the bar line.")
    placed = serve.wait_for("say on bar")
    time.sleep(4.0)
    assert serve.stop(signal.SIGTERM) == 0
    rate = recorder.sample_rate

    first_frame, audio = recorder.audio()
    loud = np.flatnonzero(np.abs(audio) > 2e-3)
    assert len(loud), "no sound came back from the server's audio output"
    onset = first_frame + int(loud[0])
    assert np.sqrt(np.mean(audio[loud[0] : loud[0] + rate] ** 2)) > 0.02  # speech, not a click
    bars = bar_line_frames(recorder.midi, 120, rate)
    assert len(bars) >= 3
    nearest = min(bars, key=lambda frame: abs(frame - onset))
    # On a bar line: within a few JACK periods (128 frames = 2.7 ms) of its first clock tick.
    assert abs(onset - nearest) < 0.010 * rate, (onset - nearest) / rate
    # And the next one it could make: after the OSC message, at most one bar line skipped for
    # rendering (a short line renders in well under a bar here).
    after = [frame for frame in bars if frame > sent_frame]
    assert nearest in after[:2]
    bar = int(placed.split("say on bar ")[1].split()[0])
    assert round((nearest - bars[0]) / (bars[1] - bars[0])) == bar

    summary = json.loads(serve.summary_path.read_text())
    [line] = summary["lines"]
    assert line["bar"] == bar and line["backend"] == "piper"
    assert summary["audio_out"]["lines"] == 1 and summary["audio_out"]["late"] == 0
    assert "Hello from the bar line." in serve.log()


def test_stopping_mid_line_silences_the_voice(serve_factory, recorder):
    serve = serve_factory("--bpm", "120", "--audio-out", "system", "--no-responses")
    recorder.client.connect(portaudio_out(recorder), recorder.audio_in.name)
    serve.wait_ready()
    long_line = "This is a long line that goes on and on. " * 4
    oscsend(serve.osc_port, "/livekomp/say", "s", long_line)
    serve.wait_for("say on bar")
    time.sleep(2.0)  # the line is playing
    stopped_frame = recorder.frame_time
    assert serve.stop(signal.SIGTERM) == 0
    time.sleep(0.5)
    first_frame, audio = recorder.audio()
    after = audio[stopped_frame - first_frame + recorder.sample_rate // 2 :]
    before = audio[: stopped_frame - first_frame]
    assert np.max(np.abs(before)) > 0.05  # it was speaking
    assert len(after) and np.max(np.abs(after)) < 1e-4  # and stopped with the server


def test_osc_stop_silences_a_line_mid_word_and_the_server_plays_on(serve_factory, recorder):
    serve = serve_factory("--bpm", "120", "--audio-out", "system", "--no-responses")
    recorder.client.connect(portaudio_out(recorder), recorder.audio_in.name)
    serve.wait_ready()
    oscsend(serve.osc_port, "/livekomp/say", "s", "This is a long line that goes on and on. " * 4)
    serve.wait_for("say on bar")
    time.sleep(2.5)  # the line is playing
    stop_frame = recorder.frame_time
    oscsend(serve.osc_port, "/livekomp/stop")
    time.sleep(1.5)
    assert serve.process.poll() is None  # still serving
    oscsend(serve.osc_port, "/livekomp/say", "s", "Back again.")  # heard with no transport
    time.sleep(2.0)
    assert serve.stop(signal.SIGTERM) == 0
    first_frame, audio = recorder.audio()
    rate = recorder.sample_rate
    stop = stop_frame - first_frame
    assert np.max(np.abs(audio[stop - rate : stop])) > 0.05  # it was speaking
    quiet = audio[stop + rate // 5 : stop + rate]
    assert np.max(np.abs(quiet)) < 1e-4  # silenced within 0.2 s of the OSC stop
    assert np.max(np.abs(audio[stop + rate :])) > 0.05  # and a new line is heard after it
    summary = json.loads(serve.summary_path.read_text())
    assert [line["text"] for line in summary["lines"]][-1] == "Back again."


def test_a_mood_word_over_osc_is_answered_from_the_lines_file(serve_factory, recorder, tmp_path):
    lines = tmp_path / "lines.toml"
    lines.write_text('[responses]\ngrief = ["Slowly now."]\njoy = ["Up we go."]\n')
    serve = serve_factory("--bpm", "120", "--audio-out", "system", "--lines", str(lines))
    recorder.client.connect(portaudio_out(recorder), recorder.audio_in.name)
    serve.wait_ready()
    oscsend(serve.osc_port, "/livekomp/mood", "s", "grief")
    serve.wait_for("say on bar")
    time.sleep(2.5)
    assert serve.stop(signal.SIGTERM) == 0
    summary = json.loads(serve.summary_path.read_text())
    [line] = summary["lines"]
    assert (line["kind"], line["text"], line["backend"]) == ("response", "Slowly now.", "piper")
    _, audio = recorder.audio()
    assert np.max(np.abs(audio)) > 0.05  # heard
