"""One session: the pipeline from the control router to the dispatcher, wired once for live and
rehearsal alike.

    events ─► router ─► mood ─► composer ─► performer ─► dispatcher
                 └─► voice (lines, responses) ─► a line sink, on a bar line

`app.py` gives it a real-time clock, the sender process and the live transports around it;
`rehearsal.py` a virtual clock, a virtual dispatcher and the setlist. Everything in between —
which event goes where, how a line is reported, what the summary says about the pipeline — is
written here once. Collaborators arrive as constructor arguments; nothing is patched onto an
object after it exists.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from livekomp.affect import Mood
from livekomp.clock.clock import MasterClock
from livekomp.composer import ComposerService
from livekomp.inputs.events import ControlEvent, Param
from livekomp.mood import MoodState
from livekomp.music.phrase import BASE_STYLE, ComposedBar
from livekomp.outputs.osc import FeedbackSnapshot
from livekomp.outputs.report import RunReport
from livekomp.performer import Dispatch, Performer, PerformerConfig
from livekomp.router import ControlRouter
from livekomp.voice.lines import Responses
from livekomp.voice.service import LineSink, SpokenLine, VoiceConfig, VoiceService
from livekomp.voice.tts import Speaker

log = logging.getLogger("livekomp")


@dataclass(frozen=True, slots=True)
class VoiceParts:
    """What a session speaks with: the opened speaker, its settings, where lines go, and the
    lines that answer mood words (None: no answers)."""

    speaker: Speaker
    config: VoiceConfig
    sink: LineSink
    responses: Responses | None = None


@dataclass(frozen=True, slots=True)
class FollowHooks:
    """For a clock that follows others (see `ControlRouter`): why a start cannot happen now,
    who takes tempo changes, and who takes start and stop instead of the performer."""

    can_start: Callable[[], str | None] | None = None
    on_tempo: Callable[[float], None] | None = None
    on_transport: Callable[[bool], None] | None = None


BAR_LINE_LEGEND = (
    "each bar logs: bar | valence, arousal | mode, chord | composer [style] | "
    "notes per part (m melody, c chords, b bass, d drums)"
)


def log_bar(bar: ComposedBar, mood: Mood, style: str = BASE_STYLE) -> None:
    counts = " ".join(f"{part.value[0]}{len(notes)}" for part, notes in bar.parts.items())
    log.info(
        "bar %4d | v %+.2f a %+.2f | %-10s %-6s | %s%s | notes %s",
        bar.index,
        mood.valence,
        mood.arousal,
        bar.mode,
        bar.chord,
        bar.composer,
        "" if style == BASE_STYLE else f" [{style}]",
        counts,
    )


class Session:
    """The mood, the composer service, the performer, the router, the optional voice and the
    report of one run, wired together.

    `log_music` logs each bar and each line as it is planned (live; a rehearsal reports them in
    its summary instead). `scene` and `line` are the last scene cue and the line being spoken
    (or, without a voice, asked for), for the performer's feedback.
    """

    def __init__(
        self,
        *,
        clock: MasterClock,
        dispatcher: Dispatch,
        composer: ComposerService,
        mood: MoodState,
        report: RunReport,
        config: PerformerConfig,
        style: str = BASE_STYLE,
        styles: Sequence[str] = (),
        voice: VoiceParts | None = None,
        follow: FollowHooks | None = None,
        log_music: bool = False,
    ) -> None:
        self.clock = clock
        self.composer = composer
        self.mood = mood
        self.report = report
        self.beats_per_bar = config.beats_per_bar
        self.follow = config.follow
        self.log_music = log_music
        self.scene: str | None = None
        self.line: str | None = None
        # The bars planned last (the bar, its style), newest last, for the status view.
        self.recent_bars: deque[tuple[ComposedBar, str]] = deque(maxlen=8)
        # The lines the voice placed on a bar line (newest last), for the status view.
        self.placed_lines: deque[SpokenLine] = deque(maxlen=8)
        self.voice: VoiceService | None = None
        if voice is not None:
            self.voice = VoiceService(
                voice.speaker,
                clock,
                mood,
                voice.config,
                beats_per_bar=config.beats_per_bar,
                sink=voice.sink,
                responses=voice.responses,
                on_spoken=self._on_spoken,
                playing=lambda: self.performer.playing,
            )
        self.performer = Performer(
            clock,
            dispatcher,
            composer,
            mood,
            config,
            on_bar=self._on_bar,
            duck=self.voice.duck_at if self.voice is not None else None,
            style=style,
        )
        follow = follow or FollowHooks()
        answers = self.voice is not None and self.voice.responses is not None
        self.router = ControlRouter(
            mood,
            clock,
            self.performer,
            on_line=self._on_line,
            on_mood=self.voice.on_control if answers and self.voice is not None else None,
            on_silence=self.voice.silence if self.voice is not None else None,
            can_start=follow.can_start,
            on_tempo=follow.on_tempo,
            on_transport=follow.on_transport,
            styles=styles,
        )

    def stop_with_master(self) -> None:
        """The master stopped (or its clock was lost): the notes and the voice stop."""
        self.performer.stop()
        if self.voice is not None:
            self.voice.silence()

    def feedback(self) -> FeedbackSnapshot:
        """What the controller is told (`--feedback`): the mood heard and aimed at, the tempo,
        where in the bar the music is, what is said, the style, how the composer keeps up."""
        clock, mood, performer, composer = self.clock, self.mood, self.performer, self.composer
        heard, target = mood.at(clock.now_s()), mood.target()
        bar = beat = None
        if clock.running and performer.playing:
            # Following, the master's bar numbers; else the take's.
            origin = 0.0 if self.follow else performer.origin_beat
            position = clock.current_beat() - origin
            if position >= 0:
                bar = int(position // self.beats_per_bar) + 1
                beat = int(position % self.beats_per_bar) + 1
        outcomes = composer.outcomes
        return FeedbackSnapshot(
            valence=heard.valence,
            arousal=heard.arousal,
            density=heard.density,
            intensity=heard.intensity,
            target_valence=target.valence,
            target_arousal=target.arousal,
            tempo_bpm=clock.bpm,
            playing=performer.playing,
            bar=bar,
            beat=beat,
            scene=self.scene,
            line=self.line,
            style=performer.style,
            composer_fresh=outcomes["fresh"],
            composer_buffered=outcomes["buffered"],
            composer_fallbacks=outcomes["fallback"],
            composer_buffer=None if composer.buffer is None else composer.buffer.fill,
        )

    def summary(self) -> dict[str, object]:
        """What the summary says about the pipeline: the composer's outcomes, what the router
        dropped, and the style switches it made (when there were any)."""
        summary: dict[str, object] = {
            "composer": self.composer.summary(),
            "controls_not_understood": self.router.unhandled,
            "styles_dropped": self.router.styles_dropped,
        }
        if self.router.styles_switched:
            summary["styles_switched"] = list(self.router.styles_switched)
        return summary

    def _on_bar(self, bar: ComposedBar, mood: Mood, style: str) -> None:
        self.report.on_bar(bar, mood, style)
        self.recent_bars.append((bar, style))
        if self.log_music:
            log_bar(bar, mood, style)

    def _on_line(self, kind: str, event: ControlEvent) -> None:
        if self.log_music:
            log.info("%s: %r", kind, event.value)
        if kind == "scene":
            self.scene = str(event.value)
        if self.voice is not None and event.param is Param.SAY:
            self.voice.on_control(event)  # the voice reports the line once it is placed
            return
        bar = None
        if event.at_beat is not None:  # a cue's line belongs to its bar, not the last planned
            bar = math.floor(event.at_beat / self.beats_per_bar + 1e-9)
        self.report.on_line(kind, event, bar)
        if kind == "say":
            self.line = str(event.value)  # no voice: the line as asked for

    def _on_spoken(self, line: SpokenLine) -> None:
        self.report.on_spoken(line.as_dict())
        if line.dropped is None:
            self.line = line.text
            self.placed_lines.append(line)
