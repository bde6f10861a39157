"""``leapbench``: one entry point, one module per command.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only
when their command runs, so ``leapbench --help`` is instant and a command never pays for another's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmark.errors import ConfigError

COMMANDS = {
    "train": ("benchmark.train_cli", "fine-tune a backbone with a method and a reward"),
    "embed": ("benchmark.embed_cli", "encode a prompt set into the text-embedding cache"),
    "sample": ("evaluators.sample_cli", "generate evaluation images for a prompt set (GenEval's folder layout)"),
    "score": ("evaluators.score_cli", "score sampled images with rewards and GenEval into per-image parquet"),
    "table": ("evaluators.table_cli", "build the paper's tables (Markdown, LaTeX, CSV) from scores"),
    "plot": ("evaluators.plot_cli", "training, ablation, gradient-norm, radar and sample-grid plots"),
    "geneval-prompts": ("evaluators.geneval_cli", "generate GenEval-style training prompts (JSONL metadata)"),
    "sweep": ("sweeps.cli", "launch, watch and collect sweeps on Slurm, locally or in-process"),
    "demo": ("benchmark.demo", "the whole benchmark on the toy backbone, on a CPU, in minutes"),
    "bench": ("benchmark.bench_cli", "memory, step-time and rollout benchmarks against the floor and diffusers"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leapbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if argv[:1] == [name]:  # only the chosen command's module is imported; its docstring describes it
            command = importlib.import_module(module)
            command.add_arguments(sp)
            sp.description = command.__doc__ or help_text
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except ConfigError as err:
        print(f"leapbench {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
