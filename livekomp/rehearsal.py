"""Rehearsal: the live pipeline, headless, in virtual time.

The same services as on stage — setlist input, control router, mood, composer, performer,
dispatcher — run under `trio.testing.MockClock`, so a set renders as fast as the computer allows
and, with models inline, identically for the same seed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio
import trio.testing

from livekomp import __version__
from livekomp.composer import ComposerService, ComposerSettings, build_composer
from livekomp.inputs.events import ControlEvent
from livekomp.inputs.setlist import Setlist, serve_setlist
from livekomp.mood import Mood, MoodState
from livekomp.music.theory import parse_key
from livekomp.outputs.midi import TrackedOutput
from livekomp.outputs.midifile import MidiFileRecorder
from livekomp.performer import ControlRouter, Performer, PerformerConfig
from livekomp.report import RunReport
from livekomp.timing.clock import MasterClock
from livekomp.timing.dispatcher import VirtualDispatcher

log = logging.getLogger("livekomp.rehearsal")


@dataclass(frozen=True, slots=True)
class RehearsalResult:
    midi_path: Path
    summary_path: Path
    summary: dict[str, object]


def rehearse(
    setlist: Setlist,
    out_dir: str | Path,
    *,
    seed: int | None = None,
    lookahead_beats: float = 1.0,
    slew_s: float = 0.3,
    composer: ComposerSettings | None = None,
    initial_mood: Mood | None = None,
) -> RehearsalResult:
    """Render `setlist` to `out_dir/set.mid` and `out_dir/summary.json`.

    The neural composer runs inline (no budget, no buffer), so the result depends only on the
    setlist, the seed and the checkpoints.
    """
    out_dir = Path(out_dir)
    seed = seed if seed is not None else (setlist.seed if setlist.seed is not None else 0)
    primary, unavailable = build_composer(composer or ComposerSettings(), seed)
    return trio.run(
        _rehearse,
        setlist,
        out_dir,
        seed,
        lookahead_beats,
        slew_s,
        ComposerService(primary, unavailable=unavailable),
        initial_mood,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )


async def _rehearse(
    setlist: Setlist,
    out_dir: Path,
    seed: int,
    lookahead_beats: float,
    slew_s: float,
    composer: ComposerService,
    initial_mood: Mood | None,
) -> RehearsalResult:
    tonic = parse_key(setlist.key)
    clock = MasterClock(setlist.bpm, now_s=trio.current_time)
    recorder = MidiFileRecorder(
        out_dir / "set.mid",
        title=setlist.title,
        beats_per_bar=setlist.beats_per_bar,
        bpm=setlist.bpm,
    )
    recorder.follow_tempo(clock)
    output = TrackedOutput(recorder)
    dispatcher = VirtualDispatcher(clock, output)
    report = RunReport(
        {
            "livekomp": __version__,
            "setlist": setlist.path.name,
            "title": setlist.title,
            "seed": seed,
            "bpm": setlist.bpm,
            "beats_per_bar": setlist.beats_per_bar,
            "bars": setlist.bars,
            "key": setlist.key,
        }
    )
    performer = Performer(
        clock,
        dispatcher,
        composer,
        MoodState(initial_mood, slew_s=slew_s),
        PerformerConfig(
            beats_per_bar=setlist.beats_per_bar,
            tonic=tonic,
            lookahead_beats=lookahead_beats,
            clock_out=False,
        ),
        on_bar=report.on_bar,
    )

    def on_line(kind: str, event: ControlEvent) -> None:
        bar = None
        if event.at_beat is not None:
            bar = math.floor(event.at_beat / setlist.beats_per_bar + 1e-9)
        report.on_line(kind, event, bar)

    router = ControlRouter(performer, on_line=on_line)
    send, receive = trio.open_memory_channel[ControlEvent](math.inf)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(dispatcher.serve)
            await nursery.start(router.serve, receive)

            async def perform(task_status: trio.TaskStatus[None]) -> None:
                await performer.serve(max_bars=setlist.bars, task_status=task_status)
                nursery.cancel_scope.cancel()  # the set is over: end the services

            await nursery.start(perform)
            nursery.start_soon(
                partial(serve_setlist, setlist, clock, send, lookahead_beats=lookahead_beats)
            )
    finally:
        dispatcher.close()
        recorder.close()
    report.extra["composer"] = composer.summary()
    report.extra["controls_not_understood"] = router.unhandled
    summary_path = out_dir / "summary.json"
    report.write(summary_path)
    return RehearsalResult(recorder.path, summary_path, report.as_dict())
