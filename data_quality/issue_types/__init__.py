"""Issue types of the ``label_issues`` table, one class per type (as cleanlab's issue managers).

==================  ==================================================================
module              issue types
==================  ==================================================================
``base``            :class:`IssueContext` (shared inputs), :class:`IssueType` (interface)
``label``           ``label``: cleanlab confident learning
``datalab``         ``outlier``, ``near_duplicate``: Datalab on the shared kNN graph
``image_quality``   ``dark``, ``overexposed``, ``blurry``: a frame against its camera
==================  ==================================================================

A new issue type is one class with a stable ``issue_name``, ``needs`` and ``columns`` and a
``find(ctx)`` method, registered once in :data:`data_quality.label_issues.REGISTRY`.
"""
