"""GPUs per worker: which accelerators each trial process may see.

``budget.gpus_per_trial`` (or ``run --gpus 0,1,2,3``) shares a list of device ids out among
the workers: worker ``i`` gets ids ``[i*g, (i+1)*g)`` of the list (``g`` = ``gpus_per_trial``,
1 when only ``--gpus`` is given), and every trial it runs sees those devices and no other.
A worker runs one trial at a time, so no two trials run on one device at once, unless the
list names a device more than once (``--gpus 0,0,1,1``: two workers per device, as asked).
``--workers`` is capped at ``len(list) // g``. ``gpus_per_trial: 0`` hides every device
from the trials (CPU only).

The list is ``--gpus``, else ``CUDA_VISIBLE_DEVICES`` when it is set, else the GPUs that
``nvidia-smi -L`` lists. Without ``gpus_per_trial`` and ``--gpus`` nothing is changed.

A trial's devices reach it through the variables each vendor's runtime reads
(:data:`VISIBLE`): ``CUDA_VISIBLE_DEVICES`` (NVIDIA CUDA; PyTorch on ROCm reads it too),
``HIP_VISIBLE_DEVICES`` (AMD ROCm's HIP runtime) and ``ZE_AFFINITY_MASK`` (Intel's Level
Zero), all set to the same ids, plus ``SWEEPSPEC_GPUS`` (:data:`ENV_GPUS`), which records
them for the trial whatever the vendor. ``ROCR_VISIBLE_DEVICES`` is left alone: ROCm applies
it before ``HIP_VISIBLE_DEVICES``, so the same ids in both would select twice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ENV_GPUS", "VISIBLE", "GpuError", "Gpus", "plan_gpus"]

ENV_GPUS = "SWEEPSPEC_GPUS"
"""The variable that tells a trial which devices it was given (comma-separated ids)."""

VISIBLE = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")
"""The variables each trial process gets, set to its device ids."""

# what CUDA_VISIBLE_DEVICES takes: an index as nvidia-smi -L numbers the GPUs, or a UUID
_DEVICE = re.compile(r"\d+|(?:GPU|MIG)-[A-Za-z0-9/-]+")
_SMI_LINE = re.compile(r"GPU (\d+):")
SMI_TIMEOUT = 10.0
NOT_FOUND = "CUDA_VISIBLE_DEVICES is not set and nvidia-smi is not on PATH"


class GpuError(ValueError):
    """Device ids that cannot be shared out: one line for the user."""


@dataclass(frozen=True)
class Gpus:
    """The device ids to share out, ``per_trial`` to each worker (and so to its trials)."""

    ids: tuple[str, ...]
    per_trial: int
    source: str

    def most_workers(self) -> int | None:
        """How many workers get devices of their own; None: no limit (no device each)."""
        return None if self.per_trial == 0 else len(self.ids) // self.per_trial

    def share(self, worker: int) -> tuple[str, ...]:
        """The devices of worker ``worker`` (0-based)."""
        start = worker * self.per_trial
        return self.ids[start : start + self.per_trial]

    def capped(self) -> str:
        """Why :meth:`most_workers` caps ``--workers``, for the one line that says so."""
        count = len(self.ids)
        return (
            f"{count} GPU{'s' if count != 1 else ''} in {self.source}, {self.per_trial} per trial"
        )


def trial_env(ids: tuple[str, ...]) -> dict[str, str]:
    """The environment that makes a trial process see exactly ``ids``."""
    value = ",".join(ids)
    return {**dict.fromkeys(VISIBLE, value), ENV_GPUS: value}


def parse_ids(text: str, source: str) -> tuple[str, ...]:
    """``"0,1,2,3"`` -> ``("0", "1", "2", "3")``; anything else is a :class:`GpuError`."""
    ids = tuple(part.strip() for part in text.split(",")) if text.strip() else ()
    for part in ids:
        if not _DEVICE.fullmatch(part):
            raise GpuError(
                f"{source} {text!r}: {part!r} is not a device; give indices as nvidia-smi -L "
                "numbers the GPUs (0,1,2,3) or their UUIDs (GPU-...), separated by commas"
            )
    return ids


def plan_gpus(
    flag: str | None, per_trial: int | None, environ: Mapping[str, str] = os.environ
) -> Gpus | None:
    """The devices to share out: ``--gpus`` (``flag``), else those of the machine when the
    spec asks for ``budget.gpus_per_trial``; None when neither is given."""
    if flag is None and per_trial is None:
        return None
    if per_trial == 0:
        return Gpus((), 0, "budget.gpus_per_trial")
    per = 1 if per_trial is None else per_trial
    if flag is not None:
        ids, source = parse_ids(flag, "--gpus"), "--gpus"
    else:
        ids, source = _machine(environ)
    if flag is not None and not ids:
        raise GpuError("--gpus lists no device; give ids like 0,1,2,3, or leave --gpus out")
    if len(ids) < per:
        listed = f"{source} lists {len(ids)} ({','.join(ids)})" if ids else f"{source} lists none"
        if source == NOT_FOUND:
            listed = f"no GPU was found ({NOT_FOUND})"
        raise GpuError(
            f"budget.gpus_per_trial is {per}, but {listed}"
            + ("" if flag is not None else "; give the devices with --gpus 0,1,...")
        )
    gpus = Gpus(ids, per, source)
    _check_shares(gpus)
    return gpus


def _check_shares(gpus: Gpus) -> None:
    """A trial given one device twice would see it twice: refused, with the list to write."""
    for worker in range(gpus.most_workers() or 0):
        share = gpus.share(worker)
        twice = next((d for d in share if share.count(d) > 1), None)
        if twice is not None:
            raise GpuError(
                f"{gpus.source} {','.join(gpus.ids)} gives worker {worker} device {twice} "
                f"twice ({gpus.per_trial} per trial); to share devices between workers, list "
                "each worker's devices in turn (0,1,0,1)"
            )


def _machine(environ: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    """The machine's devices: ``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi -L``."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return parse_ids(visible, "CUDA_VISIBLE_DEVICES"), "CUDA_VISIBLE_DEVICES"
    smi = shutil.which("nvidia-smi", path=environ.get("PATH"))
    if smi is None:
        return (), NOT_FOUND
    try:
        done = subprocess.run(
            [smi, "-L"],
            capture_output=True,
            text=True,
            timeout=SMI_TIMEOUT,
            env=dict(environ),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GpuError(f"nvidia-smi -L failed ({exc}); give the devices with --gpus") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        why = f": {tail[-1]}" if tail else ""
        raise GpuError(
            f"nvidia-smi -L exited with code {done.returncode}{why}; give the devices with --gpus"
        )
    ids = tuple(m.group(1) for m in map(_SMI_LINE.match, done.stdout.splitlines()) if m)
    return ids, "nvidia-smi -L"
