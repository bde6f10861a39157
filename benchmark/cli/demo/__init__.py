"""``leapbench demo``: the whole benchmark on the toy backbone (or a tiny FLUX) on a CPU, in minutes."""
