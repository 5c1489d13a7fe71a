"""livekomp: a live-performance server that composes for the performer's mood."""

__version__ = "0.1.0"
