"""Real peers for the live tests and the benchmarks: `livekomp serve` run the way a performer
runs it, and the third-party tools that talk to it (jack_midi_dump, jack_connect, oscsend, a
JACK MIDI clock master, a JACK recorder)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


READY_STATES = ("port_open", "ready", "stopped")


class Serve:
    """`livekomp serve` in a subprocess: its state read from its `--ready-file`, its log kept in
    a file for the assertions about what it told the performer.

    Its files go in `tmp_path`: serve.log, ready.json, summary.json and the recording, named
    `record` (None: no `--record`)."""

    def __init__(self, tmp_path: Path, *args: str, record: str | None = "live.mid") -> None:
        self.osc_port = free_udp_port()
        self.log_path = tmp_path / "serve.log"
        self.summary_path = tmp_path / "summary.json"
        self.record_path = tmp_path / record if record is not None else None
        self.ready_path = tmp_path / "ready.json"
        self._log = self.log_path.open("w")
        command = [
            sys.executable,
            "-m",
            "livekomp.cli",
            "serve",
            "--midi-api",
            "jack",
            "--osc-port",
            str(self.osc_port),
            "--summary",
            str(self.summary_path),
        ]
        if self.record_path is not None:
            command += ["--record", str(self.record_path)]
        command += ["--ready-file", str(self.ready_path), *args]
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its own process group, as a service manager would start it
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, text: str, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if text in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"livekomp serve never logged {text!r}:\n{self.log()}")

    def state(self) -> dict[str, object]:
        """The server's last word in its ready file ({} before the first)."""
        try:
            return json.loads(self.ready_path.read_text())
        except FileNotFoundError:
            return {}

    def wait_ready(self, state: str = "ready", timeout_s: float = 20.0) -> dict[str, object]:
        """Wait until the server says `state` or a later one (see `livekomp.app.ReadyFile`)."""
        wanted = READY_STATES.index(state)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            said = self.state()
            if said and READY_STATES.index(str(said["state"])) >= wanted:
                return said
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"livekomp serve never said {state!r}:\n{self.log()}")

    def port_label(self, timeout_s: float = 20.0) -> str:
        """The MIDI output's name, as soon as it exists (connect now to hear the first bar)."""
        return str(self.wait_ready("port_open", timeout_s)["midi_out"])

    def stop(
        self, signum: int = signal.SIGTERM, timeout_s: float = 10.0, *, group: bool = False
    ) -> int:
        """Signal the server (with `group`, its whole process group, sender included, as
        systemd or a terminal's Ctrl-C do) and wait for its exit code."""
        if self.process.poll() is None:
            if group:
                os.killpg(self.process.pid, signum)
            else:
                self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


MEMORY_DIR = Path("/dev/shm")


