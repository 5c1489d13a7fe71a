"""Ableton Link: join a Link session; its tempo, phase and start/stop drive the `MasterClock`.

Link (through LinkPython-extern, a binding of Ableton's own C++ library) keeps a shared beat
timeline among the peers on the local network: a tempo, a phase for a given quantum (livekomp's
quantum is the bar: `beats_per_bar`), and, with start/stop sync, whether the session is playing.
`LinkFollower.serve` polls it every `poll_s` and re-anchors the clock's tempo map at the beat the
session is on now, so bar lines fall where every other peer's bar lines fall. Tempo changes and
start/stop requested here (OSC, MIDI) are proposed to the session, which every peer then follows,
livekomp included.

Link keeps time on its own host clock (`Clock.micros`); livekomp keeps time on
`time.perf_counter`. The offset between the two is measured at every poll from back-to-back
readings (the tightest of a few pairs), so a slow drift between the two clocks never adds up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from livekomp.clock.clock import MAX_BPM, MIN_BPM, MasterClock

log = logging.getLogger("livekomp.link")

POLL_S = 0.01
# A re-anchored map that moves the next beat by less than this is not published.
REANCHOR_S = 50e-6


def clock_offset_s(micros: Callable[[], int], now_s: Callable[[], float], pairs: int = 5) -> float:
    """`now_s() - micros()/1e6`, from the tightest of `pairs` back-to-back readings."""
    best: tuple[float, float] | None = None
    for _ in range(pairs):
        before_s = now_s()
        link_s = micros() * 1e-6
        after_s = now_s()
        width_s = after_s - before_s
        if best is None or width_s < best[0]:
            best = (width_s, (before_s + after_s) / 2 - link_s)
    assert best is not None
    return best[1]


class LinkFollower:
    """Joins a Link session and drives `clock` from it (see the module doc).

    `on_start` / `on_stop` are called when the session starts or stops playing (start/stop
    sync); the performer then starts at the next bar line it can reach, or stops and releases.
    """

    def __init__(
        self,
        clock: MasterClock,
        *,
        quantum_beats: float,
        bpm: float,
        on_start: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        import link  # LinkPython-extern: only needed for --clock link

        self.clock = clock
        self.quantum_beats = quantum_beats
        self.on_start = on_start
        self.on_stop = on_stop
        self.poll_s = poll_s
        self.link = link.Link(bpm)
        self.link.startStopSyncEnabled = True
        self.running = False
        self.peers = 0
        self.offset_s = 0.0

    def _micros(self) -> int:
        return self.link.clock().micros()

    @property
    def bpm(self) -> float:
        return self.link.captureAppSessionState().tempo()

    def propose_tempo(self, bpm: float) -> None:
        """Ask the session for a new tempo (every peer follows, this one included)."""
        state = self.link.captureAppSessionState()
        state.setTempo(bpm, self._micros())
        self.link.commitAppSessionState(state)
        log.info("Link: proposed %.1f BPM to the session", bpm)

    def propose_playing(self, playing: bool) -> None:
        """Ask the session to start or stop playing (peers with start/stop sync follow)."""
        state = self.link.captureAppSessionState()
        state.setIsPlaying(playing, self._micros())
        self.link.commitAppSessionState(state)
        log.info("Link: proposed %s to the session", "start" if playing else "stop")

    def poll(self) -> None:
        """Read the session once: re-anchor the clock, follow start/stop, report peers."""
        self.offset_s = clock_offset_s(self._micros, self.clock.now_s)
        state = self.link.captureAppSessionState()
        link_us = self._micros()
        beat = state.beatAtTime(link_us, self.quantum_beats)
        bpm = state.tempo()
        at_s = link_us * 1e-6 + self.offset_s
        if MIN_BPM <= bpm <= MAX_BPM:
            changed = not self.clock.running or abs(bpm - self.clock.bpm) >= 0.05
            if self.clock.lock(beat, at_s, bpm, min_shift_s=REANCHOR_S) and changed:
                log.info("Link: %.2f BPM", bpm)
        peers = self.link.numPeers()
        if peers != self.peers:
            log.info("Link: %d other peer%s in the session", peers, "" if peers == 1 else "s")
            self.peers = peers
        playing = state.isPlaying()
        if playing and not self.running:
            self.running = True
            log.info("Link: the session is playing")
            if self.on_start is not None:
                self.on_start()
        elif not playing and self.running:
            self.running = False
            log.info("Link: the session stopped")
            if self.on_stop is not None:
                self.on_stop()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Join the session and follow it until cancelled; then leave it."""
        self.link.enabled = True
        try:
            self.poll()
            log.info(
                "Link: joined (quantum %g beats, %.1f BPM, %d peers)",
                self.quantum_beats,
                self.bpm,
                self.peers,
            )
            task_status.started()
            while True:
                await trio.sleep(self.poll_s)
                self.poll()
        finally:
            self.link.enabled = False


def link_available() -> bool:
    try:
        import link  # noqa: F401
    except ImportError:
        return False
    return True
