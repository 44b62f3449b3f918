"""Near-duplicate and exact repost detection: the fingerprint (pure), the service rule, the API."""

from __future__ import annotations

import io
import random
import threading
from typing import Any

import numpy as np
import pytest

from bench import edits
from media_pipeline import dedupe, service
from media_pipeline.service import Outcome, build_services
from tests import images
from tests.conftest import ingest_bytes

NEAR = 31


def fingerprint_of(rgb: np.ndarray) -> dedupe.Fingerprint:
    from media_pipeline import pipeline
    from config.settings import Settings

    preset = Settings.from_env({}).preset()
    job = pipeline.prepare(edits.jpeg_bytes(rgb), preset, 50_000_000, widths=pipeline.identity_widths(preset))
    return pipeline.identify(job).fingerprint


# --------------------------------------------------------------------------- pure fingerprint
@pytest.mark.parametrize("edit", ["resize", "recompress", "brightness", "greyscale", "mirror", "border", "screenshot", "crop10", "caption"])
def test_edits_stay_within_the_near_distance(edit: str) -> None:
    original = images.natural(720, 480, seed=11)
    edited = edits.EDITS[edit](original, random.Random(edit))
    distance, _ = dedupe.closest(fingerprint_of(edited), fingerprint_of(original).stored)
    assert distance <= NEAR, (edit, distance)


@pytest.mark.parametrize("turns", [1, 3])
def test_a_quarter_turn_stays_within_the_near_distance_and_is_hinted(turns: int) -> None:
    original = images.natural(720, 480, seed=12)
    for picture in (original, edits.border(original, random.Random(1))):  # framed too: the content view turns back
        distance, hint = dedupe.closest(fingerprint_of(np.ascontiguousarray(np.rot90(picture, turns))), fingerprint_of(original).stored)
        assert distance <= NEAR and hint is not None and "turn" in hint, (distance, hint)


def test_distinct_pictures_are_far_apart() -> None:
    prints = [fingerprint_of(images.natural(640, 480, seed=s)) for s in range(8)]
    closest = min(dedupe.closest(a, b.stored)[0] for i, a in enumerate(prints) for j, b in enumerate(prints) if i != j)
    assert closest > 2 * NEAR


def test_mirror_and_frame_are_hinted() -> None:
    original = images.natural(640, 480, seed=3)
    assert dedupe.closest(fingerprint_of(edits.mirror(original, random.Random(0))), fingerprint_of(original).stored)[1] == "mirror"
    framed = edits.screenshot(original, random.Random(0))
    assert "reframed" in (dedupe.closest(fingerprint_of(framed), fingerprint_of(original).stored)[1] or "")


def test_content_box_finds_the_picture_in_a_screenshot() -> None:
    original = images.natural(640, 480, seed=4)
    shot = edits.screenshot(original, random.Random(1))
    box = dedupe.content_box(dedupe.luma(shot))
    assert box is not None
    top, bottom, left, right = box
    assert abs((right - left) / (bottom - top) - 640 / 480) < 0.05  # the photo's own aspect ratio
    assert dedupe.content_box(dedupe.luma(original)) is None


def test_flat_pictures_have_low_hash_quality() -> None:
    flat = np.full((400, 600, 3), (40, 120, 200), np.uint8)
    faint = (np.linspace(240, 250, 600)[None, :, None] * np.ones((400, 1, 3))).astype(np.uint8)
    photo = images.natural(600, 400, seed=5)
    assert dedupe.fingerprint(flat).quality < 8 and dedupe.fingerprint(faint).quality < 8
    assert dedupe.fingerprint(photo).quality > 8


# --------------------------------------------------------------------------- service and API
def ready(services: Any, data: bytes, owner: str | None = None) -> str:
    photo_id = ingest_bytes(services, data, owner)
    assert service.process_photo(services, photo_id) is Outcome.DONE
    return photo_id


