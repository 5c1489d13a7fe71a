"""Which MIDI system to talk to: CoreMIDI on macOS, ALSA on Linux when it has a sequencer,
JACK on Linux without one (these machines: no /dev/snd). Shared by MIDI inputs and outputs."""

from __future__ import annotations

import os
import sys

import rtmidi

API_NAMES: dict[str, int] = {
    "coremidi": rtmidi.API_MACOSX_CORE,
    "alsa": rtmidi.API_LINUX_ALSA,
    "jack": rtmidi.API_UNIX_JACK,
    "windows": rtmidi.API_WINDOWS_MM,
}

CLIENT_NAME = "livekomp"


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
