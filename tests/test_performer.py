"""The performer in virtual time, with a composer that records what it was asked and an
in-memory port that records what was sent."""

import itertools
import logging
import math

import pytest
import trio

from livekomp.clock.clock import MasterClock
from livekomp.composer import ComposerService
from livekomp.dispatch.dispatcher import VirtualDispatcher
from livekomp.dispatch.tracked import TrackedOutput
from livekomp.inputs.events import ControlEvent, Param
from livekomp.inputs.mapping import load_mapping
from livekomp.mood import Mood, MoodState
from livekomp.music import messages
from livekomp.music.phrase import BarRequest, ComposedBar, Note, Part
from livekomp.outputs.midi import MemoryOutput
from livekomp.performer import (
    Performer,
    PerformerConfig,
    expression_ratio,
    render_clock_ticks,
    render_notes_by_beat,
    scale_velocity,
)
from livekomp.router import ControlRouter


class RecordingComposer:
    """One whole-bar melody note a bar, its pitch telling the valence it was asked for."""

    name = "recording"

    def __init__(self, fail_at: int | None = None) -> None:
        self.requests: list[BarRequest] = []
        self.fail_at = fail_at

    def compose_bar(self, request: BarRequest) -> ComposedBar:
        self.requests.append(request)
        if request.index == self.fail_at:
            raise RuntimeError("model exploded")
        pitch = 60 + round(request.valence * 10)
        parts = {
            Part.MELODY: (Note(pitch, 0.0, float(request.beats_per_bar), 90),),
            Part.BASS: (Note(36, 0.0, 1.0, 80), Note(43, 2.0, 1.0, 80)),
        }
        return ComposedBar(request.index, request.beats_per_bar, parts, self.name)


class Rig:
    def __init__(self, composer=None, *, bpm=120.0, clock_out=True, fallback=None):
        self.clock = MasterClock(bpm, now_s=trio.current_time)
        self.port = MemoryOutput(now_s=trio.current_time)
        self.output = TrackedOutput(self.port)
        self.dispatcher = VirtualDispatcher(self.clock, self.output)
        self.composer = composer or RecordingComposer()
        self.mood = MoodState(slew_s=0.0)
        self.performer = Performer(
            self.clock,
            self.dispatcher,
            ComposerService(self.composer, fallback),
            self.mood,
            PerformerConfig(beats_per_bar=4, lookahead_beats=1.0, clock_out=clock_out),
        )
        self.router = ControlRouter(self.mood, self.clock, self.performer)

    def sent(self, predicate):
        return [m for m in self.port.sent if predicate(m.data)]


def note_ons(rig, channel=None):
    return rig.sent(lambda d: messages.is_note_on(d) and (channel is None or d[0] & 15 == channel))


async def test_bars_land_on_bar_lines_with_clock_ticks(autojump_clock):
    rig = Rig()
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.dispatcher.serve)
        await rig.performer.serve(max_bars=3)
        nursery.cancel_scope.cancel()
    origin = rig.clock.time_at(0.0)
    melody = note_ons(rig, 0)
    assert [m.beat for m in melody] == [0.0, 4.0, 8.0]
    for m in rig.port.sent:  # each message went out at its beat's time, exactly
        assert m.time_s == pytest.approx(origin + m.beat * 0.5, abs=1e-9)
    ticks = rig.sent(lambda d: d == bytes([messages.CLOCK_TICK]))
    assert len(ticks) == 3 * 4 * 24
    starts = rig.sent(lambda d: d == bytes([messages.CLOCK_START]))
    assert len(starts) == 1 and starts[0].time_s < ticks[0].time_s
    assert rig.sent(lambda d: d == bytes([messages.CLOCK_STOP]))
    assert not rig.output.sounding


