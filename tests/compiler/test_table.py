"""The mapping table is the compilers' truth, and the docs are generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from sweepspec.compiler import table
from sweepspec.compiler.distributions import DISTRIBUTIONS, to_optuna
from sweepspec.spec.models import DISTRIBUTION_MODELS, STOPPING_MODELS

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## How the engines differ"

EXAMPLES: dict[str, dict[str, Any]] = {
    "constant": {"value": 1},
    "categorical": {"values": [1, 2]},
    "categorical_w_probabilities": {"values": [1, 2], "probabilities": [0.5, 0.5]},
    "int_uniform": {"min": 1, "max": 3},
    "uniform": {"min": 0.0, "max": 1.0},
}


def _filled(kind: str) -> dict[str, Any]:
    raw = EXAMPLES.get(kind, {"min": 1, "max": 2} if "uniform" in kind else {})
    return (
        DISTRIBUTION_MODELS[kind]
        .model_validate({"distribution": kind, **raw})
        .model_dump(exclude={"when"})
    )


def test_one_row_per_wandb_distribution_in_wandbs_order() -> None:
    assert tuple(row.kind for row in table.DISTRIBUTIONS) == DISTRIBUTIONS
    assert set(DISTRIBUTIONS) == set(DISTRIBUTION_MODELS)


@pytest.mark.parametrize("row", table.DISTRIBUTIONS, ids=lambda r: r.kind)
def test_exact_means_native(row: table.DistributionRow) -> None:
    assert to_optuna(_filled(row.kind)).native is row.exact


def test_samplers_exist_in_optuna() -> None:
    for name in table.SAMPLERS.values():
        assert issubclass(getattr(optuna.samplers, name), optuna.samplers.BaseSampler)


def test_every_early_termination_type_has_a_row() -> None:
    types = {row.type.strip("`").split(" ")[0] for row in table.EARLY_TERMINATE}
    assert set(STOPPING_MODELS) | {"(none)", "hyperband"} == types


def test_docs_engines_md_is_generated() -> None:
    assert (ROOT / "docs" / "engines.md").read_text(encoding="utf-8") == table.markdown_table()


def test_readme_section_is_in_sync() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(HEADING) :]
    following = section.find("\n## ", len(HEADING))
    section = section if following == -1 else section[: following + 1]
    assert section.rstrip("\n") == table.markdown_table().rstrip("\n")
