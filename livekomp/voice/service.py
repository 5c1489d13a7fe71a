"""The voice service: lines are queued, rendered, and started on the next bar line.

Two stages, so the next line renders while the current one waits for its bar line:

    say / response ─► render (cache, or the TTS off the trio thread) ─► schedule ─► sink

A line starts on the first bar line (or beat, with `align = "beat"`) that is at least `lead_s`
away once it is rendered, and never before the previous line has ended. Its delivery follows the
mood the performer is heading for (the mood's target) when it is asked for. While a line is
spoken, notes that start under it can be ducked (their velocity scaled by `duck`).

Bad text, a voice that fails, a full queue: each is logged, counted and reported; the show goes
on.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import trio

from livekomp.clock.clock import MasterClock
from livekomp.inputs.events import ControlEvent, Param
from livekomp.mood import Mood, MoodState
from livekomp.ratelog import RateLimitedLog
from livekomp.speech import Speech
from livekomp.voice.lines import Responses
from livekomp.voice.prosody import Prosody, prosody_for
from livekomp.voice.text import BadText, clean_line
from livekomp.voice.tts import Speaker, TtsError

log = logging.getLogger("livekomp.voice")

ALIGNMENTS = ("bar", "beat")


@dataclass(frozen=True, slots=True)
class VoiceConfig:
    align: str = "bar"  # a line starts on the next "bar" line or the next "beat"
    lead_s: float = 0.05  # never start a line closer to now than this (the output's latency)
    handover_s: float = 0.2  # give a line to the output this long before it starts
    duck: float = 1.0  # velocity factor for notes that start under a spoken line (1 = off)
    queue: int = 16  # lines waiting to be rendered; more are dropped and counted
    in_thread: bool = True  # render off the trio thread (live); inline in rehearsal

    def __post_init__(self) -> None:
        if self.align not in ALIGNMENTS:
            raise ValueError(f"align must be one of {', '.join(ALIGNMENTS)}, got {self.align!r}")
        if not (0 <= self.lead_s <= 5 and 0 <= self.handover_s <= 5):
            raise ValueError("lead_s and handover_s must be 0..5 seconds")
        if not 0 <= self.duck <= 1:
            raise ValueError(f"duck must be 0..1, got {self.duck}")


@dataclass(frozen=True, slots=True)
class SpokenLine:
    """A line as it was (or was not) spoken, for the report. Times from beat 0 of the run."""

    kind: str  # "say" or "response"
    text: str
    source: str
    backend: str | None = None
    bar: int | None = None
    beat: float | None = None
    start_s: float | None = None
    duration_s: float | None = None
    cached: bool = False
    render_s: float | None = None  # from the request to the rendering done
    wait_s: float | None = None  # from the rendering done to the line's start (the bar line)
    dropped: str | None = None  # why it was not spoken

    def as_dict(self) -> dict[str, object]:
        entry: dict[str, object] = {"kind": self.kind, "text": self.text, "source": self.source}
        if self.dropped is not None:
            entry["dropped"] = self.dropped
            return entry
        entry.update(
            backend=self.backend,
            bar=self.bar,
            beat=None if self.beat is None else round(self.beat, 6),
            start_s=None if self.start_s is None else round(self.start_s, 6),
            duration_s=None if self.duration_s is None else round(self.duration_s, 6),
            cached=self.cached,
            render_s=None if self.render_s is None else round(self.render_s, 6),
            wait_s=None if self.wait_s is None else round(self.wait_s, 6),
        )
        return entry


class LineSink(Protocol):
    """Where rendered lines go: the live audio output, or a rehearsal's mix."""

    def play_at(self, speech: Speech, at_s: float) -> None: ...
    def silence(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Request:
    kind: str
    text: str
    source: str
    mood: Mood  # the target mood when the line was asked for
    asked_s: float  # clock time of the request
    generation: int  # the voice's generation when asked (see `silence`)
    not_before_beat: float | None = None  # a setlist line waits for its cue's bar line


@dataclass(frozen=True, slots=True)
class _Rendered:
    request: _Request
    speech: Speech
    rendered_s: float


class VoiceService:
    def __init__(
        self,
        speaker: Speaker,
        clock: MasterClock,
        mood: MoodState,
        config: VoiceConfig,
        *,
        beats_per_bar: int,
        sink: LineSink,
        responses: Responses | None = None,
        on_spoken: Callable[[SpokenLine], None] | None = None,
        playing: Callable[[], bool] = lambda: True,
    ) -> None:
        """`playing` says whether the transport plays: while it is stopped there are no bar
        lines to wait for."""
        self.speaker = speaker
        self.clock = clock
        self.mood = mood
        self.config = config
        self.beats_per_bar = beats_per_bar
        self.sink = sink
        self.responses = responses
        self.on_spoken = on_spoken
        self.playing = playing
        self.counts: Counter[str] = Counter()
        self._send, self._receive = trio.open_memory_channel[_Request](config.queue)
        self._spans: list[tuple[float, float]] = []  # (start_beat, end_beat) of lines
        self._next_free_s = -math.inf
        self._drop_log = RateLimitedLog(log)
        self._limiter = trio.CapacityLimiter(1)
        self._generation = 0  # bumped by silence(): lines asked for before it are not played

    # -- asking for lines (trio thread) --------------------------------------------------------

    def say_nowait(
        self,
        text: object,
        source: str = "",
        kind: str = "say",
        *,
        not_before_beat: float | None = None,
    ) -> bool:
        """Queue a line; False (logged, counted, reported) when it cannot be."""
        request = _Request(
            kind,
            text if isinstance(text, str) else "",  # not text: refused as bad text when cleaned
            source,
            self.mood.target(),
            self.clock.now_s(),
            self._generation,
            not_before_beat,
        )
        try:
            self._send.send_nowait(request)
        except trio.WouldBlock:
            self._drop(request, "queue full")
            return False
        return True

    def respond_nowait(
        self, mood_text: str, source: str = "", *, not_before_beat: float | None = None
    ) -> bool:
        """Queue the lines file's answer to a mood word or intent, if it has one."""
        if self.responses is None:
            return False
        line = self.responses.respond(mood_text, self.mood.target())
        return line is not None and self.say_nowait(
            line, source, kind="response", not_before_beat=not_before_beat
        )

    def on_control(self, event: ControlEvent) -> None:
        """The control router's hook: spoken lines and (with responses) mood words."""
        if event.param is Param.SAY:
            self.say_nowait(event.value, event.source, not_before_beat=event.at_beat)
        elif event.param is Param.MOOD:
            self.respond_nowait(str(event.value), event.source, not_before_beat=event.at_beat)

    def prepare(self, lines: Iterable[tuple[str, Mood]]) -> int:
        """Render lines known ahead (blocking), in the mood each will be spoken in, so playing
        them later costs a cache look-up. Returns how many were rendered."""
        done = 0
        if not self.speaker.available:
            return done
        for text, mood in lines:
            try:
                self.speaker.speak(clean_line(text), self.prosody(mood))
                done += 1
            except (BadText, TtsError) as exc:
                log.warning("cannot render %r ahead: %s", text[:60], exc)
        return done

    def silence(self) -> None:
        """Stop now: the line playing stops, lines waiting for their bar line are dropped (the
        transport's stop and panic)."""
        self._generation += 1
        self._spans.clear()
        self._next_free_s = -math.inf
        self.sink.silence()
        self.counts["silenced"] += 1

    @staticmethod
    def prosody(mood: Mood) -> Prosody:
        return prosody_for(mood.valence, mood.arousal)

    def duck_at(self, beat: float) -> float:
        """The velocity factor for a note starting at `beat` (the performer asks)."""
        if self.config.duck >= 1.0:
            return 1.0
        if any(start <= beat < end for start, end in self._spans):
            return self.config.duck
        return 1.0

    # -- the service --------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Render and schedule lines until cancelled."""
        send, receive = trio.open_memory_channel[_Rendered](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._render_lines, send)
            nursery.start_soon(self._schedule_lines, receive)
            task_status.started()

    async def _render_lines(self, send: trio.MemorySendChannel[_Rendered]) -> None:
        async with send, self._receive:
            async for request in self._receive:
                speech = await self._render(request)
                if speech is not None:
                    await send.send(_Rendered(request, speech, self.clock.now_s()))

    async def _render(self, request: _Request) -> Speech | None:
        try:
            sentences = clean_line(request.text)
        except BadText as exc:
            self._drop(request, f"bad text: {exc}")
            return None
        prosody = self.prosody(request.mood)
        speech = self.speaker.cached(sentences, prosody)
        if speech is not None:
            return speech
        try:
            if self.config.in_thread:
                # Abandoned on cancel: stopping the show never waits for a rendering to finish.
                return await trio.to_thread.run_sync(
                    self.speaker.speak,
                    sentences,
                    prosody,
                    limiter=self._limiter,
                    abandon_on_cancel=True,
                )
            return self.speaker.speak(sentences, prosody)
        except TtsError as exc:
            self._drop(request, f"no voice could speak it: {exc}")
            return None

    async def _schedule_lines(self, receive: trio.MemoryReceiveChannel[_Rendered]) -> None:
        async with receive:
            async for rendered in receive:
                await self._schedule(rendered)

    def _start_beat(self, earliest_s: float) -> float:
        beat = self.clock.tempo_map.beat_at(earliest_s)
        step = self.beats_per_bar if self.config.align == "bar" else 1
        return math.ceil(beat / step - 1e-9) * step

    async def _schedule(self, rendered: _Rendered) -> None:
        clock, speech, request = self.clock, rendered.speech, rendered.request
        if request.generation != self._generation:
            self._drop(request, "silenced: stopped before it started")
            return
        earliest_s = max(clock.now_s() + self.config.lead_s, self._next_free_s)
        if not (clock.running and self.playing()):  # no bar lines to wait for: speak now
            at_s = earliest_s
            self._next_free_s = at_s + speech.duration_s
            self.sink.play_at(speech, at_s)
            self._spoken(rendered, None, at_s)
            return
        start_beat = self._start_beat(earliest_s)
        if request.not_before_beat is not None:
            start_beat = max(start_beat, self._start_beat(clock.time_at(request.not_before_beat)))
        at_s = clock.time_at(start_beat)
        end_beat = clock.tempo_map.beat_at(at_s + speech.duration_s)
        self._spans = [s for s in self._spans if s[1] > clock.current_beat()]
        self._spans.append((start_beat, end_beat))
        self._next_free_s = at_s + speech.duration_s
        # Hand over shortly before the bar line, so a tempo change meanwhile moves the line too.
        await clock.sleep_until_beat(clock.tempo_map.beat_at(at_s - self.config.handover_s))
        if request.generation != self._generation:
            self._drop(request, "silenced: stopped before it started")
            return
        if clock.running:
            at_s = clock.time_at(start_beat)
            self._next_free_s = at_s + speech.duration_s
        self.sink.play_at(speech, at_s)
        log.debug("line handed over for beat %g at clock time %.6f s", start_beat, at_s)
        self._spoken(rendered, start_beat, at_s)

    # -- reporting ----------------------------------------------------------------------------

    def _spoken(self, rendered: _Rendered, beat: float | None, at_s: float) -> None:
        request, speech = rendered.request, rendered.speech
        self.counts["spoken"] += 1
        bar = None if beat is None else math.floor(beat / self.beats_per_bar + 1e-9)
        start_s = at_s
        if self.clock.running:
            start_s = at_s - self.clock.time_at(0.0)
        line = SpokenLine(
            request.kind,
            request.text,
            request.source,
            backend=speech.backend,
            bar=bar,
            beat=beat,
            start_s=start_s,
            duration_s=speech.duration_s,
            cached=speech.cached,
            render_s=rendered.rendered_s - request.asked_s,
            wait_s=at_s - rendered.rendered_s,
        )
        log.info(
            "say%s %r: %s, %.2f s, %s",
            "" if bar is None else f" on bar {bar}",
            request.text[:60],
            speech.backend,
            speech.duration_s,
            "cached" if speech.cached else "rendered",
        )
        if self.on_spoken is not None:
            self.on_spoken(line)

    def _drop(self, request: _Request, reason: str) -> None:
        self.counts["dropped"] += 1
        self._drop_log.warning(
            reason.split(":")[0], f"line {request.text[:60]!r} not spoken: {reason}"
        )
        if self.on_spoken is not None:
            self.on_spoken(SpokenLine(request.kind, request.text, request.source, dropped=reason))

    def summary(self) -> dict[str, object]:
        return {**self.speaker.summary(), "lines": dict(sorted(self.counts.items()))}
