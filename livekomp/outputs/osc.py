"""OSC feedback to the controller: what livekomp is doing, so TouchOSC's faders and labels follow.

`serve_feedback` takes a snapshot of the state `rate_hz` times a second and sends, as OSC over
UDP, only the values that changed since they were last sent, plus everything again every
`refresh_s` (a controller that connects late, or lost a datagram, catches up). So a busy set
costs a few small datagrams a second, never a flood. Addresses (`FEEDBACK_PREFIX` = /livekomp/fb):

    /livekomp/fb/valence f      /livekomp/fb/arousal f     (-1..1, as heard now)
    /livekomp/fb/density f      /livekomp/fb/intensity f   (0..1)
    /livekomp/fb/tempo f        (BPM)
    /livekomp/fb/bar i          /livekomp/fb/beat i        (1-based; the master's when following)
    /livekomp/fb/playing i      (1 playing, 0 stopped)
    /livekomp/fb/scene s        /livekomp/fb/line s        (the last scene, the line being spoken)
    /livekomp/fb/style s        (the style adapter the next bar is composed in; "base": none)
    /livekomp/fb/composer/fresh i   /livekomp/fb/composer/buffered i
    /livekomp/fb/composer/fallbacks i   (bars: fresh from the model, from the buffer, rules)
    /livekomp/fb/composer/buffer f  (phrase buffer fill 0..1, when the composer keeps one)
    /livekomp/xy ff             (the mood's target, 0..1 each: the XY pad follows)

The last one goes to the address the TouchOSC preset listens to, so the pad moves when the mood
is changed from elsewhere (a MIDI fader, a mood word). A send that fails (no route, the
controller's port closed) is counted and never stops the server.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Callable
from dataclasses import dataclass

import trio
from pythonosc.osc_message_builder import OscMessageBuilder

log = logging.getLogger("livekomp.feedback")

FEEDBACK_PREFIX = "/livekomp/fb"
XY_ADDRESS = "/livekomp/xy"
# Floats closer than this to what was last sent are not sent again.
FLOAT_RESOLUTION = 0.005

Value = float | int | str | tuple[float, ...]


@dataclass(frozen=True, slots=True)
class FeedbackSnapshot:
    """What the controller is told. None: not known now (not sent)."""

    valence: float
    arousal: float
    density: float
    intensity: float
    target_valence: float
    target_arousal: float
    tempo_bpm: float
    playing: bool
    bar: int | None = None  # 1-based
    beat: int | None = None  # 1-based, within the bar
    scene: str | None = None
    line: str | None = None
    style: str | None = None
    composer_fresh: int = 0
    composer_buffered: int = 0
    composer_fallbacks: int = 0
    composer_buffer: float | None = None  # 0..1

    def values(self) -> dict[str, Value]:
        """Address → value for every field that is known."""
        found: dict[str, Value] = {
            f"{FEEDBACK_PREFIX}/valence": self.valence,
            f"{FEEDBACK_PREFIX}/arousal": self.arousal,
            f"{FEEDBACK_PREFIX}/density": self.density,
            f"{FEEDBACK_PREFIX}/intensity": self.intensity,
            f"{FEEDBACK_PREFIX}/tempo": self.tempo_bpm,
            f"{FEEDBACK_PREFIX}/playing": int(self.playing),
            f"{FEEDBACK_PREFIX}/composer/fresh": self.composer_fresh,
            f"{FEEDBACK_PREFIX}/composer/buffered": self.composer_buffered,
            f"{FEEDBACK_PREFIX}/composer/fallbacks": self.composer_fallbacks,
            XY_ADDRESS: ((self.target_valence + 1) / 2, (self.target_arousal + 1) / 2),
        }
        optional: dict[str, Value | None] = {
            f"{FEEDBACK_PREFIX}/bar": self.bar,
            f"{FEEDBACK_PREFIX}/beat": self.beat,
            f"{FEEDBACK_PREFIX}/scene": self.scene,
            f"{FEEDBACK_PREFIX}/line": self.line,
            f"{FEEDBACK_PREFIX}/style": self.style,
            f"{FEEDBACK_PREFIX}/composer/buffer": self.composer_buffer,
        }
        found.update({k: v for k, v in optional.items() if v is not None})
        return found


def encode(address: str, value: Value) -> bytes:
    builder = OscMessageBuilder(address)
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, float):
            builder.add_arg(item, OscMessageBuilder.ARG_TYPE_FLOAT)
        elif isinstance(item, int):
            builder.add_arg(item, OscMessageBuilder.ARG_TYPE_INT)
        else:
            builder.add_arg(str(item), OscMessageBuilder.ARG_TYPE_STRING)
    return builder.build().dgram


def _same(old: Value | None, new: Value) -> bool:
    if isinstance(new, tuple) and isinstance(old, tuple) and len(old) == len(new):
        return all(_same(a, b) for a, b in zip(old, new, strict=True))
    if isinstance(new, float) and isinstance(old, float):
        return math.isclose(old, new, abs_tol=FLOAT_RESOLUTION)
    return old == new


class FeedbackChanges:
    """Which addresses to send for a snapshot: the changed ones, or all of them on refresh."""

    def __init__(self) -> None:
        self._sent: dict[str, Value] = {}

    def changed(self, snapshot: FeedbackSnapshot, *, everything: bool = False) -> list[bytes]:
        datagrams = []
        for address, value in snapshot.values().items():
            if everything or not _same(self._sent.get(address), value):
                datagrams.append(encode(address, value))
                self._sent[address] = value
        return datagrams


def parse_target(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or ':PORT' for 127.0.0.1) → (host, port); ValueError names what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"feedback target must be HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port_text)


async def serve_feedback(
    target: tuple[str, int],
    snapshot: Callable[[], FeedbackSnapshot],
    *,
    rate_hz: float = 10.0,
    refresh_s: float = 2.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send feedback to `target` until cancelled (see the module doc)."""
    host, port = target
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, address = infos[0]
    changes = FeedbackChanges()
    failures = 0
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
        task_status.started()
        log.info("OSC feedback to %s:%d, up to %g times a second", host, port, rate_hz)
        next_refresh_s = trio.current_time()
        while True:
            now_s = trio.current_time()
            everything = now_s >= next_refresh_s
            if everything:
                next_refresh_s = now_s + refresh_s
            for datagram in changes.changed(snapshot(), everything=everything):
                try:
                    await sock.sendto(datagram, address)
                except OSError as err:
                    failures += 1
                    if failures == 1 or failures % 1000 == 0:
                        log.warning(
                            "OSC feedback to %s:%d failed (%d so far): %s", *target, failures, err
                        )
            await trio.sleep(1.0 / rate_hz)
