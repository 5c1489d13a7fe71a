"""The status view: rendered from a real session, in virtual time, to a recording console."""

from __future__ import annotations

import io
import logging

import trio
from rich.console import Console

from livekomp.cli import main
from livekomp.inputs.events import ControlEvent, Param
from livekomp.inputs.stats import InputStats
from livekomp.status import RecentWarnings, StatusView, mood_plane, nearest_mood_word
from livekomp.voice.service import SpokenLine
from tests.test_session import make_session


def render_text(view: StatusView) -> str:
    console = Console(file=io.StringIO(), width=120, record=True, color_system=None)
    console.print(view.render())
    return console.export_text()


async def test_the_view_shows_the_transport_mood_music_and_last_control(autojump_clock):
    session, dispatcher, _ = make_session()
    stats = InputStats()
    stats.count("osc", "bad_args", 2)
    stats.count("osc", "received", 9)
    now = [0.0]
    warnings = RecentWarnings(clock=lambda: now[0])
    logger = logging.getLogger("livekomp.test_status")
    logger.addHandler(warnings)
    try:
        logger.warning("old warning")
        now[0] = 61.0
        logger.warning("fresh warning")
    finally:
        logger.removeHandler(warnings)
    view = StatusView(session, stats, key="A", clock_source=lambda: "internal", warnings=warnings)
    stopped = render_text(view)
    assert "stopped" in stopped and "120.0 BPM" in stopped and "internal" in stopped
    session.router.handle(ControlEvent(Param.MOOD, "sad", source="osc"))
    session.router.handle(ControlEvent(Param.STYLE, "nosuch", source="midi"))
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.serve)
        await nursery.start(session.performer.serve)
        session.router.handle(ControlEvent(Param.SCENE, "verse", source="pad"))
        session._on_spoken(SpokenLine("say", "hello", "osc", bar=4, beat=16.0))  # the take's bar 5
        await session.clock.sleep_until_beat(7.5)  # bar 2, beat 4: bar 3 is planned
        fields = view.fields()
        text = render_text(view)
        nursery.cancel_scope.cancel()
    assert (fields["transport"], fields["position"]) == ("playing", "2:4")
    assert fields["mood_word"] == "sad"
    sounding = next(bar for bar, _ in session.recent_bars if bar.index == 1)
    following = next(bar for bar, _ in session.recent_bars if bar.index == 2)
    assert (fields["chord"], fields["next_chord"]) == (sounding.chord, following.chord)
    assert fields["mode"] == sounding.mode and fields["key"] == "A"
    assert fields["last_control"] == "scene 'verse' from pad"
    assert fields["next_line"] == "'hello' at bar 5"
    assert fields["drops"] == "osc bad_args 2, style not loaded 1"
    assert f"fresh {session.composer.outcomes['fresh']}" in fields["composer"]
    for shown in ("playing", "2:4", "sad", "scene 'verse' from pad", "verse", "fresh warning"):
        assert shown in text, shown
    assert "old warning" not in text  # older than a minute


def test_the_plane_marks_the_mood_and_where_it_heads():
    plane = mood_plane((-1.0, 1.0), (1.0, -1.0)).splitlines()
    assert plane[0][0] == "o" and plane[-1][-1] == "+"
    assert "@" in mood_plane((0.2, 0.2), (0.2, 0.2))
    assert nearest_mood_word(-0.7, -0.5) == "sad"


async def test_bars_are_counted_over_every_take(autojump_clock):
    session, dispatcher, _ = make_session()
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.serve)
        await nursery.start(session.performer.serve)
        await session.clock.sleep_until_beat(9.0)
        session.router.handle(ControlEvent(Param.STOP, source="osc"))
        await trio.sleep(1.0)
        first = session.performer.bars_total
        session.router.handle(ControlEvent(Param.START, source="osc"))
        await trio.sleep(4.0)
        nursery.cancel_scope.cancel()
    assert session.performer.bars_total > first >= 3
    assert session.performer.bars_total == len(session.report.bars)


def test_a_log_file_that_cannot_be_opened_is_one_clear_line(tmp_path, capsys):
    missing = tmp_path / "no such dir" / "serve.log"
    assert main(["-q", "serve", "--log-file", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"livekomp: error: --log-file {missing}: No such file or directory\n"
    )
