"""The sender process's wire: every message its parent and it exchange, in one table.

Parent and child talk over one duplex `multiprocessing.Pipe`; each message is one of the frozen
dataclasses below (pickled). The parent sends the commands in order and forwards every tempo map
its `MasterClock` publishes (`Tempo(None)` when the clock stops). Both processes read
`time.perf_counter`, which is system-wide (CLOCK_MONOTONIC on Linux, mach absolute time on
macOS), so a tempo map's seconds mean the same in both; `Ready.child_perf_counter_s` lets the
parent prove it at start-up.

The child answers `Ready` or `StartError` at start-up; then `Failed` when sending failed (it
released the notes first, and keeps answering commands until closed), `PortChange` when an
existing port vanished or came back, `StatusReport` to `Status`, `Closed` to `Close`, and
`Terminated` when a signal stopped it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from livekomp.clock.clock import TempoMap
from livekomp.dispatch.tracked import MidiSink

Segments = tuple[tuple[float, float, float], ...]  # (start_beat, start_s, bpm) per segment
Entry = tuple[float, int, bytes]  # (beat, send order, data) of one scheduled message


class OutputOpener(Protocol):
    """What the child opens its output from: picklable (it crosses to the child), opened there
    (a port cannot cross processes). `livekomp.outputs.midi.OutputSpec` is one."""

    def open(self) -> tuple[MidiSink, str]:
        """The output, and the name a peer sees it by."""
        ...


class RecorderOpener(Protocol):
    """What the child records into: a sink that also takes the tempo map (a `.mid` file).
    `livekomp.outputs.midifile.RecordSpec` is one."""

    def open(self) -> TempoSink: ...


class TempoSink(MidiSink, Protocol):
    def set_tempo_map(self, tempo_map: TempoMap) -> None: ...


class SentMessage(NamedTuple):
    """One message a memory output received: its beat, its bytes and when it arrived."""

    beat: float
    data: bytes
    time_s: float


# -- parent → child ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    entries: list[Entry]


@dataclass(frozen=True, slots=True)
class Tempo:
    segments: Segments | None  # None: the clock stopped


@dataclass(frozen=True, slots=True)
class CancelFrom:
    beat: float


@dataclass(frozen=True, slots=True)
class Panic:
    keep_clock: bool


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    send_stop: bool


Command = Submit | Tempo | CancelFrom | Panic | Status | Close


# -- child → parent ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    port_label: str
    realtime: bool
    note: str  # why it runs, or does not run, under SCHED_FIFO
    child_perf_counter_s: float


@dataclass(frozen=True, slots=True)
class StartError:
    kind: Literal["port", "other"]  # "port": the output could not be opened
    message: str


@dataclass(frozen=True, slots=True)
class Failed:
    type_name: str
    message: str
    traceback: str


@dataclass(frozen=True, slots=True)
class PortChange:
    state: Literal["lost", "back"]
    port_label: str
    notes: int  # the notes released: in the recording when lost, to the port when back


@dataclass(frozen=True, slots=True)
class SenderStatus:
    """What the sender process reports when asked (`ProcessDispatcher.status`)."""

    time_s: float  # its time.perf_counter() as it answered
    pending: int  # messages waiting for their time
    sent: int  # scheduled messages sent so far (releases not counted)
    sounding: frozenset[tuple[int, int]]  # (channel, pitch) of every note sounding
    failed: bool


@dataclass(frozen=True, slots=True)
class StatusReport:
    status: SenderStatus


@dataclass(frozen=True, slots=True)
class Closed:
    lateness_s: list[float]
    sent: list[SentMessage] | None  # what a memory output received; None for a port


@dataclass(frozen=True, slots=True)
class Terminated:
    signum: int


Reply = Ready | StartError | Failed | PortChange | StatusReport | Closed | Terminated