def test_a_mirrored_repost_reports_the_original(client: Any, services: Any) -> None:
    original = images.natural(900, 600, seed=21)
    first = ready(services, edits.jpeg_bytes(original))
    repost = ready(services, edits.jpeg_bytes(edits.mirror(original, random.Random(0)), 70))
    unrelated = ready(services, edits.jpeg_bytes(images.natural(900, 600, seed=22)))
    body = client.get(f"/v1/photos/{repost}").get_json()
    assert [(d["id"], d["kind"], d["transform"]) for d in body["duplicates"]] == [(first, "near", "mirror")]
    assert body["duplicates"][0]["distance"] <= NEAR
    assert body["hash_quality"]["near_matching"] is True and body["hash_quality"]["score"] > 8
    # The rule: the later photo reports the earlier, not the other way round.
    assert client.get(f"/v1/photos/{first}").get_json()["duplicates"] == []
    assert client.get(f"/v1/photos/{unrelated}").get_json()["duplicates"] == []


def test_exact_duplicates_by_bytes_and_by_pixels(client: Any, services: Any) -> None:
    rgb = images.natural(500, 400, seed=31)
    a = ready(services, images.png(rgb))
    b = ready(services, images.png(rgb))  # the same bytes
    c = ready(services, images.encode_with(images.to_vips(rgb), ".png", compression=9, interlace=True))  # same pixels
    near = ready(services, edits.jpeg_bytes(rgb, 60))
    assert [(d["id"], d["kind"], d["distance"], d["transform"]) for d in client.get(f"/v1/photos/{b}").get_json()["duplicates"]] == [
        (a, "exact", 0, "same bytes")]
    dups = client.get(f"/v1/photos/{c}").get_json()["duplicates"]
    assert [(d["id"], d["kind"], d["transform"]) for d in dups] == [(a, "exact", "same pixels"), (b, "exact", "same pixels")]
    dups = client.get(f"/v1/photos/{near}").get_json()["duplicates"]
    assert [d["id"] for d in dups] == sorted([a, b, c], key=lambda i: (next(x["distance"] for x in dups if x["id"] == i), i))
    assert {d["kind"] for d in dups} == {"near"}


def test_flat_pictures_are_not_near_matched(client: Any, services: Any) -> None:
    blue = ready(services, images.png(np.full((300, 400, 3), (30, 60, 200), np.uint8)))
    red = ready(services, images.png(np.full((300, 400, 3), (200, 40, 30), np.uint8)))
    body = client.get(f"/v1/photos/{red}").get_json()
    assert body["hash_quality"]["near_matching"] is False and body["duplicates"] == []
    again = ready(services, images.png(np.full((300, 400, 3), (30, 60, 200), np.uint8)))
    assert [d["id"] for d in client.get(f"/v1/photos/{again}").get_json()["duplicates"]] == [blue]  # exact still works


def test_search_answers_without_storing(client: Any, services: Any) -> None:
    original = images.natural(800, 600, seed=41)
    first = ready(services, edits.jpeg_bytes(original))
    before = (sorted(services.storage.list("")), services.hash_index.count())
    query = edits.jpeg_bytes(edits.caption(original, random.Random(2)), 75)
    response = client.post("/v1/duplicates/search", data=query, content_type="image/jpeg")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert [(d["id"], d["kind"]) for d in response.get_json()["duplicates"]] == [(first, "near")]
    response = client.post("/v1/duplicates/search", data={"file": (io.BytesIO(edits.jpeg_bytes(original)), "x.jpg")},
                           content_type="multipart/form-data")
    assert response.get_json()["duplicates"][0]["id"] == first
    assert (sorted(services.storage.list("")), services.hash_index.count()) == before
    unrelated = edits.jpeg_bytes(images.natural(800, 600, seed=42))
    assert client.post("/v1/duplicates/search", data=unrelated, content_type="image/jpeg").get_json() == {"duplicates": [], "blocklists": []}


def test_search_rejects_bad_input_like_uploads(client: Any) -> None:
    response = client.post("/v1/duplicates/search", data=b"%PDF-1.4 not an image", content_type="image/jpeg")
    assert response.status_code == 415 and response.get_json()["error"]["code"]
    response = client.post("/v1/duplicates/search", data=b"", content_type="image/jpeg")
    assert response.status_code == 400


