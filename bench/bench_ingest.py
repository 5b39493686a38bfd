"""Ingest benchmark: lossboard's ingest against a plain DuckDB load of the same file.

For every row count and format it generates (once, cached in ``--out``) a prediction log and
a label log, then runs each case in a fresh Python subprocess with a fresh database, so peak
RSS is per case:

* ``baseline``: ``CREATE TABLE t AS SELECT * FROM read_parquet(?)`` / ``read_csv(?)`` of the
  file into a new database file (DuckDB defaults: all cores, 80% of RAM);
* ``ingest``: ``lossboard.ingest.load.ingest`` of the predictions into a new database, then of
  the labels into the database that now holds the predictions.

It prints one table (case, format, rows, seconds, rows/s, peak RSS, ratio to the same-run
baseline of the same file), the per-stage split that ``ingest_runs`` records, and with
``--profile`` the slowest statements the ingest ran. Targets (docs/benchmarks.md): at 10M
rows, ingest within 3x of the plain load and peak RSS under 2 GiB.

    python bench/bench_ingest.py --rows 1000000 --formats parquet,csv --out bench/out
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from _common import peak_rss_mib
from typing import Any, Iterator

import duckdb

TARGET_RATIO = 3.0
TARGET_PEAK_RSS_MIB = 2048.0

# The generated logs carry a few bad rows on purpose, so the quarantine path is exercised
# the way real logs exercise it: 1 row in 5000 has a score outside [0, 1]
# (score_out_of_range) and 1 in 5000 reuses the previous row's event id with other content
# (conflicting_duplicate). Labels cover ~90% of the events.
PREDICTIONS_SQL = """
SELECT
  'r' || CASE WHEN i % 5000 = 2500 THEN i - 1 ELSE i END AS event_id,
  TIMESTAMPTZ '2026-10-01 00:00:00+00' + to_seconds(i * 0.25) AS scored_at,
  'fraud' AS model,
  CASE WHEN i % 4 = 0 THEN 'v2' ELSE 'v1' END AS model_version,
  CASE WHEN i % 5000 = 4999 THEN 1.5 ELSE round(random(), 6) END AS fraud_score,
  ['eu', 'us', 'apac', 'latam'][1 + (i % 4)::INT] AS region,
  CASE WHEN random() < 0.7 THEN 'web' ELSE 'app' END AS channel,
  round(exp(3 + 1.5 * random()) * 10, 2) AS amount,
  (random() * 3650)::INT AS account_age_days,
  'mcc_' || (5000 + (random() * 30)::INT) AS merchant_category,
  round(tanh(4 * random() - 2), 6) AS h1_tanh,
  'user' || (random() * 200000)::INT || '@example.com' AS email
FROM range($n) t(i)
"""

#: What the benchmark ingests: predictions, then all their labels in one file (the issue's
#: case), and, on a database holding only the predictions, the labels of one day's
#: predictions (how labels arrive in production: the cost of a labels file must follow the
#: file, not the months of predictions already stored).
KINDS = ("predictions", "labels", "labels_day")

#: The labels of the predictions scored on the day three days before the last one.
LABELS_DAY_SQL = """
SELECT l.* FROM read_parquet($labels) l
SEMI JOIN (SELECT event_id FROM read_parquet($predictions)
           WHERE scored_at >= (SELECT date_trunc('day', max(scored_at)) - INTERVAL 3 DAY
                               FROM read_parquet($predictions))
             AND scored_at < (SELECT date_trunc('day', max(scored_at)) - INTERVAL 2 DAY
                              FROM read_parquet($predictions))) p
  ON p.event_id = l.event_id"""

# Labels are drawn from the predictions (P(fraud) = the score, so the model is calibrated)
# and arrive 1 to 30 days after the score.
LABELS_SQL = """
SELECT event_id,
       CASE WHEN random() < least(fraud_score, 1.0) THEN 1 ELSE 0 END AS is_fraud,
       scored_at + to_seconds(86400 * (1 + 29 * random())) AS label_ts,
       model
