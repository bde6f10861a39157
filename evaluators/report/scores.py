"""Per-image scores: the one format every evaluator writes and every table reads.

A scores file is a long-format parquet table, one row per (image, metric):

| column      | dtype | meaning |
|-------------|-------|---------|
| `run`       | str   | run name (a row of the table), e.g. ``flux-leapalign-hps`` |
| `method`    | str   | method of the run: ``pretrained``, ``refl``, ``draft_lv``, ``drtune``, ``leapalign``, ... |
| `prompt_set`| str   | ``hpdv2``, ``geneval``, ``mjhq``, ... |
| `prompt_id` | int   | index of the prompt within its prompt set (the bootstrap resamples these) |
| `prompt`    | str   | the prompt text |
| `image`     | int   | sample index among the images of that prompt (0..3 for 4 images per prompt) |
| `metric`    | str   | ``hpsv2.1``, ``hpsv3``, ``pickscore``, ``imagereward``, ``ur_alignment``, ``ur_iq``, |
|             |       | ``geneval`` |
| `tag`       | str   | GenEval task of the prompt: ``single_object``, ``two_object``, ``counting``, ``colors``, |
|             |       | ``position``, ``color_attr`` (GenEval's own tags); empty for other metrics |
| `value`     | float | the score; for ``geneval`` 1.0 if the image passes, else 0.0 |
| `protocol`  | str   | how the value was computed, a key of ``PROTOCOLS`` (empty: not recorded, older files) |

GenEval rows always carry their task in `tag`; the overall GenEval score is not stored per image, tables
compute it as the unweighted mean of the six task accuracies (GenEval's own rule). A prompt is identified
by (`prompt_set`, `prompt_id`). Only ``official`` values are comparable with the paper's numbers (which come
from the official scorers); tables mark every other value with its protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from benchmark.core.io import atomic_path

SCORE_COLUMNS = {"run": "string", "method": "string", "prompt_set": "string", "prompt_id": "int64",
                 "prompt": "string", "image": "int64", "metric": "string", "tag": "string", "value": "float64",
                 "protocol": "string"}
OFFICIAL = "official"
PROTOCOLS = {
    OFFICIAL: "the official scorer: its preprocessing, text handling, precision and weights, parity-tested against "
              "its own package (evaluators/parity); comparable with the paper",
    "differentiable": "LeapBench's differentiable torch preprocessing (the training reward), within the gap to the "
                      "official score stated in docs/rewards.md; not the official number",
    "hf-mask2former": "GenEval's rules with transformers' Mask2Former release weights instead of GenEval's mmdet "
                      "checkpoint: a different detector, not comparable with GenEval numbers",
    "vlm-judge": "UnifiedReward answers of the judge model the user served; comparable only with the same model "
                 "and settings",
    "": "not recorded (scores written before protocols were)",
}
GENEVAL_TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def validate_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the columns, cast the dtypes (a missing `tag` becomes empty) and return the cleaned frame."""
    frame = frame.copy()
    for optional in ("tag", "protocol"):
        if optional not in frame:
            frame[optional] = ""
        frame[optional] = frame[optional].fillna("")
    missing = set(SCORE_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"scores lack columns {sorted(missing)}")
    frame = frame[list(SCORE_COLUMNS)].astype(SCORE_COLUMNS)
    geneval = frame["metric"] == "geneval"
    bad_tags = set(frame.loc[geneval, "tag"]) - set(GENEVAL_TASKS)
    if bad_tags:
        raise ValueError(f"geneval rows need a task tag in {GENEVAL_TASKS}; found {sorted(bad_tags)}")
    unknown = set(frame["protocol"]) - set(PROTOCOLS)
    if unknown:
        raise ValueError(f"unknown protocols {sorted(unknown)}; expected one of {sorted(PROTOCOLS)}")
    return frame


def read_scores(paths: Path | str | Iterable[Path | str]) -> pd.DataFrame:
    """Read and concatenate scores files (parquet, or CSV by suffix); a directory means all its
    ``*.parquet`` files, recursively."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(path.rglob("*.parquet")) if path.is_dir() else [path])
    if not files:
        raise FileNotFoundError(f"no scores files in {paths}")
    frames = [pd.read_csv(f) if f.suffix == ".csv" else pd.read_parquet(f) for f in files]
    return validate_scores(pd.concat(frames, ignore_index=True))


def write_scores(frame: pd.DataFrame, path: Path | str) -> Path:
    """Validate and write a scores parquet atomically."""
    frame = validate_scores(frame)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)
