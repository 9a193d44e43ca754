"""Drift from the line (heartbeats alone) beside the landed-video detector, on the same frames.

Reproduce (repo root; a few minutes on 2 cores)::

    python benchmarks/line_drift.py                     # 20 windows per row
    python benchmarks/line_drift.py --windows 10 --only "none (false alarms),dark (demo)"

Setup. One camera (``cam1``), the demo generator's ``demo.Scene`` at 320x240 (no H.264 round
trip). The reference is ``--ref-videos`` nominal videos of 150 s rendered at ``--fps`` and
sampled at 2 fps (what ingestion keeps), built as ``drift_reference`` builds it. Each window is ``--beats`` heartbeats of
``--heartbeat-s`` seconds of a line running at ``--fps``; every frame goes through the box's
own :class:`edge_export.service.telemetry.FrameStatsWindow` (``frame_stats`` on the raw frame),
and :func:`data_quality.drift.line.line_drift_tests` tests the beats' means (what ``line_drift``
does). The landed-video detector sees the same window's frames sampled at 2 fps as one landed
video, through :func:`data_quality.drift.detect_drift` (``drift_report``'s data and viewpoint
tests). Rows: unshifted windows (false alarms), the demo's ``dark`` condition (brightness 0.45,
more noise and flicker), brightness -15 %, and a dirty lens.

Measured on 2 shared cores (``python benchmarks/line_drift.py``, 118 s; 20 windows per row,
12 beats x 10 s at 4 fps)::

    | condition           | heartbeats (line_drift) | landed video (drift_report) |
    |---------------------|-------------------------|-----------------------------|
    | none (false alarms) |                    0.00 |                        0.00 |
    | dark (demo)         |                    1.00 |                        1.00 |
    | brightness -15%     |                    1.00 |                        1.00 |
    | dirty lens          |                    1.00 |                        1.00 |

The heartbeats fire brightness, contrast and sharpness on every shifted row; the landed video
also its colour rows. A shift that moves no frame statistic (gray gloves, a moved camera) is
invisible from the heartbeats: those need the landed video's colour and viewpoint tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from data_quality.drift import CameraReference, build_reference, detect_drift  # noqa: E402
from data_quality.drift.line import LINE_STATISTICS, line_drift_tests  # noqa: E402
from demo import CONDITIONS, Conditions, Scene  # noqa: E402
from edge_export.quality import frame_stats  # noqa: E402
from edge_export.service.telemetry import FrameStatsWindow  # noqa: E402

CAMERA = "cam1"
SHIFTS: dict[str, Conditions] = {
    "none (false alarms)": CONDITIONS["nominal"],
    "dark (demo)": CONDITIONS["dark"],
    "brightness -15%": Conditions(name="dark15", brightness=0.85),
    "dirty lens": CONDITIONS["dirty_lens"],
}


def _window(args: tuple) -> tuple[str, bool, bool, list[str], list[str]]:
    ref_bytes, shift, seed, beats, heartbeat_s, fps = args
    ref = CameraReference.from_bytes(ref_bytes)
    scene = Scene(seed=seed, camera_id=CAMERA, seconds=beats * heartbeat_s, fps=fps,
                  size=(320, 240), cond=SHIFTS[shift])  # fmt: skip
    per_beat = int(round(heartbeat_s * fps))
    stride = max(1, fps // 2)  # ingestion's 2 fps
    window, means, landed = FrameStatsWindow(), [], []
    for i, (img, _) in enumerate(scene.frames()):
        window.add(frame_stats(img))
        if i % stride == 0:
            landed.append(img)
        if (i + 1) % per_beat == 0:
            beat = window.take()
            means.append([beat[k]["mean"] for k in LINE_STATISTICS])
    line = line_drift_tests(ref, np.asarray(means))
    new = build_reference(landed, camera_id=CAMERA, version=str(seed))
    video = detect_drift(ref, new, alpha=0.01)
    fired = [t.statistic for t in line if t.drifted]
    vfired = [r.statistic for r in video if r.drifted and r.kind in ("data", "viewpoint")]
    return shift, bool(fired), bool(vfired), fired, vfired


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=20, help="windows per row")
    ap.add_argument("--beats", type=int, default=12, help="heartbeats per window (line_drift's)")
    ap.add_argument("--heartbeat-s", type=float, default=10.0)
    ap.add_argument("--fps", type=int, default=4, help="the line's inspection rate")
    ap.add_argument("--ref-videos", type=int, default=4)
    ap.add_argument("--only", default="")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    t0 = time.perf_counter()
    frames, segments = [], []
    for v in range(a.ref_videos):
        # sampled as ingestion samples a landed video (every stride-th frame, 2 fps): a
        # reference rendered at 2 fps sees gloved hands differently and reads as colour drift
        scene = Scene(seed=10_000 + v, camera_id=CAMERA, seconds=150, fps=a.fps,
                      size=(320, 240), cond=CONDITIONS["nominal"])  # fmt: skip
        imgs = [img for i, (img, _) in enumerate(scene.frames()) if i % max(1, a.fps // 2) == 0]
        frames += imgs
        segments += [v] * len(imgs)
    blob = build_reference(frames, camera_id=CAMERA, version="bench", segments=segments).to_bytes()
    jobs = [
        (blob, shift, 30_000 + k * 1000 + w, a.beats, a.heartbeat_s, a.fps)
        for k, shift in enumerate(SHIFTS)
        if not a.only or shift in a.only.split(",")
        for w in range(a.windows)
    ]
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        results = list(pool.map(_window, jobs, chunksize=2))
    print(f"\n{a.windows} windows per row: {a.beats} heartbeats x {a.heartbeat_s:g} s at "
          f"{a.fps} fps; landed video = the same frames at 2 fps\n")  # fmt: skip
    print(
        "| condition | heartbeats (line_drift) | landed video (drift_report) | fired: line | video |"
    )
    print("|---|---|---|---|---|")
    for shift in SHIFTS:
        rows = [r for r in results if r[0] == shift]
        if not rows:
            continue
        fired = sorted({s for r in rows for s in r[3]})
        vfired = sorted({s for r in rows for s in r[4]})
        line = np.mean([r[1] for r in rows])
        video = np.mean([r[2] for r in rows])
        print(
            f"| {shift} | {line:.2f} | {video:.2f} | {', '.join(fired) or '-'} | {', '.join(vfired) or '-'} |"
        )
    print(
        f"\nfirst row: false-alarm rate; others: detection rate. total {time.perf_counter() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
