"""Credentials never leave sweepspec in the clear: one :func:`redact` for every place text lands.

Run output, error messages, the crash log, MLflow params and tags, and the copy of the spec
uploaded to MLflow all pass through :func:`redact`. It hides:

* the password of a URL (``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``);
* a secret in a query string (``?password=...``, ``&token=...``);
* the value given to a key whose name says it is secret, in YAML, JSON, env or argv form
  (``WANDB_API_KEY=...``, ``api_key: ...``, ``"token": "..."``, ``--password ...``);
* the values of this process's environment variables whose names say they are secret
  (``WANDB_API_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``), wherever they appear.

A leaf module: no imports beyond the standard library, so ``validate`` stays quick.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "redact", "without_password"]

MASK = "***"

# a key is secret when its name ends so: WANDB_API_KEY, db_password, "token" (not "tokens")
_SECRET = r"(?:api[_-]?key|apikey|access[_-]?key|secret(?:[_-]?key)?|token|passw(?:or)?d)"
_KEY = rf"[A-Za-z0-9_.-]*{_SECRET}(?![A-Za-z0-9_])"

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):[^@/\s]*@")
_QUERY_SECRET = re.compile(rf"(?P<head>[?&;]{_KEY}=)[^&#\s]+", re.IGNORECASE)
_KEY_VALUE = re.compile(
    rf"""(?P<head>(?<![A-Za-z0-9_.-]){_KEY}["']?\s*[:=]\s*["']?)(?P<value>[^\s"',}}\]]+)""",
    re.IGNORECASE,
)
_FLAG = re.compile(rf"(?P<head>--{_KEY}[= ]+)(?P<value>[^\s\"',}}\]]+)", re.IGNORECASE)
_SECRET_ENV = re.compile(rf"{_SECRET}$", re.IGNORECASE)
_ANY_SECRET = re.compile(_SECRET, re.IGNORECASE)  # in every match of the three below
_MIN_ENV_SECRET = 8  # shorter values would mask ordinary words


def redact(text: str) -> str:
    """``text`` with every credential it holds replaced by ``***``."""
    if not text:
        return text
    for value in _environment_secrets():
        text = text.replace(value, MASK)
    if "://" not in text and _ANY_SECRET.search(text) is None:
        return text  # what the patterns below look for is not there (most lines)
    text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    text = _QUERY_SECRET.sub(rf"\g<head>{MASK}", text)
    text = _FLAG.sub(_mask_value, text)
    return _KEY_VALUE.sub(_mask_value, text)


def without_password(url: str) -> tuple[str, bool]:
    """``url`` without the password of its user part (``postgresql://user:secret@host/db``
    -> ``postgresql://user@host/db``) or of a ``password=`` query parameter, and whether it
    had a (non-empty) one: for a URL written into a file, whose password comes from elsewhere
    (libpq's ``PGPASSWORD``)."""
    parts = urlsplit(url)
    netloc, removed = parts.netloc, False
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        name, _, password = user.partition(":")
        netloc, removed = f"{name}@{host}", bool(password)
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(key, value) for key, value in query if key.lower() != "password"]
    text = parts.query
    if len(kept) < len(query):
        text = urlencode(kept, safe="/")
        removed = removed or any(v for k, v in query if k.lower() == "password")
    if not removed:  # none, or an empty one: the URL as it is
        return url, False
    return urlunsplit(parts._replace(netloc=netloc, query=text)), True


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.startswith((MASK, "$")):  # done already, or a reference (${envvar:X}), not a secret
        return match.group(0)
    return match.group("head") + MASK


def _environment_secrets() -> tuple[str, ...]:
    """Values of secret-named environment variables, longest first (one may hold another);
    found again only when the environment changed (``os.environ``'s encoded copy, compared
    in one step: every line of output is redacted)."""
    global _found
    raw = getattr(os.environ, "_data", None)
    if isinstance(raw, dict) and raw == _found[0]:
        return _found[1]
    values = {
        value
        for name, value in os.environ.items()
        if len(value) >= _MIN_ENV_SECRET and _secret_name(name)
    }
    secrets = tuple(sorted(values, key=len, reverse=True))
    if isinstance(raw, dict):
        _found = (dict(raw), secrets)
    return secrets


_found: tuple[dict[Any, Any] | None, tuple[str, ...]] = (None, ())
"""The environment the secrets were last found in, and them."""


@functools.lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    """Whether ``name`` names a secret (every line output is redacted: asked once a name)."""
    return _SECRET_ENV.search(name) is not None
