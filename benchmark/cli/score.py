"""``leapbench score SAMPLES --out scores.parquet [--reward NAME:PATH]... [--unified-reward URL] [GenEval]``.

Scores a samples directory (``leapbench sample``'s output) into per-image rows of the report format:
``--reward hpsv2:/ckpt/HPS_v2.1_compressed.pt`` (repeatable; also pickscore, imagereward, hpsv3, with an
optional third part for the base/tokenizer path; ``--reward tiny_conv`` is the built-in tiny reward of the CPU
walk-through and needs no file) or ``--reward-config`` (a YAML reward section; a weighted
reward's parts are scored one by one); ``--unified-reward URL`` adds ur_alignment and ur_iq from a vLLM
server; ``--geneval-detector PATH --geneval-clip FILE`` adds GenEval correctness when the samples carry GenEval
metadata (PATH: GenEval's mmdet checkpoint, protocol official; or a transformers Mask2Former folder, protocol
hf-mask2former). Rows are labelled --run / --method / --prompt-set (default: the directory's sampling.json). The
output is extended and rewritten atomically; metrics it already holds for this run and prompt set are
skipped unless --overwrite. Every input is checked before any model is loaded (images, the output's folder,
the server); each metric is written as soon as it is scored, so one that fails keeps the others.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import open_clip
import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmark.core.devices import check_device
from benchmark.core.errors import ConfigError, user_problem
from benchmark.core.io import check_writable, remove_stale_temporaries
from evaluators import score as S
from evaluators.geneval import ClipColourClassifier, check_detector_path, load_detector
from evaluators.rewards import build_reward
from evaluators.rewards.unified_reward import DIMENSIONS, UnifiedRewardError
from evaluators.score import is_geneval


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", help="samples directory (GenEval's layout)")
    parser.add_argument("--out", required=True, help="scores parquet to create or extend")
    parser.add_argument("--reward", action="append", default=[], metavar="NAME:PATH[:BASE_PATH]",
                        help="a reward checkpoint: hpsv2, pickscore, imagereward or hpsv3 (repeatable)")
    parser.add_argument("--reward-config", metavar="YAML", help="a YAML file with a reward section")
    parser.add_argument("--unified-reward", metavar="URL", help="UnifiedReward server: ur_alignment and ur_iq")
    parser.add_argument("--ur-iq-dimension", default="coherence", choices=sorted(DIMENSIONS),
                        help="the UnifiedReward answer read as image quality (ur_iq)")
    parser.add_argument("--ur-workers", type=int, default=8, help="concurrent UnifiedReward requests")
    parser.add_argument("--geneval-detector", metavar="PATH",
                        help="GenEval's mmdet Mask2Former checkpoint (.pth: official) or a transformers Mask2Former "
                             "folder (hf-mask2former)")
    parser.add_argument("--geneval-clip", metavar="FILE", help="open_clip checkpoint for GenEval's colour test")
    parser.add_argument("--geneval-clip-model", default="ViT-L-14", help="open_clip model name of --geneval-clip")
    parser.add_argument("--run", help="run label (default: from sampling.json)")
    parser.add_argument("--method", help="method label (default: from sampling.json)")
    parser.add_argument("--prompt-set", help="prompt-set label (default: from sampling.json)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", help="default: cuda when available, else cpu")
    parser.add_argument("--overwrite", action="store_true", help="recompute metrics the output already holds")
    parser.add_argument("--no-progress", action="store_true")


def check_geneval(args: argparse.Namespace, samples: list) -> None:
    """GenEval's inputs, checked without loading the detector or CLIP."""

    if not is_geneval(samples):
        raise ConfigError("--geneval-detector", "samples of GenEval metadata prompts (tag, include, prompt)",
                          args.samples)
    check_detector_path(args.geneval_detector, "--geneval-detector")
    needs_colour = any("color" in c for s in samples for c in s.row["include"])
    if needs_colour and not args.geneval_clip:
        raise ConfigError("--geneval-clip", "an open_clip checkpoint for the colour prompts", None)
    if args.geneval_clip:
        if not Path(args.geneval_clip).is_file():
            raise ConfigError("--geneval-clip", "an existing open_clip checkpoint file", args.geneval_clip)
        if args.geneval_clip_model not in open_clip.list_models():
            raise ConfigError("--geneval-clip-model", "an open_clip model name", args.geneval_clip_model)


