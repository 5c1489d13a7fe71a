"""The voice: short spoken lines over the music, their delivery following the mood."""

# The text-to-speech backends, and what --voice and --voice-fallback take (here, so the command
# line can list them without loading a backend).
BACKENDS = ("piper", "espeak-ng", "coqui")
VOICE_CHOICES = (*BACKENDS, "none")
