"""docs/papers.md stays true: every path it names exists, every paper has its section, and every registered
mixer and model (with its file) appears in its paper's section, every reproduction slug in its paper's."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import attnlab.mixers as mixers
import attnlab.models as models
from attnlab.papers import PAPERS
from attnlab.repro import REPROS

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "papers.md").read_text()


def _sections() -> dict[str, str]:
    """Paper id -> the text of its ``## P..`` section."""
    parts = re.split(r"^## (P\d\d) ", DOC, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _file(module: str) -> str:
    return module.replace(".", "/") + ".py"


def test_every_path_named_exists():
    paths = set(re.findall(r"`((?:attnlab|tests|docs|benchmarks)/[^`\s]*)`", DOC))
    assert len(paths) > 50
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/papers.md names paths that do not exist: {missing}"


def test_every_paper_has_its_section_and_table_row():
    sections = _sections()
    assert sorted(sections) == sorted(PAPERS)
    for pid, paper in PAPERS.items():
        assert sections[pid].startswith(f"`{paper.slug}`: {paper.title}\n"), pid
        assert f"| {pid} | `{paper.slug}` | {paper.title} |" in DOC, pid


@pytest.mark.parametrize("info", mixers.available(), ids=lambda i: i.name)
def test_every_mixer_is_in_its_papers_section_with_its_file(info):
    assert f"`{info.name}` (`{_file(info.module)}`)" in _sections()[info.paper]


@pytest.mark.parametrize("info", models.available_info(), ids=lambda i: i.name)
def test_every_model_is_in_its_papers_section_with_its_file(info):
    section = _sections()[info.paper]
    assert f"`{info.name}`" in section and f"`{_file(info.module)}`" in section


@pytest.mark.parametrize("slug", sorted(REPROS))
def test_every_reproduction_is_in_its_papers_section(slug):
    pid = next(pid for pid, p in PAPERS.items() if p.slug == slug)
    assert f"`attnlab repro {slug}`: `{_file(REPROS[slug])}`" in _sections()[pid]


def test_papers_not_built_say_so():
    sections = _sections()
    built = {i.paper for i in mixers.available()} | {i.paper for i in models.available_info()}
    built |= {pid for pid, p in PAPERS.items() if p.slug in REPROS}
    for pid in sorted(set(PAPERS) - built):
        assert "not built yet" in sections[pid].lower(), pid


def test_readme_mixer_table_names_each_mixers_file_and_existing_ops():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| mixer | paper |"):]
    table = table[: table.index("\n\n")].splitlines()[2:]
    infos = {i.name: i for i in mixers.available()}
    seen = set()
    for row in table:
        cells = [c.strip() for c in row.strip("|").split("|")]
        names = re.findall(r"`([a-z0-9_]+)`", cells[0])
        mixer_file, _, ops = cells[-1].partition(" ops ")
        for name in names:
            assert f"`{_file(infos[name].module).removeprefix('attnlab/mixers/')}`" == mixer_file.rstrip(","), name
            seen.add(name)
        for op in re.findall(r"`([a-z_]+\.py)`", ops):
            assert (ROOT / "attnlab" / "ops" / op).exists(), (names, op)
    assert seen == set(infos), f"mixers missing from the README table: {sorted(set(infos) - seen)}"


def _expand_braces(path: str) -> list[str]:
    """``tests/ops/test_{a,b}.py`` -> the two paths (one brace group, as the notes write them)."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [path[: m.start()] + alt + path[m.end():] for alt in m.group(1).split(",")]


def test_every_test_file_the_notes_name_exists():
    text = "\n".join(p.read_text() for p in sorted((ROOT / "docs" / "notes").glob("*.md")))
    named = set(re.findall(r"tests/[A-Za-z0-9_/{},]*\.py", text))
    assert len(named) > 10
    missing = sorted(p for raw in named for p in _expand_braces(raw) if not (ROOT / p).exists())
    assert not missing, f"docs/notes/*.md name test files that do not exist: {missing}"
