"""The one typed settings object. This is the only module that reads ``os.environ``.

Every field has a default that works on a fresh machine with no outside service (local-folder
storage, SQLite catalog, a Celery broker on the local disk). Production overrides them with
``MP_*`` environment variables; ``Settings.from_env`` validates all of them and reports every
problem in one ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from config.presets import PRESETS_FILE, load_preset
from media_pipeline.apikeys import parse_keys
from media_pipeline.blocklists import parse_sources
from media_pipeline.framing import parse_aspect
from media_pipeline.models import Preset
from media_pipeline.webhook_signature import secret_key



class ConfigError(ValueError):
    """Raised at start-up with every invalid setting listed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))


def _setting(default: Any, env: str, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(Path("var"), "MP_DATA_DIR", "Folder for embedded defaults: storage, SQLite catalog, broker, temp files.")
    storage_backend: str = _setting("local", "MP_STORAGE_BACKEND", "`local` (a folder) or `s3` (any S3-compatible endpoint).")
    storage_dir: Path | None = _setting(None, "MP_STORAGE_DIR", "Folder of the local backend; default `<data_dir>/storage`.")
    s3_bucket: str = _setting("", "MP_S3_BUCKET", "Bucket for the S3 backend (required with `s3`).")
    s3_endpoint_url: str = _setting("", "MP_S3_ENDPOINT_URL", "S3 endpoint, e.g. `http://minio:9000` or an R2 URL; empty means AWS.")
    s3_region: str = _setting("us-east-1", "MP_S3_REGION", "S3 region (`auto` for R2).")
    s3_access_key_id: str = _setting("", "MP_S3_ACCESS_KEY_ID", "S3 access key; empty uses boto3's default credential chain.")
    s3_secret_access_key: str = _setting("", "MP_S3_SECRET_ACCESS_KEY", "S3 secret key.")
    s3_prefix: str = _setting("", "MP_S3_PREFIX", "Key prefix inside the bucket, e.g. `media/`.")
    s3_addressing_style: str = _setting("auto", "MP_S3_ADDRESSING_STYLE", "`auto`, `path` (MinIO) or `virtual`.")
    storage_fallback_url: str = _setting("", "MP_STORAGE_FALLBACK_URL", "While `migrate-storage` moves objects into this store: the old store (`file:///folder` or `s3://bucket/prefix?endpoint=…`), which answers the reads this one cannot; writes go here, deletes to both (docs/operations.md). Empty: none.")
    import_s3_endpoint_url: str = _setting("", "MP_IMPORT_S3_ENDPOINT_URL", "S3 endpoint `media-pipeline import s3://…` reads from; empty: MP_S3_ENDPOINT_URL. With the storage's own endpoint and no MP_IMPORT_S3_ACCESS_KEY_ID, originals are copied server-side (CopyObject).")
    import_s3_region: str = _setting("us-east-1", "MP_IMPORT_S3_REGION", "Region of the import's S3 endpoint.")
    import_s3_access_key_id: str = _setting("", "MP_IMPORT_S3_ACCESS_KEY_ID", "Access key for the import's S3 endpoint; empty: MP_S3_ACCESS_KEY_ID on the storage's endpoint, boto3's default chain elsewhere.")
    import_s3_secret_access_key: str = _setting("", "MP_IMPORT_S3_SECRET_ACCESS_KEY", "Secret key for the import's S3 endpoint.")
    import_s3_addressing_style: str = _setting("auto", "MP_IMPORT_S3_ADDRESSING_STYLE", "`auto`, `path` (MinIO) or `virtual`, for the import's S3 endpoint.")
    catalog_url: str = _setting("", "MP_CATALOG_URL", "`sqlite:///path.db` or `postgresql://user@host/db`; default `sqlite:///<data_dir>/catalog.db`.")
    broker_url: str = _setting("filesystem://", "MP_BROKER_URL", "Celery broker: `filesystem://` (folder `<data_dir>/broker`), `redis://…` or `amqp://…`.")
    max_upload_bytes: int = _setting(40_000_000, "MP_MAX_UPLOAD_BYTES", "Largest accepted upload in bytes, enforced while streaming.")
    max_pixels: int = _setting(50_000_000, "MP_MAX_PIXELS", "Largest accepted image in pixels (width x height of one frame), read from the header.")
    max_animation_pixels: int = _setting(25_000_000, "MP_MAX_ANIMATION_PIXELS", "Largest animation rendered moving, in frames x pixels of one frame, read from the header; a larger one gets still renditions of its first frame (docs/pipeline.md, Animation).")
    max_frames: int = _setting(1000, "MP_MAX_FRAMES", "Most frames an animation rendered moving may have; one with more gets still renditions of its first frame.")
    public_base_url: str = _setting("", "MP_PUBLIC_BASE_URL", "Prefix for rendition URLs in API answers, e.g. `https://cdn.example.com`; empty gives relative URLs.")
    signing_keys: str = _setting("", "MP_SIGNING_KEYS", "Comma-separated secrets (16+ characters) for signed on-demand rendition URLs; the first signs, all verify. Empty disables on-demand renditions.")
    ondemand_widths: str = _setting("160,240,320,480,640,750,828,1080,1200,1440,1600,1920,2160", "MP_ONDEMAND_WIDTHS", "Widths an on-demand request may produce; other widths snap up to the next one.")
    ondemand_aspects: str = _setting("1:1,4:5,3:4,9:16,16:9", "MP_ONDEMAND_ASPECTS", "Crop aspects (`A:B`) a signed on-demand request may produce besides the preset's `aspects`.")
    stable_max_age: int = _setting(86400, "MP_STABLE_MAX_AGE", "Cache lifetime in seconds for stable (unversioned) image URLs; versioned URLs are immutable.")
    serve_mode: str = _setting("stream", "MP_SERVE_MODE", "`stream` bodies from storage, or `redirect` to a presigned S3 URL (S3 backend only).")
    presign_seconds: int = _setting(3600, "MP_PRESIGN_SECONDS", "Lifetime of presigned URLs in `redirect` mode.")
    rendition_keep_seconds: int = _setting(86400, "MP_RENDITION_KEEP_SECONDS", "How long renditions dropped by a preset change stay servable before cleanup deletes them (URLs in clients' caches keep working meanwhile).")
    purge_url: str = _setting("", "MP_PURGE_URL", "Where deleting a photo sends a signed `POST {\"tags\": [...], \"urls\": [...]}` to purge it from the CDN (queued in the catalog, retried with backoff until a 2xx); empty for none.")
    purge_secret: str = _setting("", "MP_PURGE_SECRET", "Secret (16+ characters) the purge POST is signed with: `X-MP-Signature: sha256=<hex HMAC-SHA256 of the body>`. Required with MP_PURGE_URL.")
    webhook_urls: str = _setting("", "MP_WEBHOOK_URLS", "Comma-separated http(s) URLs every event (`photo.ready`, `photo.failed`, `photo.deleted`, `photo.duplicate_found`, `reprocess.finished`) is POSTed to, signed the Standard Webhooks way, at least once and each photo's in order (docs/events.md); empty for none. `media-pipeline serve` runs the deliverer; elsewhere run `media-pipeline webhooks`.")
    webhook_key_urls: str = _setting("", "MP_WEBHOOK_KEY_URLS", "Comma-separated `NAME=URL`: the events of photos uploaded with the API key NAME (of MP_API_KEYS) also go to URL, signed and retried as for MP_WEBHOOK_URLS; a client app's backend hears of its own photos only.")
    webhook_secret: str = _setting("", "MP_WEBHOOK_SECRET", "`whsec_` and the base64 of a 24-64 byte key: signs `webhook-signature` (HMAC-SHA256). Required with MP_WEBHOOK_URLS.")
    webhook_retry_seconds: int = _setting(86400, "MP_WEBHOOK_RETRY_SECONDS", "How long after its event a webhook delivery is still retried (1 s doubling up to an hour between attempts, plus up to half at random) before it is marked failed (`check`, `/metrics`).")
    webhook_timeout: float = _setting(10.0, "MP_WEBHOOK_TIMEOUT", "Seconds a receiver has to answer an event before the attempt counts as failed.")
    webhook_concurrency: int = _setting(8, "MP_WEBHOOK_CONCURRENCY", "Deliveries in flight to each receiver at once (never two of one photo: its events go in order).")
    events_keep_seconds: int = _setting(604800, "MP_EVENTS_KEEP_SECONDS", "How long events stay in the feed (`GET /v1/events`); `media-pipeline cleanup` deletes older ones that no webhook receiver is still owed, and deliveries given up that long ago.")
    dedupe_scope: str = _setting("global", "MP_DEDUPE_SCOPE", "Near-duplicate search across all photos (`global`) or only the same `owner`'s.")
    near_distance: int = _setting(31, "MP_NEAR_DISTANCE", "Largest Hamming distance (of 256 bits) between view hashes that counts as a near duplicate. 31 kept zero false pairs with a wide margin on the dev corpus (closest distinct pair: 84) and finds 94-100% of the edits; see bench/dedupe_eval.py. Above 31 each search probes 137 values per substring instead of 17.")
    min_hash_quality: float = _setting(8.0, "MP_MIN_HASH_QUALITY", "Photos whose hash quality (0-100, mean luma gradient) is below this are not near-matched: flat and near-blank pictures would all match each other. Natural photos score 20 and up.")
    keypoint_matching: str = _setting("on", "MP_KEYPOINT_MATCHING", "`on`: also match by ORB keypoints, which finds asymmetric crops and small rotations no hash survives (about 24 KB per photo in storage, 400 index rows, and up to MP_KEYPOINT_CANDIDATES verifications per vote, three votes at most when shared overlays are found); `off` to skip.")
    duplicate_index: str = _setting("sql", "MP_DUPLICATE_INDEX", "Where near-duplicate lookups run: `sql`, the catalog's tables (no memory, but at a million photos an upload's hash lookup takes ~1 s on PostgreSQL); `memory`, numpy arrays each process loads at start from the view-hash table and the packed keypoint keys (about 3.7 KB of RAM a photo in each process, and about 0.3 ms a photo to load at 100,000 photos) and keeps up with what other processes filed through the `index_changes` log before each lookup (docs/near-duplicates.md, A billion photos). The tables stay the store of record either way; `memory` writes no keypoint postings (8.9 KB a photo on PostgreSQL instead of 61.8), so after going back to `sql` the photos filed meanwhile get theirs from `media-pipeline refile-keypoints` or the reconciler.")
    index_changes_keep_seconds: int = _setting(86400, "MP_INDEX_CHANGES_KEEP_SECONDS", "How long a row of the `index_changes` log (one per photo filed in or removed from the near-duplicate indexes) is kept; the reconciler deletes older ones. A `memory` process that has not caught up for longer (no lookup in that time) reloads its whole index from the tables at its next lookup instead. At least 60: well above the 5 s a process waits for a number PostgreSQL commits out of order.")
    index_snapshot_dir: Path | None = _setting(None, "MP_INDEX_SNAPSHOT_DIR", "With MP_DUPLICATE_INDEX=memory: a folder on the host's local disk where `media-pipeline index-snapshot` writes the memory indexes (run it on each host more often than MP_INDEX_CHANGES_KEEP_SECONDS, e.g. hourly). A process then starts from the newest snapshot and the change log since, in seconds instead of reading both tables, and the host's processes share its postings and bucket tables (memory-mapped, read-only) instead of each holding a copy. Empty: every process reads the tables.")
    keypoint_candidates: int = _setting(5, "MP_KEYPOINT_CANDIDATES", "How many of the best-voted photos a keypoint search verifies, not counting those that prove to be matches (other copies of the picture); at most twice as many in all.")
    min_inliers: int = _setting(10, "MP_MIN_INLIERS", "Keypoint matches (one per stored keypoint) consistent with one similarity transform needed before the aligned pixels are compared; the comparison, not this number, keeps distinct photos apart (those under one shared caption or watermark fit it with 20-150). Crops and rotations fit with 50-200; a few deep zooms and collage cells of the dev corpus with only 10-20.")
    blocklists: str = _setting("", "MP_BLOCKLISTS", "Lists of PDQ hashes uploads must not match, comma-separated `NAME[@DISTANCE]=SOURCE`: SOURCE a file path or an http(s) URL with one PDQ hash (64 hex digits) first on each line (`#` comments; the rest of a line ignored), read at start. An upload within DISTANCE bits (default 31) of a listed hash, with PDQ quality 50 or more, ends `failed` with `blocked_content`: no rendition is made and its original stays private. `POST /v1/duplicates/search` reports list hits.")
    validation_url: str = _setting("", "MP_VALIDATION_URL", "An outside validator (moderation) that every photo is POSTed to, signed, before its renditions are made: 2xx lets it through, 4xx ends it `failed` (`rejected`), anything else retries the task (docs/near-duplicates.md says what is sent and how to verify it). Empty: none.")
    validation_secret: str = _setting("", "MP_VALIDATION_SECRET", "HMAC-SHA256 key of the validator's `X-MP-Signature` header; at least 16 characters, required with MP_VALIDATION_URL.")
    validation_timeout: float = _setting(10.0, "MP_VALIDATION_TIMEOUT", "Seconds to wait for the validator before the task retries.")
    direct_upload_seconds: int = _setting(3600, "MP_DIRECT_UPLOAD_SECONDS", "How long a direct-upload target (`POST /v1/uploads`) stays valid; `media-pipeline cleanup` removes targets not completed by then.")
    tus_expire_seconds: int = _setting(86400, "MP_TUS_EXPIRE_SECONDS", "A resumable (tus) upload not finished this long after its creation is gone (`Upload-Expires`); `media-pipeline cleanup` removes its bytes.")
    tus_body_timeout_seconds: int = _setting(30, "MP_TUS_BODY_TIMEOUT_SECONDS", "A tus PATCH whose body sends no byte for this long ends (408 `body_timeout`) and keeps what arrived, so a client that vanished without closing its connection (a phone that changed networks) does not hold its upload until the connection dies: the client that resumes gets it. 0: no limit of ours (a proxy's body timeout still applies).")
    presets_file: Path = _setting(PRESETS_FILE, "MP_PRESETS_FILE", "TOML file with the rendition preset.")
    color_gamut: str = _setting("p3", "MP_COLOR_GAMUT", "`p3`: sources with a wide-gamut profile (Display P3, Adobe RGB, Rec. 2020, ProPhoto) are rendered in Display P3 with the profile embedded; `srgb`: every rendition is sRGB (clipped), as before. Part of every rendition key.")
    hdr: str = _setting("keep", "MP_HDR", "`keep`: an HDR photo's gain map (Ultra HDR JPEG, Apple HEIC) is kept in its JPEG renditions (Ultra HDR), over the SDR picture every screen shows; `sdr`: SDR renditions only. Part of every rendition key.")
    task_soft_time_limit: int = _setting(120, "MP_TASK_SOFT_TIME_LIMIT", "Seconds before a processing task is asked to stop; the photo ends `failed` (`timeout`).")
    task_time_limit: int = _setting(150, "MP_TASK_TIME_LIMIT", "Seconds before a processing task's worker child is killed.")
    task_max_retries: int = _setting(5, "MP_TASK_MAX_RETRIES", "Retries of a task on transient storage/catalog errors, with exponential backoff.")
    task_retry_backoff: float = _setting(2.0, "MP_TASK_RETRY_BACKOFF", "First retry delay in seconds; doubles each retry.")
    stuck_after_seconds: int = _setting(600, "MP_STUCK_AFTER_SECONDS", "A photo queued or processing this long without progress is re-enqueued by the reconciler (its message was lost with a dead worker or broker).")
    max_attempts: int = _setting(3, "MP_MAX_ATTEMPTS", "Processing attempts before the reconciler gives a photo up as failed (`abandoned`): a file that kills its worker cannot loop forever.")
    worker_concurrency: int = _setting(0, "MP_WORKER_CONCURRENCY", "Worker processes; 0 means one per CPU core.")
    vips_concurrency: int = _setting(1, "MP_VIPS_CONCURRENCY", "libvips threads per worker process; 1 with one process per core is fastest.")
    api_keys: str = _setting("", "MP_API_KEYS", "Comma-separated `name:sha256` of the API keys client apps send (`Authorization: Bearer <key>`); `!name:sha256` marks one revoked (403). `media-pipeline api-key NAME` makes one. Empty: no key is checked and the API binds to loopback only.")
    operator_keys: str = _setting("", "MP_OPERATOR_KEYS", "Comma-separated `name:sha256` of operator keys (`media-pipeline api-key NAME --operator`), in the form of MP_API_KEYS but kept apart from client apps' keys: only they open the operator console's endpoints (`GET /v1/photos`, `/v1/stats`, `/v1/duplicates`, `/v1/jobs`, retries) once any key is configured; they work wherever a client key does too. Setting them also lifts the loopback-only bind, as MP_API_KEYS does.")
    rate_limit: int = _setting(600, "MP_RATE_LIMIT", "API POSTs (uploads, searches) per minute for each API key (or client address without keys); 0 for no limit. Over it: 429 with Retry-After.")
    rate_limit_url: str = _setting("", "MP_RATE_LIMIT_URL", "Redis URL for rate-limit counters shared by every API process; default the broker when it is Redis, else counters in each process.")
    cors_origins: str = _setting("", "MP_CORS_ORIGINS", "Comma-separated web origins (e.g. `https://app.example.com`) allowed to call /v1 from a browser; `*` for any; empty for none.")
    host: str = _setting("127.0.0.1", "MP_HOST", "Address the API binds to (loopback only while MP_API_KEYS is empty).")
    port: int = _setting(8080, "MP_PORT", "Port the API binds to.")
    front_listen: str = _setting("127.0.0.1:8081", "MP_FRONT_LISTEN", "Address `media-pipeline serve --front nginx` and `nginx-config` have nginx listen on (host:port); the API stays on MP_HOST:MP_PORT behind it.")
    api_workers: int = _setting(2, "MP_API_WORKERS", "gunicorn worker processes for the API.")
    api_threads: int = _setting(4, "MP_API_THREADS", "Threads per API process (gunicorn gthread workers, which keep connections alive for a CDN).")
    access_log: str = _setting("-", "MP_ACCESS_LOG", "gunicorn access log: `-` for stdout, a file path, or empty for none.")
    metrics_dir: Path | None = _setting(None, "MP_METRICS_DIR", "Folder where each API and worker process of this host keeps its Prometheus counters for `/metrics`; default `<data_dir>/metrics`. Local disk, one per host.")
    log_format: str = _setting("text", "MP_LOG_FORMAT", "`text`, or `json` for one JSON object a line (with the photo id on every line about a photo).")
    log_level: str = _setting("INFO", "MP_LOG_LEVEL", "Log level: DEBUG, INFO, WARNING, ERROR.")

    # ------------------------------------------------------------------ derived values
    @property
    def effective_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    @property
    def effective_catalog_url(self) -> str:
        return self.catalog_url or f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    @property
    def front_dir(self) -> Path:
        """The nginx front's pid file, temp folders, logs and (S3 storage) proxy cache."""
        return self.data_dir / "front"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def metrics_folder(self) -> Path:
        return self.metrics_dir or self.data_dir / "metrics"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def tus_dir(self) -> Path:
        """Resumable uploads in progress: shared by every API host (or one host per upload)."""
        return self.data_dir / "tus"

    @property
    def effective_rate_limit_url(self) -> str:
        if self.rate_limit_url:
            return self.rate_limit_url
        return self.broker_url if self.broker_url.startswith(("redis://", "rediss://")) else ""

    @property
    def bind_host(self) -> str:
        """``host``, unless no API key is configured: then loopback, whatever was asked."""
        return self.host if self.keys_configured else "127.0.0.1"

    @property
    def keys_configured(self) -> bool:
        """Any API or operator key: then every /v1 request needs one, and the console an operator's."""
        return bool(self.api_keys.strip() or self.operator_keys.strip())

    @property
    def signing_key_list(self) -> tuple[bytes, ...]:
        return tuple(k.strip().encode() for k in self.signing_keys.split(",") if k.strip())

    @property
    def ondemand_width_list(self) -> tuple[int, ...]:
        return tuple(sorted({int(w) for w in self.ondemand_widths.split(",") if w.strip()}))

    @property
    def ondemand_aspect_list(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.strip() for a in self.ondemand_aspects.split(",") if a.strip()))

    def preset(self) -> Preset:
        return load_preset(self.presets_file, gamut=self.color_gamut, dynamic_range="hdr" if self.hdr == "keep" else "sdr")

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def as_env(self) -> dict[str, str]:
        """The ``MP_*`` variables that reproduce these settings in a child process."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                env[f.metadata["env"]] = str(value)
        return env

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in fields(cls):
            name = f.metadata["env"]
            if f.name in overrides:
                value = overrides[f.name]
                values[f.name] = _parse(f.type, value) if isinstance(value, str) else value
                continue
            raw = environ.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = _parse(f.type, raw)
            except ValueError as exc:
                problems.append(f"{name}={raw!r}: {exc}")
        settings = cls(**values)
        problems.extend(settings.problems())
        if problems:
            raise ConfigError(problems)
        return settings

    def problems(self) -> list[str]:
        problems = []
        if self.storage_backend not in ("local", "s3"):
            problems.append(f"MP_STORAGE_BACKEND must be `local` or `s3`, not {self.storage_backend!r}")
        if self.storage_backend == "s3" and not self.s3_bucket:
            problems.append("MP_S3_BUCKET is required when MP_STORAGE_BACKEND=s3")
        if self.import_s3_addressing_style not in ("auto", "path", "virtual"):
            problems.append("MP_IMPORT_S3_ADDRESSING_STYLE must be auto, path or virtual")
        if self.s3_addressing_style not in ("auto", "path", "virtual"):
            problems.append("MP_S3_ADDRESSING_STYLE must be auto, path or virtual")
        if self.storage_fallback_url:
            from media_pipeline.storage.urls import settings_for

            try:
                settings_for(self.storage_fallback_url, self)
            except ValueError as exc:
                problems.append(f"MP_STORAGE_FALLBACK_URL: {exc}")
        scheme = urlparse(self.effective_catalog_url).scheme
        if scheme not in ("sqlite", "postgresql", "postgres"):
            problems.append(f"MP_CATALOG_URL must start with sqlite:// or postgresql://, not {scheme!r}")
        broker = urlparse(self.broker_url).scheme
        if broker not in ("filesystem", "redis", "rediss", "amqp", "amqps", "pyamqp", "memory"):
            problems.append(f"MP_BROKER_URL scheme {broker!r} is not filesystem, redis or amqp")
        for name in ("max_upload_bytes", "max_pixels", "max_animation_pixels", "max_frames", "stable_max_age", "presign_seconds", "task_soft_time_limit", "task_time_limit", "port", "api_workers", "api_threads", "vips_concurrency", "stuck_after_seconds", "max_attempts"):
            if getattr(self, name) <= 0:
                problems.append(f"{_env(name)} must be positive")
        if self.task_time_limit <= self.task_soft_time_limit:
            problems.append("MP_TASK_TIME_LIMIT must be greater than MP_TASK_SOFT_TIME_LIMIT")
        if self.worker_concurrency < 0 or self.task_max_retries < 0 or self.rendition_keep_seconds < 0:
            problems.append("MP_WORKER_CONCURRENCY, MP_TASK_MAX_RETRIES and MP_RENDITION_KEEP_SECONDS must not be negative")
        if any(len(k) < 16 for k in self.signing_key_list):
            problems.append("MP_SIGNING_KEYS: every key must be at least 16 characters")
        try:
            widths = self.ondemand_width_list
            if not widths or widths[0] < 16 or widths[-1] > 8192:
                problems.append("MP_ONDEMAND_WIDTHS must list widths between 16 and 8192")
        except ValueError:
            problems.append("MP_ONDEMAND_WIDTHS must be comma-separated integers")
        if any(parse_aspect(a) is None for a in self.ondemand_aspect_list):
            problems.append("MP_ONDEMAND_ASPECTS must list aspects A:B with A and B from 1 to 99")
        if self.dedupe_scope not in ("global", "owner"):
            problems.append("MP_DEDUPE_SCOPE must be global or owner")
        if not 0 <= self.near_distance <= 64:
            problems.append("MP_NEAR_DISTANCE must be between 0 and 64 (of 256 bits)")
        if self.keypoint_matching not in ("on", "off"):
            problems.append("MP_KEYPOINT_MATCHING must be on or off")
        if self.duplicate_index not in ("sql", "memory"):
            problems.append("MP_DUPLICATE_INDEX must be sql or memory")
        if self.keypoint_candidates < 1 or self.min_inliers < 8:
            problems.append("MP_KEYPOINT_CANDIDATES must be at least 1 and MP_MIN_INLIERS at least 8")
        if self.validation_url and (not self.validation_url.startswith(("http://", "https://")) or len(self.validation_secret) < 16):
            problems.append("MP_VALIDATION_URL must be an http(s) URL, with MP_VALIDATION_SECRET of at least 16 characters")
        if self.validation_timeout <= 0:
            problems.append("MP_VALIDATION_TIMEOUT must be positive")
        try:
            parse_sources(self.blocklists)
        except ValueError as exc:
            problems.append(f"MP_BLOCKLISTS: {exc}")
        if not 0 <= self.min_hash_quality <= 100:
            problems.append("MP_MIN_HASH_QUALITY must be between 0 and 100")
        try:
            parse_keys(self.api_keys)
        except ValueError as exc:
            problems.append(f"MP_API_KEYS: {exc}")
        try:
            parse_keys(self.operator_keys)
        except ValueError as exc:
            problems.append(f"MP_OPERATOR_KEYS: {exc}")
        if self.index_changes_keep_seconds < 60:
            problems.append("MP_INDEX_CHANGES_KEEP_SECONDS must be at least 60 (a process may still be waiting for a row that young)")
        if self.rate_limit < 0:
            problems.append("MP_RATE_LIMIT must not be negative")
        if self.serve_mode not in ("stream", "redirect"):
            problems.append("MP_SERVE_MODE must be stream or redirect")
        if self.serve_mode == "redirect" and self.storage_backend != "s3":
            problems.append("MP_SERVE_MODE=redirect needs MP_STORAGE_BACKEND=s3")
        if self.log_format not in ("text", "json"):
            problems.append("MP_LOG_FORMAT must be text or json")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append("MP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        if self.purge_url and (not self.purge_url.startswith(("http://", "https://")) or len(self.purge_secret) < 16):
            problems.append("MP_PURGE_URL must be an http(s) URL, with MP_PURGE_SECRET of 16+ characters")
        problems += self._webhook_problems()
        host, _, port = self.front_listen.rpartition(":")
        if not host or not port.isdecimal():
            problems.append("MP_FRONT_LISTEN must be host:port")
        if self.color_gamut not in ("p3", "srgb"):
            problems.append("MP_COLOR_GAMUT must be p3 or srgb")
        if self.hdr not in ("keep", "sdr"):
            problems.append("MP_HDR must be keep or sdr")
        if self.public_base_url.endswith("/"):
            problems.append("MP_PUBLIC_BASE_URL must not end with /")
        try:
            self.preset()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"MP_PRESETS_FILE {self.presets_file}: {exc}")
        return problems

    def _webhook_problems(self) -> list[str]:
        problems = []
        if any(not u.startswith(("http://", "https://")) for u in self.webhook_url_list):
            problems.append("MP_WEBHOOK_URLS must list http(s) URLs")
        try:
            keyed = self.webhook_receivers
        except ValueError as exc:
            problems.append(f"MP_WEBHOOK_KEY_URLS: {exc}")
            keyed = []
        try:
            names = {entry.name for entry in parse_keys(self.api_keys).values()}
        except ValueError:
            names = set()  # reported with MP_API_KEYS
        unknown = sorted({client for _, client in keyed if client is not None} - names)
        if unknown:
            problems.append(f"MP_WEBHOOK_KEY_URLS names keys that are not in MP_API_KEYS: {', '.join(unknown)}")
        if keyed:
            try:
                secret_key(self.webhook_secret)
            except ValueError as exc:
                problems.append(f"MP_WEBHOOK_SECRET is required with MP_WEBHOOK_URLS or MP_WEBHOOK_KEY_URLS: {exc}")
        if self.events_keep_seconds < self.webhook_retry_seconds:
            problems.append("MP_EVENTS_KEEP_SECONDS must be at least MP_WEBHOOK_RETRY_SECONDS (an event is kept while it is retried)")
        if self.webhook_retry_seconds <= 0 or self.webhook_timeout <= 0 or self.webhook_concurrency < 1:
            problems.append("MP_WEBHOOK_RETRY_SECONDS, MP_WEBHOOK_TIMEOUT and MP_WEBHOOK_CONCURRENCY must be positive")
        return problems

    @property
    def webhook_url_list(self) -> list[str]:
        return [u.strip() for u in self.webhook_urls.split(",") if u.strip()]

    @property
    def webhook_receivers(self) -> list[tuple[str, str | None]]:
        """(URL, API key name or ``None`` for every event) of each receiver; ``ValueError`` for a bad entry."""
        receivers: list[tuple[str, str | None]] = [(url, None) for url in self.webhook_url_list]
        for entry in (e.strip() for e in self.webhook_key_urls.split(",") if e.strip()):
            name, sep, url = entry.partition("=")
            if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"{entry!r} is not NAME=http(s)-URL")
            receivers.append((url.strip(), name.strip()))
        return receivers


def _env(field_name: str) -> str:
    return next(f.metadata["env"] for f in fields(Settings) if f.name == field_name)


def _parse(type_name: Any, raw: str) -> Any:
    type_name = str(type_name)
    if type_name.startswith("int"):
        return int(raw)
    if type_name.startswith("float"):
        return float(raw)
    if "Path" in type_name:
        return Path(raw)
    return raw


def settings_table() -> str:
    """The docs/operations.md table of settings, generated so it cannot drift from the code."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        default = f.default
        if isinstance(default, Path):
            default = "config/presets.toml" if default == PRESETS_FILE else str(default)
        rows.append(f"| `{f.metadata['env']}` | `{default}` | {f.metadata['doc']} |")
    return "\n".join(rows)
