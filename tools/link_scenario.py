"""A Link session with livekomp in it, run inside its own network namespace (see `netns_command`).

    unshare --net -- sh -c '<lo up, multicast on>; exec python tools/link_scenario.py OUT.json [S]'

This process is the other Link peer (LinkPython-extern, Ableton's own library) and the
controller: it starts `livekomp serve --clock link`, hears livekomp's notes on a JACK input
(stamped with perf_counter in the MIDI callback) and its OSC feedback, plays the session
(tempo changes, start, stop), and writes what it observed as JSON for the test or the benchmark
to judge. Nothing here leaves the namespace: Link's multicast stays on its loopback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import link
import rtmidi
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from livekomp.clock.link import clock_offset_s  # noqa: E402
from tools.peers import Serve  # noqa: E402

QUANTUM = 4.0


def netns_command(argv: list[str]) -> list[str]:
    """`argv` run in a new network namespace whose loopback carries multicast (root only)."""
    setup = (
        "ip link set lo up && ip link set lo multicast on && "
        'ip route add 224.0.0.0/4 dev lo && exec "$@"'
    )
    return ["unshare", "--net", "--", "sh", "-c", setup, "sh", *argv]


class Feedback(threading.Thread):
    """livekomp's OSC feedback: the last value of each address, and when it changed."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.values: dict[str, list] = {}

    def run(self) -> None:
        while True:
            data = self.sock.recv(65536)
            message = OscMessage(data)
            self.values[message.address] = message.params

    def wait_for(self, address: str, test, timeout_s: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.values.get(address)
            if value is not None and test(value[0]):
                return True
            time.sleep(0.02)
        return False


def osc_send(port: int, address: str, *args: float) -> None:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(float(arg))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(builder.build().dgram, ("127.0.0.1", port))


class Peer:
    """The other Link peer: Ableton Live's place in the session."""

    def __init__(self, bpm: float) -> None:
        self.link = link.Link(bpm)
        self.link.startStopSyncEnabled = True
        self.link.enabled = True

    def micros(self) -> int:
        return self.link.clock().micros()

    def set_tempo(self, bpm: float) -> None:
        state = self.link.captureAppSessionState()
        state.setTempo(bpm, self.micros())
        self.link.commitAppSessionState(state)

    def set_playing(self, playing: bool) -> None:
        state = self.link.captureAppSessionState()
        state.setIsPlaying(playing, self.micros())
        self.link.commitAppSessionState(state)

    def state(self):
        return self.link.captureAppSessionState()


class BeatSampler(threading.Thread):
    """The peer's beat (for the quantum) every few ms, on perf_counter: Link keeps only the
    current timeline, so past notes are placed with the samples taken while they played."""

    def __init__(self, peer: Peer, period_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.peer = peer
        self.period_s = period_s
        self.samples: list[tuple[float, float, float]] = []  # (perf_counter, beat, bpm)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            offset_s = clock_offset_s(self.peer.micros, time.perf_counter)
            state = self.peer.state()
            link_us = self.peer.micros()
            self.samples.append(
                (link_us * 1e-6 + offset_s, state.beatAtTime(link_us, QUANTUM), state.tempo())
            )
            time.sleep(self.period_s)

    def beat_at(self, t_s: float) -> tuple[float, float]:
        """(beat, bpm) at `t_s`, from the last sample before it."""
        before = [s for s in self.samples if s[0] <= t_s]
        t0, beat0, bpm = before[-1] if before else self.samples[0]
        return beat0 + (t_s - t0) * bpm / 60.0, bpm


def run(out: Path, seconds_each: float) -> dict:
    result: dict = {"ok": False}
    peer = Peer(100.0)
    feedback = Feedback()
    feedback.start()
    sampler = BeatSampler(peer)
    sampler.start()
    stamps: list[tuple[float, list[int]]] = []
    listener = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"lklink{os.getpid()}")
    listener.open_virtual_port("in")
    listener.set_callback(lambda event, _: stamps.append((time.perf_counter(), event[0])))
    # Its files (serve.log, ready.json, summary.json) go next to `out`.
    serve = Serve(
        out.parent,
        "--clock",
        "link",
        "--bpm",
        "120",
        "--feedback",
        f"127.0.0.1:{feedback.port}",
        "--feedback-rate-hz",
        "20",
        record=None,
    )
    osc_port = serve.osc_port
    try:
        label = serve.port_label(timeout_s=30)
        subprocess.run(
            ["jack_connect", label, f"lklink{os.getpid()}:in"], check=True, capture_output=True
        )
        joined_at = time.monotonic()
        while peer.link.numPeers() < 1 and time.monotonic() - joined_at < 15:
            time.sleep(0.02)
        result["peers_found_s"] = time.monotonic() - joined_at
        result["peers"] = peer.link.numPeers()

        peer.set_tempo(100.0)
        result["tempo_100"] = feedback.wait_for("/livekomp/fb/tempo", lambda v: abs(v - 100) < 0.01)
        peer.set_playing(True)
        result["started"] = feedback.wait_for("/livekomp/fb/playing", lambda v: v == 1)
        time.sleep(seconds_each)
        peer.set_tempo(130.0)
        changed_at = time.perf_counter()
        result["tempo_130"] = feedback.wait_for("/livekomp/fb/tempo", lambda v: abs(v - 130) < 0.01)
        time.sleep(seconds_each)
        peer.set_playing(False)
        stopped_at = time.perf_counter()
        result["stopped"] = feedback.wait_for("/livekomp/fb/playing", lambda v: v == 0)
        time.sleep(1.0)

        # livekomp proposes to the session: tempo, then start.
        osc_send(osc_port, "/livekomp/tempo", 90.0)
        deadline = time.monotonic() + 5
        while abs(peer.state().tempo() - 90.0) > 0.01 and time.monotonic() < deadline:
            time.sleep(0.02)
        result["peer_tempo_after_proposal"] = peer.state().tempo()
        osc_send(osc_port, "/livekomp/start", 1.0)
        deadline = time.monotonic() + 5
        while not peer.state().isPlaying() and time.monotonic() < deadline:
            time.sleep(0.02)
        result["peer_playing_after_proposal"] = peer.state().isPlaying()
        peer.set_playing(False)
        time.sleep(0.5)

        # Phase: each note-on livekomp played, on the peer's beat timeline.
        sampler.stop.set()
        phases = []
        for stamp_s, data in stamps:
            if data[0] & 0xF0 != 0x90 or data[2] == 0 or stamp_s > stopped_at:
                continue
            beat, tempo = sampler.beat_at(stamp_s)
            nominal = round(beat * 4) / 4  # the composer's grid: sixteenths
            phases.append(
                {
                    "t_s": stamp_s,
                    "beat": beat,
                    "error_ms": (beat - nominal) * 60.0 / tempo * 1e3,
                    "after_change_s": stamp_s - changed_at,
                }
            )
        result["notes"] = phases
        result["late_notes_after_stop"] = sum(
            1
            for stamp_s, data in stamps
            if data[0] & 0xF0 == 0x90 and data[2] and stopped_at + 0.3 < stamp_s < stopped_at + 1.0
        )
        result["ok"] = True
    finally:
        try:
            serve.stop(timeout_s=10)
        except subprocess.TimeoutExpired:
            serve.kill()
        listener.delete()
        peer.link.enabled = False
        result["serve_log"] = serve.log()[-4000:]
        out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    run(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 4.0)
