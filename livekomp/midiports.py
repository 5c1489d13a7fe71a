"""MIDI ports, shared by the inputs, the clock follower and the outputs: which MIDI system to
talk to (CoreMIDI on macOS, ALSA on Linux when it has a sequencer, JACK on Linux without one —
these machines: no /dev/snd), finding, opening and hot-plugging inputs, and reading them.

Inputs are polled, never called back. rtmidi's callback runs Python in the MIDI system's thread
(with JACK, the real-time process thread), which must first take the GIL: while the composer
holds it, that JACK cycle cannot finish ("client was not finished" in JACK's log: an xrun for
the whole graph), and a time read in the callback is as late as the GIL was. Polled, rtmidi
keeps each message in its own queue with its delta time, measured in that thread before any
Python runs; `StampedInput` rebuilds each message's arrival time from those deltas.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence

import rtmidi
import trio

log = logging.getLogger("livekomp.midi")

API_NAMES: dict[str, int] = {
    "coremidi": rtmidi.API_MACOSX_CORE,
    "alsa": rtmidi.API_LINUX_ALSA,
    "jack": rtmidi.API_UNIX_JACK,
    "windows": rtmidi.API_WINDOWS_MM,
}

CLIENT_NAME = "livekomp"
# How often an input's queue is read. Only delivery waits this long: each message keeps the
# time it arrived (see StampedInput).
POLL_S = 0.002
# A message whose rebuilt time is this far behind the poll lost its deltas (rtmidi restarted its
# count after a reopen, or its queue overflowed): the time base is taken afresh.
STALE_S = 1.0
# What a controller input leaves out: clock (24 a beat) and active sensing (3 a second).
CONTROL_IGNORE = {"sysex": True, "timing": True, "active_sense": True}


def choose_api(preference: str = "auto") -> int:
    """The rtmidi API constant for `preference` ("auto", "alsa", "jack", "coremidi")."""
    preference = preference.lower()
    if preference != "auto":
        try:
            api = API_NAMES[preference]
        except KeyError:
            raise ValueError(
                f"unknown MIDI API {preference!r}; choose auto, {', '.join(API_NAMES)}"
            ) from None
        if api not in rtmidi.get_compiled_api():
            raise ValueError(f"this python-rtmidi build has no {preference} support")
        return api
    if sys.platform == "darwin":
        return rtmidi.API_MACOSX_CORE
    if sys.platform.startswith("win"):
        return rtmidi.API_WINDOWS_MM
    if os.path.exists("/dev/snd/seq") and rtmidi.API_LINUX_ALSA in rtmidi.get_compiled_api():
        return rtmidi.API_LINUX_ALSA
    return rtmidi.API_UNIX_JACK


def api_name(api: int) -> str:
    for name, value in API_NAMES.items():
        if value == api:
            return name
    return rtmidi.get_api_name(api)


class MidiPortError(OSError):
    """A MIDI port could not be opened, found or written to."""


class MidiPortNotFound(OSError):
    """No (or more than one) MIDI input port matches the requested name.

    An OSError like rtmidi's own errors (e.g. "JACK server not running?"), so the command line
    reports all of them as problems the user can fix, without a traceback.
    """


def find_port(ports: Sequence[str], wanted: str) -> int:
    """Index of the port named `wanted`: an exact match, else the one port containing it."""
    needle = wanted.casefold()
    exact = [i for i, port in enumerate(ports) if port.casefold() == needle]
    if exact:
        return exact[0]
    matches = [i for i, port in enumerate(ports) if needle in port.casefold()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(repr(ports[i]) for i in matches)
        raise MidiPortNotFound(f"MIDI input {wanted!r} is ambiguous: it matches {names}")
    available = ", ".join(repr(port) for port in ports) or "none"
    raise MidiPortNotFound(f"no MIDI input port matches {wanted!r}; available: {available}")


def open_input(
    port_name: str | None,
    api: int,
    virtual_name: str,
    *,
    client_name: str = CLIENT_NAME,
    ignore: dict[str, bool] | None = None,
    queue_size: int = 1024,
) -> tuple[rtmidi.MidiIn, str]:
    """Open `port_name` (or a virtual port `virtual_name` when None); (input, name opened).

    `ignore` is python-rtmidi's ignore_types; by default clock and active sensing are dropped,
    which arrive 24×/beat and 3×/s: the clock follower opens its own port for them.
    """
    midi_in = rtmidi.MidiIn(rtapi=api, name=client_name, queue_size_limit=queue_size)
    try:
        if port_name is None:
            midi_in.open_virtual_port(virtual_name)
            opened = virtual_name
        else:
            ports = midi_in.get_ports()
            index = find_port(ports, port_name)
            midi_in.open_port(index, virtual_name)
            opened = ports[index]
        midi_in.ignore_types(**(CONTROL_IGNORE if ignore is None else ignore))
    except BaseException:
        midi_in.delete()
        raise
    return midi_in, opened


def _reopen_input(midi_in: rtmidi.MidiIn, port: str, virtual_name: str, ignore: dict) -> bool:
    """Reconnect `midi_in` to the port named `port` after it came back; False if it is gone."""
    ports = midi_in.get_ports()
    if port not in ports:
        return False
    midi_in.close_port()
    midi_in.open_port(ports.index(port), virtual_name)
    midi_in.ignore_types(**ignore)
    return True


async def keep_input_open(
    midi_in: rtmidi.MidiIn,
    port: str,
    virtual_name: str,
    *,
    ignore: dict,
    on_reopen: Callable[[], None] | None = None,
    what: str = "MIDI input",
    period_s: float = 1.0,
) -> None:
    """Hot-plug: watch the port `midi_in` reads (an existing one, by its full name) until
    cancelled; when it disappears say so once, when it is back reopen it and say so."""
    present = True
    while True:
        await trio.sleep(period_s)
        try:
            ports = await trio.to_thread.run_sync(midi_in.get_ports)
        except rtmidi.RtMidiError as err:
            log.warning("%s: cannot list ports: %s", what, err)
            continue
        if present and port not in ports:
            present = False
            log.warning("%s %s is gone; it is reopened when it comes back", what, port)
        elif not present and port in ports:
            present = await trio.to_thread.run_sync(
                _reopen_input, midi_in, port, virtual_name, ignore
            )
            if present:
                if on_reopen is not None:
                    on_reopen()
                log.warning("%s %s is back: reopened", what, port)


def close_input(midi_in: rtmidi.MidiIn) -> None:
    midi_in.close_port()
    midi_in.delete()


class StampedInput:
    """Reads a polled rtmidi input; each message with the time it arrived, on `now_s`'s base.

    rtmidi gives each message the time since the one before it, measured where it arrived (the
    JACK process thread, CoreMIDI's packet time, ALSA's queue time). Their running sum is the
    arrival time on rtmidi's clock; the offset to `now_s` is the smallest (read time − sum)
    seen, since no message is read before it arrived. For exact times the input must ignore
    nothing (a message rtmidi filters out takes its delta with it): callers drop what they do
    not want themselves.
    """

    def __init__(self, midi_in: rtmidi.MidiIn, now_s: Callable[[], float] = time.perf_counter):
        self.midi_in = midi_in
        self.now_s = now_s
        self.restart()

    def restart(self) -> None:
        """The port was (re)opened: rtmidi's deltas start again from its next message."""
        self._elapsed_s = 0.0
        self._offset_s: float | None = None

    def read(self) -> list[tuple[bytes, float]]:
        """Every message waiting, oldest first, as (bytes, arrival time)."""
        read_s = self.now_s()
        got: list[tuple[bytes, float]] = []
        while (item := self.midi_in.get_message()) is not None:
            message, delta_s = item
            self._elapsed_s += delta_s
            got.append((bytes(message), self._elapsed_s))
        if not got:
            return got
        bound_s = read_s - self._elapsed_s  # the newest message arrived before it was read
        if self._offset_s is None or read_s - (got[0][1] + self._offset_s) > STALE_S:
            self._offset_s = bound_s
        self._offset_s = min(self._offset_s, bound_s)
        return [(message, elapsed_s + self._offset_s) for message, elapsed_s in got]


async def serve_stamped_input(
    reader: StampedInput,
    deliver: Callable[[bytes, float], None],
    *,
    poll_s: float = POLL_S,
) -> None:
    """Read `reader` every `poll_s` until cancelled, handing each message to `deliver`."""
    while True:
        for message, t_s in reader.read():
            deliver(message, t_s)
        await trio.sleep(poll_s)
