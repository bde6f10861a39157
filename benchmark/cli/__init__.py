"""``leapbench``: one entry point, one module per command.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only
when their command runs, so ``leapbench --help`` is instant and a command never pays for another's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmark.core.errors import ConfigError

COMMANDS = {
    "train": ("benchmark.cli.train", "fine-tune a backbone with a method and a reward"),
    "embed": ("benchmark.cli.embed", "encode a prompt set into the text-embedding cache"),
    "export": ("benchmark.cli.export", "write a checkpoint's transformer or LoRA adapter as plain diffusers files"),
    "sample": ("benchmark.cli.sample", "generate evaluation images for a prompt set (GenEval's folder layout)"),
    "score": ("benchmark.cli.score", "score sampled images with rewards and GenEval into per-image parquet"),
    "table": ("benchmark.cli.table", "build the paper's tables (Markdown, LaTeX, CSV) from scores"),
    "plot": ("benchmark.cli.plot", "training, ablation, gradient-norm, radar and sample-grid plots"),
    "geneval-prompts": ("benchmark.cli.geneval_prompts", "generate GenEval-style training prompts (JSONL metadata)"),
    "plan": ("benchmark.cli.plan", "predicted peak GPU memory of a run config or a sweep's runs, before submitting"),
    "sweep": ("benchmark.cli.sweep", "launch, watch and collect sweeps on Slurm, locally or in-process"),
    "demo": ("benchmark.cli.demo.command", "the whole benchmark on the toy backbone, on a CPU, in minutes"),
    "bench": ("benchmark.cli.bench.command", "memory, step-time and rollout benchmarks against the floor and diffusers"),
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
