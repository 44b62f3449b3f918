"""Auto quality (media_pipeline/autoquality.py, quality.py): the search on its own, then on made
pictures and real photos, each rendition scored at its own size against its level."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips

from config.presets import load_preset
from media_pipeline import PIPELINE_VERSION, autoquality, pipeline, quality, ssimulacra2
from media_pipeline.encode import encode
from media_pipeline.models import AutoQuality, EncoderSettings, Preset
from tests import images

MAX_PIXELS = 60_000_000
TARGET = 75.0
# A rendition's own score against the probe's: within about 3 points on every photo measured.
TOLERANCE = 3.0
AUTO = {"avif": AutoQuality(TARGET, 30, 90, 62, 0.9), "jpeg": AutoQuality(TARGET, 30, 95, 75, 0.55)}


# The search of docs/performance.md "Auto quality": AVIF's first try predicted from JPEG's result
# (the line fitted at targets 78.3 and 78.2, a start guess at any other), and a passing try within
# two slope steps of the target accepted.
FOLLOWING = {"avif": dataclasses.replace(AUTO["avif"], accept=2.0, follow="jpeg", follow_fit=(6.8, 0.768)),
             "jpeg": dataclasses.replace(AUTO["jpeg"], accept=2.0)}


def auto_preset(widths: tuple[int, ...] = (1080, 640, 320), auto: dict[str, AutoQuality] = AUTO) -> Preset:
    formats = (EncoderSettings("avif", 62, effort=0, auto=auto["avif"]),
               EncoderSettings("jpeg", 75, progressive=True, auto=auto["jpeg"]))
    return Preset(widths=widths, formats=formats)


# --------------------------------------------------------------------------- the search alone
def staircase(seed: int) -> tuple[dict[int, float], list[int]]:
    """A made score curve: rising with quality, in plateaus, with some noise; and a call log."""
    rng = np.random.default_rng(seed)
    steps = rng.uniform(0, 1.6, 101) * (rng.random(101) > 0.3)
    curve = 20 + np.cumsum(steps) * rng.uniform(0.6, 1.4)
    return {q: float(curve[q]) for q in range(101)}, []


@pytest.mark.parametrize("seed", range(40))
def test_search_keeps_to_its_budget_and_passes_when_it_can(seed: int) -> None:
    curve, calls = staircase(seed)
    auto = AutoQuality(target=float(np.random.default_rng(seed).uniform(40, 90)), min=20, max=95, start=60,
                       slope=0.8, budget=1 + seed % 4, accept=1 + seed % 3 / 2)

    def score_at(quality: int) -> float:
        calls.append(quality)
        return curve[quality]

    choice = autoquality.search(score_at, auto)
    assert len(calls) <= auto.budget
    assert auto.min <= choice.quality <= auto.max
    if choice.score is not None:
        assert choice.score == curve[choice.quality] and choice.quality in calls
    if any(curve[q] >= auto.target for q in calls):
        assert choice.score is not None and choice.score >= auto.target
        # The lowest passing quality it tried, and nothing it tried lower passed.
        assert all(curve[q] < auto.target for q in calls if q < choice.quality)
    else:
        assert choice.quality == auto.max


def test_search_finds_the_lowest_passing_quality_of_a_smooth_curve() -> None:
    def score_at(quality: int) -> float:
        return 30 + 0.7 * quality  # 75 at 64.3: 65 is the lowest that passes

    for start in (40, 60, 65, 80, 95):
        assert autoquality.search(score_at, AutoQuality(75, 20, 95, start, 0.7)).quality == 65


def test_a_passing_try_within_accept_steps_of_the_target_ends_the_search() -> None:
    def score_at(quality: int) -> float:
        return 30 + 0.7 * quality  # 75 at 64.3; 67 scores 76.9, 2.7 slope steps above

    tight = autoquality.search(score_at, AutoQuality(75, 20, 95, 67, 0.7))
    loose = autoquality.search(score_at, AutoQuality(75, 20, 95, 67, 0.7, accept=3))
    assert tight.quality == 65 and len(tight.tried) > 1
    assert loose.quality == 67 and loose.tried == ((67, score_at(67)),)


def test_the_needed_quality_is_where_the_tries_cross_the_target() -> None:
    def score_at(quality: int) -> float:
        return 30 + 0.7 * quality

    bracketed = autoquality.search(score_at, AutoQuality(75, 20, 95, 60, 0.7))
    assert bracketed.needed == pytest.approx(45 / 0.7, abs=1e-6)
    one_try = autoquality.search(score_at, AutoQuality(75, 20, 95, 70, 0.5, budget=1))
    assert one_try.needed == pytest.approx(70 - (score_at(70) - 75) / 0.5)


def test_a_following_format_starts_where_the_leaders_result_predicts() -> None:
    auto = AutoQuality(78, 30, 90, 69, 0.8, follow="jpeg", follow_fit=(16.0, 0.65))
    leader = autoquality.Choice(quality=83, score=78.9, tried=((85, 80.1), (83, 78.9)), needed=82.1)
    assert autoquality.follow_start(auto, leader) == round(16.0 + 0.65 * 82.1)
    far = autoquality.Choice(quality=95, score=None, tried=((95, 60.0),), needed=140.0)
    assert autoquality.follow_start(auto, far) == 90  # within min..max


def test_an_unreachable_target_gives_the_maximum() -> None:
    choice = autoquality.search(lambda q: 50.0, AutoQuality(75, 20, 90, 60, 0.8))
    assert choice.quality == 90
    assert choice.score is None or choice.score < 75


# --------------------------------------------------------------------------- on pictures
def rendition_scores(data: bytes, preset: Preset) -> list[tuple[str, int, int, float, float]]:
    """(format, width, quality, search score, the rendition's own score) of every rendition."""
    job = pipeline.prepare(data, preset, MAX_PIXELS)
    levels = {w: pipeline._pixels(job.levels[w], None) for w in job.widths}
    out = []
    for r in pipeline.iter_renditions(job, preset.formats):
        decoded = pyvips.Image.new_from_buffer(r.data, "").numpy()[:, :, :3]
        out.append((r.format, r.width, r.quality, r.score, ssimulacra2.score(levels[r.width], decoded)))
    return out


def test_the_following_format_is_searched_after_its_leader_from_the_predicted_start() -> None:
    jpeg = EncoderSettings("jpeg", 75, progressive=True, auto=AUTO["jpeg"])
    avif = EncoderSettings("avif", 62, effort=0, auto=dataclasses.replace(AUTO["avif"], follow="jpeg", follow_fit=(-20.0, 1.0)))
    job = pipeline.prepare(images.jpeg(images.natural(900, 600, seed=3), 95), auto_preset(), MAX_PIXELS)
    choices = quality.choose_all(quality.probe(job.levels[job.widths[0]]), (avif, jpeg)).choices
    assert choices["avif"].tried[0][0] == autoquality.follow_start(avif.auto, choices["jpeg"])
    alone = quality.choose_all(quality.probe(job.levels[job.widths[0]]), (avif,)).choices
    assert alone["avif"].tried[0][0] == AUTO["avif"].start  # no leader: its own start


def counted_encodes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int, int]]:
    """Every encode the search (``quality``) and the renditions (``pipeline``) call, as (caller,
    format, width, quality), through the one function both call."""
    calls: list[tuple[str, str, int, int]] = []
    for module in (quality, pipeline):
        def counting(image: pyvips.Image, enc: EncoderSettings, caller: str = module.__name__) -> bytes:
            calls.append((caller.rsplit(".", 1)[-1], enc.format, image.width, enc.quality))
            return encode(image, enc)
        monkeypatch.setattr(module, "encode", counting)
    return calls


