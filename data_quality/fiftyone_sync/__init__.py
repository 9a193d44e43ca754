"""FiftyOne integration: Lensline samples in, reviewers' label corrections out.

The database FiftyOne talks to is infrastructure: :class:`lake.resources.FiftyOneResource`
starts (or reuses) the home's bundled ``mongod`` and points FiftyOne at it
(:mod:`lake.fiftyone_db`) before any function here runs. This module only syncs.

Annotators' labels: up to :data:`ANNOTATOR_FIELDS_MAX` annotators, one ``fo.Classification``
field per annotator (``annotator_<name>``); above that (thousands of annotators would mean
thousands of fields, which neither MongoDB documents nor the App handle well), one list field
``annotations`` (``fo.Classifications``), one ``fo.Classification`` per label with the annotator
in its ``annotator`` attribute (App filter: ``annotations.classifications.annotator``). Switching
between the two removes the fields of the other form.

Samples are keyed by ``(video_id, frame_index)`` (field ``lensline_key``, unique index). A
re-sync diffs every synced field against what FiftyOne holds and writes only the differences
with bulk ``set_values``. ``lensline_synced_label`` keeps the ground truth Lensline last wrote,
so reviewers' edits of ``ground_truth`` (or the tags ``relabel`` / ``ok``) can be read back with
:func:`pull_corrections`.

Example::

    from data_quality import fiftyone_sync as fos

    FiftyOneResource(home=str(home)).connect()  # orchestration: before fiftyone is imported
    fos.sync_samples("lensline", frame, classes=["good", "defect"])
    fos.ensure_saved_views("lensline")
    corrections = fos.pull_corrections("lensline")  # -> rows for the labels table
    fos.mark_corrections_imported("lensline", corrections)

===========  ================================================================================
module       what
===========  ================================================================================
``fields``   field names, the field plan, schema and desired values of a sample
``samples``  :func:`sync_samples`: samples in (insert new, diff and write only the changes)
``review``   saved views; :func:`pull_corrections`, :func:`mark_corrections_imported`
===========  ================================================================================
"""

from data_quality.fiftyone_sync.fields import ANNOTATOR_FIELDS_MAX, CORRECTION_COLUMNS, SAVED_VIEWS
from data_quality.fiftyone_sync.review import (
    ensure_saved_views,
    mark_corrections_imported,
    pull_corrections,
)
from data_quality.fiftyone_sync.samples import sync_samples

__all__ = [
    "ANNOTATOR_FIELDS_MAX",
    "CORRECTION_COLUMNS",
    "SAVED_VIEWS",
    "ensure_saved_views",
    "mark_corrections_imported",
    "pull_corrections",
    "sync_samples",
]
