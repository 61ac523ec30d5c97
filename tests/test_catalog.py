"""The catalog: every chapter item, in order, and a validator that explains each problem."""

from __future__ import annotations

import dataclasses
import re

from workbook import catalog

CHAPTER_ITEMS = [
    "dc1_1", "dc1_2", "dc1_3", "cc1_1", "cc1_2", "cc1_3", "cc1_4",
    "ce2_1", "ce2_2", "ap2_1",
    "ce3_1", "ce3_2", "ce3_3", "ce3_4", "ap3_1", "ap3_2",
    "ce4_1", "ce4_2", "ce4_3", "ap4_1", "ap4_2",
    "ce5_1", "ce5_2", "ap5_1",
    "ap6_1", "ap6_2", "ap6_3",
    "capstone", "self_test",
]


def test_catalog_lists_every_chapter_item_in_order(monkeypatch):
    """The catalog holds exactly the chapter's items, in learning order."""
    monkeypatch.delenv("WORKBOOK_ROOT", raising=False)
    assert [e.id for e in catalog.load()] == CHAPTER_ITEMS


def test_repository_catalog_has_no_problems(monkeypatch):
    """The real catalog passes its own validator."""
    monkeypatch.delenv("WORKBOOK_ROOT", raising=False)
    assert catalog.problems(catalog.load()) == []


def test_validator_explains_each_problem(course):
    """Duplicate ids, empty hints, unknown services and missing graders are each reported with a fix."""
    demo = catalog.load()[0]
    broken = [
        demo,
        dataclasses.replace(demo, hints=("",), services=("kafka",)),
        dataclasses.replace(demo, id="ghost", kind="essay"),
    ]
    found = "\n".join(catalog.problems(broken))
    assert "id is used twice" in found
    assert "empty hint" in found and "why a hint isn't needed" in found
    assert "unknown services ['kafka']" in found
    assert "kind 'essay'" in found
    assert "graders/ghost/ has no test_*.py" in found


def test_get_unknown_id_lists_known_ids(course):
    """Asking for an unknown exercise names the ones that exist."""
    try:
        catalog.get("nope")
    except KeyError as exc:
        assert "demo" in exc.args[0] and "later" in exc.args[0]
    else:
        raise AssertionError("catalog.get('nope') should raise KeyError")


def test_malformed_catalog_is_a_clear_error(course):
    """A catalog entry without a required field names the entry and the field."""
    (course / "catalog.toml").write_text('[[exercises]]\nid = "x"\n')
    try:
        catalog.load()
    except catalog.CatalogError as exc:
        assert "exercise #1 (x)" in str(exc) and "'title'" in str(exc)
    else:
        raise AssertionError("a catalog entry without a title should be refused")


def test_readme_lists_every_ready_exercise():
    """The README's "What is ready" table names each ready exercise, and nothing that is not ready."""

    from workbook.paths import PACKAGE_DIR

    text = (PACKAGE_DIR.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("## What is ready", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.MULTILINE))
    ready = {exercise.id for exercise in catalog.load() if exercise.status == "ready"}
    assert listed == ready, (
        f"README.md's 'What is ready' table should list exactly the ready exercises: "
        f"missing {sorted(ready - listed)}, not ready {sorted(listed - ready)}")


def test_grader_test_files_have_unique_names():
    """`pytest graders` collects every exercise's checks in one session, where two test files
    with the same name (graders/a/test_x.py, graders/b/test_x.py) fail with "import file mismatch"."""
    from workbook.paths import PACKAGE_DIR

    seen: dict[str, str] = {}
    clashes = []
    for path in sorted((PACKAGE_DIR.parent / "graders").glob("*/test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name]} and {path.parent.name}/{path.name}")
        seen.setdefault(path.name, f"{path.parent.name}/{path.name}")
    assert not clashes, f"grader test files must have names unique across graders/: {clashes}"
