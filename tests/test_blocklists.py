"""MP_BLOCKLISTS: uploads that match a list of PDQ hashes end failed (blocked_content) with
nothing public, and the search endpoint says which list an image would hit."""

from __future__ import annotations

import http.server
import random
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from bench import edits
from config.settings import ConfigError, Settings
from media_pipeline import blocklists, moderation, service
from media_pipeline.models import Hashes
from media_pipeline.service import Outcome, build_services
from media_pipeline.web import create_app
from tests import images
from tests.conftest import ingest_bytes

LISTED = images.natural(900, 600, seed=61)


def listed_hash(settings: Settings, queue: Any) -> str:
    """The PDQ hash the pipeline computes for LISTED, from a photo that was let through."""
    plain = build_services(settings, queue=queue)
    photo_id = ingest_bytes(plain, edits.jpeg_bytes(LISTED))
    assert service.process_photo(plain, photo_id) is Outcome.DONE
    hashes = plain.catalog.get_photo(photo_id).hashes
    assert hashes is not None and hashes.pdq is not None
    plain.catalog.close()
    return hashes.pdq


@pytest.fixture
def guarded(settings: Settings, queue: Any, tmp_path: Path) -> Any:
    listing = tmp_path / "known.pdq"
    listing.write_text(f"# a list of known images\n\n{listed_hash(settings, queue)},100,case-17\n" + "0" * 64 + "\n")
    return build_services(settings.replace(blocklists=f"known@40={listing}", data_dir=tmp_path / "guarded"), queue=queue)


def test_a_listed_image_ends_blocked_with_nothing_public(guarded: Any) -> None:
    repost = ingest_bytes(guarded, edits.jpeg_bytes(edits.resize(LISTED, random.Random(0)), 70))
    assert service.process_photo(guarded, repost) is Outcome.FAILED
    photo = guarded.catalog.get_photo(repost)
    assert (photo.status.value, photo.error_code) == ("failed", "blocked_content")
    assert "known" in photo.error_message
    assert guarded.storage.exists(photo.original_key)  # kept, private, for review
    assert list(guarded.storage.list(f"renditions/{repost}/")) == []
    client = create_app(guarded.settings, services=guarded).test_client()
    body = client.get(f"/v1/photos/{repost}").get_json()
    assert body["status"] == "failed" and body["error"]["code"] == "blocked_content"
    assert client.get(f"/i/{repost}/640").status_code == 404
    # Not indexed either: a later upload of it is not a "duplicate" of a blocked photo.
    assert guarded.hash_index.count() == 0


def test_other_images_pass_and_search_reports_hits(guarded: Any) -> None:
    other = ingest_bytes(guarded, edits.jpeg_bytes(images.natural(900, 600, seed=62)))
    assert service.process_photo(guarded, other) is Outcome.DONE
    client = create_app(guarded.settings, services=guarded).test_client()
    hit = client.post("/v1/duplicates/search", data=edits.jpeg_bytes(LISTED, 60), content_type="image/jpeg").get_json()
    assert hit["blocklists"] and hit["blocklists"][0]["list"] == "known" and hit["blocklists"][0]["distance"] <= 40
    miss = client.post("/v1/duplicates/search", data=edits.jpeg_bytes(images.natural(900, 600, seed=63)), content_type="image/jpeg")
    assert miss.get_json()["blocklists"] == []


@pytest.fixture
def list_server(tmp_path: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Quiet(*a, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_list_is_read_from_a_url(settings: Settings, queue: Any, tmp_path: Path, list_server: str) -> None:
    (tmp_path / "remote.txt").write_text("f" * 64 + "\n" + "a" * 64 + " 90\n")
    loaded = moderation.load_blocklists(f"remote@10={list_server}/remote.txt")
    assert [(hash_list.name, hash_list.distance, len(hash_list)) for hash_list in loaded.lists] == [("remote", 10, 2)]
    with pytest.raises(ConfigError, match="could not be read"):
        moderation.load_blocklists(f"gone={list_server}/missing.txt")


def test_bad_lists_and_settings_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("f" * 64 + "\nnot a hash\n")
    with pytest.raises(ConfigError, match="line 2"):
        moderation.load_blocklists(f"bad={bad}")
    with pytest.raises(ConfigError, match="MP_BLOCKLISTS"):
        Settings.from_env({"MP_BLOCKLISTS": "no-equals-sign"})
    with pytest.raises(ConfigError, match="unique"):
        Settings.from_env({"MP_BLOCKLISTS": f"a={bad},a={bad}"})
    with pytest.raises(ConfigError, match="could not be read"):
        moderation.load_blocklists(f"missing={tmp_path / 'nowhere.txt'}")


def test_matching_needs_quality_and_distance() -> None:
    listed = "0f" * 32
    lists = blocklists.Blocklists((blocklists.parse_list(blocklists.Source("l", 8, "-"), listed + "\n"),))
    near = f"{int(listed, 16) ^ 0b1111111:064x}"  # 7 bits off
    far = f"{int(listed, 16) ^ ((1 << 9) - 1):064x}"  # 9 bits off
    assert lists.match(Hashes("", "", near, 80)) == [blocklists.Hit("l", 7)]
    assert lists.match(Hashes("", "", far, 80)) == []
    assert lists.match(Hashes("", "", near, 20)) == []  # a flat picture's hash matches too much
    assert lists.match(Hashes("", "", None, None)) == []
    assert np.array_equal(lists.lists[0].words[0], np.array([0x0F0F0F0F0F0F0F0F] * 4, dtype=np.uint64))
