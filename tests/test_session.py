"""The session: one wiring of router, mood, composer, performer and report, in virtual time."""

from __future__ import annotations

import trio

from livekomp.clock.clock import MasterClock
from livekomp.composer import ComposerService
from livekomp.dispatch.dispatcher import VirtualDispatcher
from livekomp.dispatch.tracked import TrackedOutput
from livekomp.inputs.events import ControlEvent, Param
from livekomp.mood import MoodState
from livekomp.music.rules import RuleComposer
from livekomp.outputs.midi import MemoryOutput
from livekomp.outputs.report import RunReport
from livekomp.performer import PerformerConfig
from livekomp.session import FollowHooks, Session


def make_session(**kwargs) -> tuple[Session, VirtualDispatcher, MemoryOutput]:
    clock = MasterClock(120.0, now_s=trio.current_time)
    port = MemoryOutput(now_s=trio.current_time)
    dispatcher = VirtualDispatcher(clock, TrackedOutput(port))
    session = Session(
        clock=clock,
        dispatcher=dispatcher,
        composer=ComposerService(RuleComposer(3)),
        mood=MoodState(slew_s=0.0),
        report=RunReport({"test": True}),
        config=PerformerConfig(beats_per_bar=4, clock_out=False),
        **kwargs,
    )
    return session, dispatcher, port


async def test_a_line_without_a_voice_is_reported_in_its_cues_bar_and_shown():
    session, _, _ = make_session()
    session.router.handle(ControlEvent(Param.SAY, "hello", source="cue", at_beat=9.0))
    session.router.handle(ControlEvent(Param.SCENE, "verse", source="pad"))
    assert (session.line, session.scene) == ("hello", "verse")
    assert session.report.lines == [
        {"bar": 2, "kind": "say", "text": "hello", "source": "cue"},
        {"bar": 0, "kind": "scene", "text": "verse", "source": "pad"},
    ]


async def test_the_summary_counts_what_the_router_dropped(autojump_clock):
    session, dispatcher, port = make_session(styles=())
    session.router.handle(ControlEvent(Param.STYLE, "nosuch"))
    session.router.handle(ControlEvent(Param.MOOD, "xyzzy"))
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.serve)
        await session.performer.serve(max_bars=2)
        nursery.cancel_scope.cancel()
    summary = session.summary()
    assert summary["controls_not_understood"] == 1
    assert summary["styles_dropped"] == 1
    assert summary["composer"]["outcomes"]["fresh"] == 2
    assert [bar["bar"] for bar in session.report.bars] == [0, 1]
    assert port.sent  # the two bars were played


async def test_following_a_master_the_hooks_take_start_and_tempo():
    asked: list[object] = []
    hooks = FollowHooks(
        can_start=lambda: "the master is stopped",
        on_tempo=asked.append,
    )
    session, _, _ = make_session(follow=hooks)
    session.router.handle(ControlEvent(Param.START))
    session.router.handle(ControlEvent(Param.TEMPO, 99.0))
    assert not session.performer.playing
    assert asked == [99.0]
    assert session.clock.bpm == 120.0


async def test_the_feedback_says_where_the_take_is_and_what_is_said(autojump_clock):
    session, dispatcher, _ = make_session()
    session.router.handle(ControlEvent(Param.SCENE, "verse"))
    session.router.handle(ControlEvent(Param.VALENCE, -0.5))
    assert session.feedback().bar is None  # stopped: no bar to show
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.serve)
        await nursery.start(session.performer.serve)
        await session.clock.sleep_until_beat(5.5)  # the take's bar 2, beat 2
        feedback = session.feedback()
        nursery.cancel_scope.cancel()
    assert (feedback.bar, feedback.beat, feedback.playing) == (2, 2, True)
    assert (feedback.scene, feedback.style, feedback.tempo_bpm) == ("verse", "base", 120.0)
    assert feedback.target_valence == -0.5 and feedback.valence == -0.5  # no slew here
    assert feedback.composer_fresh == session.performer.bars_played
