"""Whatever the input, `validate` answers with findings and exit 0 or 1, never a traceback."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweepspec.main import main

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["1e-5", "${args}", "${bogus}", "hyperband", "bayes", "-"]),
)
_keys = st.sampled_from(
    [
        "method",
        "parameters",
        "metric",
        "name",
        "goal",
        "values",
        "value",
        "min",
        "max",
        "q",
        "distribution",
        "early_terminate",
        "type",
        "min_iter",
        "max_iter",
        "s",
        "eta",
        "command",
        "program",
        "function",
        "seeds",
        "budget",
        "when",
        "probabilities",
        "mu",
        "sigma",
        "run_cap",
        "tracking",
        "tracker",
        "optuna",
        "sampler",
        "engine",
        "x",
        "lr",
    ]
)
_dists = st.sampled_from(
    [
        "uniform",
        "int_uniform",
        "log_uniform",
        "log_uniform_values",
        "q_uniform",
        "normal",
        "beta",
        "categorical",
        "constant",
        "nested",
    ]
)
_tree = st.recursive(
    st.one_of(_scalar, _dists),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=25,
)
_spec = st.fixed_dictionaries(
    {"method": st.sampled_from(["grid", "random", "bayes", "custom", "x"])},
    optional={
        "parameters": st.dictionaries(_keys, _tree, max_size=4),
        "metric": _tree,
        "early_terminate": _tree,
        "command": _tree,
        "seeds": _tree,
        "budget": _tree,
        "optuna": _tree,
        "tracking": _tree,
    },
)

_SETTINGS = settings(
    max_examples=int(os.environ.get("SWEEPSPEC_FUZZ", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _run(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        rc = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert rc in (0, 1), err
    assert "Traceback" not in err and "internal error" not in err, err
    for line in err.splitlines():
        assert line.startswith(str(path) + ":"), line


@_SETTINGS
@given(text=st.text(max_size=300))
def test_random_text(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    _run(text, capsys)


@_SETTINGS
@given(data=_spec)
def test_random_spec_shapes(data: dict, capsys: pytest.CaptureFixture[str]) -> None:
    _run(yaml.safe_dump(data, allow_unicode=True), capsys)


@_SETTINGS
@given(data=_tree)
def test_random_yaml_structures(data: object, capsys: pytest.CaptureFixture[str]) -> None:
    _run(yaml.safe_dump(data, allow_unicode=True), capsys)
