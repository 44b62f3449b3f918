"""README.md and docs/ against the code: the settings table, every shell command, the curl tour, the links.

The conventions these tests enforce are written down for authors in docs/testing.md ("Commands in
the docs"): a `sh` block after `<!-- tour -->` is run against a served app; a `media-pipeline` command
is run for real unless a `# needs: <what>` comment marks it as needing a service; make targets, bench
scripts, pytest files and markers, and every flag must exist; anything else must be marked.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.settings import Settings, settings_table
from tests import images
from tests.conftest import REPO, free_port

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOUR_MARK = "<!-- tour -->"
SETTINGS_START = "<!-- settings-table:"
SETTINGS_END = "<!-- end settings-table -->"
NEEDS = re.compile(r"#\s*needs:\s*(?P<what>\S.*)$")
SHELL_OPERATORS = {"|", "||", "&&", ";", "&"}
TOUR_HOST = "127.0.0.1:8080"


@dataclass(frozen=True)
class Command:
    """One logical shell line of a ```sh block, with the marker that applies to it."""

    doc: Path
    line: int
    code: str
    needs: str | None
    tour: bool

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def split_comment(line: str) -> tuple[str, str]:
    """``line`` as (code, comment): a ``#`` starts a comment at the start of a word outside quotes."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i:]
    return line.rstrip(), ""


def shell_blocks(doc: Path) -> list[tuple[int, list[str], bool]]:
    """(line number of the first command line, its lines, whether it is part of the tour) per ```sh block."""
    blocks: list[tuple[int, list[str], bool]] = []
    lines = doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            blocks.append((i + 2, lines[i + 1 : end], previous == TOUR_MARK))
            i = end
        i += 1
    return blocks


def commands(doc: Path) -> list[Command]:
    found: list[Command] = []
    for first, lines, tour in shell_blocks(doc):
        block_needs: str | None = None
        pending, start = "", first
        for number, raw in enumerate(lines, first):
            if not pending:
                start = number
            if raw.rstrip().endswith("\\"):  # a continued line is one command
                pending += raw.rstrip()[:-1] + " "
                continue
            code, comment = split_comment(pending + raw)
            pending = ""
            marker = NEEDS.search(comment)
            if not code.strip():
                if marker:  # a marker on a line of its own covers the rest of its block
                    block_needs = marker["what"]
                continue
            found.append(Command(doc, start, code.strip(), marker["what"] if marker else block_needs, tour))
    return found


ALL_COMMANDS = [command for doc in DOCS for command in commands(doc)]
CHECKED = [command for command in ALL_COMMANDS if not command.tour]


def words(code: str) -> tuple[dict[str, str], list[str]]:
    """The environment assignments in front of the first command of ``code``, and that command's words."""
    argv = shlex.split(code)
    env: dict[str, str] = {}
    while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
        name, value = argv.pop(0).split("=", 1)
        env[name] = value
    for i, word in enumerate(argv):
        if word in SHELL_OPERATORS:
            return env, argv[:i]
    return env, argv


def program(argv: list[str]) -> tuple[str, list[str]]:
    """Which program a command runs, named the same however the doc spells its path, and its arguments."""
    if not argv:
        return "", []
    name = Path(argv[0]).name
    if name == "media-pipeline":
        return "media-pipeline", argv[1:]
    if name == "make":
        return "make", argv[1:]
    if re.fullmatch(r"python3?(\.\d+)?", name) and len(argv) > 1:
        if argv[1:3] == ["-m", "pytest"]:
            return "pytest", argv[3:]
        if argv[1].startswith("bench/") and argv[1].endswith(".py"):
            return "bench", argv[1:]
    return name, argv[1:]


def flags(arguments: list[str]) -> list[str]:
    return [word.split("=", 1)[0] for word in arguments if word.startswith("-") and word != "-"]


def has_flag(help_text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text) is not None


@functools.cache
def cli_help(subcommand: str) -> str:
    """``media-pipeline SUBCOMMAND --help``, or '' when there is no such subcommand."""
    from media_pipeline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        main([subcommand, "--help"])
    return out.getvalue()


@functools.cache
def known_variables() -> frozenset[str]:
    """Every ``MP_*`` name a command may set: the settings, and what the tests and benchmarks read."""
    from dataclasses import fields

    names = {f.metadata["env"] for f in fields(Settings)}
    for source in [*(REPO / "tests").rglob("*.py"), *(REPO / "bench").glob("*.py")]:
        names |= set(re.findall(r"\bMP_[A-Z0-9_]+", source.read_text()))
    return frozenset(names)