async def test_content_changes_land_on_the_next_bar_line(autojump_clock):
    rig = Rig()
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.dispatcher.serve)

        async def move_fader():
            # Half-way through bar 1 (beats 4..8): bar 2 is planned at beat 7.
            await rig.clock.sleep_until_beat(6.0)
            rig.router.handle(ControlEvent(Param.VALENCE, 1.0))

        await nursery.start(rig.performer.serve)  # starts the clock
        nursery.start_soon(move_fader)
        await rig.clock.sleep_until_beat(16.5)
        rig.performer.stop()
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    pitches = [m.data[1] for m in note_ons(rig, 0)]
    assert pitches == [60, 60, 70, 70, 70]  # bars 0..4; bar 4 was planned at beat 15


async def test_tempo_change_takes_effect_on_the_next_beat(autojump_clock):
    rig = Rig(bpm=120)
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.dispatcher.serve)

        async def speed_up():
            await rig.clock.sleep_until_beat(2.5)
            rig.router.handle(ControlEvent(Param.TEMPO, 60.0))

        nursery.start_soon(speed_up)
        await rig.performer.serve(max_bars=2)
        nursery.cancel_scope.cancel()
    ticks = rig.sent(lambda d: d == bytes([messages.CLOCK_TICK]))
    gaps = [b.time_s - a.time_s for a, b in itertools.pairwise(ticks)]
    assert gaps[: 3 * 24] == pytest.approx([0.5 / 24] * (3 * 24))  # beats 0..3 at 120
    assert gaps[3 * 24 :] == pytest.approx([1.0 / 24] * (len(gaps) - 3 * 24))  # then 60


async def test_stop_releases_every_note_and_sends_midi_stop(autojump_clock):
    rig = Rig()
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.dispatcher.serve)
        await nursery.start(rig.performer.serve)
        await rig.clock.sleep_until_beat(5.5)  # the melody note of bar 1 is sounding
        assert (0, 60) in rig.output.sounding
        rig.router.handle(ControlEvent(Param.STOP))
        await trio.sleep(1.0)
        assert not rig.performer.playing
        sent_before = len(rig.port.sent)
        await trio.sleep(5.0)
        assert len(rig.port.sent) == sent_before  # nothing more after the stop
        nursery.cancel_scope.cancel()
    assert not rig.output.sounding
    tail = [m.data for m in rig.port.sent[-6:]]
    assert messages.note_off(0, 60) in tail
    assert messages.control_change(0, messages.CC_ALL_NOTES_OFF, 0) in tail
    assert tail[-1] == bytes([messages.CLOCK_STOP])
    assert not [m for m in rig.port.sent if messages.is_note_on(m.data) and m.beat >= 8.0]


async def test_start_after_stop_plays_again_from_bar_zero(autojump_clock):
    rig = Rig()
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.dispatcher.serve)
        await nursery.start(rig.performer.serve)
        await rig.clock.sleep_until_beat(2.0)
        rig.router.handle(ControlEvent(Param.STOP))
        await trio.sleep(1.0)
        rig.router.handle(ControlEvent(Param.START))
        await trio.sleep(0.01)
        await rig.clock.sleep_until_beat(8.0 + 4.5)  # the second take starts at beat 8
        nursery.cancel_scope.cancel()
    assert [r.index for r in rig.composer.requests] == [0, 0, 1]  # stopped before bar 1
    assert len(rig.sent(lambda d: d == bytes([messages.CLOCK_START]))) == 2
    # Beats run on across takes, a bar after the first take, so a recording keeps them apart.
    assert [m.beat for m in note_ons(rig, 0)] == [0.0, 8.0, 12.0]


async def test_panic_releases_notes_and_the_music_comes_back(autojump_clock):
    rig = Rig()
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.dispatcher.serve)
        await nursery.start(rig.performer.serve)
        await rig.clock.sleep_until_beat(4.5)
        rig.router.handle(ControlEvent(Param.PANIC))
        assert not rig.output.sounding
        await rig.clock.sleep_until_beat(12.5)
        nursery.cancel_scope.cancel()
    assert rig.performer.bars_played >= 3
    melody_beats = [m.beat for m in note_ons(rig, 0)]
    assert 8.0 in melody_beats  # the next planned bar plays
    ticks = rig.sent(lambda d: d == bytes([messages.CLOCK_TICK]))
    tick_beats = [m.beat for m in ticks]
    assert tick_beats == pytest.approx([i / 24 for i in range(len(ticks))])  # no gap


