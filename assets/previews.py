"""Pictures for asset metadata: the Dagster UI renders markdown with embedded PNGs."""

from __future__ import annotations

import base64


def png_md(png: bytes, *, alt: str = "preview") -> str:
    """Markdown that shows ``png`` inline in the Dagster UI."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def thumbnail_strip_md(jpegs: list[bytes], *, count: int = 6, height: int = 72) -> str:
    """A strip of ``count`` evenly spaced thumbnails from JPEG frames, as markdown."""
    import cv2
    import numpy as np

    if not jpegs:
        return "_no frames_"
    picks = [jpegs[i] for i in np.linspace(0, len(jpegs) - 1, min(count, len(jpegs))).astype(int)]
    thumbs = []
    for data in picks:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        scale = height / img.shape[0]
        thumbs.append(cv2.resize(img, (max(1, int(img.shape[1] * scale)), height)))
    ok, png = cv2.imencode(".png", np.hstack(thumbs))
    return png_md(png.tobytes(), alt="sampled frames")
