"""Drift kinds of the ``drift`` table, one class per kind (as :mod:`data_quality.issue_types`).

==============  ==================================================================
module          drift kind
==============  ==================================================================
``base``        :class:`DriftConfig`, :class:`DriftTest` (a row), :class:`DriftKind`
``data``        ``data``: frame statistics, colour histograms, embeddings
``viewpoint``   ``viewpoint``: shift and rotation of the static scene
``prediction``  ``prediction``: the champion's confidence and predicted-label mix
==============  ==================================================================

A new kind is one class with a stable ``kind``, its ``statistics`` and a ``run`` method,
registered once in :data:`data_quality.drift.detect.REGISTRY`.
"""
