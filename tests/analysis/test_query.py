"""The filter grammar of ``results --filter``, the sort and the column picker."""

from __future__ import annotations

import math

import pytest

from sweepspec.analysis.query import QueryError, parse_filter, pick_columns, sort_rows

COLUMNS = ["number", "state", "params.lr", "params.opt", "metrics.val_loss", "metrics.`x`"]
ROWS = [
    {
        "number": 0,
        "state": "COMPLETE",
        "params.lr": 0.1,
        "params.opt": "adam",
        "metrics.val_loss": 0.3,
    },
    {
        "number": 1,
        "state": "FAIL",
        "params.lr": 0.01,
        "params.opt": "sgd",
        "metrics.val_loss": None,
    },
    {
        "number": 2,
        "state": "COMPLETE",
        "params.lr": 1e-3,
        "params.opt": "adam",
        "metrics.val_loss": 0.1,
    },
    {
        "number": 3,
        "state": "PRUNED",
        "params.lr": 0.5,
        "params.opt": "sgd",
        "metrics.val_loss": math.nan,
    },
]


def _numbers(text: str) -> list[int]:
    conditions = parse_filter(text, COLUMNS)
    return [r["number"] for r in ROWS if all(c.holds(r) for c in conditions)]


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("metrics.val_loss < 0.2", [2]),
        ("metrics.val_loss <= 0.3", [0, 2]),
        ("metrics.val_loss != 0.3", [1, 2, 3]),  # null and NaN are unequal to a number
        ("metrics.val_loss = null", [1]),
        ("state = COMPLETE and params.lr >= 1e-2", [0]),
        ("state='PRUNED'", [3]),
        ('params.opt == "sgd" AND params.lr > 0.1', [3]),
        ("params.opt > 5", []),  # a string against a number: only ever unequal
        ("params.opt != 5", [0, 1, 2, 3]),
    ],
)
def test_conditions(text: str, numbers: list[int]) -> None:
    assert _numbers(text) == numbers


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "metrics.val_los < 1",
            "--filter: no column 'metrics.val_los' in the table; did you mean "
            "'metrics.val_loss'? (columns: number, state, params.lr, params.opt, "
            "metrics.val_loss, metrics.`x`)",
        ),
        (
            "state = COMPLETE or number > 1",
            "--filter 'state = COMPLETE or number > 1': "
            "conditions are joined by 'and', but got 'or'",
        ),
        (
            "number >",
            "--filter 'number >': each condition is 'COLUMN OP VALUE' (OP one of < <= "
            "> >= = != ), joined by 'and', but got 'number >'",
        ),
        (
            "number > 1 and",
            "--filter 'number > 1 and': each condition is 'COLUMN OP VALUE' (OP "
            "one of < <= > >= = != ), joined by 'and', but got 'nothing'",
        ),
        (
            "__import__('os') > 1",
            "--filter \"__import__('os') > 1\": each condition is 'COLUMN "
            "OP VALUE' (OP one of < <= > >= = != ), joined by 'and', but got "
            "\"__import__( 'os' )\"",
        ),
    ],
)
def test_what_cannot_be_read_is_one_line(text: str, message: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_filter(text, COLUMNS)
    assert str(caught.value) == message


def test_backquoted_column_names() -> None:
    (condition,) = parse_filter("`metrics.val_loss` < 0.2", COLUMNS)
    assert (condition.column, condition.op, condition.value) == ("metrics.val_loss", "<", 0.2)


def test_sort_puts_empty_cells_last_either_way() -> None:
    up = sort_rows(ROWS, "metrics.val_loss", COLUMNS)
    down = sort_rows(ROWS, "-metrics.val_loss", COLUMNS)
    assert [r["number"] for r in up] == [2, 0, 1, 3]
    assert [r["number"] for r in down] == [0, 2, 1, 3]
    assert [r["number"] for r in sort_rows(ROWS, "params.opt", COLUMNS, descending=True)] == [
        1,
        3,
        0,
        2,
    ]
    with pytest.raises(QueryError, match=r"^--sort: no column 'lr' in the table$"):
        sort_rows(ROWS, "lr", COLUMNS)


def test_columns_by_name_and_pattern() -> None:
    assert pick_columns("metrics.val_loss, params.*,number", COLUMNS) == [
        "metrics.val_loss",
        "params.lr",
        "params.opt",
        "number",
    ]
    with pytest.raises(QueryError, match=r"^--columns: no column matches 'seed\*'$"):
        pick_columns("seed*", COLUMNS)
    with pytest.raises(QueryError, match=r"did you mean 'params.lr'\?"):
        pick_columns("params.lrr", COLUMNS)
