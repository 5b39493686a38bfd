"""Helpers every benchmark script shares: peak RSS, the machine, a case in a fresh process.

The scripts run as ``python bench/bench_X.py``, so this folder is on ``sys.path`` and they
``from _common import ...``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident set size.

    Linux's ``VmHWM`` belongs to the process image, so it starts afresh at exec. ``ru_maxrss``
    does not: a child started by fork+exec inherits the parent's high-water mark, which after
    DuckDB generated the inputs in the parent is larger than most cases (measured: every case
    at 10M rows of the ingest benchmark reported the parent's 1747 MiB).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB elsewhere
    return kib / 1024 / (1024 if sys.platform == "darwin" else 1)


def run_case(script: str, case: str, db: Path) -> dict:
    """``python SCRIPT --child CASE --db DB`` in a fresh process; its last stdout line (JSON)."""
    proc = subprocess.run([sys.executable, script, "--child", case, "--db", str(db)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """CPU model, cores, RAM, Python and library versions, load average."""
    cpu = "unknown"
    ram_gib = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    import duckdb
    import numpy
    import pandas
    import scipy
    import sklearn

    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": ram_gib,
            "python": platform.python_version(), "duckdb": duckdb.__version__,
            "pandas": pandas.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
            "sklearn": sklearn.__version__, "load_average": os.getloadavg()}
