"""Shadow A/B: how often a challenger running beside the champion agrees with it, and where not.

``lensline-edge run ... --shadow OTHER`` writes one JSON line per inspected frame with the
champion's ``label`` / ``confidence`` / ``model_version`` and the challenger's ``shadow_label``
/ ``shadow_confidence`` / ``shadow_model_version``. :func:`compare_shadow` summarises such rows
(from one run or many: the ``shadow_comparison`` asset reads every ``landing/shadow/*.jsonl``
through :func:`read_jsonl`). Standard library only.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REQUIRED",
    "SHADOW_FIELDS",
    "ShadowError",
    "compare_shadow",
    "format_summary",
    "read_jsonl",
]

REQUIRED = ("video", "frame_index", "label", "confidence", "model_version")
"""Fields every runner line carries (``timestamp_s`` and ``alarm`` too, but not checked here)."""
SHADOW_FIELDS = ("shadow_label", "shadow_confidence", "shadow_model_version")


class ShadowError(ValueError):
    """An unreadable runner output file (names the file and the line)."""


def read_jsonl(
    path: str | os.PathLike, *, required: Sequence[str] = REQUIRED
) -> list[dict[str, Any]]:
    """Rows of a runner's JSONL output; :class:`ShadowError` naming ``path:line`` on a bad line.

    Blank lines are skipped; every other line must be a JSON object holding ``required``.
    """
    p = Path(path)
    rows: list[dict[str, Any]] = []
    try:
        with open(p, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ShadowError(f"{p}:{n}: not JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise ShadowError(f"{p}:{n}: expected a JSON object, got {type(row).__name__}")
                missing = [k for k in required if k not in row]
                if missing:
                    raise ShadowError(f"{p}:{n}: missing field(s) {', '.join(missing)}")
                rows.append(row)
    except OSError as e:
        raise ShadowError(f"{p}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ShadowError(f"{p}: not UTF-8 text ({e.reason})") from None
    return rows


def compare_shadow(rows: Iterable[Mapping[str, Any]], *, max_frames: int | None = None) -> dict:
    """Agreement of champion and shadow over runner rows.

    Parameters
    ----------
    rows
        Runner lines (dicts). Rows without ``shadow_label`` (a run without ``--shadow``) are
        counted in ``rows_without_shadow`` and otherwise ignored.
    max_frames
        Keep at most this many entries in ``disagreements`` (all when ``None``); the count
        ``disagreement_count`` is always exact.

    Returns
    -------
    dict
        ``frames``: compared rows; ``agreements``; ``agreement_rate`` (``None`` without rows);
        ``classes``: labels seen, sorted; ``matrix``: ``counts[i][j]`` = frames the champion
        called ``classes[i]`` and the shadow ``classes[j]`` (diagonal = agreement);
        ``per_class``: ``{label: {frames, disagreements, disagreement_rate}}`` by champion label;
        ``disagreement_count``; ``disagreements``: ``[{video, frame_index, timestamp_s, label,
        confidence, shadow_label, shadow_confidence, model_version, shadow_model_version}]`` in
        input order; ``pairs``: one entry per (model_version, shadow_model_version) with
        ``frames``, ``agreements``, ``agreement_rate``; ``rows_without_shadow``.
    """
    pairs: Counter[tuple[str, str]] = Counter()
    pair_rows: Counter[tuple[str, str]] = Counter()
    pair_agree: Counter[tuple[str, str]] = Counter()
    per_class: dict[str, Counter[str]] = defaultdict(Counter)
    disagreements: list[dict[str, Any]] = []
    n_disagree = without = frames = 0
    for row in rows:
        if row.get("shadow_label") is None:
            without += 1
            continue
        frames += 1
        label, shadow = str(row["label"]), str(row["shadow_label"])
        pairs[(label, shadow)] += 1
        key = (str(row.get("model_version")), str(row.get("shadow_model_version")))
        pair_rows[key] += 1
        per_class[label]["frames"] += 1
        if label == shadow:
            pair_agree[key] += 1
            continue
        per_class[label]["disagreements"] += 1
        n_disagree += 1
        if max_frames is None or len(disagreements) < max_frames:
            disagreements.append(
                {
                    k: row.get(k)
                    for k in (
                        "video",
                        "frame_index",
                        "timestamp_s",
                        "label",
                        "confidence",
                        "shadow_label",
                        "shadow_confidence",
                        "model_version",
                        "shadow_model_version",
                    )
                }
            )
    classes = sorted({c for pair in pairs for c in pair})
    index = {c: i for i, c in enumerate(classes)}
    counts = [[0] * len(classes) for _ in classes]
    for (a, b), n in pairs.items():
        counts[index[a]][index[b]] = n
    agreements = frames - n_disagree
    return {
        "frames": frames,
        "agreements": agreements,
        "agreement_rate": agreements / frames if frames else None,
        "classes": classes,
        "matrix": counts,
        "per_class": {
            c: {
                "frames": per_class[c]["frames"],
                "disagreements": per_class[c]["disagreements"],
                "disagreement_rate": per_class[c]["disagreements"] / per_class[c]["frames"],
            }
            for c in classes
            if per_class[c]["frames"]
        },
        "disagreement_count": n_disagree,
        "disagreements": disagreements,
        "pairs": [
            {
                "model_version": mv,
                "shadow_model_version": sv,
                "frames": n,
                "agreements": pair_agree[(mv, sv)],
                "agreement_rate": pair_agree[(mv, sv)] / n,
            }
            for (mv, sv), n in sorted(pair_rows.items())
        ],
        "rows_without_shadow": without,
    }


def format_summary(result: Mapping[str, Any], *, show: int = 20) -> str:
    """Human-readable lines for a :func:`compare_shadow` result (the runner's summary)."""
    if not result["frames"]:
        return "shadow: no frames compared"
    lines = [
        f"shadow agreement: {result['agreement_rate']:.2%} "
        f"({result['agreements']}/{result['frames']} frames)"
    ]
    for pair in result["pairs"]:
        lines.append(
            f"  {pair['model_version']} vs {pair['shadow_model_version']}: "
            f"{pair['agreement_rate']:.2%} of {pair['frames']}"
        )
    for label, stats in result["per_class"].items():
        if stats["disagreements"]:
            lines.append(
                f"  champion {label!r}: shadow differs on {stats['disagreements']}/{stats['frames']}"
            )
    shown = result["disagreements"][:show]
    if shown:
        lines.append("frames where they differ (video frame: champion -> shadow):")
        lines += [
            f"  {d['video']} {d['frame_index']}: {d['label']} ({_conf(d['confidence'])}) -> "
            f"{d['shadow_label']} ({_conf(d['shadow_confidence'])})"
            for d in shown
        ]
        more = result["disagreement_count"] - len(shown)
        if more > 0:
            lines.append(f"  ... and {more} more (all in the JSONL output)")
    return "\n".join(lines)


def _conf(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "?"
