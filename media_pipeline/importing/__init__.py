"""Importing an existing library (``media-pipeline import SOURCE``, #23).

- models.py: the values: a source item, an item's import outcome, a job's import report
- manifest.py: a JSON Lines manifest line into a source item (pure)
- sources.py: the narrow source port and its backends: a local folder, an S3 prefix, a manifest
- importer.py: the job: each item checked as an upload is, copied into our storage, catalogued
  and enqueued on the ``reprocess`` queue, with the cursor and ledger of a reprocess job
"""
