"""Read W&B's run files (``run-<id>.wandb``) as they grow: the transaction log of a run.

W&B's SDK writes every record of a run (config, history rows, summary, exit code) to one file,
the same whether the run is offline or online; ``wandb sync`` uploads it. Its format is a
LevelDB log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks,
each with a 7-byte header (crc32, length, type: full, first, middle, last) and a piece of a
serialised ``wandb_internal_pb2.Record``. A chunk never straddles a block; a block's last
bytes are zero padding when fewer than 7 remain.

:class:`RunLog` reads only what has been added since the last call, so a sweep can follow a
W&B program's ``wandb.log`` calls while it runs (W&B flushes the file every
``WANDB__TRANSACTION_LOG_FLUSH_INTERVAL`` seconds). A chunk that is not yet whole is read on a
later call. Imports ``wandb`` only for its protobuf messages.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunLog", "RunLogError", "RunState", "find_run_file"]

_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
_BLOCK = 32 * 1024
_CHUNK = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class RunLogError(Exception):
    """The file is not a W&B run file, or a chunk is damaged."""


@dataclass
class RunState:
    """What a run's file says so far."""

    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    run_id: str | None = None
    name: str | None = None
    group: str | None = None
    project: str | None = None
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


def find_run_file(wandb_dir: str | Path, run_id: str) -> Path | None:
    """The ``run-<run_id>.wandb`` file under ``<wandb_dir>/wandb/*-run-*-<run_id>/``."""
    base = os.path.join(wandb_dir, "wandb")
    if not os.path.isdir(base):  # no W&B run here (yet): no glob, whose pattern is new each run
        return None
    found = sorted(Path(base).glob(f"*run-*-{run_id}/run-{run_id}.wandb"))
    return found[-1] if found else None


class RunLog:
    """Follows one run file; :meth:`read` returns the records added since the last call."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0  # bytes consumed: always at a chunk boundary
        self.pending = b""  # the pieces of a record split over blocks (FIRST, MIDDLE)
        self.state = RunState()

    def read(self) -> list[Any]:
        """New whole records (``wandb_internal_pb2.Record``), applied to :attr:`state`."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        records = []
        for payload in self._chunks(data):
            record = _parse(payload)
            self._apply(record)
            records.append(record)
        return records

    def _chunks(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        pos = 0
        if self.offset == 0:
            if len(data) < len(_HEADER):
                return out
            if data[: len(_HEADER)] != _HEADER:
                raise RunLogError(f"{self.path}: not a W&B run file (bad header)")
            pos = len(_HEADER)
        while True:
            at = self.offset + pos
            room = _BLOCK - at % _BLOCK
            if room < _CHUNK.size:  # zero padding to the end of the block
                if len(data) - pos < room:
                    break
                pos += room
                continue
            if len(data) - pos < _CHUNK.size:
                break
            crc, length, kind = _CHUNK.unpack_from(data, pos)
            if length == 0 and kind == 0:  # zeros written ahead of a flush: not yet data
                break
            end = pos + _CHUNK.size + length
            if end > len(data):
                break
            piece = data[pos + _CHUNK.size : end]
            if zlib.crc32(bytes([kind]) + piece) & 0xFFFFFFFF != crc:
                raise RunLogError(f"{self.path}: damaged chunk at byte {at}")
            pos = end
            if kind == _FULL:
                out.append(piece)
            elif kind == _FIRST:
                self.pending = piece
            elif kind == _MIDDLE:
                self.pending += piece
            elif kind == _LAST:
                out.append(self.pending + piece)
                self.pending = b""
            else:
                raise RunLogError(f"{self.path}: unknown chunk type {kind} at byte {at}")
        self.offset += pos
        return out

    def _apply(self, record: Any) -> None:
        kind = record.WhichOneof("record_type")
        state = self.state
        if kind == "run":
            run = record.run
            state.run_id, state.name, state.group = run.run_id, run.display_name, run.run_group
            state.project, state.entity, state.tags = run.project, run.entity, list(run.tags)
            _update(state.config, run.config.update)
        elif kind == "config":
            _update(state.config, record.config.update)
        elif kind == "history":
            state.history.append(_items(record.history.item))
        elif kind == "summary":
            _update(state.summary, record.summary.update)
        elif kind == "exit":
            state.exit_code = record.exit.exit_code


def _parse(payload: bytes) -> Any:
    from wandb.proto import wandb_internal_pb2

    record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]  # generated code
    record.ParseFromString(payload)
    return record


def _items(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key = ".".join(item.nested_key) if item.nested_key else item.key
        out[key] = json.loads(item.value_json)
    return out


def _update(target: dict[str, Any], items: Any) -> None:
    for key, value in _items(items).items():
        if key == "_wandb":
            continue
        target[key] = value["value"] if isinstance(value, dict) and "value" in value else value
