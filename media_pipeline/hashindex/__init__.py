"""The near-duplicate hash index port and its backends (SQL in the catalog's database, memory)."""

from media_pipeline.hashindex.base import HashIndex, IndexHit
from media_pipeline.hashindex.features import FeatureIndex, SqlFeatureIndex
from media_pipeline.hashindex.memory_features import MemoryFeatureIndex
from media_pipeline.hashindex.memory import MemoryHashIndex
from media_pipeline.hashindex.sql import SqlHashIndex

__all__ = ["FeatureIndex", "HashIndex", "IndexHit", "MemoryFeatureIndex", "MemoryHashIndex", "SqlFeatureIndex", "SqlHashIndex"]
