"""Dispatch: sends scheduled MIDI at its time, in a real-time child process live and in virtual
time in rehearsal."""
