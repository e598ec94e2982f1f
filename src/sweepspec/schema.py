"""The JSON Schema of the spec, generated from the pydantic models."""

from __future__ import annotations

from typing import Any

SCHEMA_ID = (
    "https://raw.githubusercontent.com/sweepspec/sweepspec/main/src/sweepspec/"
    "schemas/sweepspec.schema.json"
)


def _any_of(node: Any) -> Any:
    """W&B infers a parameter's distribution, so several members can match one parameter
    (``{min: 1, max: 10}`` is both int_uniform and uniform to a schema): ``anyOf``, never
    ``oneOf``."""
    if isinstance(node, dict):
        out = {("anyOf" if k == "oneOf" else k): _any_of(v) for k, v in node.items()}
        out.pop("discriminator", None)
        return out
    if isinstance(node, list):
        return [_any_of(v) for v in node]
    return node


def spec_schema() -> dict[str, Any]:
    from .spec.models import Spec

    schema = _any_of(Spec.model_json_schema())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "sweepspec",
        **{k: v for k, v in schema.items() if k != "title"},
    }
