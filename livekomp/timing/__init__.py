"""Clocks (time in beats, converted to seconds in one place) and the precise dispatcher."""
