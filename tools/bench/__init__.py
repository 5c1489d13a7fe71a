"""Benchmarks that the package never imports.

    .venv/bin/python -m tools.bench <command> [options]   # from the repository root

One module per subject, each with its usage: `timing` (send-time error under load, with the
CPU load in `load`), `clock` (a live server's MIDI clock as JACK hears it), `follow` (following a
JACK MIDI clock master), `link` (Ableton Link), `rehearse` (rehearsal speed), `voice` (text to
speech, offline and live), `models` (`tokens` and `bar`: the neural composer's cost), `sweep` (a
live run sweeping the XY pad), `style` (style adapters), `training` (tools/train.py on one
process against several under torchrun). `__main__` is the command table.
"""
