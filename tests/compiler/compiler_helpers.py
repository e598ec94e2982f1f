"""Helpers the compiler tests share (imported by the test modules and conftest.py here)."""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Sequence
from typing import Any

from sweepspec.spec import Spec, check_text


def spec_of(text: str) -> Spec:
    """The valid spec in ``text`` (dedented), read as file ``s.yaml``."""
    checked = check_text(textwrap.dedent(text), "s.yaml")
    assert checked.spec is not None, [f.format() for f in checked.findings]
    return checked.spec


def wandb_ppf(name: str, cfg: dict[str, Any], quantiles: Sequence[float]) -> list[Any]:
    """W&B's own ``HyperParameter(name, cfg).ppf`` at each of ``quantiles``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sweeps.params import HyperParameter

        param = HyperParameter(name, cfg)
        return [param.ppf(u) for u in quantiles]
