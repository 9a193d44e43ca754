"""Multi-annotator consensus: cleanlab's CROWDLAB, computed in long format so it scales.

Two modes, chosen by whether model predictions are available:

* ``pred_probs`` given -> CROWDLAB (cleanlab's ``consensus_method="best_quality"``,
  ``quality_method="crowdlab"``): consensus and quality weigh every
  annotator's label by that annotator's estimated reliability, together
  with the model.
* no ``pred_probs`` -> majority vote (``consensus_method="majority_vote"``,
  ``quality_method="agreement"``): consensus quality is the fraction of
  annotators that agree; annotator quality is the agreement with consensus.

The numbers are those of :func:`cleanlab.multiannotator.get_label_quality_multiannotator`
(cleanlab 2.9, ``cleanlab/multiannotator.py``), but computed from one entry per
(frame, annotator) label instead of cleanlab's dense frames x annotators matrix, whose size
(and cleanlab's per-annotator loops over every frame) make 1 M labels from thousands of
annotators take minutes and gigabytes. :func:`crowdlab` follows cleanlab step by step (majority
vote and its four tie-breaks, annotator agreement with other annotators, the model and
annotator weights, the weighted ensemble of votes and model probabilities, the best-quality
consensus, annotator quality and worst class); ``tests/data_quality/test_consensus_long.py``
checks it against cleanlab on seeded sets (consensus labels identical, scores allclose).

Frames labelled by a single annotator keep that label. Their
``consensus_quality`` is the model's label quality score when
``pred_probs`` is given, otherwise the estimated quality of that annotator
(CROWDLAB's agreement score would be a vacuous 1.0). When no frame has two
annotators there is nothing to compare: quality comes from the model alone,
or is null without one.

================  ============================================================================
module            what
================  ============================================================================
``compute``       :func:`compute_consensus` (the entry point), :class:`ConsensusResult`
``crowd``         :class:`Crowd` (labels in long format), :class:`CrowdStats` (a method's output)
``majority``      method ``majority_vote``: the vote and cleanlab's four tie-breaks
``best_quality``  method ``crowdlab``: :func:`crowdlab` (without ``pred_probs``: agreement mode)
``single``        method ``single_annotation``: one annotator per frame
================  ============================================================================
"""

from data_quality.consensus.best_quality import crowdlab
from data_quality.consensus.compute import ConsensusResult, compute_consensus
from data_quality.consensus.crowd import Crowd, CrowdStats

__all__ = ["ConsensusResult", "Crowd", "CrowdStats", "compute_consensus", "crowdlab"]
