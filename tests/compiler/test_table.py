"""The mapping table is the compilers' truth, and the docs are generated from it: a column per
registered compiler, each with a cell in every row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from sweepspec.compiler import COMPILERS, table
from sweepspec.compiler.distributions import DISTRIBUTIONS, to_optuna
from sweepspec.compiler.optuna import COLUMN as OPTUNA
from sweepspec.compiler.optuna import SAMPLERS
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
    assert table.DISTRIBUTION_ROWS == DISTRIBUTIONS
    assert set(DISTRIBUTIONS) == set(DISTRIBUTION_MODELS)


def test_a_column_per_registered_compiler_with_a_cell_in_every_row() -> None:
    columns = table.columns()
    assert [c.engine for c in columns] == list(COMPILERS)
    for column in columns:
        for name, (_, rows) in table.SECTIONS.items():
            section = getattr(column, name)
            if section is None:
                continue
            assert set(section.cells) == set(rows), (column.engine, name)
            for key in rows:
                assert len(section.cells[key]) == len(section.headers), (column.engine, key)
        assert {row.target for row in column.unsupported} <= {column.engine}


@pytest.mark.parametrize("kind", table.DISTRIBUTION_ROWS)
def test_native_means_native_on_optuna(kind: str) -> None:
    assert OPTUNA.distributions is not None
    native = OPTUNA.distributions.cells[kind][1]
    assert to_optuna(_filled(kind)).native is (native == "yes")


def test_samplers_exist_in_optuna() -> None:
    for name in SAMPLERS.values():
        assert issubclass(getattr(optuna.samplers, name), optuna.samplers.BaseSampler)


def test_every_early_termination_type_has_a_row() -> None:
    types = {row.strip("`").split(" ")[0] for row in table.EARLY_TERMINATE_ROWS}
    assert set(STOPPING_MODELS) | {"(none)", "hyperband"} == types


def test_docs_engines_md_is_generated() -> None:
    assert (ROOT / "docs" / "engines.md").read_text(encoding="utf-8") == table.markdown_table()


def test_readme_section_is_in_sync() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(HEADING) :]
    following = section.find("\n## ", len(HEADING))
    section = section if following == -1 else section[: following + 1]
    assert section.rstrip("\n") == table.markdown_table().rstrip("\n")


def test_every_engine_has_a_compiler() -> None:
    from sweepspec.runners.base import ENGINES

    assert set(ENGINES) <= set(COMPILERS)
