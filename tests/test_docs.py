"""The reference pages stay current with the code: every config key with its default, every test a promise names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
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


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in DOCS.glob("*.md"))])
def test_links_to_files_of_the_repository_resolve(page):
    path = REPO / page if page == "README.md" else DOCS / page
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue  # web links
        assert (path.parent / target).exists(), f"{page} links to {target}, which does not exist"