@pytest.mark.parametrize("gamut", ["srgb", "p3"])
def test_a_probe_that_is_the_whole_level_is_that_levels_rendition(monkeypatch: pytest.MonkeyPatch, gamut: str) -> None:
    # A 480 x 320 photo is its own probe: the search's file at the chosen quality is kept as the
    # 480 rendition instead of being encoded again, and shows what a fresh encode would.
    preset = auto_preset(auto=FOLLOWING)
    preset = dataclasses.replace(preset, formats=tuple(dataclasses.replace(e, gamut=gamut) for e in preset.formats))
    data = images.with_profile(images.natural(480, 320, seed=4), "p3") if gamut == "p3" else images.jpeg(images.natural(480, 320, seed=4), 95)
    calls = counted_encodes(monkeypatch)
    job = pipeline.prepare(data, preset, MAX_PIXELS)
    levels = dict(job.levels)
    renditions = {(r.width, r.format): r for r in pipeline.iter_renditions(job, preset.formats)}
    assert job.widths == (480, 320)
    searched = [call for call in calls if call[0] == "quality"]
    assert searched and all(width == 480 for _, _, width, _ in searched)
    # The renditions' own encodes: the 320 level only.
    assert sorted(call[1:3] for call in calls if call[0] == "pipeline") == [("avif", 320), ("jpeg", 320)]
    for enc in preset.formats:
        kept = renditions[480, enc.format]
        fresh = encode(levels[480], dataclasses.replace(enc, quality=kept.quality))
        assert (kept.quality, 480) in {(q, w) for _, fmt, w, q in searched if fmt == enc.format}
        assert np.array_equal(pyvips.Image.new_from_buffer(kept.data, "").numpy(), pyvips.Image.new_from_buffer(fresh, "").numpy())
        assert kept.gamut == gamut and (images.decode(kept.data).get_typeof("icc-profile-data") != 0) == (gamut == "p3")


