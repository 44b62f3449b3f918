"""What a browser shows of the wide-colour renditions: Chromium decodes each format, draws it on a
Display P3 canvas, and reads the numbers back. A rendition whose profile the browser honours gives
back the source's P3 numbers; one whose profile it ignored (or the clipped sRGB one) gives others.
This is how docs/pipeline.md knows which tag Chromium honours in AVIF (the ICC profile)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from media_pipeline import pipeline
from tests.test_colour import SATURATED, p3_patches, preset_for
from tests.test_ui import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = pytest.mark.slow
DRAW = """async ([type, data]) => {
    const img = new Image();
    img.src = `data:${type};base64,${data}`;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext('2d', {colorSpace: 'display-p3'});
    ctx.drawImage(img, 0, 0);
    return [53, 160, 267].map(x => Array.from(ctx.getImageData(Math.round(x * img.width / 320), Math.round(img.height / 2), 1, 1,
                                                                {colorSpace: 'display-p3'}).data.slice(0, 3)));
}"""


@pytest.mark.parametrize("gamut", ["p3", "srgb"])
def test_chromium_shows_the_p3_numbers_of_every_format(gamut: str, browser: Any) -> None:  # noqa: F811
    page = browser.new_page()
    page.set_content("<html><body></body></html>")
    expected = np.array(list(SATURATED.values()), float)
    for rendition in pipeline.process(p3_patches(), preset_for(gamut), 50_000_000).renditions:
        shown = np.array(page.evaluate(DRAW, [rendition.content_type, base64.b64encode(rendition.data).decode()]), float)
        off = np.abs(shown - expected).max(axis=1)  # per patch: red, green, inside sRGB
        if gamut == "p3":
            assert off.max() <= 4, f"{rendition.format}: Chromium shows {shown.tolist()}"
        else:  # clipped: P3's red and green are gone, the colour inside sRGB stays
            assert off[0] > 20 and off[1] > 20 and off[2] <= 4, f"{rendition.format}: {shown.tolist()}"
    page.close()
