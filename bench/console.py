"""The operator console's JSON endpoints on a large catalog: p50/p99 of each, against
``GET /v1/photos/<id>`` measured in the same run, and the query plan of each list.

    .venv/bin/python bench/console.py [--rows 100000] [--requests 200] [--backends sqlite,postgresql]

Seeds ``--rows`` photo rows (rows only, no images: a 320 px rendition row each ready photo, 5 %
failed over four error codes, 3 % queued, 1,000 owners, 1 % in duplicate pairs, 2,000 of them in the
last hour) into a fresh SQLite file and a fresh PostgreSQL database (127.0.0.1:5432), then sends
each request ``--requests`` times through the app in this process (Flask's test client: the
view, the catalog and JSON, no HTTP server) and prints milliseconds and ratios. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config.settings import Settings  # noqa: E402
from media_pipeline.catalog.console import photo_list_sql  # noqa: E402
from media_pipeline.console import PhotoFilter  # noqa: E402
from media_pipeline.queue import RecordingQueue  # noqa: E402
from media_pipeline.service import build_services, new_photo_id  # noqa: E402
from media_pipeline.timestamps import rfc3339  # noqa: E402
from media_pipeline.web import create_app  # noqa: E402

ADMIN = os.environ.get("MP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CODES = ("corrupt_image", "abandoned", "timeout", "too_many_pixels")
PLACEHOLDER = '{"blurhash": "LEHV6nWB2yk8pyo0adR*.7kCMdnj", "dominant_color": "#aabbcc"}'


def rows(count: int, now: float) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(photos, renditions, duplicate pairs), oldest first: 30 days, the last 2,000 in the last hour."""
    rng = random.Random(7)
    recent = min(2000, count // 10)
    photos, renditions = [], []
    for i in range(count):
        at = now - 3600 + 3600 * (i - (count - recent)) / recent if i >= count - recent else now - 30 * 86400 + i * (29 * 86400 / count)
        pid = new_photo_id(at)
        roll = rng.random()
        status, code = ("failed", CODES[i % 4]) if roll < 0.05 else ("queued", None) if roll < 0.08 else ("ready", None)
        photos.append((pid, f"owner{rng.randrange(1000)}", status, f"{i:064x}", f"originals/{pid}", "jpeg", 4032, 3024, 2_500_000,
                       at, at + 2, "v1" if status == "ready" else None, PLACEHOLDER if status == "ready" else None, code,
                       "the file ends early" if code else None, 1))
        if status == "ready":
            renditions.append((pid, "j1", 320, "jpeg", 240, 12_000, f"renditions/{pid}/j1/320.jpg", 1, None, "original"))
    ids = [p[0] for p in photos]
    pairs = [(ids[j], ids[j - 1 - rng.randrange(50)], "near", rng.randrange(32), "mirror", None, ids[j])
             for j in rng.sample(range(60, count), count // 200)]
    return photos, renditions, list({(p[0], p[1]): p for p in pairs}.values())


PHOTO_COLUMNS = ("id, owner, status, sha256, original_key, original_format, original_width, original_height, original_bytes, "
                 "created_at, updated_at, preset_version, placeholder, error_code, error_message, attempts")
RENDITION_COLUMNS = "photo_id, spec, width, format, height, bytes, key, current, retired_at, aspect"
PAIR_COLUMNS = "photo_id, other_id, kind, distance, transform, inliers, found_by"


def seed(catalog: Any, count: int, now: float) -> list[str]:
    photos, renditions, pairs = rows(count, now)
    with catalog._tx() as cur:
        for table, columns, data in (("photos", PHOTO_COLUMNS, photos), ("renditions", RENDITION_COLUMNS, renditions),
                                     ("photo_duplicates", PAIR_COLUMNS, pairs)):
            marks = ", ".join("?" * len(columns.split(",")))
            for start in range(0, len(data), 5000):
                cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", data[start:start + 5000])
        if catalog.dialect == "sqlite":
            cur.execute("ANALYZE")
    if catalog.dialect == "postgresql":
        # What autovacuum does after a bulk load: statistics, and the visibility map that lets an
        # index-only scan (the counts by status) skip the table.
        import psycopg

        with psycopg.connect(catalog.url, autocommit=True) as conn:
            for table in ("photos", "renditions", "photo_duplicates"):
                conn.execute(f"VACUUM ANALYZE {table}")
    return [p[0] for p in photos]


def timed(call: Callable[[], Any], times: int) -> tuple[float, float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def plans(catalog: Any, queries: dict[str, PhotoFilter]) -> None:
    print("\nQuery plans at this size (the planner's own choice, nothing disabled):")
    with catalog._tx(write=False) as cur:
        for name, query in queries.items():
            sql, params = photo_list_sql(query)
            if catalog.dialect == "sqlite":
                plan = " / ".join(str(r[-1]) for r in cur.fetchall("EXPLAIN QUERY PLAN " + sql, params))
            else:
                plan = " / ".join(r[0].strip() for r in cur.fetchall("EXPLAIN " + sql, params) if "cost=" in r[0])
            print(f"- `{name}`: {plan}")


def run(backend: str, url: str, count: int, times: int, work: Path) -> None:
    settings = Settings.from_env({}, data_dir=work / backend, catalog_url=url, log_level="WARNING")
    services = build_services(settings, queue=RecordingQueue())
    now = time.time()
    started = time.monotonic()
    ids = seed(services.catalog, count, now)
    print(f"\n### {backend}: {count:,} photos seeded in {time.monotonic() - started:.0f} s\n")
    client = create_app(settings, services).test_client()
    rng = random.Random(3)
    middle = ids[len(ids) // 2]
    failed = services.catalog.list_photos(PhotoFilter(status="failed", limit=1))[0][0].id
    requests = {
        "GET /v1/photos/<id> (baseline)": lambda: f"/v1/photos/{rng.choice(ids)}",
        "GET /v1/photos": lambda: "/v1/photos",
        "GET /v1/photos?cursor=<middle>": lambda: f"/v1/photos?cursor={middle}",
        "GET /v1/photos?status=failed": lambda: "/v1/photos?status=failed",
        "GET /v1/photos?status=failed&error_code=timeout": lambda: "/v1/photos?status=failed&error_code=timeout",
        "GET /v1/photos?owner=owner7": lambda: "/v1/photos?owner=owner7",
        "GET /v1/photos?kind=duplicate": lambda: "/v1/photos?kind=duplicate",
        "GET /v1/photos?since=-2d&until=-1d": lambda: f"/v1/photos?since={rfc3339(now - 2 * 86400)}&until={rfc3339(now - 86400)}",
        "GET /v1/photos?q=<id>": lambda: f"/v1/photos?q={failed}",
        "GET /v1/stats": lambda: "/v1/stats",
        "GET /v1/duplicates": lambda: "/v1/duplicates",
        "GET /v1/jobs": lambda: "/v1/jobs",
    }
    print("| request | p50 ms | p99 ms | p50 / baseline p50 |")
    print("|---|---|---|---|")
    baseline = None
    for name, path in requests.items():
        def call() -> None:
            response = client.get(path())
            assert response.status_code == 200, (name, response.data[:300])

        call()  # warm
        p50, p99 = timed(call, times)
        baseline = baseline or p50
        print(f"| `{name}` | {p50:.1f} | {p99:.1f} | {p50 / baseline:.2f}x |", flush=True)
    plans(services.catalog, {"all": PhotoFilter(), "status=failed": PhotoFilter(status="failed"),
                             "status=failed&error_code": PhotoFilter(status="failed", error_code="timeout"),
                             "owner": PhotoFilter(owner="owner7"), "kind=duplicate": PhotoFilter(kind="duplicate"),
                             "since&until": PhotoFilter(created_after=now - 2 * 86400, created_before=now - 86400)})
    services.catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mp-bench-console-") as folder:
        work = Path(folder)
        for backend in args.backends.split(","):
            if backend == "sqlite":
                run(backend, f"sqlite:///{work / 'catalog.db'}", args.rows, args.requests, work)
                continue
            import psycopg

            name = f"mp_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                run(backend, f"{ADMIN.rsplit('/', 1)[0]}/{name}", args.rows, args.requests, work)
            finally:
                with psycopg.connect(ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
