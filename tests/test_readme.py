"""The README and the docs pages it links stay true to the code: links resolve, configuration keys
exist, and every command line parses with the options and overrides the commands really have."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import pytest

from medguna.cli import build_parser
from medguna.compose import compose_dict

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *(REPO / "docs" / name for name in (
    "statistics.md", "studies.md", "description-sets.md", "shift-benchmark.md"))]
CONFIG_ROOTS = ("data", "model", "method", "search", "resources", "storage", "runtime", "study")
FILE_SUFFIXES = {"json", "lock", "md", "yaml", "py", "db", "html", "csv", "parquet", "txt", "safetensors", "bin", "zip"}


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def _links(page: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", page.read_text())


def test_the_readme_is_a_short_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 360, f"README.md has {len(lines)} lines; long text belongs in docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for link in _links(page):
        if re.match(r"^[a-z]+://", link):
            continue
        path_part, _, anchor = link.partition("#")
        target = (page.parent / path_part).resolve() if path_part else page
        if not target.exists() or (target.suffix == ".md" and anchor and anchor not in _anchors(target)):
            broken.append(link)
    assert not broken, f"{page.name}: broken links {broken}"


@functools.cache
def _composed_keys() -> frozenset[str]:
    keys: set[str] = set()

    def walk(prefix: str, value) -> None:
        keys.add(prefix)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    for variant in ([], ["search=wide", "method=reference", "resources=gpu"]):
        walk("", compose_dict(variant))
    return frozenset(keys)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_configuration_key_named_exists(page: Path) -> None:
    known = _composed_keys()
    pattern = rf"(?<![\w./-])((?:{'|'.join(CONFIG_ROOTS)})(?:\.[a-z_][a-z0-9_]*)+)"
    unknown = set()
    for key in re.findall(pattern, page.read_text()):
        if key.rsplit(".", 1)[-1] in FILE_SUFFIXES:
            continue  # a file name such as study.json
        if key not in known:
            unknown.add(key)
    assert not unknown, f"{page.name} names configuration keys that do not exist: {sorted(unknown)}"


def _command_lines(page: Path) -> list[str]:
    """Every `medguna ...` and `python studies/run.py ...` line of the page's shell blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith(("medguna ", "python studies/run.py ")):
                commands.append(line)
    return commands


def _overrides(tokens: list[str]) -> list[str]:
    return [t for t in tokens if not t.startswith("-") and "=" in t]


RUN_OPTIONS = set(re.findall(r"add_argument\(\s*\"(--[a-z-]+)\"", (REPO / "studies" / "run.py").read_text()))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_line_parses(page: Path) -> None:
    for line in _command_lines(page):
        tokens = shlex.split(line)
        if tokens[0] == "medguna":
            args, extra = build_parser().parse_known_args(tokens[1:])
            assert not [t for t in extra if t.startswith("-")], line
            overrides = list(getattr(args, "overrides", [])) + _overrides(extra)
        else:
            options = {t.split("=", 1)[0] for t in tokens[2:] if t.startswith("--")}
            assert options <= RUN_OPTIONS, f"{line}: unknown options {options - RUN_OPTIONS}"
            overrides = _overrides(tokens[2:])
        # `medguna trial` takes the dataset as an override; a study's overrides compose as given.
        compose_dict(overrides)
