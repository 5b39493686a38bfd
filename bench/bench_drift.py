"""Drift benchmark: lossboard's feature_drift against pandas + scipy on the same data.

Generates once (cached in ``--out``) a lossboard database of ``--rows`` predictions over 30 days
with six numeric features, written by DuckDB SQL with ``setseed`` (single-threaded, so the
data is the same on every run):

=============  ===================================================  ==========================
feature        values                                               drift, second half
=============  ===================================================  ==========================
``f_normal``   N(0, 1), 1% NULL                                     none
``f_cents``    lognormal, rounded to cents (ties)                   x e^0.1
``f_int``      whole numbers 0 .. 3649 (heavy ties)                 none
``f_uniform``  U(0, 1)                                              +0.05
``f_tanh``     tanh(N(0, 1))                                        saturates in the last week
``f_shift``    N(0, 1)                                              +0.2
=============  ===================================================  ==========================

Reference = the first 15 days, current = the last 15 (5M rows each at 10M). Each case runs
``--repeat`` times, each time in a fresh Python subprocess (so peak RSS is per case):

* ``baseline``: read the six columns of both windows into pandas (one DuckDB query each),
  then per feature ``scipy.stats.ks_2samp`` and a numpy PSI with the same definition
  (inverted-CDF edges from the reference, right-closed open-ended bins, eps = 1e-4);
* ``lossboard``: ``feature_drift(con, flt, features=[the six])`` on a read-only connection;
* ``daily``: ``daily_drift(con, flt, feature=[the six])``, PSI and exact KS of each of the 15
  current days against the reference (no baseline computes it; for scale).

It prints one table (case, rows, wall seconds median / best, CPU seconds, peak RSS, ratio to
the baseline's median), checks that both give the same KS statistic and p-value and PSI (to
1e-12), and writes ``drift.json`` next to the database. Target (the issue): the six features
within 10 s on the 2-core machine.

    python bench/bench_drift.py --rows 10000000 --out bench/out
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path
from _common import machine, peak_rss_mib, run_case

FEATURES = ["f_normal", "f_cents", "f_int", "f_uniform", "f_tanh", "f_shift"]
REFERENCE = ("2026-10-01", "2026-10-16")
CURRENT = ("2026-10-16", "2026-10-31")
TARGET_SECONDS = 10.0
BINS, EPS = 10, 1e-4

GENERATE_SQL = """
INSERT INTO predictions (request_id, ts, model, model_version, p, weight, _lb_file_id,
                         _lb_row_number, _lb_row_hash, f_normal, f_cents, f_int, f_uniform,
                         f_tanh, f_shift)
SELECT 'r' || i,
       TIMESTAMPTZ '2026-10-01 00:00:00+00' + to_microseconds((i * (30 * 86400e6 / $n))::BIGINT),
       'bench', 'v1', 1 / (1 + exp(-(1.5 * z1 - 2))), 1.0, 1, i, hash(i),
       CASE WHEN u < 0.01 THEN NULL ELSE z1 END,
       round(exp(3 + z2 + CASE WHEN i >= $n / 2 THEN 0.1 ELSE 0 END), 2),
       floor(u2 * 3650),
       u3 + CASE WHEN i >= $n / 2 THEN 0.05 ELSE 0 END,
       tanh(z2 * CASE WHEN i >= $n * 0.75 THEN 2.5 ELSE 1 END),
       z3 + CASE WHEN i >= $n / 2 THEN 0.2 ELSE 0 END
FROM (SELECT i, random() AS u, random() AS u2, random() AS u3,
             sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z1,
             sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS z2,
             sqrt(-2 * ln(1 - random())) * sin(2 * pi() * random()) AS z3
      FROM range($n) t(i))
