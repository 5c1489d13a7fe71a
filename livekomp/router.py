"""The control router: the one place a control event becomes a change.

Each event goes where it belongs: the mood (faders, pads, words), the clock (tempo), the
transport (start, stop, panic), the style the next bar is composed in, and the voice's queue
(lines and scenes, through `on_line`). It holds what it routes to, given at construction; it
comes before the mood and the performer in the data flow, so it knows them only by the
protocols below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from livekomp.affect import Mood
from livekomp.clock.clock import MasterClock
from livekomp.inputs.events import ControlEvent, Param
from livekomp.music.phrase import BASE_STYLE, parse_style
from livekomp.ratelog import RateLimitedLog

log = logging.getLogger("livekomp.router")


class MoodTarget(Protocol):
    """What the router needs of the mood state."""

    def apply(self, event: ControlEvent, now_s: float) -> bool: ...
    def target(self) -> Mood: ...


class Transport(Protocol):
    """What the router needs of the performer: the transport and the style it composes in."""

    style: str

    @property
    def next_bar(self) -> int: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def panic(self) -> None: ...


class ControlRouter:
    """Sends each control event where it belongs: mood, style, clock, transport, voice queue."""

    def __init__(
        self,
        mood: MoodTarget,
        clock: MasterClock,
        transport: Transport,
        *,
        on_line: Callable[[str, ControlEvent], None] | None = None,
        can_start: Callable[[], str | None] | None = None,
        on_tempo: Callable[[float], None] | None = None,
        on_transport: Callable[[bool], None] | None = None,
        on_mood: Callable[[ControlEvent], None] | None = None,
        on_silence: Callable[[], None] | None = None,
        styles: Sequence[str] = (),
    ) -> None:
        """For a clock that follows others: `can_start` says why a start cannot happen now
        (None: it can); `on_tempo` takes tempo changes instead of the clock, and
        `on_transport` start (True) and stop (False) instead of the performer (a Link follower
        proposes them to the session, whose answer then moves the performer).

        `styles` are the style adapters the composer loaded, in load order: a style event
        names one of them or "base", or gives a number (a program change) that counts base
        as 1 and the loaded styles from 2."""
        self.mood = mood
        self.clock = clock
        self.transport = transport
        self.on_line = on_line
        self.can_start = can_start
        self.on_tempo = on_tempo
        self.on_transport = on_transport
        self.on_mood = on_mood  # told of each mood word or intent understood (voice responses)
        self.on_silence = on_silence  # stop and panic: the voice stops too
        self.styles = tuple(styles)
        self.unhandled = 0
        self.styles_dropped = 0  # style events naming a style that is not loaded
        # Each style switch: the style, the bar it plays from, and the clock's beat when it was
        # asked for (None while the clock is stopped), for the summary.
        self.styles_switched: list[dict[str, object]] = []
        self._drop_log = RateLimitedLog(log)
        self.last: ControlEvent | None = None  # the last control received, for the status view

    def handle(self, event: ControlEvent) -> None:
        transport, clock, mood = self.transport, self.clock, self.mood
        self.last = event
        match event.param:
            case Param.START | Param.STOP if self.on_transport is not None:
                self.on_transport(event.param is Param.START)
                if event.param is Param.STOP and self.on_silence is not None:
                    self.on_silence()
            case Param.START:
                why_not = None if self.can_start is None else self.can_start()
                if why_not is None:
                    log.info("start from %s", event.source)
                    transport.start()
                else:
                    log.info("start ignored: %s", why_not)
            case Param.STOP:
                log.info("stop from %s", event.source)
                transport.stop()
                if self.on_silence is not None:
                    self.on_silence()
            case Param.PANIC:
                transport.panic()
                if self.on_silence is not None:
                    self.on_silence()
            case Param.TEMPO:
                assert isinstance(event.value, int | float)
                if self.on_tempo is not None:
                    self.on_tempo(float(event.value))
                    return
                from_beat = clock.set_tempo(float(event.value), event.at_beat)
                log.info("tempo %.1f BPM from beat %g", event.value, from_beat)
            case Param.SAY | Param.SCENE:
                if self.on_line is not None:
                    self.on_line(event.param.value, event)
            case Param.STYLE:
                self._switch_style(event)
            case Param.MOOD:
                if mood.apply(event, clock.now_s()):
                    target = mood.target()
                    log.info(
                        "mood %r → valence %+.2f arousal %+.2f",
                        event.value,
                        target.valence,
                        target.arousal,
                    )
                    if self.on_mood is not None:
                        self.on_mood(event)
                else:
                    self._drop(event)
            case _:
                if not mood.apply(event, clock.now_s()):
                    self._drop(event)

    def _switch_style(self, event: ControlEvent) -> None:
        """The style asked for plays from the next bar planned; one that is not loaded is
        counted and dropped, and the current style plays on."""
        try:
            style = self._style_for(str(event.value))
        except ValueError as exc:
            self.styles_dropped += 1
            choices = ", ".join(
                f"{i} {name}" for i, name in enumerate((BASE_STYLE, *self.styles), 1)
            )
            self._drop_log.warning(
                "style",
                f"dropped style {event.value!r} from {event.source}: {exc}; "
                f"the styles loaded are {choices}",
            )
            return
        if style != self.transport.style:
            self.transport.style = style
            log.info("style → %s from bar %d", style, self.transport.next_bar)
            self.styles_switched.append(
                {
                    "style": style,
                    "from_bar": self.transport.next_bar,
                    "at_beat": self.clock.current_beat() if self.clock.running else None,
                }
            )

    def _style_for(self, value: str) -> str:
        """The `BarRequest.style` a style event asks for; ValueError if it is not loaded."""
        choices = (BASE_STYLE, *self.styles)
        text = value.strip()
        if text.isdigit():
            number = int(text)
            if not 1 <= number <= len(choices):
                raise ValueError(f"there is no style number {number}")
            return choices[number - 1]
        style = parse_style(text)
        if style not in choices:
            raise ValueError(f"{text!r} is not loaded")
        return style

    def _drop(self, event: ControlEvent) -> None:
        self.unhandled += 1
        self._drop_log.warning(
            "not_understood",
            f"dropped {event.param.value} {event.value!r} from {event.source}: not understood",
        )

    async def serve(
        self,
        receive: trio.MemoryReceiveChannel[ControlEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        async with receive:
            async for event in receive:
                self.handle(event)
