"""One ``redact()`` for every place a credential could land."""

from __future__ import annotations

import pytest

from sweepspec.redact import redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://bob:hunter2@db:5432/x", "postgresql://bob:***@db:5432/x"),
        (
            "http://u:p@127.0.0.1:5000/x?password=zz&a=1",
            "http://u:***@127.0.0.1:5000/x?password=***&a=1",
        ),
        ("WANDB_API_KEY=0123456789abcdef", "WANDB_API_KEY=***"),
        ('{"token": "abc", "tokens": 1000}', '{"token": "***", "tokens": 1000}'),
        (
            "tracking: {uri: http://a:b@h, api_key: k1}",
            "tracking: {uri: http://a:***@h, api_key: ***}",
        ),
        ("--db-password hunter2 --lr 0.1", "--db-password *** --lr 0.1"),
        ("aws_secret_access_key = AKIAXXXX", "aws_secret_access_key = ***"),
        ("password: ${envvar:DB_PASSWORD}", "password: ${envvar:DB_PASSWORD}"),
        ("sqlite:///runs/x.db and max_tokens: 512", "sqlite:///runs/x.db and max_tokens: 512"),
        ("", ""),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_secret_environment_values_are_hidden_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-0123456789")
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to hide without hiding words
    assert redact("sent tok-0123456789 (abc)") == "sent *** (abc)"


def test_a_secret_set_after_a_redaction_is_hidden_and_one_removed_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The secrets are found once per environment: a change to it is seen at the next line."""
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-0123456789")
    assert redact("sent tok-0123456789 and tok-9876543210") == "sent *** and tok-9876543210"
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-9876543210")
    assert redact("sent tok-0123456789 and tok-9876543210") == "sent tok-0123456789 and ***"
    monkeypatch.delenv("MY_SERVICE_TOKEN")
    assert redact("sent tok-9876543210") == "sent tok-9876543210"