def test_deleting_a_photo_removes_it_from_the_index(client: Any, services: Any) -> None:
    original = images.natural(800, 600, seed=51)
    first = ready(services, edits.jpeg_bytes(original))
    repost = ready(services, edits.jpeg_bytes(edits.resize(original, random.Random(0))))
    assert client.delete(f"/v1/photos/{first}").status_code == 204
    assert client.get(f"/v1/photos/{repost}").get_json()["duplicates"] == []
    found = client.post("/v1/duplicates/search", data=edits.jpeg_bytes(original), content_type="image/jpeg").get_json()
    assert [d["id"] for d in found["duplicates"]] == [repost]


def test_owner_scope(settings: Any, queue: Any) -> None:
    services = build_services(settings.replace(dedupe_scope="owner"), queue=queue)
    rgb = images.natural(640, 480, seed=61)
    alice = ready(services, edits.jpeg_bytes(rgb), owner="alice")
    bob = ready(services, edits.jpeg_bytes(rgb), owner="bob")
    alice_again = ready(services, edits.jpeg_bytes(edits.greyscale(rgb, random.Random(0))), owner="alice")
    assert services.catalog.get_photo(bob).duplicates == ()
    assert [d.id for d in services.catalog.get_photo(alice_again).duplicates] == [alice]


# --------------------------------------------------------------------------- ordering
def test_the_later_photo_reports_the_earlier_whichever_ran_first(services: Any) -> None:
    """Worst interleavings: the earlier upload is processed after the later one (it finds the
    later one; the match is still stored on the later photo), and the other way round."""
    rgb = images.natural(640, 480, seed=71)
    earlier = ingest_bytes(services, edits.jpeg_bytes(rgb))
    later = ingest_bytes(services, edits.jpeg_bytes(edits.mirror(rgb, random.Random(0))))
    assert earlier < later
    assert service.process_photo(services, later) is Outcome.DONE  # finds nothing: the earlier is not indexed yet
    assert services.catalog.get_photo(later).duplicates == ()
    assert service.process_photo(services, earlier) is Outcome.DONE  # finds the later one
    assert [d.id for d in services.catalog.get_photo(later).duplicates] == [earlier]
    assert services.catalog.get_photo(earlier).duplicates == ()


def test_simultaneous_uploads_find_each_other(settings: Any, queue: Any) -> None:
    """Two workers (threads with their own connections) process two copies at the same moment,
    several times: the later always ends up reporting the earlier."""
    for attempt in range(4):
        rgb = images.natural(900, 600, seed=80 + attempt)
        workers = [build_services(settings, queue=queue) for _ in range(2)]
        a = ingest_bytes(workers[0], edits.jpeg_bytes(rgb))
        b = ingest_bytes(workers[0], edits.jpeg_bytes(edits.brightness(rgb, random.Random(attempt))))
        barrier = threading.Barrier(2)

        def run(svc: Any, photo_id: str) -> None:
            barrier.wait()
            assert service.process_photo(svc, photo_id) is Outcome.DONE

        threads = [threading.Thread(target=run, args=(workers[i], pid)) for i, pid in enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [d.id for d in workers[0].catalog.get_photo(b).duplicates] == [a], attempt


# --------------------------------------------------------------------------- keypoints
def textured(seed: int) -> np.ndarray:
    """A photo-like picture with corners and edges for keypoints: random shapes over a natural field."""
    import cv2

    rng = np.random.default_rng(seed)
    img = images.natural(900, 600, seed=seed)
    for _ in range(60):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, 900)), int(rng.integers(0, 600))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(10, 80)), y + int(rng.integers(10, 80))), colour, -1)
        else:
            cv2.circle(img, (x, y), int(rng.integers(5, 40)), colour, -1)
    return img


@pytest.mark.parametrize("edit", ["asym_crop", "rotate5"])
def test_crops_and_rotations_are_found_by_keypoints(client: Any, services: Any, edit: str) -> None:
    original = textured(91)
    first = ready(services, edits.jpeg_bytes(original))
    ready(services, edits.jpeg_bytes(textured(92)))  # an unrelated photo with as many keypoints
    repost = ready(services, edits.jpeg_bytes(edits.EDITS[edit](original, random.Random(3)), 80))
    dups = client.get(f"/v1/photos/{repost}").get_json()["duplicates"]
    assert [(d["id"], d["kind"], d["distance"], d["transform"]) for d in dups] == [(first, "near", None, "crop or rotation")]
    assert dups[0]["inliers"] >= services.settings.min_inliers


