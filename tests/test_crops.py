"""Focal point, subject box and crop windows: the pure core behind crop renditions."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from media_pipeline import crops, focus
from media_pipeline.crops import CropVariant, crop_height, crop_window
from media_pipeline.framing import Box, Focus, Point, parse_aspect
from tests import images


def _focus(px: float, py: float, box: tuple[float, float, float, float] | None = None, source: str = "saliency") -> Focus:
    subject = Box(*box) if box else Box(px, py, 0.0, 0.0)
    return Focus(focal_point=Point(px, py), subject=subject, source=source)


# --------------------------------------------------------------------------- the window
@pytest.mark.parametrize("picture,aspect,size", [
    ((1600, 1200), (1, 1), (1200, 1200)),
    ((1600, 1200), (4, 5), (960, 1200)),
    ((1600, 1200), (16, 9), (1600, 900)),
    ((1200, 1600), (9, 16), (900, 1600)),
    ((1200, 1600), (16, 9), (1200, 675)),
    ((1000, 1000), (1, 1), (1000, 1000)),
])
def test_the_window_is_the_largest_of_its_aspect(picture: tuple[int, int], aspect: tuple[int, int], size: tuple[int, int]) -> None:
    window = crop_window(picture, aspect, _focus(0.5, 0.5))
    assert (window.width, window.height) == size
    assert 0 <= window.left <= picture[0] - window.width and 0 <= window.top <= picture[1] - window.height


def test_a_centred_focal_point_gives_a_centred_window() -> None:
    window = crop_window((1600, 1200), (1, 1), _focus(0.5, 0.5))
    assert (window.left, window.top) == (200, 0)


def test_the_window_centres_on_the_focal_point_as_far_as_the_edges_allow() -> None:
    assert crop_window((1600, 1200), (1, 1), _focus(0.6, 0.5)).left == 360  # 960 - 600
    assert crop_window((1600, 1200), (1, 1), _focus(0.05, 0.5)).left == 0  # the left edge stops it
    assert crop_window((1600, 1200), (1, 1), _focus(0.99, 0.5)).left == 400  # the right edge


def test_a_subject_that_fits_is_kept_whole_even_off_the_focal_point() -> None:
    # Focal point at the left, subject box stretching right: the window moves right to hold the box.
    focus_ = _focus(0.3, 0.5, (0.25, 0.4, 0.45, 0.2))
    window = crop_window((1600, 1200), (4, 5), focus_)  # 960 wide
    assert window.left <= 0.25 * 1600 and window.left + window.width >= 0.70 * 1600


def test_a_subject_larger_than_the_window_keeps_the_focal_point_and_stays_inside_the_subject() -> None:
    focus_ = _focus(0.8, 0.5, (0.1, 0.0, 0.85, 1.0))  # 1360 px of subject, window 1200
    window = crop_window((1600, 1200), (1, 1), focus_)
    assert window.left <= 0.8 * 1600 <= window.left + window.width
    assert window.left >= 0.1 * 1600 and window.left + window.width <= 0.95 * 1600


def test_a_user_focal_point_is_centred_whatever_the_subject() -> None:
    subject = (0.0, 0.0, 0.3, 1.0)
    computed = crop_window((1600, 1200), (1, 1), _focus(0.15, 0.5, subject))
    user = crop_window((1600, 1200), (1, 1), _focus(0.6, 0.5, subject, source="user"))
    assert computed.left == 0
    assert user.left == round(0.6 * 1600 - 600)  # the subject at the left does not pull it


def test_faces_that_do_not_all_fit_are_never_cut_in_half() -> None:
    # Two people at the sides of a 3:2 picture: a 4:5 window cannot hold both faces, so it holds one whole.
    faces = (Box(0.23, 0.12, 0.11, 0.16), Box(0.76, 0.14, 0.09, 0.14))
    union = Box(0.23, 0.12, 0.62, 0.18)
    found = Focus(focal_point=union.centre, subject=union, source="faces", faces=faces)
    window = crop_window((1500, 1000), (4, 5), found)
    for face in faces:
        x0, x1 = face.x * 1500, (face.x + face.w) * 1500
        assert x1 <= window.left or x0 >= window.left + window.width or (window.left <= x0 and x1 <= window.left + window.width)
    assert any(window.left <= f.x * 1500 and (f.x + f.w) * 1500 <= window.left + window.width for f in faces)


@pytest.mark.parametrize("picture,aspect,width", [
    ((4608, 1976), (4, 5), 1080), ((4032, 3024), (9, 16), 1080), ((3024, 4032), (4, 5), 1080),
    ((4000, 1600), (1, 1), 1440), ((1200, 1800), (16, 9), 1080), ((4000, 1600), (4, 5), 1281),
])
def test_the_level_an_on_demand_crop_needs_is_the_narrowest_whose_window_holds_it(
        picture: tuple[int, int], aspect: tuple[int, int], width: int) -> None:
    level = crops.level_width_holding(picture, aspect, width)

    def window_width(level_width: int) -> int:
        return crops.window_size((level_width, max(1, round(picture[1] * level_width / picture[0]))), aspect)[0]

    if window_width(picture[0]) < width:  # not even the picture holds it: its own width, the most there is
        assert level == picture[0]
    else:
        assert window_width(level) >= width and window_width(level - 1) < width


def test_a_close_up_face_taller_than_the_window_is_kept_not_left_out() -> None:
    # A portrait close-up: the face is 0.53 of the height, a 16:9 band of the picture 0.38. The band
    # cannot hold it, so it shows as much of the face as fits around the focal point (before, it
    # moved below the chin so as not to cut the face, and showed the shirt).
    face = Box(0.18, 0.07, 0.60, 0.53)
    found = Focus(focal_point=face.centre, subject=Box(0.0, 0.0, 1.0, 0.94), source="faces", faces=(face,))
    window = crop_window((321, 481), (16, 9), found)
    assert window.height == 181
    assert face.y * 481 <= window.top and window.top + window.height <= (face.y + face.h) * 481
    assert window.top <= face.centre.y * 481 <= window.top + window.height


@pytest.mark.parametrize("width,aspect,height", [(1080, (4, 5), 1350), (640, (1, 1), 640), (320, (9, 16), 569), (1080, (16, 9), 608)])
def test_exact_crop_sizes(width: int, aspect: tuple[int, int], height: int) -> None:
    assert crop_height(width, aspect) == height


def test_widths_the_window_cannot_hold_are_not_planned() -> None:
    # A 1080 x 720 level: the 1:1 window is 720 wide, so 1080 would be an upscale.
    variants = crops.plan(("1:1", "16:9"), (1080, 640, 320), (1080, 720), _focus(0.5, 0.5))
    assert variants == (
        CropVariant("1:1", 640, 640), CropVariant("1:1", 320, 320),
        CropVariant("16:9", 1080, 608), CropVariant("16:9", 640, 360), CropVariant("16:9", 320, 180),
    )


def test_the_crop_spec_changes_with_the_focal_point_and_the_aspect() -> None:
    a = crops.crop_spec("abc", "1:1", _focus(0.5, 0.5))
    assert a == crops.crop_spec("abc", "1:1", _focus(0.5, 0.5))
    assert a != crops.crop_spec("abc", "4:5", _focus(0.5, 0.5))
    assert a != crops.crop_spec("abc", "1:1", _focus(0.5, 0.6))
    assert a != crops.crop_spec("abd", "1:1", _focus(0.5, 0.5))


def test_aspect_path_segments() -> None:
    assert crops.aspect_from_path("4x5") == "4:5"
    assert crops.aspect_path("9:16") == "9x16"
    assert crops.aspect_from_path("0x5") is None and crops.aspect_from_path("abc") is None
    assert crops.aspect_from_path("4x5x") is None


def test_a_cut_is_exactly_its_size_and_shows_the_window() -> None:
    # A red square on grey at the right of a landscape picture: the 1:1 crop around it shows it.
    picture = np.full((600, 1200, 3), 128, np.uint8)
    picture[200:400, 900:1100] = (220, 30, 30)
    level = images.to_vips(picture)
    focus_ = _focus(1000 / 1200, 0.5, (900 / 1200, 200 / 600, 200 / 1200, 200 / 600))
    out = crops.cut([level], CropVariant("1:1", 300, 300), focus_).numpy()
    assert out.shape == (300, 300, 3)
    # The window is 600 x 600 from x=600: the square sits at x 300..500, y 200..400 of it, halved in the crop.
    assert np.abs(out[110:190, 160:240].astype(int) - (220, 30, 30)).max() < 12
    assert np.abs(out[10:90, 10:130].astype(int) - 128).max() < 6


# --------------------------------------------------------------------------- the focus
def test_a_flat_picture_has_its_focus_at_the_centre() -> None:
    found = focus.find_focus(np.full((300, 400, 3), 90, np.uint8))
    assert found.source == "centre" and found.focal_point == Point(0.5, 0.5)


def test_saliency_finds_a_detailed_subject_on_a_plain_background() -> None:
    background = np.full((480, 960, 3), (70, 110, 150), np.uint8)
    subject = images.scene(200, 160, seed=3)
    background[260:420, 80:280] = subject  # bottom left
    found = focus.find_focus(background)
    assert found.source == "saliency"
    box = found.subject
    # The box is the subject's, within a few percent.
    assert box.x == pytest.approx(80 / 960, abs=0.03) and box.x + box.w == pytest.approx(280 / 960, abs=0.03)
    assert box.y == pytest.approx(260 / 480, abs=0.05) and box.y + box.h == pytest.approx(420 / 480, abs=0.05)
    assert box.x <= found.focal_point.x <= box.x + box.w and box.y <= found.focal_point.y <= box.y + box.h


def test_the_subject_box_leaves_out_soft_edges_its_region_took_in() -> None:
    """A sharp subject beside a background shape out of focus (a blurred dark blob touching it):
    closing the gaps between strong edges joins them into one region, but the subject box is
    where the detail is sharp, so a narrow window does not slide off the subject onto the blob."""
    picture = np.full((480, 960, 3), (150, 160, 170), np.uint8)
    blob = np.zeros((480, 960), np.float32)
    cv2.circle(blob, (560, 300), 150, 1.0, -1)
    blob = cv2.GaussianBlur(blob, (0, 0), 12)[:, :, None]
    picture = (picture * (1 - 0.8 * blob)).astype(np.uint8)
    picture[200:400, 200:400] = images.scene(200, 200, seed=5)  # the subject, sharp, at the blob's left
    found = focus.find_focus(picture)
    assert found.source == "saliency"
    box = found.subject
    assert box.x == pytest.approx(200 / 960, abs=0.03) and box.x + box.w == pytest.approx(400 / 960, abs=0.03)
    assert box.x <= found.focal_point.x <= box.x + box.w
    # A 9:16 window holds the subject whole.
    window = crop_window((960, 480), (9, 16), found)
    assert window.left <= 200 + 3 and window.left + window.width >= 400 - 3


def test_the_face_detector_and_its_model_are_installed() -> None:
    assert focus.face_detector() is not None, "no face detector: is the yuface wheel installed (CPython 3.11)?"


@pytest.mark.testdata
def test_faces_are_found_and_their_union_is_the_subject(testdata: object) -> None:
    """A real photo of two men kneeling at either side of a dog: both faces, their union the subject."""
    from pathlib import Path

    path = Path(str(testdata)) / "corpus-dev" / "bsds500_test_309040.jpg"
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    found = focus.find_focus(rgb)
    assert found.source == "faces" and len(found.faces) == 2
    left, right = sorted(found.faces, key=lambda face: face.x)
    assert left.x + left.w < 0.4 and right.x > 0.7 and all(face.y + face.h < 0.4 for face in found.faces)
    union = Box(left.x, min(left.y, right.y), right.x + right.w - left.x,
                max(left.y + left.h, right.y + right.h) - min(left.y, right.y))
    # The subject holds both faces (and the salient region with them); the focal point is between the faces.
    s = found.subject
    assert s.x <= union.x and s.y <= union.y and s.x + s.w >= union.x + union.w and s.y + s.h >= union.y + union.h
    assert found.focal_point == union.centre
    # A 9:16 window holds one of them whole rather than neither.
    height, width = rgb.shape[:2]
    window = crop_window((width, height), (9, 16), found)
    assert any(window.left <= face.x * width and (face.x + face.w) * width <= window.left + window.width for face in found.faces)



def _cuts(left: np.ndarray, top: np.ndarray, width: int, height: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """Whether windows of ``width`` x ``height`` at each of ``top`` x ``left`` cut the box in part
    (a pixel of slack): it overlaps the window without lying inside it."""
    x0, y0, x1, y1 = box
    overlap_x, overlap_y = (left < x1 - 1) & (left + width > x0 + 1), (top < y1 - 1) & (top + height > y0 + 1)
    inside_x, inside_y = (left <= x0 + 1) & (x1 - 1 <= left + width), (top <= y0 + 1) & (y1 - 1 <= top + height)
    return overlap_y[:, None] & overlap_x[None, :] & ~(inside_y[:, None] & inside_x[None, :])


def _every_place_cuts_a_face(size: tuple[int, int], width: int, height: int, boxes: list[tuple[float, float, float, float]]) -> bool:
    lefts, tops = np.arange(size[0] - width + 1), np.arange(size[1] - height + 1)
    return bool(np.logical_or.reduce([_cuts(lefts, tops, width, height, b) for b in boxes]).all())


@pytest.mark.testdata
def test_no_default_crop_cuts_a_face_on_the_real_photos(testdata: object) -> None:
    """Every real photo (EXIF-rotated ones upright, through the pipeline) where the detector finds
    faces: the window of each aspect made by default (the preset's at ingest, and the on-demand
    aspects a first request makes) holds every face box whole or leaves it out, never half."""
    from pathlib import Path

    from config.settings import Settings
    from media_pipeline import pipeline

    settings = Settings.from_env({})
    preset = settings.preset()
    aspects = tuple(dict.fromkeys(preset.aspects + settings.ondemand_aspect_list))
    assert {"1:1", "4:5", "9:16", "16:9"} <= set(aspects)
    small = dataclasses.replace(preset, widths=(640, 320))
    # Every photo but the deliberately broken ones (malformed/), in every format the pipeline reads.
    paths = sorted(p for folder in ("corpus-dev", "camera-exif", "exif-orientation", "formats")
                   for p in (Path(str(testdata)) / folder).iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".avif", ".heic", ".heif", ".gif", ".tif", ".tiff"))
    with_faces, cut = 0, []
    for path in paths:
        job = pipeline.prepare(path.read_bytes(), small, 50_000_000)
        rgb = pipeline.focus_image(job)
        found = focus.find_focus(rgb)
        if found.source != "faces":
            continue
        with_faces += 1
        faces = found.faces
        size = (rgb.shape[1], rgb.shape[0])
        for aspect in aspects:
            ratio = parse_aspect(aspect)
            window = crop_window(size, ratio, found)
            boxes = [(f.x * size[0], f.y * size[1], (f.x + f.w) * size[0], (f.y + f.h) * size[1]) for f in faces]
            fitting = [b for b in boxes if b[2] - b[0] <= window.width + 2 and b[3] - b[1] <= window.height + 2]
            for x0, y0, x1, y1 in (b for b in boxes if b not in fitting):
                # A face larger than the window (a close-up in a 16:9 band): the window keeps
                # as much of it as fits, within the face's span where it is too large.
                fills = (x1 - x0 <= window.width + 2 or (x0 - 1 <= window.left and window.left + window.width <= x1 + 1)) and \
                    (y1 - y0 <= window.height + 2 or (y0 - 1 <= window.top and window.top + window.height <= y1 + 1))
                if not fills:
                    cut.append(f"{path.parent.name}/{path.name} {aspect} {(x0, y0, x1, y1)} (larger than the window)")
            here = (np.array([window.left]), np.array([window.top]), window.width, window.height)
            halved = [b for b in fitting if _cuts(*here, b).any()]
            # Faces spread so that every place of the window cuts one (a row of people across a
            # 9:16 band) cannot all be spared; anywhere else none may be cut.
            if halved and not _every_place_cuts_a_face(size, window.width, window.height, fitting):
                cut.append(f"{path.parent.name}/{path.name} {aspect} {halved}")
    assert with_faces >= 10  # the detector finds faces in the set at all
    assert cut == []


@pytest.mark.testdata
@pytest.mark.parametrize("orientation_set", ["Landscape", "Portrait"])
def test_crops_of_the_exif_orientation_set_are_cut_from_the_upright_picture(testdata: object, orientation_set: str) -> None:
    """Files 0-8 of a set hold one upright picture stored 9 ways: the 4:5 crop of each is the same."""
    from pathlib import Path

    from config.settings import Settings
    from media_pipeline import pipeline
    from tests import images as test_images

    small = dataclasses.replace(Settings.from_env({}).preset(), widths=(640, 320))
    cut_crops = []
    for n in range(9):
        data = (Path(str(testdata)) / "exif-orientation" / f"{orientation_set}_{n}.jpg").read_bytes()
        job = pipeline.prepare(data, small, 50_000_000)
        found = pipeline.find_focus(job)
        cut_crops.append(crops.cut(list(job.levels.values()), CropVariant("4:5", 320, 400), found))
    assert all((c.width, c.height) == (320, 400) for c in cut_crops)
    assert max(test_images.mean_abs_diff(c, cut_crops[1]) for c in cut_crops) < 6


@pytest.mark.testdata
def test_the_presets_avif_crops_look_like_the_trellis_crops_they_replaced_in_as_many_bytes(testdata: object) -> None:
    """The preset's AVIF (q71 without aom's trellis quantisation, for its speed) keeps the crops
    what q68 with the trellis made: SSIMULACRA2 against the cut pixels within a point, bytes
    within 3%, over the eager crops of a landscape camera photo and a portrait one."""
    from pathlib import Path

    from config.settings import Settings
    from media_pipeline import crop_renditions, pipeline, ssimulacra2
    from tests import images as test_images

    preset = dataclasses.replace(Settings.from_env({}).preset(), aspects=("1:1", "4:5"))
    avif = preset.encoder("avif")
    assert avif is not None and not avif.avif_trellis
    trellis_q68 = dataclasses.replace(avif, quality=68, avif_trellis=True)
    scores: dict[str, list[float]] = {"preset": [], "trellis": []}
    sizes = {"preset": 0, "trellis": 0}
    for name in ("camera-exif/IMG_9424.JPG", "exif-orientation/Portrait_6.jpg"):
        job = pipeline.prepare((Path(str(testdata)) / name).read_bytes(), preset, 50_000_000)
        found = pipeline.find_focus(job)
        variants = tuple(dict.fromkeys(w.variant for w in crop_renditions.wanted_crops(preset, job.info.upright_size, found)))
        assert len(variants) == 4
        levels = list(job.levels.values())
        references = [ssimulacra2.reference(crops.cut(levels, v, found).numpy()) for v in variants]
        for label, enc in (("preset", avif), ("trellis", trellis_q68)):
            for reference, encoded in zip(references, crops.iter_crops(levels, variants, (enc,), found)):
                scores[label].append(ssimulacra2.compare(reference, test_images.decode(encoded.data).numpy()))
                sizes[label] += len(encoded.data)
    drops = np.array(scores["trellis"]) - np.array(scores["preset"])
    assert drops.mean() < 1 and drops.max() < 1.5, drops
    assert sizes["preset"] <= 1.03 * sizes["trellis"], sizes
