"""The one lossy-translation policy: warnings by default, one error with every item under
strict."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sweepspec.compiler.base import Note, Policy, Unsupported, UnsupportedError


def test_items_are_warnings_by_default() -> None:
    policy = Policy("wandb")
    policy.unsupported("seeds", "W&B runs each configuration once", "seeds")
    policy.note("engine", "removed")
    assert policy.finish() == [Unsupported("seeds", "W&B runs each configuration once", "seeds")]
    assert policy.notes == [Note("engine", "removed")]


def test_strict_raises_once_with_every_item() -> None:
    policy = Policy("optuna", strict=True)
    policy.unsupported("a", "first")
    policy.unsupported("b", "second")
    with pytest.raises(
        UnsupportedError,
        match=r"^unsupported on optuna: a: first\n"
        r"unsupported on optuna: b: second$",
    ) as info:
        policy.finish()
    assert [item.feature for item in info.value.items] == ["a", "b"]
    assert info.value.engine == "optuna"


def test_strict_without_items_is_fine() -> None:
    assert Policy("wandb", strict=True).finish() == []


def test_json_forms() -> None:
    assert Unsupported("f", "m", "k").to_json() == {"feature": "f", "message": "m", "kind": "k"}
    assert Note("k", "m").to_json() == {"key": "k", "message": "m"}


def test_the_compiler_package_imports_no_engine_and_no_click(
    imported_modules: Callable[..., set[str]],
) -> None:
    imported = imported_modules("import sweepspec, sweepspec.compiler, sweepspec.compiler.table")
    assert "sweepspec" in imported
    assert imported & {"optuna", "wandb", "sweeps", "click"} == set()


def test_lazy_reexports() -> None:
    import sweepspec
    from sweepspec.compiler.optuna import compile_optuna
    from sweepspec.compiler.wandb import compile_wandb

    assert sweepspec.compile_optuna is compile_optuna
    assert sweepspec.compile_wandb is compile_wandb
    with pytest.raises(AttributeError, match=r"^module 'sweepspec' has no attribute 'nope'$"):
        sweepspec.nope  # noqa: B018
