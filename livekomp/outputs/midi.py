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
from collections.abc import Callable, Iterable
from typing import NamedTuple

import rtmidi

from livekomp.dispatch.tracked import MidiSink, call_all
from livekomp.midiports import CLIENT_NAME, api_name

log = logging.getLogger(__name__)

VIRTUAL_PORT_NAME = "out"

JACK_HINT = (
    "is a JACK server running? Start one with: jackd -d dummy -r 48000 -p 128 & "
    "then: jack_wait -w -t 10"
)


class MidiPortError(OSError):
    """A MIDI port could not be opened, found or written to."""


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


class SentMessage(NamedTuple):
    beat: float
    data: bytes
    time_s: float


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


class FanOut:
    """Sends every message to several sinks (the live port and the `.mid` recorder).

    One failing sink does not starve the others: all are tried, then the first error is raised.
    """

    def __init__(self, sinks: Iterable[MidiSink]) -> None:
        self.sinks = tuple(sinks)

    def send(self, data: bytes, beat: float) -> None:
        call_all([lambda s=s: s.send(data, beat) for s in self.sinks])

    def close(self) -> None:
        call_all([s.close for s in self.sinks])
