"""``leapbench``: one entry point, one module per command.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only
when their command runs, so ``leapbench --help`` is instant and a command never pays for another's imports.

One error path for every command: a user's mistake (a bad value, a missing or unreadable file, a path that
cannot be written, damaged data, a server that does not answer) is a ``ConfigError`` or an ``OSError`` of the
environment and ends as one line naming the field or file, what was expected and what was found, with exit
status 2; Ctrl-C ends with status 130 and keeps what was written. Anything else is a bug and keeps its
traceback. ``--debug`` (anywhere on the line) or ``LEAPBENCH_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from benchmark.core.errors import user_problem

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
    "report": ("benchmark.cli.report", "one static HTML page for a sweep or a set of runs (tables, curves, samples)"),
    "demo": ("benchmark.cli.demo.command", "the whole benchmark on the toy backbone, on a CPU, in minutes"),
    "bench": ("benchmark.cli.bench.command", "memory, step-time and rollout benchmarks against the floor and diffusers"),
}


DEBUG_ENV = "LEAPBENCH_DEBUG"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end] or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for i, a in enumerate(argv) if not (a == "--debug" and i < end)]
    parser = argparse.ArgumentParser(prog="leapbench", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of any error (also {DEBUG_ENV}=1); may stand anywhere")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if argv[:1] == [name]:  # only the chosen command's module is imported; its docstring describes it
            command = importlib.import_module(module)
            command.add_arguments(sp)
            sp.description = command.__doc__ or help_text
            chosen = sp
    if chosen is not None and any(a.dest == "overrides" for a in chosen._actions):
        # key.sub=value overrides may stand anywhere: before, between or after the options
        args = chosen.parse_intermixed_args(argv[1:], argparse.Namespace(command=argv[0], debug=debug))
    else:
        args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"leapbench {args.command}: interrupted; everything finished so far is kept and the same command "
              "continues from there", file=sys.stderr)
        return 130
    except Exception as err:
        problem = user_problem(err)
        if debug or problem is None:  # --debug, or a bug: the traceback
            raise
        print(f"leapbench {args.command}: {problem}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
