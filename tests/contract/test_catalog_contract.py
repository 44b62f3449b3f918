"""One contract, both catalog backends: SQLite and PostgreSQL (a real server; required in CI)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.events import Settled
from media_pipeline.models import Animation, CameraInfo, Hashes, Photo, PhotoMetadata, PhotoStatus, Placeholder, Rendition
from media_pipeline.service import new_photo_id


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog(request: Any, tmp_path: Any) -> Any:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    catalog = SqlCatalog(url)
    catalog.migrate()
    yield catalog
    if request.param == "postgresql":
        with catalog._tx() as cur:  # the database is shared by the session: leave it empty
            for table in ("renditions", "photo_hashes", "photo_duplicates", "photo_fingerprints", "photos", "events",
                          "webhook_deliveries", "webhook_receivers"):
                cur.execute(f"DELETE FROM {table}")
    catalog.close()


def make_photo(**changes: Any) -> Photo:
    now = time.time()
    photo_id = new_photo_id(now)
    values: dict[str, Any] = dict(
        id=photo_id, status=PhotoStatus.QUEUED, owner="alice", sha256="ab" * 32, original_key=f"originals/{photo_id}",
        original_format="jpeg", original_width=4032, original_height=3024, original_bytes=2_500_000,
        created_at=now, updated_at=now,
    )
    values.update(changes)
    return Photo(**values)


RENDITIONS = [Rendition(640, 480, "avif", 30_000, "renditions/x/a1/640.avif", "a1"), Rendition(320, 240, "jpeg", 12_000, "renditions/x/j1/320.jpg", "j1")]
META = PhotoMetadata(taken_at="2024-05-06T07:08:09+02:00", camera=CameraInfo("Canon", "EOS"), orientation=6, color_profile="Display P3")
PLACEHOLDER = Placeholder("LEHV6nWB2yk8pyo0adR*.7kCMdnj", "#aabbcc")
HASHES = Hashes(phash="80f0fe5fe0a258c7", dhash="30ace8cef070e6cf")


def test_migrate_is_idempotent_and_safe_concurrently(catalog: Any) -> None:
    catalog.migrate()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            SqlCatalog(catalog.url).migrate()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_add_and_get_round_trip(catalog: Any) -> None:
    photo = make_photo()
    catalog.add_photo(photo)
    got = catalog.get_photo(photo.id)
    assert got == photo
    assert catalog.get_photo(new_photo_id()) is None


def test_processing_counts_attempts(catalog: Any) -> None:
    photo = make_photo()
    catalog.add_photo(photo)
    first = catalog.start_processing(photo.id)
    second = catalog.start_processing(photo.id)
    assert (first.status, first.attempts, second.attempts) == (PhotoStatus.PROCESSING, 1, 2)
    assert catalog.start_processing(new_photo_id()) is None
    catalog.release(photo.id)  # the second attempt ended in a transient error: it does not count
    released = catalog.get_photo(photo.id)
    assert (released.status, released.attempts) == (PhotoStatus.QUEUED, 1)
    assert catalog.start_processing(photo.id).attempts == 2


def test_starts_of_a_photo_in_a_job_are_counted_until_it_has_an_outcome(catalog: Any) -> None:
    from media_pipeline.jobs import ReprocessJob, Selection

    now = time.time()
    catalog.create_job(ReprocessJob("job2", Selection(), "v2", "enqueuing", "", 0, now, now))
    catalog.checkpoint("job2", "b", ["a", "b"])
    assert [catalog.start_item("job2", "a") for _ in range(3)] == [1, 2, 3]
    catalog.release_item("job2", "a")
    assert catalog.start_item("job2", "a") == 3
    catalog.record_item("job2", "a", "updated", None, 10, 0, 0.1)
    assert catalog.start_item("job2", "a") is None  # it has its outcome: a redelivered batch skips it
    assert catalog.start_item("job2", "zz") is None  # not part of the job
    assert catalog.start_item("job2", "b") == 1


def test_complete_records_renditions_metadata_placeholder_and_hashes(catalog: Any) -> None:
    photo = make_photo()
    catalog.add_photo(photo)
    catalog.start_processing(photo.id)
    assert catalog.complete(photo.id, "v1", META, PLACEHOLDER, RENDITIONS, HASHES)
    got = catalog.get_photo(photo.id)
    assert got.status is PhotoStatus.READY and got.preset_version == "v1"
    assert got.metadata == META and got.placeholder == PLACEHOLDER and got.hashes == HASHES
    assert list(got.renditions) == sorted(RENDITIONS, key=lambda r: -r.width)
    # Completing again (a retried task) replaces rather than duplicates.
    assert catalog.complete(photo.id, "v1", META, PLACEHOLDER, RENDITIONS, HASHES)
    assert len(catalog.get_photo(photo.id).renditions) == 2
    # A ready photo is not taken back to processing.
    assert catalog.start_processing(photo.id).status is PhotoStatus.READY


def test_a_new_set_retires_what_falls_out_and_retired_ones_stay_findable_by_spec(catalog: Any) -> None:
    photo = make_photo()
    catalog.add_photo(photo)
    catalog.complete(photo.id, "v1", META, PLACEHOLDER, RENDITIONS, HASHES)
    avif2 = Rendition(640, 480, "avif", 28_000, "renditions/x/a2/640.avif", "a2")
    before = time.time()
    catalog.complete(photo.id, "v2", META, PLACEHOLDER, [avif2, RENDITIONS[1]], HASHES)
    got = catalog.get_photo(photo.id)
    assert set(got.renditions) == {avif2, RENDITIONS[1]} and got.preset_version == "v2"
    assert set(catalog.all_renditions(photo.id)) == {avif2, *RENDITIONS}
    assert catalog.lookup_renditions(photo.id, 640).renditions == (avif2,)
    assert catalog.lookup_renditions(photo.id, 640, spec="a1").renditions == (RENDITIONS[0],)  # retired, still servable
    retired = catalog.retired_renditions(time.time() + 1)
    assert retired == [(photo.id, RENDITIONS[0])]
    assert catalog.retired_renditions(before - 10) == []
    catalog.forget_rendition(photo.id, RENDITIONS[0])
    catalog.forget_rendition(photo.id, RENDITIONS[1])  # current: never dropped this way
    assert set(catalog.all_renditions(photo.id)) == {avif2, RENDITIONS[1]}


def test_lookup_and_on_demand_renditions(catalog: Any) -> None:
    photo = make_photo()
    catalog.add_photo(photo)
    extra = Rendition(480, 360, "webp", 9_000, "renditions/x/w1/480.webp", "w1")
    assert catalog.lookup_renditions(photo.id, 640) is None  # not ready yet
    assert not catalog.add_rendition(photo.id, extra)
    catalog.complete(photo.id, "v1", META, PLACEHOLDER, RENDITIONS, HASHES)
    lookup = catalog.lookup_renditions(photo.id, 640)
    assert lookup.original_width == 4032 and lookup.find("avif") == RENDITIONS[0] and lookup.find("webp") is None
    assert catalog.add_rendition(photo.id, extra) and catalog.add_rendition(photo.id, extra)
    assert catalog.lookup_renditions(photo.id, 480).renditions == (extra,)
    assert len(catalog.get_photo(photo.id).renditions) == 3
    assert catalog.lookup_renditions(new_photo_id(), 640) is None


def test_an_animation_and_its_animated_renditions_round_trip(catalog: Any) -> None:
    photo = make_photo(original_format="gif", animation=Animation(frames=42, duration_ms=2830))
    dropped = make_photo(original_format="webp", animation=Animation(frames=5000, duration_ms=99_000, dropped="too_many_frames"))
    catalog.add_photo(photo)
    catalog.add_photo(dropped)
    assert catalog.get_photo(photo.id).animation == photo.animation and photo.animation.kept
    assert catalog.get_photo(dropped.id).animation == dropped.animation and not dropped.animation.kept
    moving = Rendition(640, 480, "avif", 90_000, "renditions/x/m1/640.avif", "m1", animated=True)
    catalog.complete(photo.id, "v1", META, PLACEHOLDER, [*RENDITIONS, moving], HASHES)
    assert moving in catalog.get_photo(photo.id).renditions
    lookup = catalog.lookup_renditions(photo.id, 640)
    assert lookup.find("avif") == moving and lookup.find("avif", animated=False) == RENDITIONS[0]
    webp = Rendition(480, 360, "webp", 40_000, "renditions/x/m2/480.webp", "m2", animated=True)
    assert catalog.add_rendition(photo.id, webp) and catalog.lookup_renditions(photo.id, 480).find("webp") == webp
    assert catalog.get_photo(make_photo().id) is None and make_photo().animation == Animation()  # a still by default


def test_fail_records_the_reason(catalog: Any) -> None:
    photo = make_photo()
    catalog.add_photo(photo)
    assert catalog.fail(photo.id, "corrupt_image", "cannot decode")
    got = catalog.get_photo(photo.id)
    assert (got.status, got.error_code, got.error_message) == (PhotoStatus.FAILED, "corrupt_image", "cannot decode")
    assert not catalog.fail(new_photo_id(), "x", "y")


def test_delete_removes_everything_and_complete_after_delete_says_so(catalog: Any) -> None:
    photo = make_photo()
    catalog.add_photo(photo)
    catalog.complete(photo.id, "v1", META, PLACEHOLDER, RENDITIONS, HASHES)
    assert catalog.delete_photo(photo.id)
    assert catalog.get_photo(photo.id) is None
    assert not catalog.delete_photo(photo.id)
    assert not catalog.complete(photo.id, "v1", META, PLACEHOLDER, RENDITIONS, HASHES)


def test_duplicate_ids_are_refused(catalog: Any) -> None:
    from media_pipeline.errors import CatalogError

    photo = make_photo()
    catalog.add_photo(photo)
    with pytest.raises(CatalogError):
        catalog.add_photo(photo)


def test_check_passes(catalog: Any) -> None:
    catalog.check()


def test_stuck_photos_and_touch(catalog: Any) -> None:
    queued, processing, ready = make_photo(), make_photo(), make_photo()
    for photo in (queued, processing, ready):
        catalog.add_photo(photo)
    catalog.start_processing(processing.id)
    catalog.complete(ready.id, "v1", META, PLACEHOLDER, RENDITIONS, HASHES)
    later = time.time() + 10
    assert sorted(catalog.stuck_photos(later)) == sorted([(queued.id, 0), (processing.id, 1)])
    assert catalog.stuck_photos(time.time() - 60) == []
    catalog.touch(queued.id)
    assert all(pid != queued.id for pid, _ in catalog.stuck_photos(time.time() - 1))


def test_idempotency_keys(catalog: Any) -> None:
    now = time.time()
    assert catalog.claim_idempotency_key("o\nk1", "aa", now - 86400) == ("new", None)
    assert catalog.claim_idempotency_key("o\nk1", "aa", now - 86400) == ("in_progress", None)
    assert catalog.claim_idempotency_key("o\nk1", "bb", now - 86400) == ("mismatch", None)
    catalog.settle_idempotency_key("o\nk1", "01photo")
    assert catalog.claim_idempotency_key("o\nk1", "aa", now - 86400) == ("replay", "01photo")
    assert catalog.claim_idempotency_key("o\nk2", "aa", now - 86400) == ("new", None)
    catalog.settle_idempotency_key("o\nk2", None)  # the request failed: released
    assert catalog.claim_idempotency_key("o\nk2", "cc", now - 86400) == ("new", None)
    assert catalog.claim_idempotency_key("o\nk1", "dd", now + 1) == ("new", None)  # expired keys are forgotten


def test_checkpoint_counts_only_photos_new_to_the_job(catalog: Any) -> None:
    from media_pipeline.jobs import ReprocessJob, Selection

    now = time.time()
    catalog.create_job(ReprocessJob("job1", Selection(), "v2", "enqueuing", "", 0, now, now))
    assert catalog.checkpoint("job1", "b", ["a", "b"]) == 2
    assert catalog.checkpoint("job1", "d", ["b", "c", "d"]) == 2  # "b" again: a resumed batch
    job = catalog.get_job("job1")
    assert (job.cursor, job.enqueued) == ("d", 4)
    assert catalog.job_report("job1").counts == {"pending": 4}


def test_duplicates_survive_the_other_photos_late_search(catalog: Any) -> None:
    """The earlier of two simultaneous uploads finished its search (finding nothing) after the
    later one recorded their match: the match must survive, stored on the later photo."""
    from media_pipeline.models import Duplicate

    earlier, later = make_photo(), make_photo()
    earlier_id, later_id = sorted([earlier.id, later.id])
    catalog.add_photo(earlier)
    catalog.add_photo(later)
    catalog.replace_duplicates(later_id, [Duplicate(earlier_id, "near", 4, "mirror")])
    catalog.replace_duplicates(earlier_id, [])
    assert catalog.duplicates_of(later_id) == [Duplicate(earlier_id, "near", 4, "mirror")]
    # Both found it: one row, still on the later photo.
    catalog.replace_duplicates(earlier_id, [Duplicate(later_id, "near", 4, "mirror")])
    assert catalog.duplicates_of(later_id) == [Duplicate(earlier_id, "near", 4, "mirror")]
    assert catalog.duplicates_of(earlier_id) == []
    # A rerun replaces only what that photo's own search found; a deleted photo leaves no match.
    catalog.replace_duplicates(later_id, [])
    catalog.delete_photo(earlier_id)
    assert catalog.duplicates_of(later_id) == []
    catalog.replace_duplicates(later_id, [Duplicate(earlier_id, "exact", 0, "same bytes")])
    assert catalog.duplicates_of(later_id) == []


# --------------------------------------------------------------------------- events
def test_events_follow_commit_order_so_a_reader_following_next_misses_none(catalog: Any) -> None:
    """Writers on many connections at once, a reader paging all the while: what the reader
    collected, cursor after cursor, is every event, each once, in the final order."""
    start = catalog.events_after(0, 1000)[-1].seq if catalog.events_after(0, 1000) else 0
    photos = [make_photo() for _ in range(40)]
    for photo in photos:
        catalog.add_photo(photo)
    done = threading.Event()
    seen: list[int] = []

    def read() -> None:
        after = start
        while True:
            finished = done.is_set()
            batch = catalog.events_after(after, 7)
            seen.extend(e.seq for e in batch)
            after = batch[-1].seq if batch else after
            if finished and not batch:
                return

    def write(chunk: list[Photo]) -> None:
        writer = SqlCatalog(catalog.url)
        for photo in chunk:
            writer.fail(photo.id, "rejected", "no")
        writer.close()

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(photos[i::4],)) for i in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join(60)
    final = [e.seq for e in catalog.events_after(start, 1000)]
    assert len(final) == 40 and seen == final
    assert {e.photo_id for e in catalog.events_after(start, 1000)} == {p.id for p in photos}


def test_deliveries_are_claimed_one_per_photo_in_order(catalog: Any) -> None:
    url = f"http://127.0.0.1:9/{new_photo_id()}"  # a receiver of this test alone
    a, b = make_photo(), make_photo()
    for photo in (a, b):
        catalog.add_photo(photo)
    catalog.fail(a.id, "rejected", "no")
    catalog.fail(b.id, "rejected", "no")
    catalog.delete_photo(a.id)
    now = time.time()
    assert catalog.fan_out(url, start_before=now - 3600) >= 3
    claimed = [(e.photo_id, e.type) for e, _ in catalog.claim_deliveries(url, now, 30) if e.photo_id in (a.id, b.id)]
    assert claimed == [(a.id, "photo.failed"), (b.id, "photo.failed")]  # a's delete waits for its failed
    assert catalog.claim_deliveries(url, now, 30) == []  # held for the lease
    [(first, attempts)] = [c for c in catalog.claim_deliveries(url, now + 31, 30) if c[0].photo_id == a.id]
    assert attempts == 0 and first.type == "photo.failed"
    catalog.settle_deliveries(url, [Settled(first.seq, "delivered")])
    [(second, _)] = [c for c in catalog.claim_deliveries(url, now + 62, 30) if c[0].photo_id == a.id]
    assert second.type == "photo.deleted"
