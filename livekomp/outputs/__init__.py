"""Where the music goes: MIDI ports, .mid files, OSC feedback, audio.

Every MIDI destination satisfies `livekomp.outputs.midi.MidiSink`; the dispatcher sends through a
`TrackedOutput` wrapped around them so that every sounding note can always be released.
"""