@functools.cache
def registered_markers() -> frozenset[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return frozenset(m.split(":")[0].strip() for m in config["tool"]["pytest"]["ini_options"]["markers"])


def offline_env(scratch: Path, assigned: dict[str, str]) -> dict[str, str]:
    """The environment of a doc command run in ``scratch``: embedded defaults there, no MP_* of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MP_")}
    return {**env, "MP_DATA_DIR": str(scratch / "var"), **assigned, "PYTHONPATH": str(REPO)}


def write_photo(folder: Path, seed: int = 17) -> Path:
    photo = folder / "photo.jpg"
    photo.write_bytes(images.jpeg(images.natural(1000, 700, seed=seed)))
    return photo


# --------------------------------------------------------------------------- the README
def test_readme_is_short_and_opens_with_the_two_commands() -> None:
    readme = REPO / "README.md"
    lines = readme.read_text().splitlines()
    assert len(lines) <= 250
    first_line, first_block, _ = shell_blocks(readme)[0]
    assert [split_comment(line)[0].strip() for line in first_block] == ["make run", "make test"]
    first_section = next(number for number, line in enumerate(lines, 1) if line.startswith("## "))
    assert first_line < first_section, "the two commands come before the first section"


# --------------------------------------------------------------------------- the settings table
def committed_settings_table() -> str:
    text = (REPO / "docs" / "operations.md").read_text()
    start = text.index(SETTINGS_START)
    body = text[text.index("\n", start) + 1 : text.index(SETTINGS_END)]
    return body.rstrip("\n")


def test_settings_table_in_the_docs_is_what_the_code_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from media_pipeline.cli import main

    assert main(["settings"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    assert printed == settings_table()
    assert committed_settings_table() == printed, (
        "docs/operations.md's settings table differs from config/settings.py: "
        "paste the output of `media-pipeline settings` between its settings-table markers")


# --------------------------------------------------------------------------- every command
def test_the_docs_show_commands_and_a_tour() -> None:
    """The extraction below finds what the docs hold; if it found nothing, every check would pass."""
    assert len(CHECKED) >= 20
    assert len([c for c in ALL_COMMANDS if c.tour]) >= 4
    assert {program(words(c.code)[1])[0] for c in CHECKED} >= {"media-pipeline", "make", "bench", "pytest"}


def inline_commands(doc: Path) -> list[tuple[str, list[str]]]:
    """`media-pipeline SUB …`, `make TARGET` and `bench/NAME.py …` in the prose and tables of ``doc``,
    as (program, arguments) with the placeholders left out."""
    found: list[tuple[str, list[str]]] = []
    for span in re.findall(r"`([^`\n]+)`", doc.read_text()):
        span = span.replace("\\|", " ")  # alternatives in a table cell: `[--stale\|--all]`
        argv = span.split()
        if not argv:
            continue
        if Path(argv[0]).name == "python" and len(argv) > 1:
            argv = argv[1:]
        if Path(argv[0]).name == "media-pipeline" and len(argv) > 1 and re.fullmatch(r"[a-z][a-z-]*", argv[1]):
            found.append(("media-pipeline", [argv[1], *re.findall(r"--[a-z][\w-]*", " ".join(argv[2:]))]))
        elif argv[0] == "make" and len(argv) == 2 and re.fullmatch(r"[a-z][\w-]*", argv[1]):
            found.append(("make", argv[1:]))
        elif re.fullmatch(r"bench/[a-z_]+\.py", argv[0]):
            found.append(("bench", [argv[0], *re.findall(r"--[a-z][\w-]*", " ".join(argv[1:]))]))
    return found


@functools.cache
def make_targets() -> frozenset[str]:
    database = subprocess.run(["make", "-pRrq"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    return frozenset(re.findall(r"^([a-z][\w-]*):", database, re.MULTILINE))


@functools.cache
def bench_help(script: str) -> str:
    """``--help`` of a bench script that parses its arguments; '' for one that takes none."""
    if "argparse" not in (REPO / script).read_text():
        return ""  # --help would run the benchmark
    run = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_commands_named_in_the_text_exist_with_their_flags(doc: Path) -> None:
    wrong = []
    for name, arguments in inline_commands(doc):
        if name == "media-pipeline":
            help_text = cli_help(arguments[0])
            wrong += [f"media-pipeline {arguments[0]} {flag}" for flag in arguments[1:] if not has_flag(help_text, flag)]
            wrong += [] if help_text else [f"media-pipeline {arguments[0]}"]
        elif name == "make":
            wrong += [] if arguments[0] in make_targets() else [f"make {arguments[0]}"]
        elif not (REPO / arguments[0]).is_file():
            wrong.append(arguments[0])
        else:
            help_text = bench_help(arguments[0])
            wrong += [f"{arguments[0]} {flag}" for flag in arguments[1:] if not has_flag(help_text, flag)]
    assert not wrong, f"{doc.relative_to(REPO)} names commands or flags that do not exist: {wrong}"


@pytest.mark.parametrize("command", CHECKED, ids=[c.where for c in CHECKED])
def test_every_command_exists_and_runs_or_is_marked(command: Command, tmp_path: Path) -> None:
    assigned, argv = words(command.code)
    unknown = [name for name in assigned if name.startswith("MP_") and name not in known_variables()]
    assert not unknown, f"{command.where}: {unknown} are not settings (`media-pipeline settings`)"
    name, arguments = program(argv)
    if name == "media-pipeline":
        check_cli_command(command, assigned, arguments, tmp_path)
    elif name == "make":
        for target in [a for a in arguments if not a.startswith("-") and "=" not in a]:
            dry = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
            assert dry.returncode == 0, f"{command.where}: `make {target}` is not a target: {dry.stderr}"
    elif name == "pytest":
        check_pytest_command(command, arguments)
    elif name == "bench":
        assert command.needs, f"{command.where}: a benchmark is not run by the tests: mark it `# needs: …`"
        check_bench_command(command, arguments)
    else:
        assert command.needs, (f"{command.where}: `{command.code}` is neither run nor checked by tests/test_docs.py; "
                               "mark what it needs with `# needs: …` (see docs/testing.md)")


def check_cli_command(command: Command, assigned: dict[str, str], arguments: list[str], scratch: Path) -> None:
    assert arguments, f"{command.where}: `media-pipeline` without a subcommand"
    help_text = cli_help(arguments[0])
    assert help_text, f"{command.where}: `media-pipeline {arguments[0]}` is not a subcommand"
    missing = [flag for flag in flags(arguments[1:]) if not has_flag(help_text, flag)]
    assert not missing, f"{command.where}: `media-pipeline {arguments[0]}` has no {missing}"
    if command.needs:
        return
    write_photo(scratch)
    run = subprocess.run([sys.executable, "-m", "media_pipeline.cli", *arguments], cwd=scratch,
                         env=offline_env(scratch, assigned), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (f"{command.where}: `{command.code}` failed offline; mark what it needs with "
                                 f"`# needs: …`\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")


def check_pytest_command(command: Command, arguments: list[str]) -> None:
    selection = [arguments[i + 1] for i, word in enumerate(arguments[:-1]) if word == "-m"]
    for expression in selection:
        named = set(re.findall(r"[A-Za-z_]\w*", expression)) - {"and", "or", "not"}
        assert named <= registered_markers(), f"{command.where}: unregistered markers {named - registered_markers()}"
    paths = [word.split("::")[0] for i, word in enumerate(arguments)
             if not word.startswith("-") and (i == 0 or arguments[i - 1] != "-m")]
    missing = [path for path in paths if not (REPO / path).exists()]
    assert not missing, f"{command.where}: no such test files {missing}"


def check_bench_command(command: Command, arguments: list[str]) -> None:
    script = REPO / arguments[0]
    assert script.is_file(), f"{command.where}: no {arguments[0]}"
    help_text = bench_help(arguments[0])
    missing = [flag for flag in flags(arguments[1:]) if not has_flag(help_text, flag)]
    assert not missing, f"{command.where}: {arguments[0]} has no {missing}"


# --------------------------------------------------------------------------- the tour
def tour_script(port: int) -> str:
    blocks = ["\n".join(lines) for doc in DOCS for _, lines, tour in shell_blocks(doc) if tour]
    script = "\n".join(blocks)
    assert TOUR_HOST in script
    return "set -euo pipefail\n" + script.replace(TOUR_HOST, f"127.0.0.1:{port}")


def wait_healthy(port: int, serve: subprocess.Popen[bytes], log: Path) -> None:
    import http.client

    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline and serve.poll() is None, log.read_text()
        time.sleep(0.3)


@pytest.mark.slow
def test_the_readme_tour_runs_against_media_pipeline_serve(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MP_")}
    log = tmp_path / "serve.log"
    with open(log, "wb") as log_file:
        serve = subprocess.Popen(
            [sys.executable, "-m", "media_pipeline.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path / "var")],
            env=env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_healthy(port, serve, log)
        write_photo(tmp_path)
        tour = subprocess.run(["bash", "-c", tour_script(port)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=180)
    finally:
        os.killpg(serve.pid, signal.SIGINT)  # Ctrl-C, as the README tells a user to stop `make run`
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
    assert tour.returncode == 0, f"{tour.stdout}\n{tour.stderr}\n{log.read_text()[-3000:]}"
    out = [line for line in tour.stdout.splitlines() if line.strip()]
    upload = json.loads(out[0])
    assert upload["status"] == "queued"
    photo_id = upload["id"]
    record = json.loads("\n".join(out[1 : next(i for i, line in enumerate(out) if line.startswith("200 "))]))
    assert record["id"] == photo_id and record["status"] == "ready", record
    assert any(r["format"] == "avif" and r["width"] == 640 for r in record["renditions"])
    fetched = next(line for line in out if line.startswith("200 "))
    assert fetched.split()[1] == "image/avif"
    assert images.decode((tmp_path / "photo-640.avif").read_bytes()).width == 640
    search = json.loads(out[-1])
    assert [(d["id"], d["kind"]) for d in search["duplicates"]] == [(photo_id, "exact")]


# --------------------------------------------------------------------------- links
def heading_anchors(doc: Path) -> set[str]:
    """GitHub's anchors for the headings of ``doc``: lower case, punctuation dropped, spaces to hyphens."""
    anchors: set[str] = set()
    in_code = False
    for line in doc.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"#{1,6}\s+(.*)", line)):
            text = re.sub(r"[`*_]", "", m[1]).strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text)))
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_relative_links_point_at_files_and_headings_that_exist(doc: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked)):
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: broken links {broken}"
