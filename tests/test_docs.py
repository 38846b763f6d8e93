"""The reference pages stay current with the code: every config key with its default, every test a promise names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from pydantic import BaseModel

from nmt.config import Config

DOCS = REPO / "docs"


def config_fields(model: type[BaseModel] = Config, prefix: str = "") -> dict[str, object]:
    """Dotted key -> default for every leaf field of the config."""
    fields: dict[str, object] = {}
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            fields.update(config_fields(field.annotation, f"{prefix}{name}."))
        else:
            fields[prefix + name] = field.get_default(call_default_factory=True)
    return fields


def yaml_literal(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_configuration_page_lists_every_key_with_its_default():
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", page, re.MULTILINE))
    fields = config_fields()
    assert set(rows) == set(fields), "keys documented but not in nmt/config.py, or the reverse"
    for key, default in fields.items():
        assert rows[key] == yaml_literal(default), f"{key}: documented default {rows[key]}, code {default!r}"


def named_tests(page: Path) -> list[tuple[str, str]]:
    """(file, test) for every `tests/x.py::name` and every `::name` following such a file on the page."""
    found, current = [], None
    for match in re.finditer(r"`(tests/\w+\.py)(?:::(\w+))?`|`::(\w+)`", page.read_text(encoding="utf-8")):
        path, name, continued = match.groups()
        current = path or current
        if name or continued:
            found.append((current, name or continued))
    return found


def test_every_test_a_guarantee_names_exists():
    tests = named_tests(DOCS / "guarantees.md")
    assert len(tests) >= 20
    for path, name in tests:
        source = (REPO / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{path}::{name} named in docs/guarantees.md"


PAGES = ["README.md", "benchmarks/README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))]


def headings(text: str) -> set[str]:
    """The anchors GitHub makes of a Markdown page's headings (code blocks skipped, repeats numbered)."""
    anchors, seen, fenced = set(), {}, False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"#{1,6} (.+)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def broken_links(path: Path, text: str) -> list[str]:
    """Every link of a page to a file of the repository that does not exist, or to a heading its page lacks."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue  # web links
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in headings(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: no such heading")
    return broken


@pytest.mark.parametrize("page", PAGES)
def test_links_to_files_and_headings_of_the_repository_resolve(page):
    path = REPO / page
    assert not broken_links(path, path.read_text(encoding="utf-8")), f"{page} links to what does not exist"


# Words about how the work was organised, which a product's docs do not need: history lives in git.
HISTORY = {
    "a work session": re.compile(r"(?<!test )(?<!process )\bsessions?\b", re.IGNORECASE),
    "an issue": re.compile(r"\bissue\s*#?\d+|\bthe issue\b|\bissue's\b", re.IGNORECASE),
    "a run's label": re.compile(r"\b[Rr]uns? (?:`[A-Z]\d*`|[A-Z]\d*\b(?![=`]))(?! client)"),
    "a numbered run": re.compile(r"\b(?:third|fourth|fifth|sixth|seventh|eighth|ninth|tenth) (?:run|session)\b", re.I),
    "a dated heading": re.compile(r"^#+ .*\b20\d\d-\d\d-\d\d", re.MULTILINE),
    "a change's date": re.compile(r"\b(?:since|until|before|after) 20\d\d-\d\d-\d\d", re.IGNORECASE),
    "a branch": re.compile(r"\bthis branch\b", re.IGNORECASE),
}


def history_words(text: str) -> list[str]:
    return [f"{kind}: {match.group(0)!r}" for kind, pattern in HISTORY.items() for match in pattern.finditer(text)]


def test_docs_say_what_is_true_now_not_how_the_work_went():
    files = [REPO / "README.md", *(p for p in sorted(DOCS.rglob("*")) if p.is_file())]
    found = []
    for path in files:
        if path.suffix in {".png", ".hyp"}:  # images, and translations a model wrote
            continue
        found += [f"{path.relative_to(REPO)}: {word}" for word in history_words(path.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


def results_table(readme: str) -> list[dict[str, str]]:
    """The rows of the README's results table, each as {column: cell}."""
    section = readme.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, [cell.strip() for cell in line.strip("|").split("|")], strict=True)) for line in lines[2:]]


def bleu(scores: dict, key: str) -> float:
    return scores["scores"][key]["bleu"]


def readme_results_disagreements(readme: str) -> list[str]:
    """Every BLEU figure of the README's results table against the result file its row links to."""
    wrong, attention_int8 = [], []
    rows = results_table(readme)
    assert len(rows) >= 4, "the README's results table has a row per shipped Multi30k config"
    for row in rows:
        (file,) = re.findall(r"\]\(([^)]+\.json)\)", row["scores"])
        scores = json.loads((REPO / file).read_text(encoding="utf-8"))
        config = re.search(r"`(configs/[\w.]+)`", row["config"]).group(1)
        if scores["config"] != config:
            wrong.append(f"{config}: its scores file is of {scores['config']}")
        shown = float(re.search(r"\*\*([\d.]+)\*\*", row["test BLEU"]).group(1))
        if shown != bleu(scores, "test_fp32"):
            wrong.append(f"{config}: test BLEU {shown}, {file} {bleu(scores, 'test_fp32')}")
        fp32 = re.search(r"in fp32: ([\d.]+)", row["training time"])
        if fp32 and float(fp32.group(1)) != (in_file := bleu(scores["trained_in_fp32"], "test_fp32")):
            wrong.append(f"{config}: trained in fp32 {fp32.group(1)}, {file} {in_file}")
        if int(row["epochs"]) != scores["training"]["epochs"]:
            wrong.append(f"{config}: {row['epochs']} epochs, {file} {scores['training']['epochs']}")
        if "attention" in config:
            attention_int8.append(bleu(scores, "test_int8"))
    int8 = re.search(r"int8 search gives ([\d.]+) and ([\d.]+) on the attention rows", readme)
    if [float(figure) for figure in int8.groups()] != attention_int8:
        wrong.append(f"int8 search: the README says {int8.groups()}, the result files {attention_int8}")
    return wrong


def test_readme_results_table_agrees_with_the_result_files_it_names():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert not readme_results_disagreements(readme)


def test_shipped_configs_train_the_epochs_their_results_name():
    for path in sorted((DOCS / "results" / "shipped_models").glob("*.json")):
        scores = json.loads(path.read_text(encoding="utf-8"))
        config = yaml.safe_load((REPO / scores["config"]).read_text(encoding="utf-8"))
        assert config["train"]["max_epochs"] == scores["training"]["epochs"], path.name


def test_readme_layout_names_every_module():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme.split("\n## Layout\n", 1)[1]
    blocks = dict(re.findall(r"^(nmt/bench/|nmt/|serve/) +(.*(?:\n {12}.*)*)", layout, re.MULTILINE))
    for package, block in blocks.items():
        words = set(re.findall(r"\w+", block))
        for module in sorted((REPO / package).glob("*.py")):
            if module.stem not in {"__init__", "__main__"}:
                assert module.stem in words, f"README's layout leaves out {package}{module.name}"
    assert set(blocks) == {"nmt/", "nmt/bench/", "serve/"}
