"""The nginx front (`media-pipeline nginx-config`), run for real: nginx answers hits and
revalidations without the app, the app answers everything else, deleted photos are gone."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from PIL import Image, ImageSequence

from media_pipeline import cli, front, nginx, service, signing
from tests import images
from tests.conftest import REPO
from tests.front import AppServer, NginxFront, PurgeHook

SIGNING_KEY = "front-signing-key-0123456789"

Calls = list[str]


def counting(app: Any, calls: Calls) -> Callable[..., Any]:
    """The WSGI app, recording every request that reaches Python."""
    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        calls.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return app(environ, start_response)
    return wsgi


@pytest.fixture
def through_front(services: Any, tmp_path: Path) -> Iterator[tuple[Any, AppServer, Calls, NginxFront]]:
    from media_pipeline.web import create_app

    calls: Calls = []
    server = AppServer(counting(create_app(services.settings, services), calls))
    try:
        proxy = NginxFront(services.settings, server.port, tmp_path / "front")
    except BaseException:
        server.stop()
        raise
    yield proxy.client, server, calls, proxy
    proxy.stop()
    server.stop()


def ready_photo(client: Any, services: Any, owner: str | None = None) -> dict[str, Any]:
    headers = {"X-Owner": owner} if owner else {}
    photo_id = client.post("/v1/photos", data=images.jpeg(images.scene(900, 600, seed=3)), headers=headers).get_json()["id"]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    return client.get(f"/v1/photos/{photo_id}").get_json()


def test_nginx_config_prints_the_local_shape_and_nginx_accepts_it(settings: Any, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nginx-config", "--data-dir", str(settings.data_dir), "--listen", "127.0.0.1:9001",
                     "--upstream", "http://127.0.0.1:9000"]) == 0
    text = capsys.readouterr().out
    objects = (settings.effective_storage_dir / "objects").resolve()
    assert "listen 127.0.0.1:9001;" in text and "server 127.0.0.1:9000;" in text
    assert f"alias {objects}/renditions/$photo/$spec/$name;" in text and "error_page 404 = @app;" in text
    assert "proxy_cache " not in text
    _nginx_accepts(text, settings, tmp_path)


def test_nginx_config_for_s3_storage_is_the_cache_shape(settings: Any, tmp_path: Path) -> None:
    s3 = settings.replace(storage_backend="s3", s3_bucket="media")
    text = front.render(nginx.front_for(s3, listen="127.0.0.1:9001", upstream="127.0.0.1:9000"))
    for directive in ("proxy_cache media_pipeline;", "proxy_cache_lock on;", "proxy_cache_background_update on;",
                      "proxy_cache_revalidate on;", "proxy_cache_use_stale updating error timeout",
                      "add_header X-Cache-Status $upstream_cache_status always;",
                      "tcp_nopush off;"):  # with it on, hits stalled on Nagle and delayed ACKs (docs/performance.md)
        assert directive in text
    assert "renditions/$photo" not in text
    _nginx_accepts(text, s3, tmp_path)


def test_nginx_config_refuses_a_bad_upstream(settings: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nginx-config", "--data-dir", str(settings.data_dir), "--upstream", "nowhere"]) == 2
    assert "upstream" in capsys.readouterr().err


def _nginx_accepts(text: str, settings: Any, tmp_path: Path) -> None:
    try:
        binary = nginx.find_nginx()
    except nginx.NginxMissing:
        from tests.conftest import require

        require(False, "nginx")
        return
    config = nginx.front_for(settings, runtime_dir=tmp_path / "t", run_as_me=True)
    nginx.prepare(config)  # the folders the text names
    conf = tmp_path / "t" / "printed.conf"
    conf.write_text(text.replace(str(settings.front_dir.resolve()), str(config.runtime_dir)))
    run = subprocess.run([binary, "-t", "-p", str(conf.parent), "-c", str(conf), "-e", "stderr"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_hits_revalidations_and_heads_never_reach_the_app(through_front: Any, services: Any) -> None:
    client, _, calls, _ = through_front
    photo = ready_photo(client, services)
    url = next(r["url"] for r in photo["renditions"] if r["width"] == 640 and r["format"] == "avif")
    stored = services.storage.get("renditions/" + url.removeprefix("/i/"))
    calls.clear()
    first = client.get(url)
    assert first.status_code == 200 and first.data == stored and first.headers["Content-Type"] == "image/avif"
    assert first.headers["Surrogate-Key"].split() == [f"photo-{photo['id']}"] == first.headers["Cache-Tag"].split()
    assert client.head(url).headers["Content-Length"] == str(len(stored))
    assert client.get(url, headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert calls == []
    # The app's answer for the same URL (a Range request is the app's) has nginx's validators, so a
    # client that got the file from either revalidates with either.
    from_app = client.get(url, headers={"Range": "bytes=0-9"})
    assert calls == [f"GET {url}"] and from_app.status_code == 206
    assert (from_app.headers["ETag"], from_app.headers["Last-Modified"]) == (first.headers["ETag"], first.headers["Last-Modified"])
    calls.clear()
    assert client.get(f"/i/{photo['id']}/640.avif").data == stored  # a stable URL is the app's
    assert calls == [f"GET /i/{photo['id']}/640.avif"]


def test_hits_are_served_with_the_app_down(through_front: Any, services: Any) -> None:
    client, server, _, _ = through_front
    photo = ready_photo(client, services)
    url = photo["renditions"][0]["url"]
    server.stop()
    assert client.get(url).status_code == 200
    assert client.get(f"/i/{photo['id']}/640.avif").status_code == 502  # what needs the catalog is gone with it


def test_a_deleted_photo_is_404_through_the_front_within_a_second(through_front: Any, services: Any) -> None:
    """nginx keeps a file's descriptor open for DELETED_SERVED_AT_MOST_SECONDS: past that, the 404."""
    client, _, _, _ = through_front
    photo = ready_photo(client, services)
    urls = [r["url"] for r in photo["renditions"]]
    assert all(client.get(url).status_code == 200 for url in urls)
    assert client.delete(f"/v1/photos/{photo['id']}").status_code == 204
    time.sleep(front.DELETED_SERVED_AT_MOST_SECONDS + 0.1)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 404 and response.headers["Cache-Control"] == "no-store", url