FROM read_parquet($predictions)
WHERE random() < 0.9
"""

PREDICTIONS_FLAGS: dict[str, Any] = {
    "kind": "predictions",
    "map": {"request_id": "event_id", "ts": "scored_at", "p": "fraud_score",
            "model": "model", "model_version": "model_version"},
    "segments": ("region", "channel", "merchant_category"),
    "features": ("amount", "account_age_days"),
    "activations": ("h1_tanh",),
    "pii": ("email",),
}
LABELS_FLAGS: dict[str, Any] = {
    "kind": "labels",
    "map": {"request_id": "event_id", "label": "is_fraud", "label_ts": "label_ts",
            "model": "model"},
}


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Inputs:
    rows: int
    files: dict[tuple[str, str], Path]  # (kind, format) -> path
    seconds_generate: float


def generate_inputs(rows: int, formats: list[str], out: Path) -> Inputs:
    """The prediction and label files for ``rows`` rows, generated once per row count.

    DuckDB writes them with one thread and a fixed ``setseed``: random() is only
    reproducible when a single thread draws the values in row order.
    """
    folder = out / "data" / f"rows_{rows}"
    folder.mkdir(parents=True, exist_ok=True)
    files = {(kind, fmt): folder / f"{kind}.{fmt}" for kind in KINDS for fmt in formats}
    parquet = {kind: folder / f"{kind}.parquet" for kind in KINDS}
    t0 = time.perf_counter()
    if any(not p.exists() for p in list(files.values()) + list(parquet.values())):
        con = duckdb.connect(config={"threads": 1, "temp_directory": str(folder / "tmp")})
        try:
            con.execute("SET TimeZone = 'UTC'")  # CSV timestamps are written in this zone
            for kind, sql, params in (("predictions", PREDICTIONS_SQL, {"n": rows}),
                                      ("labels", LABELS_SQL,
                                       {"predictions": str(parquet["predictions"])}),
                                      ("labels_day", LABELS_DAY_SQL,
                                       {"predictions": str(parquet["predictions"]),
                                        "labels": str(parquet["labels"])})):
                if not parquet[kind].exists():
                    con.execute("SELECT setseed(0.42)")
                    _copy(con, f"COPY ({sql}) TO '{{path}}' (FORMAT parquet, "
                          "ROW_GROUP_SIZE 122880)", parquet[kind], params)
                csv = folder / f"{kind}.csv"
                if "csv" in formats and not csv.exists():
                    _copy(con, "COPY (SELECT * FROM read_parquet($src)) TO '{path}' "
                          "(FORMAT csv, HEADER)", csv, {"src": str(parquet[kind])})
        finally:
            con.close()
            shutil.rmtree(folder / "tmp", ignore_errors=True)
    return Inputs(rows=rows, files=files, seconds_generate=time.perf_counter() - t0)


def _copy(con: duckdb.DuckDBPyConnection, sql: str, path: Path, params: dict[str, Any]) -> None:
    # Write next to the target and rename, so an interrupted run never leaves a truncated
    # file that later runs would take for a cached input.
    partial = path.with_name(path.name + ".partial")
    con.execute(sql.format(path=str(partial).replace("'", "''")), params)
    partial.rename(path)


# --------------------------------------------------------------------------- child process
def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measured case, in this (fresh) process. Returns what the parent prints."""
    path, db = Path(spec["path"]), Path(spec["db"])
    from lossboard.ingest.load import IngestOptions, ingest  # imported before the clock starts
    from lossboard.ingest.mapping import MappingOptions

    statements: list[tuple[str, float]] = []
    if spec["profile"]:
        _install_statement_timer(statements)
    load0 = os.getloadavg()[0]
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    if spec["case"] == "baseline":
        reader = "read_parquet" if path.suffix == ".parquet" else "read_csv"
        con = duckdb.connect(str(db))
        try:
            con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}(?)", [str(path)])
            n_rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
        finally:
            con.close()
        seconds, cpu_seconds = time.perf_counter() - t0, _cpu_seconds() - cpu0
        split: dict[str, Any] = {}
    else:
        flags = MappingOptions(**spec["flags"])
        options = IngestOptions(db_path=db, flags=flags, memory_limit=spec["memory_limit"],
                                threads=spec["threads"])
        report = ingest([path], options)
        seconds, cpu_seconds = time.perf_counter() - t0, _cpu_seconds() - cpu0
        result = report.files[0]
        if result.status != "ok":
            # Reported as a failed case; the other cases still run.
            return {"error": f"{result.status}: {result.message}"}
        n_rows = result.n_read
        split = _run_split(db, result.file_id)
        # The hourly rollup's refresh after the file (part of `seconds`, not of ingest_runs).
        split["seconds_rollup"] = (report.rollup or {}).get("seconds", float("nan"))
        split.update(accepted=result.n_accepted, duplicate=result.n_duplicate,
                     quarantined=result.n_quarantined, reasons=result.reasons)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds,
            "load_avg_1m": load0, "rows": n_rows, "peak_rss_mib": peak_rss_mib(),
            "db_mib": db.stat().st_size / 2**20, "split": split,
            "statements": sorted(statements, key=lambda s: -s[1])[: spec["profile"]]}


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (DuckDB's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_split(db: Path, file_id: int | None) -> dict[str, Any]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT seconds_read, seconds_merge, seconds_total FROM ingest_runs "
                          "WHERE file_id = ?", [file_id]).fetchone()
    finally:
        con.close()
    return {"seconds_read": row[0], "seconds_merge": row[1], "seconds_total": row[2]}


