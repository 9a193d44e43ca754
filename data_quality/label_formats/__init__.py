"""Label file formats, one module per format (as FiftyOne organises its importers).

==============  ======================================================================
module          owns
==============  ======================================================================
``common``      :class:`LabelFileError`, the unvalidated :class:`RawRow`, video and
                image-name resolution shared by every format
``csv``         ``*.csv`` (row by row, and the column-wise path for clean files)
``coco``        COCO JSON (classification or detection)
``fiftyone``    FiftyOne ``labels.json``
``validation``  the class-name rule and the per-row checks
``frame_index`` the cached frames-per-video index ingestion reads (one entry per label
                file, fingerprinted by key, size and mtime)
==============  ======================================================================

Every reader returns ``list[RawRow]``; :func:`data_quality.labels.read_label_file` picks the
reader, validates and builds the table. A new format is one module with a ``read_<format>``
function of the same shape, and one branch in ``data_quality.labels._read_rows``.
"""