def test_a_mosaic_probe_is_not_kept_as_a_rendition(monkeypatch: pytest.MonkeyPatch) -> None:
    preset = auto_preset(auto=FOLLOWING)
    calls = counted_encodes(monkeypatch)
    job = pipeline.prepare(images.jpeg(images.natural(1600, 1200, seed=4), 95), preset, MAX_PIXELS)
    list(pipeline.iter_renditions(job, preset.formats))
    assert {width for caller, _, width, _ in calls if caller == "quality"} == {512}  # the 4 x 3 mosaic of 128 px tiles
    assert sorted(call[1:3] for call in calls if call[0] == "pipeline") == sorted(
        (fmt, width) for fmt in ("avif", "jpeg") for width in (1080, 640, 320))


def test_a_flat_picture_gets_a_lower_quality_than_a_detailed_one() -> None:
    y, x = np.mgrid[0:720, 0:1080]
    flat = np.dstack([90 + 60 * x / 1080, 140 + 40 * y / 720, np.full(x.shape, 200.0)]).astype(np.uint8)
    detailed = images.natural(1080, 720, seed=5)
    rng = np.random.default_rng(1)
    detailed = (detailed + rng.normal(0, 10, detailed.shape)).clip(0, 255).astype(np.uint8)
    flat_q = {fmt: q for fmt, _, q, _, _ in rendition_scores(images.png(flat), auto_preset())}
    detailed_q = {fmt: q for fmt, _, q, _, _ in rendition_scores(images.png(detailed), auto_preset())}
    for fmt in ("avif", "jpeg"):
        assert flat_q[fmt] < detailed_q[fmt], (fmt, flat_q, detailed_q)


@pytest.mark.parametrize("seed", [2, 9])
def test_renditions_of_made_pictures_reach_the_target(seed: int) -> None:
    for fmt, width, chosen, score, own in rendition_scores(images.jpeg(images.natural(1600, 1200, seed=seed), 95), auto_preset()):
        assert score is not None and score >= TARGET, (fmt, chosen, score)
        assert own >= TARGET - TOLERANCE, (fmt, width, chosen, own)


@pytest.mark.testdata
@pytest.mark.parametrize("search", ["preset start", "following"])
@pytest.mark.parametrize("name", ["camera-exif/IMG_9424.JPG", "formats/heic/iphone_13_pro_max.HEIC",
                                  "corpus-dev/kodak_kodim08.png", "corpus-dev/bsds500_test_101027.jpg"])
def test_renditions_of_real_photos_reach_the_target(testdata: Path, name: str, search: str) -> None:
    preset = auto_preset(auto=FOLLOWING if search == "following" else AUTO)
    for fmt, width, chosen, score, own in rendition_scores((testdata / name).read_bytes(), preset):
        assert score is not None and score >= TARGET, (fmt, chosen, score)
        assert own >= TARGET - TOLERANCE, (fmt, width, chosen, own)


# --------------------------------------------------------------------------- the preset
def write_preset(tmp_path: Path, avif: str) -> Preset:
    path = tmp_path / "presets.toml"
    path.write_text(f"[default]\nwidths = [640, 320]\n[default.formats.avif]\n{avif}\neffort = 0\n")
    return load_preset(path)


