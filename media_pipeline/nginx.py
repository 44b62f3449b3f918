"""Runs the nginx front: its configuration from the settings, and the command that starts it.

The text itself comes from ``front.py`` (pure); this module is the adapter that reads settings,
writes files and finds the binary.
"""

from __future__ import annotations

import getpass
import os
import shutil
from pathlib import Path

from config.settings import Settings
from media_pipeline import front


class NginxMissing(RuntimeError):
    pass


def front_for(settings: Settings, listen: str | None = None, upstream: str | None = None,
              runtime_dir: Path | None = None, run_as_me: bool = False) -> front.Front:
    """The front for these settings. ``run_as_me``: nginx started by this process (serve, tests)
    runs its workers as this user, who can read the storage folder; root's nginx would otherwise
    switch them to ``nobody``."""
    run = (runtime_dir or settings.front_dir).resolve()
    return front.Front(
        listen=listen or settings.front_listen,
        upstream=upstream or f"http://{settings.bind_host}:{settings.port}",
        shape=front.shape_for(settings.storage_backend),
        runtime_dir=run,
        storage_objects=(settings.effective_storage_dir / "objects").resolve(),
        cache_dir=run / "cache",
        mirror_dir=run / "mirror",
        server_name=front.server_name_for(settings.public_base_url),
        user=getpass.getuser() if run_as_me and os.geteuid() == 0 else None,
    )


def find_nginx() -> str:
    found = shutil.which("nginx")
    if found is None:
        raise NginxMissing("no nginx binary on PATH (Debian/Ubuntu: apt-get install nginx-light; macOS: brew install nginx)")
    return found


def prepare(config: front.Front) -> Path:
    """Write the configuration and make the folders it names; the path of the file."""
    for sub in ("", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (config.runtime_dir / sub).mkdir(parents=True, exist_ok=True)
    if config.shape == "cache":
        for folder in (config.cache_dir, config.mirror_dir):
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
    path = config.runtime_dir / "nginx.conf"
    path.write_text(front.render(config))
    return path


def command(binary: str, conf: Path) -> list[str]:
    """nginx in the foreground (a supervised child), its start-up errors on stderr."""
    return [binary, "-p", str(conf.parent), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"]


def purge_cache(config: front.Front, paths: list[str]) -> int:
    """Delete the cache shape's entries and mirror copies for these paths (nginx open source has no
    purge): nginx finds them gone, takes it as a miss and asks the app. How many were there."""
    if config.shape != "cache":
        return 0
    files = []
    if config.cache_dir is not None and config.cache_dir.is_dir():
        files += [front.cache_file(config.cache_dir, key) for key in front.cache_keys(paths)]
    if config.mirror_dir is not None and config.mirror_dir.is_dir():
        files += front.mirror_files(config.mirror_dir, paths)
    removed = 0
    for file in files:
        try:
            file.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def prune_mirror(config: front.Front, now: float) -> int:
    """Delete the mirror's copies not read for MIRROR_UNREAD_DAYS (by access time: Linux's default
    ``relatime`` updates it at least daily; on a ``noatime`` mount a copy is refetched once a
    week) and the folders that leaves empty. How many copies went."""
    if config.shape != "cache" or config.mirror_dir is None or not config.mirror_dir.is_dir():
        return 0
    cutoff = now - front.MIRROR_UNREAD_DAYS * 86400
    removed = 0
    for folder, _, names in os.walk(config.mirror_dir, topdown=False):
        for name in names:
            path = Path(folder) / name
            try:
                if path.stat().st_atime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        if Path(folder) != config.mirror_dir:
            try:
                Path(folder).rmdir()
            except OSError:  # not empty
                pass
    return removed