class MidiDump:
    """`jack_midi_dump -a`: a third-party JACK MIDI receiver, frames at 48 kHz.

    Its output goes to a file in memory (`/dev/shm` where there is one) while it runs, and is
    copied beside the test's other files (`path`) when it closes: jack_midi_dump hands events
    from its process thread to a printing thread through a small ring buffer and drops what does
    not fit, silently, so a print held up by a busy disk lost ticks and notes under load."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.name = name
        self.path = tmp_path / f"{name}.txt"
        if MEMORY_DIR.is_dir() and os.access(MEMORY_DIR, os.W_OK):
            handle, live = tempfile.mkstemp(
                prefix=f"livekomp-{name}-", suffix=".txt", dir=MEMORY_DIR
            )
            os.close(handle)
            self._live = Path(live)
        else:
            self._live = self.path
        self._out = self._live.open("w")
        self.process = subprocess.Popen(
            ["stdbuf", "-oL", "jack_midi_dump", "-a", name],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while f"{name}:input" not in _jack_port_list():
            if time.monotonic() > deadline:
                raise AssertionError("jack_midi_dump did not register its port")
            time.sleep(0.05)

    @property
    def port(self) -> str:
        return f"{self.name}:input"

    def events(self) -> list[tuple[int, bytes]]:
        """(frame, message bytes) of everything received so far."""
        events = []
        for line in self._live.read_text().splitlines():
            frame, sep, rest = line.partition(":")
            if not sep or not frame.strip().isdigit():
                continue
            hex_bytes = []
            for token in rest.split():
                if len(token) == 2 and all(c in "0123456789abcdef" for c in token):
                    hex_bytes.append(int(token, 16))
                else:
                    break
            if hex_bytes:
                events.append((int(frame), bytes(hex_bytes)))
        return events

    def close(self) -> None:
        """Stop the dump and keep its output at `path` (again: nothing more to do)."""
        if self._out.closed:
            return
        self.process.terminate()
        self.process.wait(timeout=10)
        self._out.close()
        if self._live != self.path:
            self.path.write_bytes(self._live.read_bytes())
            self._live.unlink()
            self._live = self.path


def _jack_port_list(timeout_s: float = 2.0) -> str:
    """`jack_lsp`'s output, or "" when it does not answer in time. A JACK client opening while
    another of the same name is still being closed can wait forever in jack_client_open (seen
    once in CI: a jack_lsp stuck 12 minutes after the hot-plug test unplugged its dump); asked
    again, the server answers."""
    try:
        return subprocess.run(
            ["jack_lsp"], capture_output=True, text=True, timeout=timeout_s
        ).stdout
    except subprocess.TimeoutExpired:
        return ""


def connect(source: str, destination: str) -> None:
    subprocess.run(
        ["jack_connect", source, destination], check=True, capture_output=True, timeout=10
    )


def oscsend(port: int, address: str, types: str = "", *values: object) -> None:
    command = ["oscsend", "127.0.0.1", str(port), address]
    if types:
        command += [types, *map(str, values)]
    subprocess.run(command, check=True, capture_output=True, timeout=10)


class ClockMaster:
    """A MIDI clock master on JACK (what Ableton Live is on stage): a virtual output port in a
    process of its own that plays a script of Start, Stop, Continue, Song Position Pointer and
    ticks from a SCHED_FIFO thread (where permitted) that sleeps to just before each tick and
    spins the rest, as a DAW's MIDI thread does.

    A master in the test process, without real-time priority, sent ticks up to 20 ms late under
    CPU and disk load (measured): its lateness, not the follower's, was what a test saw. This one
    is at the floor the live sender is at.

    A script is a list of steps: ("start",), ("stop",), ("continue",), ("spp", sixteenths),
    ("ticks", bpm, count) — with `jitter_s` each tick moves by a uniform random amount (seeded)
    and the tick numbers in `drop` are not sent at all (counted over the whole script). After
    `wait()`, `sent` lists (perf_counter, message) of everything sent and `ideal_tick_s` each
    sent tick's due time before jitter.
    """

    def __init__(
        self, client_name: str, *, jitter_s: float = 0.0, seed: int = 0, rt_priority: int = 4
    ) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_master_main,
            args=(child_conn, client_name, jitter_s, seed, rt_priority),
            name="clock-master",
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        if not self._conn.poll(30):
            raise AssertionError("the clock master process did not start")
        _, self.port, self.realtime = self._conn.recv()
        self.sent: list[tuple[float, bytes]] = []
        self.ideal_tick_s: list[float] = []
        self._playing = False

    def play(self, script: list[tuple], *, drop: frozenset[int] = frozenset()) -> None:
        """Play `script` in the background; `wait()` for it to end."""
        self._conn.send(("play", script, drop))
        self._playing = True

    def wait(self, timeout_s: float = 120.0) -> None:
        assert self._playing, "wait() before play()"
        assert self._conn.poll(timeout_s), "the clock master did not finish its script"
        _, sent, ideal = self._conn.recv()
        self.sent += sent
        self.ideal_tick_s += ideal
        self._playing = False

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("close",))
            self._process.join(5.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()


def _master_main(conn, client_name: str, jitter_s: float, seed: int, rt_priority: int) -> None:
    """The clock master's process: open the port, then play each script it is sent."""
    import random

    import rtmidi

    from livekomp.dispatch.child import set_realtime

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the test run ends it, not Ctrl-C
    midi_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=client_name)
    midi_out.open_virtual_port("clock")
    realtime, _ = set_realtime(rt_priority)  # after the port: JACK's own threads keep theirs
    conn.send(("ready", f"{client_name}:clock", realtime))
    jitter = random.Random(seed)
    try:
        while True:
            command, *args = conn.recv()
            if command == "close":
                return
            script, drop = args
            conn.send(("done", *_play_script(midi_out, script, drop, jitter, jitter_s)))
    except EOFError:
        return  # the test process is gone
    finally:
        midi_out.delete()


