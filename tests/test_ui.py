"""The /ui operator page in a real browser: Debian's headless Chromium driven by Playwright
against the app served over HTTP on loopback, with photos processed in the background."""

from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from media_pipeline import service
from tests import images
from tests.conftest import REPO, free_port, require

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("MP_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = REPO / "var" / "test-artifacts" / "ui.png"


class BackgroundQueue:
    """Processes each queued photo (and reprocess batch) on a thread, like a worker would, so the
    page sees it progress."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.services: Any = None
        self.sent = 0

    def enqueue_process(self, photo_id: str) -> None:
        self.sent += 1
        self.pool.submit(service.process_photo, self.services, photo_id)

    def enqueue_reprocess(self, job_id: str, photo_ids: list[str]) -> None:
        from media_pipeline import reprocess

        job = self.services.catalog.get_job(job_id)
        for photo_id in photo_ids:
            self.pool.submit(reprocess.reprocess_one, self.services, job, photo_id)

    def check(self) -> None:
        return None

    def depths(self) -> dict[str, int]:
        return {"photos": self.pool._work_queue.qsize()}


@contextmanager
def running_app(settings: Any) -> Iterator[tuple[str, Any]]:
    """The app over HTTP on loopback with a BackgroundQueue: (its base URL, its services)."""
    from werkzeug.serving import make_server

    from media_pipeline.web import create_app

    queue = BackgroundQueue()
    services = service.build_services(settings, queue=queue)
    queue.services = services
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(settings, services), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", services
    finally:
        server.shutdown()
        queue.pool.shutdown(wait=True)


@pytest.fixture
def live_server(settings: Any) -> Iterator[str]:
    with running_app(settings) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


def test_upload_and_inspect_a_photo(live_server: str, browser: Any, tmp_path: Path) -> None:
    photo = tmp_path / "holiday.jpg"
    photo.write_bytes(images.jpeg(images.scene(1500, 1000, seed=31), exif=images.exif_bytes(make="Fujifilm", model="X-T5")))
    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{live_server}/ui")
    page.set_input_files("#file", str(photo))
    page.fill("#owner", "operator")
    page.click("#upload")
    page.wait_for_selector("#status[data-status=ready]", timeout=60_000)
    page.wait_for_selector("#preview-img[data-loaded=true]", timeout=20_000)

    assert page.eval_on_selector("#preview-img", "img => img.naturalWidth") >= 320
    served = page.eval_on_selector("#preview-img", "img => img.currentSrc")
    assert "/i/" in served and served.endswith(".avif")  # Chromium takes the AVIF source of the srcset
    aspects = [cell.split("\t")[0] for cell in page.locator("#renditions tbody tr").all_inner_texts()]
    assert aspects.count("original") == 10  # 5 widths x AVIF and JPEG (WebP is made on demand)
    assert "1:1" in aspects  # and the preset's crops (1:1 grid tiles)
    facts = page.inner_text("#metadata")
    assert "focal point (" in facts
    assert "Fujifilm X-T5" in facts and "2024-05-06T07:08:09+02:00" in facts and "operator" in facts
    # The placeholder canvas holds the BlurHash, not a blank.
    spread = page.evaluate(
        "() => { const c = document.getElementById('placeholder'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let lo = 255, hi = 0; for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); } return hi - lo; }"
    )
    assert spread > 20
    assert "reported" in page.inner_text("#duplicates") or "No duplicates" in page.inner_text("#duplicates")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert errors == []

    # Reloading with the id in the address shows the same photo; a bad upload shows the API's error.
    page.reload()
    page.wait_for_selector("#status[data-status=ready]", timeout=20_000)
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    page.set_input_files("#file", str(bad))
    page.click("#upload")
    page.wait_for_selector("#status[data-status=error]", timeout=20_000)
    assert "415 unsupported_format" in page.inner_text("#status")


def test_an_animated_gif_shows_its_frames_and_its_animated_renditions(live_server: str, browser: Any, tmp_path: Path) -> None:
    from tests.test_animation import DELAYS, gif, moving_frames

    animated = tmp_path / "moving.gif"
    animated.write_bytes(gif(moving_frames(), DELAYS))
    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server}/ui")
    page.set_input_files("#file", str(animated))
    page.click("#upload")
    page.wait_for_selector("#status[data-status=ready]", timeout=60_000)
    page.wait_for_selector("#preview-img[data-loaded=true]", timeout=20_000)
    assert f"{len(DELAYS)} frames, {sum(DELAYS)} ms: animated renditions" in page.inner_text("#metadata")
    rows = [cell.split("\t") for cell in page.locator("#renditions tbody tr").all_inner_texts()]
    assert {(r[3], r[4]) for r in rows if r[0] == "original"} >= {("avif", "animated"), ("webp", "animated"), ("jpeg", "still")}
    assert page.eval_on_selector("#preview-img", "img => img.currentSrc").endswith(".avif")  # the animation's srcset
    assert errors == []
