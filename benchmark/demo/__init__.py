"""``leapbench demo``: the whole benchmark on the toy backbone (or a tiny FLUX) on a CPU, in minutes."""

from benchmark.demo.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