def _play_script(midi_out, script, drop, jitter, jitter_s):
    sent: list[tuple[float, bytes]] = []
    ideal: list[float] = []

    def send(data: bytes) -> None:
        midi_out.send_message(list(data))
        sent.append((time.perf_counter(), data))

    tick_number = 0
    next_s = time.perf_counter() + 0.05
    for step in script:
        kind = step[0]
        if kind == "ticks":
            _, bpm, count = step
            period_s = 60.0 / bpm / 24
            for _ in range(count):
                _sleep_until(next_s + jitter.uniform(-jitter_s, jitter_s))
                if tick_number not in drop:
                    send(b"\xf8")
                    ideal.append(next_s)
                tick_number += 1
                next_s += period_s
        elif kind == "spp":
            send(bytes((0xF2, step[1] & 0x7F, step[1] >> 7)))
        else:
            send(bytes(({"start": 0xFA, "stop": 0xFC, "continue": 0xFB}[kind],)))
    return sent, ideal


def _sleep_until(due_s: float, spin_s: float = 200e-6) -> None:
    """Sleep to `spin_s` before `due_s`, then spin (under SCHED_FIFO a sleep has no slack)."""
    left_s = due_s - time.perf_counter()
    if left_s > spin_s:
        time.sleep(left_s - spin_s)
    while time.perf_counter() < due_s:
        pass


