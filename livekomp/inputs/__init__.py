"""Inputs: OSC, MIDI controllers and setlist cues, all turned into `ControlEvent`s."""
