"""The operator console in a real browser (Debian's headless Chromium through Playwright), on the
app served over HTTP with real photos processed in the background, a failed photo and a
duplicate pair: each view shows them, a screenshot of each view at desktop and phone width goes
to var/test-artifacts/console/, and a retry from the Failures view ends with the photo ready."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from media_pipeline import reprocess, service
from media_pipeline.apikeys import hash_key
from media_pipeline.jobs import Selection
from tests import images
from tests.conftest import REPO, TESTDATA, ingest_bytes, wait_for_status
from tests.test_ui import browser, running_app  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow
ARTIFACTS = REPO / "var" / "test-artifacts" / "console"
OPERATOR_KEY = "mpk_console-0123456789abcdef"
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def photos() -> list[bytes]:
    """Four distinct photographs: real ones from the shared test data when it is there."""
    corpus = sorted((TESTDATA / "corpus-dev").glob("*.jp*g")) if TESTDATA.is_dir() else []
    if len(corpus) >= 4:
        return [path.read_bytes() for path in corpus[:4]]
    return [images.jpeg(images.scene(1200, 800, seed=s)) for s in (41, 42, 43, 44)]


def mirrored(data: bytes) -> bytes:
    picture = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return images.jpeg(np.ascontiguousarray(picture[:, ::-1]))


@pytest.fixture
def console(settings: Any) -> Iterator[tuple[str, Any, dict[str, str]]]:
    """A served app holding every state a view shows, with an operator key configured."""
    settings = settings.replace(operator_keys=f"ops:{hash_key(OPERATOR_KEY)}")
    with running_app(settings) as (url, services):
        originals = photos()
        ids = {f"photo{i}": ingest_bytes(services, data, owner="alice" if i % 2 else "bob") for i, data in enumerate(originals)}
        ids["repost"] = ingest_bytes(services, mirrored(originals[0]), owner="carol")
        truncated = originals[1][: len(originals[1]) // 3]
        ids["broken"] = ingest_bytes(services, truncated, owner="bob")
        for photo_id in ids.values():
            wait_for_status(services.catalog, photo_id)
        # Accepted, then given up on after three dead workers, as the reconciler does.
        ids["abandoned"] = ingest_bytes(services, images.jpeg(images.scene(900, 600, seed=45)), owner="dave")
        wait_for_status(services.catalog, ids["abandoned"])
        service.abandon(services, ids["abandoned"], 3)
        # A reprocess job half way: every photo enqueued, two of them done.
        job = reprocess.start_job(services, Selection(mode="all"))
        ready = [ids[f"photo{i}"] for i in range(4)]
        services.catalog.checkpoint(job.id, ready[-1], ready)
        services.catalog.set_job_status(job.id, "waiting")
        for photo_id in ready[:2]:
            reprocess.reprocess_one(services, job, photo_id)
        ids["job"] = job.id
        yield url, services, ids


def open_console(browser: Any, url: str, size: str) -> tuple[Any, list[str]]:  # noqa: F811
    page = browser.new_page(viewport=SIZES[size])
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{url}/ui#photos")
    # Keys are configured: the console asks for an operator key before it shows anything.
    page.wait_for_selector("#key-form:not(.hidden)")
    page.fill("#operator-key", OPERATOR_KEY)
    page.press("#operator-key", "Enter")
    page.wait_for_selector("#photo-grid .card")
    return page, errors


# WCAG 2's contrast ratio of each visible element's own text against the first opaque background
# behind it: under 4.5:1 is listed (the view's text is all normal size or small).
LOW_CONTRAST = """() => {
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const rgba = (css) => (css.match(/[\\d.]+/g) || []).map(Number);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    if (!el.getClientRects().length || getComputedStyle(el).visibility === "hidden") continue;
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const [hi, lo] = [luminance(rgba(getComputedStyle(el).color)), luminance(background(el))].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    if (ratio < 4.5) low.push(`${el.tagName} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}:1`);
  }
  return low;
}"""


def shoot(page: Any, view: str, size: str) -> Path:
    assert page.evaluate(LOW_CONTRAST) == [], view
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{view}-{size}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.mark.parametrize("size", list(SIZES))
def test_every_view_shows_what_an_operator_asked_sql_for(console: Any, browser: Any, size: str) -> None:  # noqa: F811
    url, services, ids = console
    page, errors = open_console(browser, url, size)

    # Recent photos: newest first, placeholders drawn, renditions loaded; filters by kind and status.
    # (the page's CSP allows no eval, so Playwright's locators wait, not wait_for_function)
    expect(page.locator("#photo-grid .card img.loaded")).to_have_count(5, timeout=20_000)
    shown = page.eval_on_selector_all("#photo-grid .card", "cards => cards.map(c => c.dataset.id)")
    assert shown == sorted(ids[k] for k in ("photo0", "photo1", "photo2", "photo3", "repost", "broken", "abandoned"))[::-1]
    assert page.evaluate("() => { const c = document.querySelector('#photo-grid canvas'); const d = c.getContext('2d')"
                         ".getImageData(0, 0, 32, 32).data; return d.some((v, i) => i % 4 !== 3 && v > 0); }")
    assert shoot(page, "photos", size).stat().st_size > 10_000
    page.select_option("#filter-kind", "duplicate")
    page.click("#filter-apply")
    expect(page.locator("#photo-grid .card")).to_have_count(2)
    assert set(page.eval_on_selector_all("#photo-grid .card", "cards => cards.map(c => c.dataset.id)")) == {ids["photo0"], ids["repost"]}
    page.select_option("#filter-kind", "")
    page.select_option("#filter-status", "failed")
    page.click("#filter-apply")
    expect(page.locator("#photo-grid .card")).to_have_count(2)

    # Clicking a photo opens its detail: renditions, crops and the focal point over the preview.
    page.click(f"#photo-grid .card[data-id='{ids['broken']}']")
    page.wait_for_selector("#status[data-status=failed]")
    page.goto(f"{url}/ui#photo/{ids['repost']}")
    page.wait_for_selector("#status[data-status=ready]")
    page.wait_for_selector("#preview-img[data-loaded=true]")
    aspects = {r.aspect for r in services.catalog.get_photo(ids["repost"]).renditions} - {"original"}
    assert page.is_visible("#focal-point") and page.locator("#crops figure").count() == len(aspects) >= 1
    assert "mirror" in page.inner_text("#duplicates") or "near duplicate" in page.inner_text("#duplicates")
    shoot(page, "photo", size)

    # Failures: grouped by code, with the message.
    page.goto(f"{url}/ui#failures")
    page.wait_for_selector("#failure-groups .group")
    groups = page.eval_on_selector_all("#failure-groups .group", "gs => gs.map(g => g.dataset.code)")
    assert sorted(groups) == ["abandoned", "corrupt_image"]
    assert "three" in page.inner_text("[data-code=abandoned]") or "attempts" in page.inner_text("[data-code=abandoned]")
    shoot(page, "failures", size)

    # Duplicates: the photo and its mirrored repost side by side, with the edit recognised.
    page.goto(f"{url}/ui#duplicates")
    page.wait_for_selector("#clusters .cluster")
    cluster = page.inner_text("#clusters .cluster")
    assert "earliest" in cluster and "mirror" in cluster
    assert page.eval_on_selector_all("#clusters .cluster .card", "cs => cs.map(c => c.dataset.id)") == [ids["photo0"], ids["repost"]]
    shoot(page, "duplicates", size)

    # Jobs: half way, with its rate and ETA.
    page.goto(f"{url}/ui#jobs")
    page.wait_for_selector(f"#job-list [data-id='{ids['job']}']")
    assert page.eval_on_selector(f"#progress-{ids['job']}", "p => [p.value, p.max]") == [2, 4]
    assert "photos/s" in page.inner_text("#job-list") and "ETA" in page.inner_text("#job-list")
    shoot(page, "jobs", size)

    # Health: readiness of each part, the counts, the two charts of the last hour.
    page.goto(f"{url}/ui#health")
    page.wait_for_selector("#health-panel[data-loaded=true]")
    text = page.inner_text("#health-panel")
    assert "storage: ok" in text and "catalog: ok" in text and "broker: ok" in text and "failed: 2" in text
    bars = page.eval_on_selector_all(".chart svg", "svgs => svgs.map(s => [...s.querySelectorAll('rect')].filter(r => +r.getAttribute('height') > 0).length)")
    assert len(bars) == 2 and bars[1] >= 1  # photos were processed in the last hour
    shoot(page, "health", size)
    # The browser logs the one 401 that asked for the key; nothing else went wrong.
    assert len([e for e in errors if "401" in e]) == 1 and [e for e in errors if "401" not in e] == []


def test_retry_from_the_failures_view_ends_ready(console: Any, browser: Any) -> None:  # noqa: F811
    url, services, ids = console
    page, errors = open_console(browser, url, "desktop")
    page.goto(f"{url}/ui#failures")
    page.wait_for_selector("[data-code=abandoned] button.retry")
    # Keyboard only: the retry button is reached and pressed without a mouse.
    page.focus(f"tr[data-id='{ids['abandoned']}'] button.retry")
    assert page.evaluate("() => document.activeElement.matches(':focus-visible') || document.activeElement.tagName === 'BUTTON'")
    sent = services.queue.sent
    page.keyboard.press("Enter")
    page.wait_for_selector(f"tr[data-id='{ids['abandoned']}'] .retry-state[data-status=ready]", timeout=60_000)
    assert services.queue.sent == sent + 1  # re-enqueued once, through the queue
    assert services.catalog.get_photo(ids["abandoned"]).status.value == "ready"
    # A photo that is not failed any more is refused, and says why.
    answer = page.evaluate(f"async () => (await api('/v1/photos/{ids['abandoned']}/retry', {{method: 'POST'}}).catch(e => e)).code")
    assert answer == "not_failed"
    assert [e for e in errors if "409" not in e and "401" not in e] == []


def test_the_console_works_from_the_keyboard_with_a_visible_focus(console: Any, browser: Any) -> None:  # noqa: F811
    url, _, ids = console
    page, errors = open_console(browser, url, "phone")
    page.reload()  # the key stays for the tab; focus starts from the top of the page again
    page.wait_for_selector("#photo-grid .card")
    reached = []
    for _ in range(7):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => { const e = document.activeElement; const s = getComputedStyle(e);"
                                     " return [e.textContent.trim().slice(0, 20) || e.id, s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2]; }"))
    names = [name for name, _ in reached]
    assert names[:6] == ["Skip to the content", "Recent photos", "Failures", "Duplicates", "Jobs", "Health"], names
    assert all(visible for _, visible in reached), reached  # each focused control shows its focus ring
    page.keyboard.press("Shift+Tab")  # back on Health
    page.keyboard.press("Enter")
    page.wait_for_selector("#health-panel[data-loaded=true]")
    assert page.get_attribute("nav a[href='#health']", "aria-current") == "page"
    # Every form control has a label a screen reader reads.
    unlabelled = page.evaluate("() => [...document.querySelectorAll('input, select')].filter(e => !e.labels || !e.labels.length)"
                               ".map(e => e.id)")
    assert unlabelled == []
    assert [e for e in errors if "401" not in e] == []