def master_beats(
    events: list[tuple[int, bytes]],
    dropped: frozenset[int] = frozenset(),
    *,
    infer_lost: bool = False,
) -> list[tuple[int, float]]:
    """(frame, song position in beats) of every tick a MIDI clock master sent while running,
    counted as a follower must: Start → the next tick is beat 0; Continue → the next tick is the
    Song Position Pointer's beat; ticks while stopped do not move the position. `dropped`: the
    master's tick numbers (over its whole script) it never sent — they still took their time.
    With `infer_lost`, a gap of 1.6 ticks or more (against the last few) counts the ticks that
    JACK lost on the way (benchmarks on a busy machine; not for scripts with big tempo drops)."""
    placed = []
    running = False
    position_ticks = 0
    tick_number = 0
    tick_frames: list[int] = []
    for frame, data in events:
        if data[0] == 0xF8:
            while tick_number in dropped:
                tick_number += 1
                position_ticks += running
            if infer_lost and len(tick_frames) >= 9:
                recent = sorted(
                    b - a for a, b in zip(tick_frames[-9:-1], tick_frames[-8:], strict=True)
                )
                usual = recent[len(recent) // 2]
                gap = frame - tick_frames[-1]
                if usual > 0 and gap >= 1.6 * usual:
                    position_ticks += (round(gap / usual) - 1) * running
            tick_frames.append(frame)
            tick_number += 1
        status = data[0]
        if status == 0xFA:
            running, position_ticks = True, 0
        elif status == 0xFB:
            running = True
        elif status == 0xFC:
            running = False
        elif status == 0xF2 and len(data) == 3:
            position_ticks = (data[1] | data[2] << 7) * 6
        elif status == 0xF8 and running:
            placed.append((frame, position_ticks / 24))
            position_ticks += 1
    return placed


class JackRecorder:
    """A JACK client (JACK-Client, in this process) that records an audio input and a MIDI
    input against one frame clock, so where a sound starts can be compared with the MIDI clock
    ticks of the same run."""

    def __init__(self, name: str) -> None:
        import jack
        import numpy as np

        self._np = np
        self.client = jack.Client(name, no_start_server=True)
        self.sample_rate = self.client.samplerate
        self.audio_in = self.client.inports.register("audio")
        self.midi_in = self.client.midi_inports.register("midi")
        self.blocks: list[tuple[int, object]] = []
        self.midi: list[tuple[int, bytes]] = []

        @self.client.set_process_callback
        def process(frames: int) -> None:
            base = self.client.last_frame_time
            self.blocks.append((base, self.audio_in.get_array().copy()))
            for offset, data in self.midi_in.incoming_midi_events():
                self.midi.append((base + offset, bytes(data)))

        self.client.activate()

    @property
    def frame_time(self) -> int:
        return self.client.frame_time

    def connect_from(self, audio_port: str, midi_port: str) -> None:
        self.client.connect(audio_port, self.audio_in.name)
        self.client.connect(midi_port, self.midi_in.name)

    def audio(self) -> tuple[int, object]:
        """(frame of the first sample, samples) of everything recorded, each block at its
        frame (a cycle JACK skipped under load stays a gap of silence, not a shift)."""
        blocks = list(self.blocks)
        first = blocks[0][0]
        end = max(frame + len(block) for frame, block in blocks)
        audio = self._np.zeros(end - first, self._np.float32)
        for frame, block in blocks:
            audio[frame - first : frame - first + len(block)] = block
        return first, audio

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def ticks_by_the_masters_log(
    events: list[tuple[int, bytes]],
    sent: list[tuple[float, bytes]],
    dropped: frozenset[int] = frozenset(),
    *,
    frame_rate: int = 48_000,
) -> list[tuple[int, float]]:
    """(frame, song position in beats) of every tick a receiver heard while the master ran,
    numbered by what the master says it sent (`ClockMaster.sent`), not by the receiver's gaps.

    A receiver on a busy machine loses ticks now and then (jack_midi_dump misses JACK cycles), and
    a tick held up by most of a period looks like a lost one in its gaps: counted from gaps, one
    such tick shifts every beat after it. Here each heard tick is matched to a sent one: when
    ticks were lost, the losses go where the receiver's frames then follow the master's send
    times most smoothly (a wrong place puts a whole period's jump into that curve, a slip of
    JACK's frame clock only a few milliseconds).
    """
    # Every tick the master sent, in order, with its song position (None while stopped): its log
    # has every tick, so it is counted as a receiver's events are, with nothing to infer.
    beat_at = dict(master_beats(sent, dropped))  # send times are distinct perf_counter readings
    sent_times = [t_s for t_s, data in sent if data[0] == 0xF8]
    positions = [beat_at.get(t_s) for t_s in sent_times]
    heard = [frame for frame, data in events if data[0] == 0xF8]

    def offset(i: int, j: int) -> float:
        return heard[i] / frame_rate - sent_times[j]

    def step(i: int, j0: int, j1: int) -> float:
        """The roughness between heard ticks i and i+1, matched to sent ticks j0 and j1."""
        return abs(offset(i + 1, j1) - offset(i, j0))

    def sums(steps) -> list[float]:
        return [0.0, *itertools.accumulate(steps)]

    # The roughness of a matching is the sum of its steps. Moving where a loss (or an extra tick)
    # goes changes the matching only from there on, so every place is scored from prefix sums of
    # the steps as they are and as they would be: time linear in the ticks heard per loss (a run
    # under load loses dozens of a thousand, and scoring each place afresh took minutes).
    #
    # A tick heard that the master never sent (seen once in 40 runs under load, from the dump or
    # the graph; the test checks separately that livekomp sends no clock) is left out where it
    # fits worst, as a lost one is put where it fits best.
    while len(heard) > len(sent_times):
        n = len(heard)
        same = sums(step(i, i, i + 1) for i in range(n - 2))  # heard i is sent i
        back = sums(step(i, i - 1, i) for i in range(1, n - 1))  # heard i+1 on is sent i on
        extra = min(
            range(n),
            key=lambda i, n=n, same=same, back=back: (
                same[max(i - 1, 0)]
                + (abs(offset(i + 1, i) - offset(i - 1, i - 1)) if 0 < i < n - 1 else 0.0)
                + back[-1]
                - back[min(i, n - 2)],
                i,
            ),
        )
        heard = heard[:extra] + heard[extra + 1 :]
    index = list(range(len(heard)))  # heard tick i is sent tick index[i]

    for _ in range(len(sent_times) - len(heard)):  # one loss at a time, where it fits best
        n = len(heard)
        stay = sums(step(i, index[i], index[i + 1]) for i in range(n - 1))
        moved = sums(step(i, index[i] + 1, index[i + 1] + 1) for i in range(n - 1))
        # heard[place:] each one sent tick on: the steps before stay, those after move, and the
        # step into `place` crosses
        place = min(
            range(n + 1),
            key=lambda p, n=n, index=index, stay=stay, moved=moved: (
                stay[max(p - 1, 0)]
                + (step(p - 1, index[p - 1], index[p] + 1) if 0 < p < n else 0.0)
                + moved[-1]
                - moved[min(p, n - 1)],
                p,
            ),
        )
        index = index[:place] + [j + 1 for j in index[place:]]
    return [
        (heard[i], positions[j])  # type: ignore[misc]
        for i, j in enumerate(index)
        if positions[j] is not None
    ]
