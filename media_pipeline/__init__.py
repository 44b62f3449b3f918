"""media_pipeline: a photo pipeline for a photo-sharing app.

The core (``sniff``, ``probe``, ``pipeline``, ``encode``, ``hashing``, ``placeholders``) goes from
bytes to values and touches no network, files or clock. I/O lives in ``storage``, ``catalog``,
``service`` and ``web``.
"""

PIPELINE_VERSION = "2"