class _TimedConnection:
    """Forwards to a DuckDB connection, recording how long each ``execute`` took."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list[tuple[str, float]]) -> None:
        self._con, self._log = con, log

    def execute(self, sql: str, *params: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self._con.execute(sql, *params)
        finally:
            self._log.append((" ".join(sql.split())[:90], time.perf_counter() - t0))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _install_statement_timer(log: list[tuple[str, float]]) -> None:
    """Time every statement the ingest runs on its staging connection, plus hash and snapshot."""
    from lossboard.ingest import load

    staging = load._staging_connection

    @contextmanager
    def timed_staging(options: Any) -> Iterator[Any]:
        with staging(options) as con:
            yield _TimedConnection(con, log)

    def timed(fn: Any, label: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                log.append((label, time.perf_counter() - t0))
        return wrapper

    load._staging_connection = timed_staging
    load.sha256_file = timed(load.sha256_file, "(python) sha256 of the file")
    load._snapshot = timed(load._snapshot, "(python) snapshot: ensure_database + registry read")


# --------------------------------------------------------------------------- parent
@dataclass(frozen=True)
class Case:
    name: str  # baseline | ingest
    kind: str  # predictions | labels
    fmt: str
    rows: int
    path: Path
    db: Path


def run_case(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    flags = PREDICTIONS_FLAGS if case.kind == "predictions" else LABELS_FLAGS
    spec = {"case": case.name, "path": str(case.path), "db": str(case.db),
            "flags": {k: list(v) if isinstance(v, tuple) else v for k, v in flags.items()},
            "memory_limit": args.memory_limit, "threads": args.threads, "profile": args.profile}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{case.name} {case.kind} {case.fmt} {case.rows:,} failed:\n"
                         f"{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, str]:
    """CPU, cores, RAM and versions, as printed above the results."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = info.get("model name", platform.processor() or "unknown")
    if "cpu family" in info:
        cpu += f" (family {info['cpu family']} model {info.get('model', '?')}"
        cpu += f", {float(info['cpu MHz']):.0f} MHz)" if "cpu MHz" in info else ")"
    if "hypervisor" in info.get("flags", "").split():
        cpu += ", virtual machine"
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": str(os.cpu_count()), "ram": f"{ram_gib:.1f} GiB",
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "duckdb": duckdb.__version__}