async def test_a_failing_composer_is_replaced_by_the_fallback(autojump_clock):
    rig = Rig(RecordingComposer(fail_at=1), fallback=RecordingComposer())
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.dispatcher.serve)
        await rig.performer.serve(max_bars=3)
        nursery.cancel_scope.cancel()
    assert len(note_ons(rig, 0)) == 3
    assert rig.performer.composer.outcomes == {"fresh": 2, "failed": 1, "fallback": 1}


async def test_an_exception_releases_every_sounding_note(autojump_clock):
    rig = Rig(RecordingComposer(fail_at=2))  # no fallback: the error propagates
    with pytest.raises(Exception) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(rig.dispatcher.serve)
            await rig.performer.serve(max_bars=4)
    assert "model exploded" in repr(info.value)
    assert not rig.output.sounding
    assert messages.note_off(0, 60) in rig.port.data


def test_notes_are_grouped_by_their_beat_and_offs_sort_before_ons():
    bar = ComposedBar(0, 2, {Part.MELODY: (Note(60, 0.0, 1.0, 90), Note(60, 1.0, 1.0, 90))}, "test")
    first, second = render_notes_by_beat(bar, 8.0)
    assert [(m.beat, m.data[0] & 0xF0) for m in first] == [(8.0, 0x90), (9.0, 0x80)]
    assert [(m.beat, m.data[0] & 0xF0) for m in second] == [(9.0, 0x90), (10.0, 0x80)]
    # Released a beat apart, they meet in the dispatcher's queue, ordered like this:
    assert [(m.beat, m.data[0] & 0xF0) for m in sorted(second + first)] == [
        (8.0, 0x90),
        (9.0, 0x80),
        (9.0, 0x90),
        (10.0, 0x80),
    ]
    assert math.isclose(render_clock_ticks(8.0, 2)[-1].beat, 8.0 + 47 / 24)


async def test_dynamics_follow_the_fader_from_the_next_beat(autojump_clock):
    rig = Rig()
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.dispatcher.serve)

        async def push_fader():
            await rig.clock.sleep_until_beat(4.5)  # inside bar 1, planned at beat 3
            rig.router.handle(ControlEvent(Param.INTENSITY, 1.0))

        nursery.start_soon(push_fader)
        await rig.performer.serve(max_bars=3)
        nursery.cancel_scope.cancel()
    bass = {m.beat: m.data[2] for m in note_ons(rig, 2)}
    assert bass[4.0] == 80  # released before the move
    assert bass[6.0] == round(80 * expression_ratio(Mood(), Mood(intensity=1.0)))  # next beat
    assert bass[6.0] > 100
    assert bass[8.0] == 80  # bar 2 was composed at the new intensity: nothing left to scale
    assert expression_ratio(Mood(), Mood()) == 1.0
    assert expression_ratio(Mood(arousal=-1.0), Mood(arousal=1.0)) > 1.5
    assert scale_velocity(messages.note_on(0, 60, 100), 3.0) == messages.note_on(0, 60, 127)
    assert scale_velocity(messages.note_on(0, 60, 2), 0.1) == messages.note_on(0, 60, 1)


STYLES = ("reel", "hymn")  # the adapters the composer loaded, in load order