def _keys_of_an_older_format(stored: Any, version: int) -> list[int]:
    """The keys the first formats filed a photo under: 16 descriptor bits of its strongest
    INDEXED (version 1), then 24 bits of them above 1 << 30 (version 2)."""
    from media_pipeline import keypoints

    strongest = keypoints.LocalFeatures(stored.points[: keypoints.INDEXED], stored.descriptors[: keypoints.INDEXED])
    if version == 2:
        return [key - keypoints.KEY_BASE + (1 << 30) for key in keypoints.keys(strongest)]
    bits = np.unpackbits(strongest.descriptors, axis=1).astype(np.int64)
    return sorted({int(v) + (t << 16) for t, positions in enumerate(keypoints._POSITIONS)
                   for v in bits[:, positions[:16]] @ (1 << np.arange(15, -1, -1))})


@pytest.mark.parametrize("version", [1, 2])
def test_photos_filed_under_older_keys_are_found_again_once_refiled(client: Any, services: Any, version: int) -> None:
    """An upgrade from an older filing format (the 16-bit keys; the 24-bit keys of the strongest
    descriptors): a photo filed under it gets no vote (the formats' keys never meet) until
    refile_keypoints files it again from its keypoint file."""
    from media_pipeline import check, duplicates, keypoints
    from media_pipeline.storage import features_key

    original = textured(94)
    first = ready(services, edits.jpeg_bytes(original))
    stored = keypoints.LocalFeatures.from_bytes(services.storage.get(features_key(first)))
    services.feature_index.add(first, None, _keys_of_an_older_format(stored, version))
    query = edits.jpeg_bytes(edits.asymmetric_crop(original, random.Random(2)))

    def found() -> list[str]:
        return [d["id"] for d in client.post("/v1/duplicates/search", data=query, content_type="image/jpeg").get_json()["duplicates"]]

    assert found() == []
    assert check.check(services).problems["keypoints_under_old_keys"] == [f"{first} (run media-pipeline refile-keypoints)"]
    assert duplicates.refile_keypoints(services, batch=1, batches=0) == 0  # the reconciler's rounds take a batch each
    assert duplicates.refile_keypoints(services, batch=1, batches=1) == 1
    assert found() == [first]
    assert "keypoints_under_old_keys" not in check.check(services).problems
    assert duplicates.refile_keypoints(services) == 0


