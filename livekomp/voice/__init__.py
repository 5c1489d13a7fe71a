"""The voice: short spoken lines over the music, their delivery following the mood."""