async def test_a_style_switch_is_heard_from_the_next_bar_planned(autojump_clock, caplog):
    rig = Rig()
    router = ControlRouter(rig.mood, rig.clock, rig.performer, styles=STYLES)
    caplog.set_level(logging.INFO, logger="livekomp.router")
    async with trio.open_nursery() as nursery:
        await nursery.start(rig.dispatcher.serve)

        async def switch():
            await rig.clock.sleep_until_beat(6.0)  # inside bar 1; bar 2 is planned at beat 7
            router.handle(ControlEvent(Param.STYLE, "hymn", "osc"))
            await rig.clock.sleep_until_beat(10.0)  # inside bar 2; bar 3 is planned at beat 11
            router.handle(ControlEvent(Param.STYLE, "1", "midi"))  # program 1: base

        nursery.start_soon(switch)
        await rig.performer.serve(max_bars=5)
        nursery.cancel_scope.cancel()
    assert [r.style for r in rig.composer.requests] == ["base", "base", "hymn", "base", "base"]
    assert "style → hymn from bar 2" in caplog.text
    assert "style → base from bar 3" in caplog.text
    assert router.styles_dropped == 0
    assert router.styles_switched == [  # the summary's record: when each was asked for
        {"style": "hymn", "from_bar": 2, "at_beat": pytest.approx(6.0)},
        {"style": "base", "from_bar": 3, "at_beat": pytest.approx(10.0)},
    ]


@pytest.mark.parametrize(
    ("value", "style"),
    [
        ("hymn", "hymn"),
        (" reel ", "reel"),
        ("base", "base"),
        ("1", "base"),  # a program change without names: 1 is base,
        ("2", "reel"),  # 2 the first style loaded,
        ("3", "hymn"),  # 3 the second
    ],
)
async def test_a_style_is_chosen_by_name_or_by_number(value, style):
    rig = Rig()
    router = ControlRouter(rig.mood, rig.clock, rig.performer, styles=STYLES)
    rig.performer.style = "hymn" if style != "hymn" else "base"
    router.handle(ControlEvent(Param.STYLE, value, "test"))
    assert rig.performer.style == style
    assert router.styles_dropped == 0 and router.unhandled == 0


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("waltz", "'waltz' is not loaded"),
        ("0", "there is no style number 0"),
        ("4", "there is no style number 4"),
        ("my style", "'my style' is not a style name"),
        ("../reel", "'../reel' is not a style name"),
    ],
)
async def test_a_style_not_loaded_is_dropped_and_counted(value, why, caplog):
    rig = Rig()
    router = ControlRouter(rig.mood, rig.clock, rig.performer, styles=STYLES)
    router.handle(ControlEvent(Param.STYLE, "reel", "test"))
    with caplog.at_level(logging.WARNING, logger="livekomp.router"):
        router.handle(ControlEvent(Param.STYLE, value, "osc"))
    assert rig.performer.style == "reel"  # the current style plays on
    assert router.styles_dropped == 1 and router.unhandled == 0
    assert f"dropped style {value!r} from osc: {why}" in caplog.text
    assert "the styles loaded are 1 base, 2 reel, 3 hymn" in caplog.text


async def test_without_adapters_only_base_is_a_style():
    rig = Rig()
    # The rule-based composer loads no adapters.
    router = ControlRouter(rig.mood, rig.clock, rig.performer)
    for value in ("base", "1"):
        router.handle(ControlEvent(Param.STYLE, value))
    router.handle(ControlEvent(Param.STYLE, "reel"))
    router.handle(ControlEvent(Param.STYLE, "2"))
    assert rig.performer.style == "base" and router.styles_dropped == 2


async def test_the_style_controls_of_the_mappings_reach_the_performer(tmp_path):
    programs = tmp_path / "programs.toml"
    programs.write_text('[[program]]\nchannel = 16\ntarget = "style"\n')
    mapping = load_mapping(["touchosc", programs])
    rig = Rig()
    router = ControlRouter(rig.mood, rig.clock, rig.performer, styles=STYLES)
    for event in mapping.osc_events("/livekomp/style", ["hymn"]):
        router.handle(event)
    assert rig.performer.style == "hymn"
    for event in mapping.midi_events(bytes([0xCF, 1])):  # program 2: the first style loaded
        router.handle(event)
    assert rig.performer.style == "reel"
    for event in mapping.osc_events("/livekomp/style", ["base"]):
        router.handle(event)
    assert rig.performer.style == "base"
