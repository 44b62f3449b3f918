"""The layers point one way: workers/ (the Celery adapter) sits on top of media_pipeline/ (the
service layer and its ports), which never imports it; the entry points hand the queue adapter to
``service.build_services``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "media_pipeline"
# The `media-pipeline` command is a process entry point: its `worker` command runs the Celery
# worker, and `api`, `reprocess`, `import` and `reconcile` hand Celery's queue to build_services. Its
# modules are the only ones under media_pipeline/ that may name the adapter (api.py, the WSGI
# entry point, is outside the package): cli.py and the command groups it splits out.
ENTRY_POINTS = {PACKAGE / "cli.py", PACKAGE / "cli_jobs.py"}
_DYNAMIC_IMPORTS = {"import_module", "__import__"}


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module name) of every import in a file, at any depth (imports inside functions
    too), and of every module named as a string to ``importlib.import_module`` or ``__import__``.
    Relative imports are left out: they stay inside their own package, and ``workers`` is another."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in _DYNAMIC_IMPORTS and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def imports_of_workers(path: Path, root: Path) -> list[str]:
    """Where ``path`` imports the worker package, as ``file:line imports module`` (file relative to ``root``)."""
    return [f"{path.relative_to(root)}:{line} imports {module}"
            for line, module in imported_modules(path) if module == "workers" or module.startswith("workers.")]


def test_nothing_under_media_pipeline_imports_workers() -> None:
    modules = [path for path in sorted(PACKAGE.rglob("*.py")) if path not in ENTRY_POINTS]
    assert PACKAGE / "service.py" in modules  # the walk found the package, not an empty folder
    offenders = [found for path in modules for found in imports_of_workers(path, REPO)]
    assert offenders == [], "the service layer must not import the worker adapter; hand the queue in from an entry point"


def test_the_check_finds_every_form_of_import(tmp_path: Path) -> None:
    """The check above can fail: each way a module could reach the worker is seen."""
    module = tmp_path / "layered.py"
    module.write_text(
        "import importlib\n"
        "import workers.tasks as tasks\n"
        "from media_pipeline.queue import CeleryQueue\n"
        "def build():\n"
        "    from workers.celery_app import app\n"
        "    importlib.import_module('workers.pool')\n"
        "    return __import__('workers')\n"
    )
    assert imports_of_workers(module, tmp_path) == [
        "layered.py:2 imports workers.tasks",
        "layered.py:5 imports workers.celery_app",
        "layered.py:6 imports workers.pool",
        "layered.py:7 imports workers",
    ]


IMPORT_ALL = """
import importlib, pkgutil, sys
import media_pipeline
for module in pkgutil.walk_packages(media_pipeline.__path__, "media_pipeline."):
    if module.name not in ("media_pipeline.cli", "media_pipeline.cli_jobs"):
        importlib.import_module(module.name)
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in ("workers", "celery"))))
"""


def test_importing_the_service_layer_loads_neither_the_worker_nor_celery() -> None:
    """What the AST cannot see (an import made by a dependency, or by a name built at run time)
    shows in ``sys.modules`` after importing every module of the package but the entry point."""
    loaded = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == []
