"""The demo: a procedurally rendered conveyor belt, its annotators and its conditions.

Not part of the pipeline: ``lensline demo``, the tests and the benchmarks use it to write
a landing zone. One module per concern:

==================  ==================================================================
module              owns
==================  ==================================================================
``conditions``      :class:`Conditions` and the named ``CONDITIONS`` (drift scenarios)
``scene``           :class:`Scene`: belt, camera look, optics, sensor, frame by frame
``items``           the parts on the belt (``CLASSES``, priors, sprites with defects)
``hands``           the operator's gloved hand
``encode``          byte-deterministic H.264 encoding, atomic publication of files
``render``          :func:`render_video`: one scene to an ``.mp4`` plus its ground truth
``annotators``      :func:`make_annotations`: simulated annotators with label flips
``demo_set``        :func:`make_demo_set`: the demo landing zone
==================  ==================================================================

Everything is deterministic from a seed.

Examples
--------
>>> truth = render_video("/tmp/a.mp4", seed=1, camera_id="cam1", seconds=2)  # doctest: +SKIP
>>> demo = make_demo_set(Path("/tmp/landing"), seed=0)  # doctest: +SKIP
"""

from demo.annotators import ANNOTATORS, make_annotations
from demo.conditions import CONDITIONS, Conditions
from demo.demo_set import DemoSet, make_demo_set
from demo.items import CLASS_PROBS, CLASSES
from demo.render import render_video
from demo.scene import Scene

__all__ = [
    "ANNOTATORS",
    "CLASSES",
    "CLASS_PROBS",
    "CONDITIONS",
    "Conditions",
    "DemoSet",
    "Scene",
    "make_annotations",
    "make_demo_set",
    "render_video",
]
