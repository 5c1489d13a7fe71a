"""The voice service in virtual time, with real espeak-ng renders and a sink that records: lines
start on bar lines (or beats), queue behind each other, and stop with the transport."""

from __future__ import annotations

import trio

from livekomp.clock.clock import MasterClock
from livekomp.inputs.events import ControlEvent, Param
from livekomp.mood import MoodState
from livekomp.speech import Speech
from livekomp.voice.service import SpokenLine, VoiceConfig, VoiceService
from livekomp.voice.tts import Speaker


class RecordingSink:
    def __init__(self) -> None:
        self.played: list[tuple[float, Speech]] = []
        self.silenced = 0

    def play_at(self, speech: Speech, at_s: float) -> None:
        self.played.append((at_s, speech))

    def silence(self) -> None:
        self.silenced += 1


def make_voice(espeak, **config):
    clock = MasterClock(120.0, now_s=trio.current_time)  # a bar is 2 s
    sink = RecordingSink()
    lines: list[SpokenLine] = []
    voice = VoiceService(
        Speaker([espeak]),
        clock,
        MoodState(),
        VoiceConfig(in_thread=False, **config),
        beats_per_bar=4,
        sink=sink,
        on_spoken=lines.append,
    )
    return voice, clock, sink, lines


async def test_a_line_starts_on_the_next_bar_line(espeak, autojump_clock):
    voice, clock, sink, lines = make_voice(espeak)
    async with trio.open_nursery() as nursery:
        await nursery.start(voice.serve)
        clock.start(trio.current_time())
        await trio.sleep(4.5)  # beat 9: a bar and a quarter past bar 2
        voice.on_control(ControlEvent(Param.SAY, "On the bar.", "test"))
        voice.say_nowait("Right after.")
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    (first_s, first), (second_s, _) = sink.played
    assert first_s == clock.time_at(12.0)  # bar 3
    assert first.duration_s < 2.0  # so the second line fits the very next bar line
    assert [line.bar for line in lines] == [3, 4]
    assert second_s >= first_s + first.duration_s
    assert lines[1].beat % 4 == 0


async def test_with_beat_alignment_a_line_starts_on_the_next_beat(espeak, autojump_clock):
    voice, clock, sink, _lines = make_voice(espeak, align="beat")
    async with trio.open_nursery() as nursery:
        await nursery.start(voice.serve)
        clock.start(trio.current_time())
        await trio.sleep(4.2)
        voice.say_nowait("On the beat.")
        await trio.sleep(4)
        nursery.cancel_scope.cancel()
    [(at_s, _)] = sink.played
    assert at_s == clock.time_at(9.0)


async def test_stop_silences_the_voice_and_drops_lines_waiting_for_their_bar(
    espeak, autojump_clock
):
    voice, clock, sink, lines = make_voice(espeak)
    async with trio.open_nursery() as nursery:
        await nursery.start(voice.serve)
        clock.start(trio.current_time())
        await trio.sleep(0.5)
        voice.say_nowait("Never heard.")
        await trio.sleep(0.5)  # rendered, waiting for bar 1 (at 2 s)
        voice.silence()
        await trio.sleep(3)
        voice.say_nowait("Heard after the stop.")
        await trio.sleep(4)
        nursery.cancel_scope.cancel()
    assert sink.silenced == 1
    assert [speech.backend for _, speech in sink.played] == ["espeak-ng"]
    assert lines[0].dropped and lines[0].dropped.startswith("silenced")
    assert lines[1].text == "Heard after the stop." and lines[1].dropped is None


async def test_a_full_queue_drops_and_counts(espeak, autojump_clock):
    voice, clock, _sink, lines = make_voice(espeak, queue=2)
    clock.start(trio.current_time())
    results = [voice.say_nowait(f"Line {i}.") for i in range(4)]
    assert results == [True, True, False, False]
    assert voice.counts["dropped"] == 2
    assert [line.dropped for line in lines] == ["queue full", "queue full"]


async def test_without_a_running_clock_a_line_is_spoken_at_once(espeak, autojump_clock):
    voice, _clock, sink, lines = make_voice(espeak, lead_s=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(voice.serve)
        asked_s = trio.current_time()
        voice.say_nowait("No transport.")
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    [(at_s, _)] = sink.played
    assert at_s == asked_s + 0.05 and lines[0].bar is None