def _median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time (so its split and RSS belong to the same run)."""
    ordered = sorted(results, key=lambda r: r["seconds"])
    out = dict(ordered[(len(ordered) - 1) // 2])
    out["peak_rss_mib"] = max(r["peak_rss_mib"] for r in results)
    return out


def _fmt_row(cells: list[str], widths: list[int]) -> str:
    # The first two columns (case, format) are text; the rest are numbers, right-aligned.
    return "  ".join(c.rjust(w) if i > 1 else c.ljust(w)
                     for i, (c, w) in enumerate(zip(cells, widths)))


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print(_fmt_row(header, widths))
    print(_fmt_row(["-" * w for w in widths], widths))
    for r in rows:
        print(_fmt_row(r, widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,10000000",
                        help="comma-separated row counts (default: 1000000,10000000)")
    parser.add_argument("--formats", default="parquet,csv", help="parquet, csv or both")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="where generated inputs are cached and databases are written "
                        "(default: bench/out)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per case; the median time is reported, the max peak RSS")
    parser.add_argument("--memory-limit", default="1GB", help="the ingest's memory_limit")
    parser.add_argument("--threads", type=int, default=None, help="the ingest's threads")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print the N slowest statements of each ingest case")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return 0

    row_counts = [int(r.replace("_", "")) for r in args.rows.split(",") if r.strip()]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("parquet", "csv")]
    if bad:
        parser.error(f"--formats: unknown format(s) {bad}; use parquet and/or csv")
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(f"ingest settings: memory_limit {args.memory_limit}, threads {args.threads or 'all'}; "
          f"baseline: DuckDB defaults")

    results: list[dict[str, Any]] = []
    for rows in row_counts:
        inputs = generate_inputs(rows, formats, args.out)
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MiB"
                          for p in inputs.files.values())
        print(f"\ninputs for {rows:,} rows ready in {inputs.seconds_generate:.1f} s ({sizes})")
        work = args.out / "db"
        for fmt in formats:
            for kind in KINDS:
                path = inputs.files[(kind, fmt)]
                _warm_page_cache(path)
                runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "ingest": []}
                for _ in range(args.repeat):
                    shutil.rmtree(work, ignore_errors=True)
                    work.mkdir(parents=True)
                    runs["baseline"].append(run_case(
                        Case("baseline", kind, fmt, rows, path, work / "baseline.duckdb"), args))
                    db = work / "lossboard.duckdb"
                    if kind != "predictions":
                        # Labels go into a database that already holds the predictions.
                        run_case(Case("ingest", "predictions", fmt, rows,
                                      inputs.files[("predictions", fmt)], db), args)
                    runs["ingest"].append(run_case(Case("ingest", kind, fmt, rows, path, db), args))
                base = _median_result(runs["baseline"])
                for name in ("baseline", "ingest"):
                    failed = [r["error"] for r in runs[name] if "error" in r]
                    if failed:
                        results.append({"case": f"{name} {kind}", "format": fmt,
                                        "target_rows": rows, "error": failed[0]})
                        print(f"  {name:8} {kind:11} {fmt:7} FAILED: {failed[0]}", flush=True)
                        continue
                    r = _median_result(runs[name])
                    results.append({"case": f"{name} {kind}", "format": fmt, "rows": r["rows"],
                                    "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"],
                                    "load_avg_1m": r["load_avg_1m"],
                                    "peak_rss_mib": r["peak_rss_mib"],
                                    "db_mib": r["db_mib"], "ratio": r["seconds"] / base["seconds"],
                                    "split": r["split"], "statements": r["statements"],
                                    "target_rows": rows})
                    print(f"  {name:8} {kind:11} {fmt:7} {r['seconds']:8.2f} s  "
                          f"{r['peak_rss_mib']:7.0f} MiB  (load {r['load_avg_1m']:.1f})",
                          flush=True)
        shutil.rmtree(work, ignore_errors=True)

    report(results, max(row_counts), args.profile)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": vars(args), "results": results},
                                        indent=2, default=str))
    return 0


def report(results: list[dict[str, Any]], target_rows: int, profile: int) -> None:
    """Print the results table, the ingest stage split, the profile and the target check."""
    done = [r for r in results if "error" not in r]
    rows = [[r["case"], r["format"], f"{r['rows']:,}", f"{r['seconds']:.2f}",
             f"{r['rows'] / r['seconds']:,.0f}", f"{r['peak_rss_mib']:.0f}", f"{r['ratio']:.2f}",
             f"{r['cpu_seconds']:.1f}", f"{r['load_avg_1m']:.1f}"]
            for r in done]
    rows += [[r["case"], r["format"], f"{r['target_rows']:,}", "failed", "", "", "", "", ""]
             for r in results if "error" in r]
    print_table("results (x baseline: seconds / plain DuckDB CTAS of the same file, same run; "
                "cpu s: user + system; load: 1-min load average when the case started)",
                ["case", "format", "rows", "seconds", "rows/s", "peak RSS MiB", "x baseline",
                 "cpu s", "load"], rows)
    busy = [r for r in done if r["load_avg_1m"] > (os.cpu_count() or 1) * 0.5]
    if busy:
        print(f"warning: {len(busy)} case(s) started while the machine was busy (load average "
              f"above half of {os.cpu_count()} cores): their seconds and ratios are inflated; "
              "re-run on an idle machine, or with --repeat")
    ingests = [r for r in done if r["case"].startswith("ingest")]
    if ingests:
        print_table("ingest stages from ingest_runs (read = hash + snapshot + read, type, validate "
                    "and dedupe in memory; merge = attach, classify, insert, commit; rollup = "
                    "the hourly rollup's refresh after the file)",
                    ["case", "format", "rows", "seconds_read", "seconds_merge", "seconds_total",
                     "seconds_rollup", "accepted", "duplicate", "quarantined"],
                    [[r["case"], r["format"], f"{r['rows']:,}", f"{r['split']['seconds_read']:.2f}",
                      f"{r['split']['seconds_merge']:.2f}", f"{r['split']['seconds_total']:.2f}",
                      f"{r['split'].get('seconds_rollup', float('nan')):.2f}",
                      f"{r['split']['accepted']:,}", f"{r['split']['duplicate']:,}",
                      f"{r['split']['quarantined']:,}"] for r in ingests])
    if profile:
        for r in ingests:
            print(f"\nslowest statements: {r['case']} {r['format']} {r['rows']:,}")
            for sql, seconds in r["statements"]:
                print(f"  {seconds:7.2f} s  {sql}")
    for r in results:
        if "error" in r:
            print(f"\nFAILED {r['case']} {r['format']} {r['target_rows']:,}: {r['error']}")
    print(f"\ntargets at {target_rows:,} rows: ingest <= {TARGET_RATIO:g}x the plain load, "
          f"peak RSS < {TARGET_PEAK_RSS_MIB:.0f} MiB")
    for r in results:
        # The one-day labels file is not the case (the target is for 10M rows).
        if (not r["case"].startswith("ingest") or r["target_rows"] != target_rows
                or r["case"].endswith("labels_day")):
            continue
        if "error" in r:
            print(f"  MISSED {r['case']:18} {r['format']:7} failed")
            continue
        ok = r["ratio"] <= TARGET_RATIO and r["peak_rss_mib"] < TARGET_PEAK_RSS_MIB
        print(f"  {'met   ' if ok else 'MISSED'} {r['case']:18} {r['format']:7} "
              f"{r['ratio']:.2f}x, {r['peak_rss_mib']:.0f} MiB")


def _warm_page_cache(path: Path) -> None:
    # Both the baseline and the ingest should find the file in the page cache; otherwise the
    # first case pays the disk read and the ratio says more about the disk than the ingest.
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


if __name__ == "__main__":
    sys.exit(main())
