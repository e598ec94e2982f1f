from __future__ import annotations

import textwrap

from sweepspec.spec import check_text
from sweepspec.spec.paths import leaf_paths, nest, nested_names

SPEC = """
    method: random
    parameters:
      trainer.epochs:
        value: 3
      opt:
        parameters:
          lr:
            min: 0.001
            max: 0.1
          adam:
            parameters:
              beta1:
                values: [0.9, 0.99]
      x:
        values: [1, 2]
"""


def _parameters() -> dict[str, object]:
    checked = check_text(textwrap.dedent(SPEC), "s.yaml")
    assert checked.spec is not None, [f.format() for f in checked.findings]
    return dict(checked.spec.parameters or {})


def test_leaf_paths_keep_a_dotted_top_level_name_as_one_key_in_file_order() -> None:
    assert leaf_paths(_parameters()) == {
        "trainer.epochs": ("trainer.epochs",),
        "opt.lr": ("opt", "lr"),
        "opt.adam.beta1": ("opt", "adam", "beta1"),
        "x": ("x",),
    }
    assert list(leaf_paths(_parameters())) == ["trainer.epochs", "opt.lr", "opt.adam.beta1", "x"]


def test_nested_names_are_the_nested_parameters_not_their_leaves() -> None:
    assert nested_names(_parameters()) == {"opt", "opt.adam"}


def test_no_parameters_have_no_paths() -> None:
    assert (leaf_paths(None), nested_names(None)) == ({}, set())


def test_nest_follows_the_spec_paths() -> None:
    paths = leaf_paths(_parameters())
    flat = {"trainer.epochs": 3, "opt.lr": 0.1, "opt.adam.beta1": 0.9, "x": 1, "extra.y": 2}
    assert nest(flat, paths) == {
        "trainer.epochs": 3,
        "opt": {"lr": 0.1, "adam": {"beta1": 0.9}},
        "x": 1,
        "extra.y": 2,
    }
