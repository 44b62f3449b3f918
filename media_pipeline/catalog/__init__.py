"""The catalog port: photos, their renditions and hashes. SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

from media_pipeline.catalog.base import Catalog

__all__ = ["Catalog", "make_catalog"]


def make_catalog(settings: "object") -> Catalog:
    from media_pipeline.catalog.sql import SqlCatalog

    return SqlCatalog(getattr(settings, "effective_catalog_url"))
