"""Clocks: time in beats, converted to seconds in one place (`TempoMap`), and its sources:
the internal master, MIDI clock follow and Ableton Link."""
