"""Read a W&B run back from its ``.wandb`` file, with no server and no network.

wandb 0.31 (wandb-core) keeps everything a run logs in one file,
``<WANDB_DIR or .>/wandb/offline-run-<time>-<id>/run-<id>.wandb``; there is no
``config.yaml`` or ``wandb-summary.json`` beside it any more, and the SDK no longer ships a
reader. The file is a LevelDB-style log: a 7-byte header (``:W&B``, the magic number 0xBEE1,
version 0), then 32 KiB blocks of chunks, each ``<crc32: u32><length: u16><type: u8>`` and
its bytes (type FULL, or FIRST MIDDLE... LAST for a record split across blocks; the checksum
is CRC-32 of the type byte and the bytes; a block's last < 7 bytes are padding). The joined
chunks are ``wandb.proto.wandb_internal_pb2.Record`` messages: the run (config, group, tags),
history rows, summary updates, config updates and the exit code.

``sweepspec results --from wandb`` reads trials this way; the tests read the W&B tracker's
runs this way.
"""

from __future__ import annotations

import importlib
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OfflineRun", "OfflineRunError", "find_runs", "read_run", "records"]

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
_CHUNK = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class OfflineRunError(ValueError):
    """The file is not a W&B run log, or is damaged before its end."""


@dataclass
class OfflineRun:
    """One W&B run as its ``.wandb`` file holds it.

    Attributes:
        config: the run's config (nested dicts as logged), W&B's own ``_wandb`` key left out.
        history: one dict per logged row, W&B's ``_step``, ``_timestamp`` and ``_runtime``
            included, in the order logged.
        summary: the final summary, keys that start with ``_`` (W&B's own) left out.
        exit_code: the code given to ``finish``; None when the run never finished.
    """

    path: str
    run_id: str = ""
    name: str = ""
    group: str = ""
    project: str = ""
    entity: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


def find_runs(folder: str | Path) -> list[Path]:
    """The ``.wandb`` files of the offline runs under ``folder`` (a ``wandb`` folder, as in
    ``$WANDB_DIR/wandb``), oldest first; ``latest-run`` (a link to one of them) left out."""
    return sorted(Path(folder).glob("offline-run-*/run-*.wandb"))


def read_run(path: str | Path) -> OfflineRun:
    """The run logged in the ``.wandb`` file at ``path``. A record cut short at the end (a
    run still being written) is left out."""
    run = OfflineRun(str(path))
    summary: dict[str, Any] = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            _read_run_record(run, record)
        elif kind == "config":
            _apply(run.config, record.config.update, record.config.remove)
        elif kind == "history":
            run.history.append(_row(record.history.item))
        elif kind == "summary":
            _apply(summary, record.summary.update, record.summary.remove)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    run.summary = {k: v for k, v in summary.items() if not k.startswith("_")}
    return run


def _read_run_record(run: OfflineRun, record: Any) -> None:
    info = record.run
    run.run_id, run.name, run.group = info.run_id, info.display_name, info.run_group
    run.project, run.entity, run.job_type = info.project, info.entity, info.job_type
    run.tags = list(info.tags)
    _apply(run.config, info.config.update, info.config.remove)


def _apply(target: dict[str, Any], updates: Any, removes: Any) -> None:
    for item in updates:
        *parents, leaf = _key(item)
        node = target
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = json.loads(item.value_json)
    for item in removes:
        *parents, leaf = _key(item)
        node = target
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)


def _key(item: Any) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _row(items: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    _apply(row, items, ())
    return row


def records(path: str | Path) -> Iterator[Any]:
    """Every record (a ``wandb_internal_pb2.Record``) of the file, in order."""
    # a module that picks the protobuf version's generated code: type checkers can't see in
    pb: Any = importlib.import_module("wandb.proto.wandb_internal_pb2")

    data = Path(path).read_bytes()
    if not data.startswith(HEADER):
        raise OfflineRunError(f"{path}: not a W&B run file (it does not start with ':W&B')")
    pending = b""
    for kind, chunk in _chunks(path, data):
        if kind in (_FULL, _FIRST) and pending:
            raise OfflineRunError(f"{path}: a record is cut off by the next one")
        pending += chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _chunks(path: str | Path, data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = len(HEADER)
    while pos + _CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < _CHUNK.size:  # the block's padding
            pos += left
            continue
        crc, length, kind = _CHUNK.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zeros: the rest of the block is unused
            pos += left
            continue
        start, end = pos + _CHUNK.size, pos + _CHUNK.size + length
        if end > len(data):
            return  # the last record is still being written
        chunk = data[start:end]
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            raise OfflineRunError(f"{path}: the record at byte {pos} fails its checksum")
        yield kind, chunk
        pos = end