def test_the_reconciler_refiles_older_keys_a_batch_a_round(services: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """After an upgrade nobody has to remember refile-keypoints: each reconcile round files a batch."""
    from media_pipeline import check, cli, keypoints
    from media_pipeline.storage import features_key

    photo = ready(services, edits.jpeg_bytes(textured(95)))
    stored = keypoints.LocalFeatures.from_bytes(services.storage.get(features_key(photo)))
    services.feature_index.add(photo, None, _keys_of_an_older_format(stored, 2))
    assert "keypoints_under_old_keys" in check.check(services).problems
    assert cli.main(["reconcile", "--data-dir", str(services.settings.data_dir)]) == 0
    assert "re-filed 1 photos under the current keypoint keys" in capsys.readouterr().out
    assert "keypoints_under_old_keys" not in check.check(services).problems


def test_indexed_keypoints_are_spread_over_the_picture() -> None:
    """The filed descriptors take turns by grid cell: a picture whose strongest keypoints crowd
    into one corner still files some from every part that has any."""
    from media_pipeline import keypoints

    rng = np.random.default_rng(5)
    crowded = rng.uniform(0, 100, (250, 2))  # the strongest, all in the top-left corner
    elsewhere = rng.uniform(100, 400, (50, 2))
    points = np.concatenate([crowded, elsewhere]).astype(np.float32)
    features = keypoints.LocalFeatures(points, rng.integers(0, 256, (300, 32), dtype=np.uint8))
    chosen = keypoints.indexed(features)
    assert len(chosen) == keypoints.INDEXED
    assert (chosen.points.min(axis=1) >= 100).sum() >= 40  # by strength alone: none
    assert keypoints.index_keys(features) == keypoints.keys(chosen)
    assert keypoints.indexed(keypoints.LocalFeatures(points[:50], features.descriptors[:50])).points.shape == (50, 2)


def test_a_lookup_also_votes_with_keypoints_away_from_a_caption() -> None:
    """A big caption takes most of a picture's strongest keypoints (its letters' corners); a lookup
    also votes with keypoints spread over the rest, where the repost's original can be met."""
    from config.settings import Settings
    from media_pipeline import keypoints, pipeline

    captioned = edits.caption(edits.caption(textured(99), random.Random(1)), random.Random(2))
    preset = Settings.from_env({}).preset()
    identity = pipeline.identify(pipeline.prepare(edits.jpeg_bytes(captioned), preset, 50_000_000, widths=pipeline.identity_widths(preset)))
    strongest = identity.features
    searched = keypoints.search_features(identity.keypoint_image, strongest)
    spread = searched.points[len(strongest) : len(strongest) + keypoints.SPREAD_EXTRA]
    half = identity.keypoint_image.shape[0] / 2
    assert (strongest.points[:, 1] < half).mean() < 0.15  # the captions at the bottom took the budget
    assert len(spread) == keypoints.SPREAD_EXTRA and (spread[:, 1] < half).mean() > 0.35


def test_a_deep_zoom_is_found_by_keypoints(client: Any, services: Any) -> None:
    """A quarter of the picture enlarged to its size: the lookup's keypoints of shrunk copies of
    the query meet the original's at their own scale."""
    import cv2

    original = textured(95)
    first = ready(services, edits.jpeg_bytes(original))
    ready(services, edits.jpeg_bytes(textured(96)))
    h, w = original.shape[:2]
    zoomed = cv2.resize(original[h // 4 : h // 4 + h // 2, w // 2 : w], (w, h), interpolation=cv2.INTER_CUBIC)
    dups = client.post("/v1/duplicates/search", data=edits.jpeg_bytes(zoomed), content_type="image/jpeg").get_json()["duplicates"]
    assert [(d["id"], d["transform"]) for d in dups] == [(first, "crop or rotation")]


@pytest.mark.parametrize("edit", ["turn90", "screen_photo", "combined", "filter", "squeeze", "stickers"])
def test_everyday_edits_find_the_original(client: Any, services: Any, edit: str) -> None:
    """A quarter turn, a photo of the screen (off-axis, moire, glare), crop + filter + caption +
    JPEG at once, a heavy filter, a squeeze, stickers: each finds its original and nothing else."""
    original = textured(97)
    first = ready(services, edits.jpeg_bytes(original))
    ready(services, edits.jpeg_bytes(textured(98)))
    edited = edits.EVERYDAY[edit](original, random.Random(5))
    dups = client.post("/v1/duplicates/search", data=edits.jpeg_bytes(edited), content_type="image/jpeg").get_json()["duplicates"]
    assert [d["id"] for d in dups] == [first]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_thumbnail_sized_repost_is_found(client: Any, services: Any, seed: int) -> None:
    """Cropped, filtered, captioned and shrunk to a thumbnail: its detail is at the original's
    coarse scales, which the lookup meets by also looking in enlarged copies of it. (Not every
    such repost is found: 0.903 of the dev corpus's. The first draw is found only with the copies;
    the second and fourth only with 800 keypoints a copy, not 500. Of the first 20 draws, 800
    found 19 and 500 found 17, and one draw that 500 found is missed by 800, left out here.)"""
    import cv2

    from media_pipeline import keypoints

    original = cv2.resize(textured(88), (480, 320), interpolation=cv2.INTER_AREA)  # the dev corpus's size
    first = ready(services, edits.jpeg_bytes(original))
    ready(services, edits.jpeg_bytes(textured(89)))
    edited = edits.EVERYDAY["combined_small"](original, random.Random(seed))
    assert max(edited.shape[:2]) < keypoints.ENLARGE_BELOW * keypoints.LONG_SIDE
    dups = client.post("/v1/duplicates/search", data=edits.jpeg_bytes(edited), content_type="image/jpeg").get_json()["duplicates"]
    assert [d["id"] for d in dups] == [first]


def test_copies_that_prove_to_be_matches_do_not_take_the_verification_slots(tmp_path: Any, queue: Any) -> None:
    """Other copies of a picture crowd the top of a vote; those that prove to be matches do not
    use up MP_KEYPOINT_CANDIDATES, up to twice as many verified in all."""
    from config.settings import Settings
    from media_pipeline.web import create_app

    original = textured(90)
    for candidates, expected in ((1, 2), (2, 3)):
        settings = Settings.from_env({}, data_dir=tmp_path / f"var{candidates}").replace(keypoint_candidates=candidates)
        services = build_services(settings, queue=queue)
        copies = {ready(services, edits.jpeg_bytes(edits.asymmetric_crop(original, random.Random(seed)))) for seed in (11, 12, 13)}
        query = edits.jpeg_bytes(edits.asymmetric_crop(original, random.Random(14)))
        client = create_app(services.settings, services).test_client()
        dups = client.post("/v1/duplicates/search", data=query, content_type="image/jpeg").get_json()["duplicates"]
        assert len(dups) == expected and {d["id"] for d in dups} <= copies
        assert all(d["transform"] == "crop or rotation" for d in dups)


def test_keypoints_are_private_and_deleted_with_the_photo(client: Any, services: Any) -> None:
    from media_pipeline.storage import features_key

    photo_id = ready(services, edits.jpeg_bytes(textured(93)))
    assert services.storage.exists(features_key(photo_id))
    assert client.get(f"/i/{photo_id}/features").status_code == 404
    assert client.delete(f"/v1/photos/{photo_id}").status_code == 204
    assert not services.storage.exists(features_key(photo_id))
    query = edits.jpeg_bytes(edits.asymmetric_crop(textured(93), random.Random(1)))
    assert client.post("/v1/duplicates/search", data=query, content_type="image/jpeg").get_json() == {"duplicates": [], "blocklists": []}


def test_keypoint_matching_can_be_turned_off(settings: Any, queue: Any) -> None:
    services = build_services(settings.replace(keypoint_matching="off"), queue=queue)
    original = textured(94)
    ready(services, edits.jpeg_bytes(original))
    repost = ready(services, edits.jpeg_bytes(edits.asymmetric_crop(original, random.Random(3))))
    assert services.catalog.get_photo(repost).duplicates == ()


@pytest.mark.parametrize("shape", [(1, 4000), (4000, 1), (1, 1), (3, 2), (32, 33), (40, 4000)])
def test_degenerate_shapes_identify_without_error(shape: tuple[int, int]) -> None:
    from media_pipeline import keypoints

    strip = (np.arange(shape[0] * shape[1]) % 251).astype(np.uint8).reshape(shape)
    found = keypoints.extract(strip)
    assert len(found) == 0 if min(shape) < 32 else len(found) <= keypoints.FEATURES
    fp = dedupe.fingerprint(np.dstack([strip] * 3))
    assert fp.quality >= 0 and len(fp.stored) >= 3


def test_a_lookup_finds_keypoints_up_to_the_edges_of_a_thin_cell() -> None:
    """ORB keeps its 31 px patch border clear, most of a thin collage cell once shrunk; the
    lookup's shrunk copies are padded so their keypoints reach the edges, in the cell's pixels."""
    import cv2

    from media_pipeline import keypoints

    strip = np.ascontiguousarray(cv2.cvtColor(textured(97), cv2.COLOR_RGB2GRAY)[:, 300:420])
    strip = keypoints.keypoint_image(cv2.resize(strip, (120 * 512 // strip.shape[0], 512)))
    base = keypoints.extract(strip)
    found = keypoints.search_features(strip, base)
    extra = found.points[len(base):]
    assert len(found) > len(base) and found.thumbnail is base.thumbnail
    assert base.points[:, 0].min() >= 30 and extra[:, 0].min() < 30  # the unpadded detector stops short of the edge
    assert (extra >= -1).all() and (extra[:, 0] <= strip.shape[1] + 1).all() and (extra[:, 1] <= strip.shape[0] + 1).all()
