"""The near-duplicate hash index port and its backends (SQL in the catalog's database, memory)."""

from media_pipeline.hashindex.base import HashIndex, IndexHit
from media_pipeline.hashindex.memory import MemoryHashIndex
from media_pipeline.hashindex.sql import SqlHashIndex

__all__ = ["HashIndex", "IndexHit", "MemoryHashIndex", "SqlHashIndex"]