@pytest.mark.parametrize("name, env, args", [
    ("local.conf", {"MP_DATA_DIR": "/var/lib/media-pipeline", "MP_PUBLIC_BASE_URL": "https://cdn.example.com"}, ["--listen", "80"]),
    ("s3.conf", {"MP_STORAGE_BACKEND": "s3", "MP_S3_BUCKET": "media", "MP_DATA_DIR": "/var/cache/nginx/mp"},
     ["--listen", "8081", "--upstream", "http://api:8080"]),
])
def test_the_deploy_examples_are_what_the_command_prints(name: str, env: dict[str, str], args: list[str], monkeypatch: Any,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for key in [k for k in os.environ if k.startswith("MP_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["nginx-config", *args]) == 0
    assert (REPO / "deploy" / "nginx" / name).read_text().endswith("\n" + capsys.readouterr().out)


@pytest.fixture
def s3_front(s3_settings: Any, queue: Any) -> Iterator[tuple[Any, Any, Calls, PurgeHook]]:
    """The cache shape in front of the app on S3 storage, with a purge hook on loopback."""
    from media_pipeline.service import build_services
    from media_pipeline.web import create_app

    hook = PurgeHook()
    settings = s3_settings.replace(purge_url=hook.url, purge_secret="purge-secret-0123456789", signing_keys=SIGNING_KEY)
    services = build_services(settings, queue=queue)
    calls: Calls = []
    server = AppServer(counting(create_app(settings, services), calls))
    try:
        proxy = NginxFront(settings, server.port)
    except BaseException:
        server.stop()
        hook.stop()
        raise
    yield proxy.client, services, calls, hook
    proxy.stop()
    server.stop()
    hook.stop()


def test_the_s3_front_caches_and_a_deleted_photo_leaves_its_cache_and_the_cdn(s3_front: Any) -> None:
    """The cache shape, for real: misses then hits, negotiation cached per class, revalidations
    answered by nginx; then a DELETE through the front: every URL is 404 at once (its entries are
    gone from nginx's cache) and the purge hook receives the photo's tags."""
    client, services, calls, hook = s3_front
    photo = ready_photo(client, services, owner="ann")
    pid = photo["id"]
    immutable = next(r["url"] for r in photo["renditions"] if r["width"] == 640 and r["format"] == "avif")
    asks = [(immutable, {}), (f"/i/{pid}/640.jpg", {}), (f"/i/{pid}/640", {"Accept": "image/avif,image/webp,*/*"}),
            (f"/i/{pid}/640", {"Accept": "image/webp,*/*"}), (f"/i/{pid}/640", {"Accept": "*/*"})]
    first = [client.get(url, headers=h) for url, h in asks]
    assert [r.headers["X-Cache-Status"] for r in first] == ["MISS"] * 5
    # The default preset makes AVIF and JPEG at ingest: a WebP browser gets JPEG, cached for its class.
    assert [r.headers["Content-Type"] for r in first[2:]] == ["image/avif", "image/jpeg", "image/jpeg"]
    calls.clear()
    again = [client.get(url, headers=h) for url, h in asks]
    again.append(client.get(f"/i/{pid}/640", headers={"Accept": "image/avif,*/*;q=0.8"}))  # another browser, same class
    # The immutable URL's hits come from the mirror, with nginx's validator, which the app's first
    # answer already carried: a client holding it gets 304s from nginx.
    again.append(client.get(immutable, headers={"If-None-Match": first[0].headers["ETag"]}))
    again.append(client.get(immutable, headers={"If-Modified-Since": first[0].headers["Last-Modified"]}))
    assert [r.headers["X-Cache-Status"] for r in again] == ["HIT"] * 8 and calls == []
    assert [r.data for r in again[:5]] == [r.data for r in first] and again[5].data == first[2].data
    assert again[0].headers["ETag"] == first[0].headers["ETag"] and again[0].headers["Last-Modified"] == first[0].headers["Last-Modified"]
    assert again[6].status_code == 304 and again[7].status_code == 304
    assert again[0].headers["Cache-Control"] == first[0].headers["Cache-Control"] == front.IMMUTABLE
    assert again[0].headers["Content-Type"] == "image/avif" and again[0].headers["X-Content-Type-Options"] == "nosniff"
    assert again[0].headers["Surrogate-Key"] == f"photo-{pid}"  # the mirror knows the photo from the URL, not its owner
    assert first[0].headers["Surrogate-Key"] == f"photo-{pid} owner-ann"

    assert client.delete(f"/v1/photos/{pid}").status_code == 204
    time.sleep(front.DELETED_SERVED_AT_MOST_SECONDS + 0.1)  # the mirror's descriptor cache
    for url, h in asks:
        gone = client.get(url, headers=h)
        assert gone.status_code == 404 and gone.headers["Cache-Control"] == "no-store", url
    assert hook.arrived.wait(30)
    assert json.loads(hook.received[0][1])["tags"] == [f"photo-{pid}", "owner-ann"]


def test_an_animated_photos_negotiated_and_poster_urls_are_cached_per_accept_class(s3_front: Any) -> None:
    """Animated AVIF, animated WebP and the still JPEG from one negotiated URL, and the poster's
    negotiated URL (and a crop's), each cached once per Accept class, not once for every client."""
    from tests.test_animation import DELAYS, gif, moving_frames

    client, services, calls, _ = s3_front
    pid = client.post("/v1/photos", data=gif(moving_frames(), DELAYS)).get_json()["id"]
    assert service.process_photo(services, pid) is service.Outcome.DONE
    classes = [("image/avif,image/webp,*/*", "image/avif"), ("image/webp,*/*", "image/webp"), ("*/*", "image/jpeg")]
    for path in (f"/i/{pid}/320", f"/i/{pid}/poster/320", f"/i/{pid}/1x1/320"):
        for _ in range(2):  # a miss, then a hit of the same class
            for accept, expected in classes:
                got = client.get(path, headers={"Accept": accept})
                wanted = "image/jpeg" if expected == "image/webp" and path != f"/i/{pid}/320" else expected  # stills: no WebP eager
                assert got.status_code == 200 and got.headers["Content-Type"] == wanted, (path, accept)
    frames = [len(list(ImageSequence.Iterator(Image.open(io.BytesIO(client.get(f"/i/{pid}/320", headers={"Accept": a}).data)))))
              for a, _ in classes]
    assert frames == [len(DELAYS), len(DELAYS), 1]
    assert client.delete(f"/v1/photos/{pid}").status_code == 204
    assert client.get(f"/i/{pid}/poster/320", headers={"Accept": "*/*"}).status_code == 404  # purged from the cache


def test_concurrent_first_requests_through_the_s3_front_reach_the_app_once(s3_front: Any) -> None:
    client, services, calls, _ = s3_front
    pid = ready_photo(client, services)["id"]
    path = signing.signed_path(f"/i/{pid}/480.webp", SIGNING_KEY.encode())
    calls.clear()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.get(path), range(6)))
    assert {(r.status_code, r.headers["Content-Type"]) for r in answers} == {(200, "image/webp")}
    assert len({r.data for r in answers}) == 1
    assert calls == [f"GET /i/{pid}/480.webp"]  # proxy_cache_lock: one request rendered it, the others waited


def test_hinted_negotiated_requests_pass_the_s3_front_uncached(s3_front: Any) -> None:
    """Client hints change the width a negotiated URL answers with: nginx sends such requests to
    the app and keeps none of their answers, while unhinted ones stay cached per Accept class."""
    client, services, calls, _ = s3_front
    pid = ready_photo(client, services)["id"]
    plain = [client.get(f"/i/{pid}/320", headers={"Accept": "*/*"}) for _ in range(2)]
    assert [r.headers["X-Cache-Status"] for r in plain] == ["MISS", "HIT"]
    calls.clear()
    for _ in range(2):
        hinted = client.get(f"/i/{pid}/320", headers={"Accept": "*/*", "Sec-CH-DPR": "2"})
        assert hinted.headers["X-Cache-Status"] == "BYPASS" and Image.open(io.BytesIO(hinted.data)).width == 640
        assert "Sec-CH-DPR" in hinted.headers["Vary"] and hinted.headers["Accept-CH"]
    assert calls == [f"GET /i/{pid}/320"] * 2
    after = client.get(f"/i/{pid}/320", headers={"Accept": "*/*"})  # the cached 320 was not replaced by a hinted answer
    assert after.headers["X-Cache-Status"] == "HIT" and after.data == plain[0].data


def test_the_s3_fronts_mirror_keeps_the_apps_whole_200s_and_nothing_else(s3_front: Any) -> None:
    """An immutable URL's first GET is the app's, and its bytes are then a file of the mirror that
    nginx sends; a HEAD, a Range request, a conditional request and a 404 leave nothing behind."""
    client, services, calls, _ = s3_front
    photo = ready_photo(client, services)
    pid = photo["id"]
    mirror = nginx.front_for(services.settings).mirror_dir
    assert mirror is not None
    rendition = next(r for r in photo["renditions"] if r["width"] == 320 and r["format"] == "jpeg")
    url = rendition["url"]
    copy = mirror / url.lstrip("/")
    unknown = url.replace(pid, "0" * 26)
    calls.clear()
    head = client.open(url, "HEAD")
    part = client.get(url, headers={"Range": "bytes=0-99"})
    conditional = client.get(url, headers={"If-None-Match": '"not-it"', "Range": ""})
    missing = client.get(unknown)
    assert head.status_code == 200 and part.status_code == 206 and len(part.data) == 100
    assert missing.status_code == 404 and missing.headers["Cache-Control"] == "no-store"
    assert not (mirror / unknown.lstrip("/")).exists()
    whole = client.get(url)
    assert whole.status_code == 200 and whole.headers["X-Cache-Status"] in ("MISS", "HIT")
    assert copy.read_bytes() == whole.data == conditional.data
    assert Image.open(io.BytesIO(whole.data)).size == (320, rendition["height"])
    calls.clear()
    hit = client.get(url)
    assert hit.headers["X-Cache-Status"] == "HIT" and hit.data == whole.data and calls == []
    assert client.open(url, "HEAD").headers["Content-Length"] == str(len(whole.data)) and calls == []


def test_cleanup_prunes_mirror_copies_nobody_read_for_a_week(tmp_path: Path) -> None:
    config = front.Front("127.0.0.1:1", "http://127.0.0.1:2", "cache", tmp_path, cache_dir=tmp_path / "cache",
                         mirror_dir=tmp_path / "mirror")
    photo = "0" * 26
    old, fresh = (config.mirror_dir / "i" / photo / spec / "320.jpg" for spec in ("aaaa", "bbbb"))  # type: ignore[operator]
    for path in (old, fresh):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"jpeg")
    now = time.time()
    week_ago = now - front.MIRROR_UNREAD_DAYS * 86400 - 60
    os.utime(old, (week_ago, week_ago))
    assert nginx.prune_mirror(config, now) == 1
    assert not old.exists() and not old.parent.exists() and fresh.read_bytes() == b"jpeg"
    assert nginx.purge_cache(config, [f"/i/{photo}/bbbb/320.jpg", f"/i/{photo}/320.jpg"]) == 1 and not fresh.exists()
