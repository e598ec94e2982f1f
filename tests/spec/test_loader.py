from __future__ import annotations

from pathlib import Path

from sweepspec.spec.loader import Mark, load, loads


def test_positions_of_keys_and_values() -> None:
    doc = loads("method: grid\nparameters:\n  lr:\n    values: [1, 2]\n", "s.yaml")
    assert doc.findings == []
    assert doc.key_marks[("parameters", "lr")] == Mark(3, 3)
    assert doc.value_marks[("parameters", "lr", "values")] == Mark(4, 13)
    assert doc.value_marks[("parameters", "lr", "values", 1)] == Mark(4, 17)


def test_duplicate_key_is_an_error_at_the_second_one() -> None:
    doc = loads("method: grid\nmethod: random\n", "s.yaml")
    assert [f.format() for f in doc.findings] == [
        "s.yaml:2:1: error: method: duplicate key 'method' (first at line 1); PyYAML and W&B "
        "would silently keep only the last one"
    ]
    assert doc.data == {"method": "random"}


def test_yaml12_floats_are_numbers_with_a_warning() -> None:
    doc = loads("a: 1e-5\nb: '1e-5'\nc: 1.0e5\nd: 3E2\ne: 1.0e-5\n", "s.yaml")
    assert doc.data == {"a": 1e-5, "b": "1e-5", "c": 1e5, "d": 300.0, "e": 1e-5}
    assert [f.format() for f in doc.findings] == [
        "s.yaml:1:4: warning: a: '1e-5' is a string to PyYAML (YAML 1.1) and so to W&B; "
        "sweepspec reads it as the number 1e-05 (YAML 1.2). Write 1.0e-05 so that every tool "
        "reads the same number",
        "s.yaml:3:4: warning: c: '1.0e5' is a string to PyYAML (YAML 1.1) and so to W&B; "
        "sweepspec reads it as the number 100000.0 (YAML 1.2). Write 100000.0 so that every tool "
        "reads the same number",
        "s.yaml:4:4: warning: d: '3E2' is a string to PyYAML (YAML 1.1) and so to W&B; "
        "sweepspec reads it as the number 300.0 (YAML 1.2). Write 300.0 so that every tool "
        "reads the same number",
    ]


def test_yaml11_scalars_keep_pyyaml_meaning() -> None:
    doc = loads("a: yes\nb: 1.5e+3\nc: null\nd: !!float 1\ne: 0x10\n")
    assert doc.data == {"a": True, "b": 1500.0, "c": None, "d": 1.0, "e": 16}


def test_merge_keys_and_aliases() -> None:
    doc = loads("base: &b {min: 1, max: 2}\nlr:\n  <<: *b\n  max: 3\n")
    assert doc.data["lr"] == {"min": 1, "max": 3}


def test_recursive_alias_is_an_error() -> None:
    doc = loads("a: &x [1, *x]\n", "s.yaml")
    assert [f.format() for f in doc.findings] == [
        "s.yaml:1:4: error: a[1]: an alias refers to the node that contains it; a spec cannot "
        "be recursive"
    ]


def test_alias_bomb_is_refused() -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 7):
        text += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    doc = loads(text, "s.yaml")
    assert doc.data is None
    assert [f.format() for f in doc.findings] == [
        "s.yaml:1:1: error: the document expands to more than 200000 nodes (aliases?); "
        "refusing to read it"
    ]


def test_syntax_error_points_at_the_problem() -> None:
    doc = loads("method: grid\nparameters:\n  lr: [1, 2\n", "s.yaml")
    assert [f.format() for f in doc.findings] == [
        "s.yaml:4:1: error: not valid YAML: while parsing a flow sequence did not find "
        "expected ',' or ']'"
    ]


def test_unsupported_tag() -> None:
    doc = loads("a: !!python/name:os.system x\n", "s.yaml")
    assert [f.format() for f in doc.findings] == [
        "s.yaml:1:4: error: a: unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system';"
        " a spec holds plain values only"
    ]


def test_empty_file_and_missing_file(tmp_path: Path) -> None:
    empty = tmp_path / "e.yaml"
    empty.write_text("# nothing\n")
    assert [f.format() for f in load(str(empty)).findings] == [
        f"{empty}:1:1: error: the file is empty; a spec is a mapping with at least 'method' and "
        "'parameters'"
    ]
    missing = tmp_path / "m.yaml"
    assert [f.format() for f in load(str(missing)).findings] == [
        f"{missing}:1:1: error: cannot read the file: No such file or directory"
    ]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_bytes(b"method: grid\n\xff\xfe\n")
    assert [f.format() for f in load(str(path)).findings] == [
        f"{path}:1:1: error: not UTF-8 text (byte 13); a spec must be UTF-8"
    ]


def test_too_many_nodes_is_refused_before_a_tree_is_built() -> None:
    """Counted on the parser's events: no list is over the limit, the file is."""
    items = ", ".join(["1"] * 70_000)
    doc = loads(f"a: [{items}]\nb: [{items}]\nc: [{items}]\n", "s.yaml")
    assert doc.data is None
    assert [f.format() for f in doc.findings] == [
        "s.yaml:1:1: error: the file has more than 200000 YAML nodes; a sweep spec has a few "
        "hundred: refusing to read it"
    ]


def test_text_over_the_size_limit_is_refused() -> None:
    doc = loads("a: " + "x" * (1024 * 1024) + "\n", "s.yaml")
    assert [f.format() for f in doc.findings] == [
        "s.yaml:1:1: error: the file is 1048580 bytes, more than 1048576 (1 MiB); a sweep spec "
        "is a few KB: refusing to read it"
    ]
