"""The README is a manual: short, with contents and a glossary, every link alive, its numbers current."""

import re
from pathlib import Path

import pytest
import yaml

from largelr.config import study_cells

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_WORDS = 3000
# Terms the glossary defines (README, "Concepts and glossary").
GLOSSARY_TERMS = (
    "study",
    "cell",
    "pair",
    "knob",
    "usable range",
    "BC loss ratio",
    "unbiased test accuracy",
    "worst-group accuracy",
    "prunability",
    "activation compressibility",
    "sparsity",
    "PQ-index",
    "CSI",
    "BSI",
    "class separation",
    "attribution shares",
    "attribution entropy",
    "background share",
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# Development measurements belong in docs/ pages with their scripts, not in the manual.
TIMING = re.compile(r"\d[\d.,]*\s*(?:µs|ms|s|sec|min|minutes|h|hours|steps/s|images/s|GB|MB)\b")
HISTORY = ("this round", "before this", "first machine", "this machine", "this task", "engineer", "session")


def words(text: str) -> int:
    """What `wc -w` counts: runs of characters between ASCII whitespace."""
    return len(re.findall(r"[^ \t\n\r\v\f]+", text))


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def headings(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    inside_code = False
    found = []
    for line in lines:
        if line.startswith("```"):
            inside_code = not inside_code
        elif not inside_code and line.startswith("#"):
            found.append(line.lstrip("#").strip())
    return found


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def markdown_pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_word_count_within_limit():
    assert words("hello  wörld\tx\n") == 3
    count = words(README.read_text(encoding="utf-8"))
    assert count <= MAX_WORDS, f"README.md has {count} words (wc -w); at most {MAX_WORDS}: move detail to docs/"


def test_contents_lists_every_section():
    text = README.read_text(encoding="utf-8")
    contents = section(text, "Contents")
    listed = [target for target in LINK.findall(contents)]
    sections = [anchor(h) for h in headings(README) if h and not h.startswith("largelr") and h != "Contents"]
    top_level = [anchor(line[3:]) for line in text.splitlines() if line.startswith("## ") and line[3:] != "Contents"]
    assert listed == [f"#{name}" for name in top_level], "the contents must list every '## ' section, in order"
    assert set(top_level) <= set(sections)


def test_glossary_defines_every_term():
    glossary = section(README.read_text(encoding="utf-8"), "Concepts and glossary")
    entries = re.findall(r"^- \*\*([^*]+)\*\*|^\| ([^|]+?) \|", glossary, flags=re.M)
    defined = {(bold or cell).strip().lower() for bold, cell in entries}
    missing = [term for term in GLOSSARY_TERMS if not any(entry.startswith(term.lower()) for entry in defined)]
    assert not missing, f"glossary lacks {missing}"


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda path: path.name)
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # http(s), mailto
            continue
        path_part, _, fragment = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(ROOT) if ROOT in linked.parents else linked}")
        elif fragment and linked.suffix == ".md" and fragment not in {anchor(h) for h in headings(linked)}:
            broken.append(f"{target}: no heading with anchor #{fragment} in {linked.name}")
    assert not broken, f"{page.name} has broken links:\n" + "\n".join(broken)


def test_scripts_named_in_the_docs_exist():
    named = set()
    for page in markdown_pages():
        named |= set(
            re.findall(r"\b((?:benchmarks|tools)/[\w.-]+\.(?:py|sh|sbatch|yaml))", page.read_text(encoding="utf-8"))
        )
    assert named, "the docs name no script"
    assert not [name for name in sorted(named) if not (ROOT / name).exists()]


def test_no_development_measurements_in_readme():
    assert TIMING.findall("took 3 min 20 s at 705 steps/s")  # the pattern catches what it should
    text = README.read_text(encoding="utf-8")
    # One measured run may quote its wall time, between markers, with its command in docs/data.md.
    text = re.sub(r"<!-- measured run:.*?<!-- /measured run -->", "", text, flags=re.S)
    found = TIMING.findall(text)
    assert not found, f"timings {found} belong in docs/performance.md, with the command that measures them"


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda path: path.name)
def test_no_development_history(page):
    text = page.read_text(encoding="utf-8").lower()
    assert not [phrase for phrase in HISTORY if phrase in text], "the manual speaks of the pipeline, not of its making"


def paper_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))


def number(text: str) -> int:
    return int(text.replace(" ", "").replace(",", ""))


def test_readme_counts_match_the_config():
    """Every count the README quotes is recomputed from config.yaml (as benchmarks/grid_cost.py does)."""
    config = paper_config()
    text = " ".join(README.read_text(encoding="utf-8").split())
    studies = config["default_studies"]
    match = re.search(r"builds the (\d+) paper studies \(([\d ,]+) cells\)", text)
    assert match, "README should say how many paper studies and cells the default target builds"
    assert number(match.group(1)) == len(studies)
    assert number(match.group(2)) == sum(len(study_cells(config, study)) for study in studies)
    demo = re.search(r"([\d ]+) cells, trained to 100 % training accuracy", text)
    assert demo and number(demo.group(1)) == len(study_cells(config, "demo"))


def test_grid_cost_page_counts_match_the_config():
    config = paper_config()
    rows = re.findall(r"^\| (\w+) \| (\d+) \|", (ROOT / "docs" / "grid-cost.md").read_text(encoding="utf-8"), re.M)
    table = {study: int(cells) for study, cells in rows}
    assert set(table) == set(config["default_studies"])
    assert table == {study: len(study_cells(config, study)) for study in config["default_studies"]}
    total = re.search(r"\*\*total \(default target\)\*\* \| (\d+) \|", (ROOT / "docs" / "grid-cost.md").read_text())
    assert total and int(total.group(1)) == sum(table.values())


REPO_DIRS = ("src/", "tools/", "benchmarks/", "profiles/", "workflow/", "envs/", "tests/", "docs/", ".ci/")


def code_spans(text: str) -> list[str]:
    """Inline code and the lines of fenced code blocks."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)) + [
        line for block in fenced for line in block.splitlines()
    ]


def test_repository_paths_and_make_targets_exist():
    spans = code_spans(README.read_text(encoding="utf-8"))
    paths = {token.rstrip(").,;:") for span in spans for token in span.split() if token.startswith(REPO_DIRS)}
    assert "tools/local_slurm.sh" in paths  # the extraction finds what it should
    assert not sorted(path for path in paths if not (ROOT / path.rstrip("/")).exists())
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    named = {target for span in spans for target in re.findall(r"\bmake ([\w-]+)", span)}
    assert named and not named - targets, f"make targets not in the Makefile: {named - targets}"


def test_python_names_resolve():
    import importlib

    names = {
        name
        for span in code_spans(README.read_text(encoding="utf-8"))
        for name in re.findall(r"^(largelr(?:\.\w+)+)$", span)
    }
    assert "largelr.registry" in names  # the pattern finds the names the README gives
    unresolved = []
    for name in sorted(names):
        parts = name.split(".")
        for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            try:
                for attribute in parts[split:]:
                    obj = getattr(obj, attribute)
            except AttributeError:
                unresolved.append(name)
            break
        else:
            unresolved.append(name)
    assert not unresolved, f"README names {unresolved}, which do not exist"
