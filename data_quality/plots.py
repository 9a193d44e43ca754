"""Pictures for asset metadata: thumbnail grids of the worst examples."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["worst_examples_grid"]


def worst_examples_grid(
    images: Sequence[np.ndarray], captions: Sequence[str], *, ncols: int = 6
) -> bytes:
    """Render thumbnails with captions into one PNG (for asset metadata).

    Parameters
    ----------
    images : sequence of np.ndarray, each (H, W, 3) uint8 (or (H, W) gray)
    captions : sequence of str, same length (e.g. ``"cam1/12 good->defect q=0.03"``)
    ncols : int
        Thumbnails per row.

    Returns
    -------
    bytes
        PNG file contents; a small "no examples" image when ``images`` is empty.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(images) != len(captions):
        raise ValueError("images and captions differ in length")
    n = len(images)
    ncols = max(1, min(ncols, n)) if n else 1
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(2.2 * ncols, 2.4 * nrows))
    FigureCanvasAgg(fig)
    if not n:
        fig.text(0.5, 0.5, "no examples", ha="center", va="center")
    for i, (img, cap) in enumerate(zip(images, captions, strict=True)):
        arr = np.asarray(img)
        if arr.ndim not in (2, 3):
            raise ValueError(f"image {i} has shape {arr.shape}; expected (H, W, 3) or (H, W)")
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(cap, fontsize=7, wrap=True)
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()