def run(args: argparse.Namespace) -> int:

    samples = S.list_samples(args.samples)
    labels = {**S.sampling_labels(args.samples), **{k: getattr(args, k) for k in S.LABELS if getattr(args, k)}}
    for key in S.LABELS:
        if key not in labels:
            raise ConfigError(f"--{key.replace('_', '-')}", "a label (the samples have no sampling.json)", None)
    if args.batch_size < 1:
        raise ConfigError("--batch-size", "an integer >= 1", args.batch_size)
    device = check_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    configs = [S.reward_spec(text) for text in args.reward]
    configs += S.reward_section(args.reward_config) if args.reward_config else []
    rewards = {S.METRICS[c.name]: c for c in configs}
    if len(rewards) != len(configs):
        raise ConfigError("--reward", "each reward once", [c.name for c in configs])
    unified = {"ur_alignment": "alignment", "ur_iq": args.ur_iq_dimension} if args.unified_reward else {}
    if args.ur_workers < 1:
        raise ConfigError("--ur-workers", "an integer >= 1", args.ur_workers)
    if args.geneval_detector:
        check_geneval(args, samples)
    if not (rewards or unified or args.geneval_detector):
        raise ConfigError("score", "at least one of --reward, --reward-config, --unified-reward, --geneval-detector")
    existing = S.existing_scores(args.out)
    check_writable(args.out, "--out")
    remove_stale_temporaries(Path(args.out).parent)  # a killed run's half-written parquet
    done = set() if args.overwrite else S.done_metrics(existing, labels)
    rewards = {m: c for m, c in rewards.items() if m not in done}
    unified = {m: d for m, d in unified.items() if m not in done}
    geneval = bool(args.geneval_detector) and "geneval" not in done
    run_label = f"{labels['run']} / {labels['prompt_set']}"
    if done:
        print(f"{args.out} already holds {', '.join(sorted(done))} for {run_label}: kept (--overwrite to redo)")
    if not (rewards or unified or geneval):
        print("nothing to score")
        return 0
    if unified:
        S.check_unified(args.unified_reward, unified, reachable=True)
    S.check_images(s.path for s in samples)

    # one metric at a time, each written as soon as it is scored: a metric that fails keeps the others
    jobs = {m: (lambda c=c: [S.reward_scorer(S.METRICS[c.name], build_reward(c, device))]) for m, c in rewards.items()}
    if unified:
        jobs["+".join(unified)] = lambda: [S.unified_reward(args.unified_reward, unified, args.ur_workers)]
    if geneval:
        jobs["geneval"] = None
    failed: dict[str, BaseException] = {}
    for name, make in jobs.items():
        try:
            frame = score_metric(args, samples, make, device)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - reported below, after the other metrics are saved
            failed[name] = err
            first = str(err).splitlines()[0][:300] if str(err) else ""
            print(f"  {name}: failed ({type(err).__name__}: {first}); the other metrics go on", file=sys.stderr)
            continue
        existing = S.merge_scores(existing, frame, labels, args.out)
        means = frame.groupby(["metric", "tag"], sort=False)["value"].mean()
        for (metric, tag), value in means.items():
            print(f"  {metric}{'/' + tag if tag else ''}: {value:.4f}")
    print(f"{run_label}: {len(samples)} images -> {args.out} ({len(jobs) - len(failed)} of {len(jobs)} metrics)")
    if failed:
        bugs = [err for err in failed.values() if user_problem(err) is None]
        if bugs:
            raise bugs[0]
        raise ConfigError("score", f"every metric scored ({', '.join(failed)} failed, the others are saved; "
                          "rerun the same command to score what is missing)", str(user_problem(next(iter(failed.values())))))
    return 0


def score_metric(args: argparse.Namespace, samples: list, make, device) -> pd.DataFrame:
    """The rows of one metric: a reward or UnifiedReward (``make()`` builds its scorers), or GenEval (None)."""
    if make is not None:
        scorers = make()
        with tqdm(total=len(samples), desc="score", disable=args.no_progress) as bar:
            try:
                return S.score_rewards(samples, scorers, args.batch_size, device, bar.update)
            except UnifiedRewardError as err:  # the server stopped answering, or answered without a score
                raise ConfigError("--unified-reward", "a server that answers every request with a score",
                                  str(err)[:300]) from None
    detector = load_detector(args.geneval_detector, device, "--geneval-detector")
    colour = ClipColourClassifier(args.geneval_clip, args.geneval_clip_model, device) if args.geneval_clip else None
    return S.score_geneval(args.samples, detector, colour, progress=not args.no_progress)
