"""Who and what is not shown: owners who opted out (``owner_visibility``) and photos hidden on
their own (``photos.hidden``). Serving reads both in ``PhotoStore.lookup_renditions``."""

from __future__ import annotations

from media_pipeline.catalog.database import SqlDatabase


class VisibilityStore(SqlDatabase):
    def set_owner_visible(self, owner: str, visible: bool, now: float) -> None:
        with self._tx() as cur:
            cur.execute("INSERT INTO owner_visibility (owner, visible, updated_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (owner) DO UPDATE SET visible = excluded.visible, updated_at = excluded.updated_at",
                        (owner, int(visible), now))

    def owner_visibility(self, owner: str) -> tuple[bool, float | None]:
        """(visible, when it was last set); an owner never set is visible."""
        with self._tx(write=False) as cur:
            rows = cur.fetchall("SELECT visible, updated_at FROM owner_visibility WHERE owner = ?", (owner,))
        return (bool(rows[0][0]), float(rows[0][1])) if rows else (True, None)

    def hidden_owners(self, owners: list[str]) -> set[str]:
        """Those of ``owners`` who opted out (for an import that skips them)."""
        if not owners:
            return set()
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT owner FROM owner_visibility WHERE visible = 0 AND owner IN ({', '.join('?' * len(owners))})",
                                tuple(owners))
        return {row[0] for row in rows}

    def set_photo_hidden(self, photo_id: str, hidden: bool) -> bool:
        """``False`` if there is no such photo."""
        with self._tx() as cur:
            return bool(cur.execute("UPDATE photos SET hidden = ? WHERE id = ?", (int(hidden), photo_id)))

    def owner_photos(self, owner: str, after: str = "", limit: int = 1000) -> list[tuple[str, bool]]:
        """A page of the owner's (photo id, hidden on its own), in id order after ``after``."""
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT id, hidden FROM photos WHERE owner = ? AND id > ? ORDER BY id LIMIT {int(limit)}", (owner, after))
        return [(row[0], bool(row[1])) for row in rows]
