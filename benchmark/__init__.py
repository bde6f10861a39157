"""LeapBench, in layers that import one way only:

- ``benchmark.core``: the foundation (engine, backbones, errors, io, prompts, cache, seeding, checkpoint format,
  distributed primitives); imports nothing else of the project;
- ``methods`` and ``evaluators``: the methods and the evaluation, on the foundation only;
- ``benchmark.training``: the run config, the loop, telemetry, EMA, the checkpoint policy;
- ``sweeps``: specs and the Slurm launcher, on training and the evaluators;
- ``benchmark.cli``: the ``leapbench`` commands and the applications (bench, demo), on everything below.
"""
