"""Experiment trackers fed from the telemetry stream: TensorBoard and Weights & Biases, both optional extras.

``Telemetry`` hands every row it writes to metrics.jsonl to each tracker, so the three never disagree:
numbers go out as ``train/<key>`` at the row's own ``step`` (lists such as LeapAlign's ``ts`` and booleans
stay in metrics.jsonl), and the run's summary goes out when it ends.

Resuming: a resumed run rewrites the steps after its checkpoint. TensorBoard purges its events from that
step on (``purge_step``); W&B continues the same run (its id is kept in ``<run_dir>/wandb/run_id``) and plots
against ``train/step``, so the rewritten steps land at their own x, beside the ones logged before the stop.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Protocol

from benchmark.core.errors import ConfigError


class Tracker(Protocol):
    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None: ...


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The plain numbers of a telemetry row, without the step itself."""
    return {k: v for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}


class TensorBoard:
    """Scalars in ``<run_dir>/tensorboard`` (torch's SummaryWriter)."""

    def __init__(self, run_dir: Path, start: int):
        from torch.utils.tensorboard import SummaryWriter  # tensorboard is an optional extra

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start + 1 if start else None)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(f"train/{key}", value, step)

    def finish(self, summary: dict[str, Any]) -> None:
        self.writer.close()


class Wandb:
    """One W&B run per run directory (``settings``: ``logging.wandb``: project, entity, mode, group), with the
    resolved run config; ``mode: offline`` writes ``<run_dir>/wandb`` without a network (``wandb sync`` later)."""

    def __init__(self, run_dir: Path, settings: Any, config: dict | None):
        import wandb  # an optional extra

        id_file = run_dir / "wandb" / "run_id"
        id_file.parent.mkdir(parents=True, exist_ok=True)
        if not id_file.is_file():
            id_file.write_text(secrets.token_hex(6) + "\n")  # W&B ids: lowercase letters and digits
        try:
            self.run = wandb.init(project=settings.project, entity=settings.entity, mode=settings.mode,
                                  group=settings.group, name=run_dir.name, id=id_file.read_text().strip(),
                                  resume="allow", dir=str(run_dir), config=config,
                                  settings=wandb.Settings(console="off", silent=True))
        except Exception as err:  # noqa: BLE001 (wandb raises several kinds: no network, no login, bad entity)
            raise ConfigError("logging.wandb.mode", "a W&B run that starts (offline needs no network)",
                              f"{settings.mode}: {err}") from None
        self.run.define_metric("train/step")
        self.run.define_metric("train/*", step_metric="train/step")

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log({"train/step": step, **{f"train/{k}": v for k, v in scalars.items()}})

    def finish(self, summary: dict[str, Any]) -> None:
        import wandb  # an optional extra

        self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
        self.run.finish()
        wandb.teardown()  # finish() may return before W&B's service has written the run; teardown waits for it


def open_trackers(run_dir: Path, start: int, tensorboard: bool, wandb: Any = None,
                  config: dict | None = None) -> list[Tracker]:
    """The trackers a run asked for; TensorBoard is skipped with a note when it is not installed."""
    trackers: list[Tracker] = []
    if tensorboard:
        try:
            trackers.append(TensorBoard(run_dir, start))
        except ImportError:
            print("telemetry: tensorboard is not installed (pip install 'leapbench[tensorboard]'); "
                  "logging to metrics.jsonl only", flush=True)
    if wandb is not None:
        trackers.append(Wandb(run_dir, wandb, config))
    return trackers