ORDER BY i
"""


def generate(db: Path, rows: int) -> float:
    """Write the benchmark database (lossboard's schema, six registered features)."""
    import duckdb

    from lossboard.ingest.schema import create_schema

    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    con = duckdb.connect(str(tmp))
    try:
        create_schema(con)
        for name in FEATURES:
            con.execute(f"ALTER TABLE predictions ADD COLUMN {name} DOUBLE")
            con.execute("INSERT INTO columns VALUES "
                        "('predictions', ?, 'feature', 'DOUBLE', 'flag', 1)", [name])
        con.execute("INSERT INTO models VALUES ('bench', 'binary', ['0', '1'], 1)")
        # One thread: random() after setseed is then one reproducible stream.
        con.execute("SET threads = 1")
        con.execute("SELECT setseed(0.42)")
        con.execute(GENERATE_SQL, {"n": rows})
        con.execute("INSERT INTO meta VALUES ('bench_rows', ?)", [str(rows)])
    finally:
        con.close()
    tmp.rename(db)
    return time.perf_counter() - t0


def cached_rows(db: Path) -> int | None:
    import duckdb

    if not db.exists():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'bench_rows'").fetchone()
        return int(row[0]) if row else None
    finally:
        con.close()


# ------------------------------------------------------------------------------- the cases

def case_baseline(db: Path) -> dict:
    import duckdb
    import numpy as np
    from scipy import stats

    t0 = time.perf_counter()
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    sql = (f"SELECT {', '.join(FEATURES)} FROM predictions "
           "WHERE model = 'bench' AND ts >= ?::TIMESTAMPTZ AND ts < ?::TIMESTAMPTZ")
    ref = con.execute(sql, list(REFERENCE)).df()
    cur = con.execute(sql, list(CURRENT)).df()
    con.close()
    t_load = time.perf_counter() - t0
    results = {}
    for name in FEATURES:
        r = ref[name].to_numpy(dtype=float)
        c = cur[name].to_numpy(dtype=float)
        r, c = r[~np.isnan(r)], c[~np.isnan(c)]
        ks = stats.ks_2samp(r, c)
        srt = np.sort(r)
        n = len(srt)
        edges = np.unique([srt[max(1, -(-n * i // BINS)) - 1] for i in range(1, BINS)])
        rc = np.bincount(np.searchsorted(edges, r, side="left"), minlength=len(edges) + 1)
        cc = np.bincount(np.searchsorted(edges, c, side="left"), minlength=len(edges) + 1)
        rp, cp = np.maximum(rc / rc.sum(), EPS), np.maximum(cc / cc.sum(), EPS)
        results[name] = {"psi": float(np.sum((cp - rp) * np.log(cp / rp))),
                         "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue)}
    return {"seconds_load": t_load, "results": results}


def case_lossboard(db: Path) -> dict:
    from lossboard.dashboard.analysis.drift import feature_drift
    from lossboard.dashboard.analysis.filters import Filter
    from lossboard.db import read_connection

    flt = Filter(model="bench", start=CURRENT[0], end=CURRENT[1],
                 reference_start=REFERENCE[0], reference_end=REFERENCE[1])
    with read_connection(db) as con:
        frame = feature_drift(con, flt, features=FEATURES, bins=BINS, eps=EPS)
    return {"results": {row.feature: {"psi": float(row.psi),
                                      "ks_statistic": float(row.ks_statistic),
                                      "ks_pvalue": float(row.ks_pvalue)}
                        for row in frame.itertuples()}}


def case_daily(db: Path) -> dict:
    from lossboard.dashboard.analysis.drift import daily_drift
    from lossboard.dashboard.analysis.filters import Filter
    from lossboard.db import read_connection

    flt = Filter(model="bench", start=CURRENT[0], end=CURRENT[1],
                 reference_start=REFERENCE[0], reference_end=REFERENCE[1])
    with read_connection(db) as con:
        frame = daily_drift(con, flt, feature=FEATURES, bins=BINS, eps=EPS)
    return {"days": int(frame["day"].nunique())}


def run_child(case: str, db: Path) -> None:
    """In the subprocess: run one case, print one JSON line."""
    import lossboard.dashboard.analysis.drift  # noqa: F401  (imports are not timed)
    import scipy.stats  # noqa: F401

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = {"baseline": case_baseline, "lossboard": case_lossboard, "daily": case_daily}[case](db)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    out.update(seconds=wall,
               cpu_seconds=(cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
               peak_rss_mib=peak_rss_mib())
    print(json.dumps(out))



# ------------------------------------------------------------------------------- report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--generate-only", action="store_true", help="write the data and stop")
    ap.add_argument("--child", choices=["baseline", "lossboard", "daily"], help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args.child, args.db)
        return

    db = args.out / f"drift-{args.rows}.duckdb"
    if cached_rows(db) != args.rows:
        print(f"generating {args.rows:,} rows into {db} ...", flush=True)
        print(f"  {generate(db, args.rows):.1f} s", flush=True)
    if args.generate_only:
        return
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; python {info['python']}, duckdb "
          f"{info['duckdb']}, pandas {info['pandas']}, scipy {info['scipy']}; "
          f"load average {', '.join(f'{x:.2f}' for x in info['load_average'])}", flush=True)

    runs: dict[str, list[dict]] = {"baseline": [], "lossboard": [], "daily": []}
    for _ in range(args.repeat):  # interleaved, so a burst of other load hits both
        for case in runs:
            runs[case].append(run_case(__file__, case, db))
    info["load_average_after"] = os.getloadavg()

    base_median = statistics.median(r["seconds"] for r in runs["baseline"])
    rows = []
    print(f"\n{'case':<10} {'rows':>12} {'median s':>9} {'best s':>8} {'cpu s':>7} "
          f"{'peak RSS MiB':>13} {'ratio':>6}")
    for case, results in runs.items():
        median = statistics.median(r["seconds"] for r in results)
        row = {"case": case, "rows": args.rows, "seconds_median": median,
               "seconds_best": min(r["seconds"] for r in results),
               "cpu_seconds_median": statistics.median(r["cpu_seconds"] for r in results),
               "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
               "ratio_to_baseline": median / base_median,
               "runs": [{k: v for k, v in r.items() if k != "results"} for r in results]}
        rows.append(row)
        print(f"{case:<10} {args.rows:>12,} {median:>9.2f} {row['seconds_best']:>8.2f} "
              f"{row['cpu_seconds_median']:>7.2f} {row['peak_rss_mib']:>13.0f} "
              f"{row['ratio_to_baseline']:>6.2f}")
    load = statistics.median(r["seconds_load"] for r in runs["baseline"])
    print(f"(baseline: {load:.2f} s of it reading the two windows into pandas)")

    ours, theirs = runs["lossboard"][0]["results"], runs["baseline"][0]["results"]
    worst = {key: max(abs(ours[f][key] - theirs[f][key]) for f in FEATURES)
             for key in ("psi", "ks_statistic", "ks_pvalue")}
    same = worst["ks_statistic"] == 0 and worst["ks_pvalue"] == 0 and worst["psi"] <= 1e-12
    print(f"same answers: {same} (largest differences: "
          + ", ".join(f"{k} {v:.3g}" for k, v in worst.items()) + ")")
    best = min(r["seconds_best"] for r in rows if r["case"] == "lossboard")
    print(f"target: {len(FEATURES)} features within {TARGET_SECONDS:g} s -> best {best:.2f} s, "
          f"{'met' if best <= TARGET_SECONDS else 'NOT met'}")
    report = {"machine": info, "features": FEATURES, "reference": REFERENCE, "current": CURRENT,
              "cases": rows, "same_answers": same, "largest_differences": worst,
              "results": {"lossboard": ours, "baseline": theirs}}
    (args.out / "drift.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