def test_fixed_to_auto_and_a_new_target_are_reprocess_diffs(tmp_path: Path) -> None:
    fixed = write_preset(tmp_path, "quality = 68")
    auto = write_preset(tmp_path, 'quality = "auto"\ntarget = 75\nmin = 30\nmax = 90')
    other_target = write_preset(tmp_path, 'quality = "auto"\ntarget = 80\nmin = 30\nmax = 90')
    assert auto.formats[0].auto == AutoQuality(75.0, 30, 90, 60, 0.8, 3)
    assert len({fixed.version, auto.version, other_target.version}) == 3
    assert len({p.formats[0].spec for p in (fixed, auto, other_target)}) == 3


def test_a_fixed_quality_keeps_the_key_it_had_before_auto_existed() -> None:
    # The spec as it was computed before EncoderSettings had ``auto``: stored keys stay valid.
    before = {"pipeline": PIPELINE_VERSION, "format": "avif", "quality": 68, "effort": 0, "progressive": False, "trellis": False}
    expected = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:10]
    assert EncoderSettings("avif", 68, effort=0).spec == expected
    assert dataclasses.replace(EncoderSettings("avif", 68), auto=AUTO["avif"]).spec != expected


def test_an_auto_search_with_the_old_settings_keeps_its_key() -> None:
    # ``accept`` and ``follow`` at their defaults hash as the search did before they existed.
    before = {"pipeline": PIPELINE_VERSION, "format": "avif", "quality": 62, "effort": 0, "progressive": False, "trellis": False,
              "auto": {"target": 75.0, "min": 30, "max": 90, "start": 62, "slope": 0.9, "budget": 3}}
    expected = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:10]
    assert EncoderSettings("avif", 62, effort=0, auto=AUTO["avif"]).spec == expected
    followed = dataclasses.replace(AUTO["avif"], follow="jpeg", follow_fit=(16.0, 0.65))
    assert EncoderSettings("avif", 62, effort=0, auto=followed).spec != expected


def test_follow_and_accept_are_read_from_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "presets.toml"
    path.write_text("[default]\nwidths = [640]\n[default.formats.avif]\nquality = \"auto\"\ntarget = 78\naccept = 2\n"
                    "follow = \"jpeg\"\nfollow_fit = [16.0, 0.65]\n"
                    "[default.formats.jpeg]\nquality = \"auto\"\ntarget = 78.2\nmax = 95\nstart = 85\n")
    avif = load_preset(path).encoder("avif")
    assert avif is not None and avif.auto is not None
    assert (avif.auto.accept, avif.auto.follow, avif.auto.follow_fit) == (2.0, "jpeg", (16.0, 0.65))


@pytest.mark.parametrize("avif", ['quality = "auto"\nmin = 30\nmax = 90',  # no target
                                  'quality = "auto"\ntarget = 75\nmin = 90\nmax = 30',
                                  'quality = "auto"\ntarget = 75\nbudget = 0',
                                  'quality = "auto"\ntarget = 75\naccept = 0.5',
                                  'quality = "auto"\ntarget = 75\nfollow = "jpeg"',  # not in the preset
                                  'quality = "auto"\ntarget = 75\nfollow = "avif"',
                                  'quality = "auto"\ntarget = 75\nfollow_fit = [1.0]'])
def test_bad_auto_settings_are_refused(tmp_path: Path, avif: str) -> None:
    with pytest.raises((ValueError, KeyError)):
        write_preset(tmp_path, avif)


# --------------------------------------------------------------------------- catalog and API
def test_the_api_shows_each_renditions_quality_and_score(tmp_path: Path, settings: Any, queue: Any) -> None:
    from media_pipeline import service
    from media_pipeline.web import create_app

    presets = tmp_path / "presets.toml"
    presets.write_text(
        "[default]\nwidths = [640, 320]\neager_formats = [\"avif\", \"jpeg\"]\n"
        f"[default.formats.avif]\nquality = \"auto\"\ntarget = {TARGET}\nmin = 30\nmax = 90\nstart = 62\n"
        "[default.formats.jpeg]\nquality = 80\nprogressive = true\n")
    services = service.build_services(settings.replace(presets_file=presets), queue=queue)
    client = create_app(services.settings, services).test_client()
    photo_id = client.post("/v1/photos", data=images.jpeg(images.natural(900, 600, seed=6), 95)).get_json()["id"]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    renditions = client.get(f"/v1/photos/{photo_id}").get_json()["renditions"]
    assert len(renditions) == 4
    for r in renditions:
        if r["format"] == "avif":
            assert 30 <= r["quality"] <= 90 and r["score"] >= TARGET, r
        else:
            assert (r["quality"], r["score"]) == (80, None), r
