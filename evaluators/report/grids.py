"""Sample grids: rows = methods, columns = prompts, every image shown in a `cell` x `cell` pixel square.

The figure is `cols` x `rows` inches at dpi = `cell`, one axes per cell with no margins, so the PNG is
exactly (rows * cell) x (cols * cell) pixels; labels are drawn inside the cells (method names at the bottom
left of the first column, prompts at the top of the first row).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from evaluators.report.plots import save_figure

LABEL_STYLE = {"color": "white", "fontsize": 4.5,  # points; at dpi = cell this is cell / 16 pixels high
               "bbox": {"facecolor": "black", "alpha": 0.6, "pad": 1.0, "linewidth": 0}, "clip_on": True}


def to_array(image: Any) -> np.ndarray:
    """An image as an HWC array for `imshow`: a path, a PIL image, a numpy array or a torch tensor
    (CHW or HWC; floats in [0, 1], clipped, or uint8)."""
    if isinstance(image, (str, Path)):
        image = Image.open(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if hasattr(image, "detach"):  # a torch tensor, without importing torch
        image = image.detach().float().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array if array.dtype == np.uint8 else np.clip(array.astype(np.float32), 0.0, 1.0)


def plot_sample_grid(images: Sequence[Sequence[Any]], out: Path | str, *,
                     row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
                     cell: int = 256) -> Path:
    """Write a grid of `images[row][col]` (None leaves a cell blank); returns the PNG path."""
    rows, cols = len(images), max(len(row) for row in images)
    fig = Figure(figsize=(cols, rows), dpi=cell)
    for r, row in enumerate(images):
        for c in range(cols):
            ax = fig.add_axes((c / cols, 1 - (r + 1) / rows, 1 / cols, 1 / rows))
            ax.set_axis_off()
            if c < len(row) and row[c] is not None:
                ax.imshow(to_array(row[c]), aspect="auto")
            if r == 0 and col_labels is not None:
                ax.text(0.5, 0.97, textwrap.fill(col_labels[c], 28), transform=ax.transAxes, ha="center",
                        va="top", **LABEL_STYLE)
            if c == 0 and row_labels is not None:
                ax.text(0.03, 0.03, row_labels[r], transform=ax.transAxes, va="bottom", **LABEL_STYLE)
    fig.patch.set_facecolor("white")
    return save_figure(fig, out)
