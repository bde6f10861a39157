"""``leapbench geneval-prompts --n N --ratios 7:5:3:1:1:0 --seed S --out FILE.jsonl``.

Writes N distinct GenEval-style training prompts (GenEval's metadata rows: tag, include, [exclude], prompt)
drawn with GenEval's templates; the official 553 evaluation prompts are excluded unless --keep-eval. The
ratios are in the paper's order, position:counting:attribute binding (color_attr):colors:two objects:
single object; the paper's mix is 7:5:3:1:1:0. The file is a prompt set for ``leapbench embed``/``sample``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from benchmark.core.errors import ConfigError
from benchmark.core.io import check_writable, remove_stale_temporaries
from evaluators.geneval import generate_training_prompts, write_metadata

ORDER = ("position", "counting", "color_attr", "colors", "two_object", "single_object")  # as the paper writes it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, required=True, help="number of prompts")
    parser.add_argument("--ratios", default="7:5:3:1:1:0", help=":".join(ORDER))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-count", type=int, default=4, help="largest count in counting prompts")
    parser.add_argument("--keep-eval", action="store_true", help="allow prompts of GenEval's evaluation set")
    parser.add_argument("--repeats", action="store_true",
                        help="draw with replacement (the paper's 50,000 prompts; distinct ones run out at 544)")
    parser.add_argument("--out", required=True, help="output .jsonl")


def parse_ratios(text: str) -> dict[str, float]:
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != len(ORDER):
        raise ConfigError("--ratios", f"{len(ORDER)} numbers as {':'.join(ORDER)}", text)
    return dict(zip(ORDER, values))


def run(args: argparse.Namespace) -> int:

    ratios = parse_ratios(args.ratios)
    if Path(args.out).suffix != ".jsonl" or Path(args.out).is_dir():
        raise ConfigError("--out", "a .jsonl file", args.out)
    check_writable(args.out, "--out")
    remove_stale_temporaries(Path(args.out).parent)
    rows = generate_training_prompts(args.n, ratios, seed=args.seed, exclude=() if args.keep_eval else None,
                                     max_count=args.max_count, unique=not args.repeats)
    write_metadata(args.out, rows)
    counts = Counter(row["tag"] for row in rows)
    print(f"wrote {len(rows)} prompts to {args.out}: " + ", ".join(f"{t} {counts.get(t, 0)}" for t in ORDER))
    return 0
