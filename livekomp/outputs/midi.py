"""MIDI outputs: the rtmidi port, an in-memory recorder and fan-out.

Every sink (`livekomp.dispatch.tracked.MidiSink`) takes raw bytes plus the beat the message
belongs to (a `.mid` recorder writes the beat; a live port ignores it). The dispatcher sends
through a `TrackedOutput`, which remembers every sounding note so that a panic, a stop or a crash
can always release them.

Virtual port names (`port_name=None`), so a DAW or `jack_connect` can find the port:

- JACK: client `livekomp`, port `out` — the full name is `livekomp:out`. If another client already
  holds the name `livekomp`, JACK renames ours `livekomp-01`, `livekomp-02`, …; `.port_label` says
  which one we got.
- ALSA sequencer: client `livekomp`, port `out` (`livekomp:out`, listed with its numbers).
- CoreMIDI: a virtual source named `livekomp`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import rtmidi

from livekomp.dispatch.tracked import MidiSink
from livekomp.dispatch.wire import SentMessage
from livekomp.midiports import CLIENT_NAME, MidiPortError, api_name

log = logging.getLogger(__name__)

VIRTUAL_PORT_NAME = "out"

JACK_HINT = (
    "is a JACK server running? Start one with: jackd -d dummy -r 48000 -p 128 & "
    "then: jack_wait -w -t 10"
)


def _open_error(api: int, action: str, err: BaseException) -> MidiPortError:
    hint = f"; {JACK_HINT}" if api == rtmidi.API_UNIX_JACK else ""
    return MidiPortError(f"cannot {action} ({api_name(api)} MIDI): {err}{hint}")


def list_ports(api: int) -> tuple[list[str], list[str]]:
    """The (input, output) port names that `api` sees now, for `livekomp ports`."""
    try:
        midi_in = rtmidi.MidiIn(api, name=f"{CLIENT_NAME}-ports")
        midi_out = rtmidi.MidiOut(api, name=f"{CLIENT_NAME}-ports")
        try:
            return midi_in.get_ports(), midi_out.get_ports()
        finally:
            midi_in.delete()
            midi_out.delete()
    except rtmidi.RtMidiError as err:
        raise _open_error(api, "list MIDI ports", err) from err


class RtMidiOutput:
    """A python-rtmidi output: a virtual port (`port_name=None`) or an existing port.

    An existing port is found by case-insensitive substring of its name; the first match wins.
    `port_label` is the name a peer sees (the full JACK port name for a virtual JACK port).
    Opening talks to the MIDI system and may block briefly: call it off the trio thread.
    """

    def __init__(self, port_name: str | None, *, api: int) -> None:
        self.api = api
        self.existing = port_name is not None  # an existing port can vanish and come back
        self.lost = False  # it vanished: sends are dropped until `reopen`
        self.dropped = 0
        try:
            self._midi_out = rtmidi.MidiOut(api, name=CLIENT_NAME)
        except rtmidi.RtMidiError as err:
            raise _open_error(api, "create a MIDI client", err) from err
        try:
            if port_name is None:
                self.port_label = self._open_virtual()
            else:
                self.port_label = self._open_existing(port_name)
        except BaseException:
            self._midi_out.delete()
            raise
        log.info("MIDI output open: %s (%s)", self.port_label, api_name(api))

    def _open_virtual(self) -> str:
        if self.api == rtmidi.API_UNIX_JACK:
            return self._open_virtual_jack()
        port = CLIENT_NAME if self.api == rtmidi.API_MACOSX_CORE else VIRTUAL_PORT_NAME
        try:
            self._midi_out.open_virtual_port(port)
        except rtmidi.RtMidiError as err:
            raise _open_error(self.api, f"open virtual port {port!r}", err) from err
        if self.api == rtmidi.API_MACOSX_CORE:
            return port
        return f"{CLIENT_NAME}:{port}"

    def _open_virtual_jack(self) -> str:
        # JACK renames the client when `livekomp` is taken, and rtmidi does not tell us the name
        # it got; find our port as the one that appeared among the JACK MIDI sources.
        try:
            probe = rtmidi.MidiIn(self.api, name=f"{CLIENT_NAME}-probe")
        except rtmidi.RtMidiError as err:
            raise _open_error(self.api, "connect to JACK", err) from err
        try:
            before = set(probe.get_ports())
            self._midi_out.open_virtual_port(VIRTUAL_PORT_NAME)
            new = [
                name
                for name in probe.get_ports()
                if name not in before
                and name.startswith(CLIENT_NAME)
                and name.endswith(f":{VIRTUAL_PORT_NAME}")
            ]
        except rtmidi.RtMidiError as err:
            raise _open_error(self.api, f"open virtual port {VIRTUAL_PORT_NAME!r}", err) from err
        finally:
            probe.delete()
        if len(new) == 1:
            return new[0]
        guess = f"{CLIENT_NAME}:{VIRTUAL_PORT_NAME}"
        log.warning("could not tell which JACK port is ours among %s; assuming %s", new, guess)
        return guess

    def _open_existing(self, port_name: str) -> str:
        try:
            ports = self._midi_out.get_ports()
        except rtmidi.RtMidiError as err:
            raise _open_error(self.api, "list MIDI output ports", err) from err
        wanted = port_name.lower()
        for index, name in enumerate(ports):
            if wanted in name.lower():
                try:
                    self._midi_out.open_port(index)
                except rtmidi.RtMidiError as err:
                    raise _open_error(self.api, f"open MIDI port {name!r}", err) from err
                return name
        available = ", ".join(repr(p) for p in ports) or "none"
        raise MidiPortError(
            f"no MIDI output port matches {port_name!r} ({api_name(self.api)}); "
            f"available: {available}"
        )

    def present(self) -> bool:
        """Whether the existing port we play into is still there (a quick query, ~20 µs)."""
        try:
            return self.port_label in self._midi_out.get_ports()
        except rtmidi.RtMidiError:
            return False

    def reopen(self) -> None:
        """Connect again to the existing port after it came back (hot-plug)."""
        ports = self._midi_out.get_ports()
        try:
            self._midi_out.close_port()
            self._midi_out.open_port(ports.index(self.port_label))
        except (ValueError, rtmidi.RtMidiError) as err:
            raise MidiPortError(f"cannot reopen {self.port_label}: {err}") from err
        self.lost = False

    def send(self, data: bytes, beat: float) -> None:
        if self.lost:
            self.dropped += 1
            return
        try:
            self._midi_out.send_message(data)
        except rtmidi.RtMidiError as err:
            raise MidiPortError(f"cannot send to {self.port_label}: {err}") from err

    def close(self) -> None:
        if not self._midi_out.is_deleted:
            self._midi_out.close_port()
            self._midi_out.delete()


class MemoryOutput:
    """Records what it is sent, with the time it arrived: the fake port for tests and benchmarks."""

    def __init__(self, *, now_s: Callable[[], float] = time.perf_counter) -> None:
        self.now_s = now_s
        self.sent: list[SentMessage] = []
        self.closed = False

    def send(self, data: bytes, beat: float) -> None:
        if self.closed:
            raise MidiPortError("send on a closed MemoryOutput")
        self.sent.append(SentMessage(beat, bytes(data), self.now_s()))

    def close(self) -> None:
        self.closed = True

    @property
    def data(self) -> list[bytes]:
        return [m.data for m in self.sent]


# -- what the sender process opens ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Which MIDI output the sender process opens (the output itself cannot cross processes):
    a `livekomp.dispatch.wire.OutputOpener`, opened in the child.

    `kind="rtmidi"`: a python-rtmidi port on `api`, virtual when `port_name` is None (see
    `RtMidiOutput`). `kind="memory"`: a `MemoryOutput` whose messages come back to the parent at
    close (tests, benchmarks); with `fail_on`, sending that message raises, like a port that
    vanished mid-set.
    """

    kind: Literal["rtmidi", "memory"]
    port_name: str | None = None
    api: int | None = None
    fail_on: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in _OPENERS:
            raise ValueError(f"unknown output kind {self.kind!r}; choose {', '.join(_OPENERS)}")
        if self.kind == "rtmidi" and self.api is None:
            raise ValueError("an rtmidi output needs its api (see livekomp.midiports.choose_api)")

    @classmethod
    def rtmidi(cls, port_name: str | None, *, api: int) -> OutputSpec:
        return cls("rtmidi", port_name=port_name, api=api)

    @classmethod
    def memory(cls, *, fail_on: bytes | None = None) -> OutputSpec:
        return cls("memory", fail_on=fail_on)

    def open(self) -> tuple[MidiSink, str]:
        """The output and the name a peer sees it by (called in the sender process)."""
        return _OPENERS[self.kind](self)


class _VanishingOutput(MemoryOutput):
    """A memory port that raises on one message, like a port that vanished mid-set."""

    def __init__(self, fail_on: bytes) -> None:
        super().__init__(now_s=time.perf_counter)
        self.fail_on = fail_on

    def send(self, data: bytes, beat: float) -> None:
        if data == self.fail_on:
            raise MidiPortError("port vanished")
        super().send(data, beat)


def _open_rtmidi(spec: OutputSpec) -> tuple[MidiSink, str]:
    assert spec.api is not None  # checked in OutputSpec
    port = RtMidiOutput(spec.port_name, api=spec.api)
    return port, port.port_label


def _open_memory(spec: OutputSpec) -> tuple[MidiSink, str]:
    if spec.fail_on is not None:
        return _VanishingOutput(spec.fail_on), "memory (fails)"
    return MemoryOutput(now_s=time.perf_counter), "memory"


_OPENERS: dict[str, Callable[[OutputSpec], tuple[MidiSink, str]]] = {
    "rtmidi": _open_rtmidi,
    "memory": _open_memory,
}
