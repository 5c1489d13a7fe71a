"""Tools run from a source checkout: training, evaluation, the benchmarks (`python -m
tools.bench`), and the peers the live tests and the benchmarks share (`tools.peers`). The package
never imports them; the tests may, and they never import the tests."""
