"""The benchmarks: thin drivers (argparse -> lab.analysis -> data/results/*.csv); tests import them as modules."""
