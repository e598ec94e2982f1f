"""`sweepspec validate` against `check-jsonschema` with W&B's own schema, on the same files.

What is measured: the wall time of one process validating every spec file of the corpus
(the real-world W&B sweep files in tests/fixtures/real_world, 40+ files), as pre-commit runs
a hook: once per commit with all the matched files. The baseline is
`check-jsonschema --schemafile <sweeps/config/schema.json>` (W&B's schema from the `sweeps`
package) on the same files, measured in the same run. The two commands alternate, each
round runs both, and the median of the per-round ratios is printed.

    python benchmarks/validate_speed.py [--rounds 15]

Target (issue 2): ratio <= 0.5.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    files = sorted(str(p) for p in (ROOT / "tests" / "fixtures" / "real_world").glob("*.yaml"))
    bindir = os.path.dirname(sys.executable)
    ours = [shutil.which("sweepspec", path=bindir) or "sweepspec", "validate", *files]
    spec = find_spec("sweeps")
    assert spec and spec.origin, "the benchmark needs W&B's sweeps package (pip install sweeps)"
    schema = str(Path(spec.origin).parent / "config" / "schema.json")
    theirs = [
        shutil.which("check-jsonschema", path=bindir) or "check-jsonschema",
        "--schemafile",
        schema,
        *files,
    ]

    for cmd in (ours, theirs):  # warm the page cache and .pyc files
        _time(cmd)
    ratios, t_ours, t_theirs = [], [], []
    for _ in range(args.rounds):
        a, b = _time(ours), _time(theirs)
        t_ours.append(a)
        t_theirs.append(b)
        ratios.append(a / b)
    print(f"files: {len(files)}  rounds: {args.rounds}  cpus: {os.cpu_count()}")
    print(f"sweepspec validate      median {statistics.median(t_ours) * 1000:7.1f} ms")
    print(f"check-jsonschema (W&B)  median {statistics.median(t_theirs) * 1000:7.1f} ms")
    ratio = statistics.median(ratios)
    print(f"RESULT ratio={ratio:.3f} target<=0.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
