#!/usr/bin/env python3
"""Side-by-side: `sluice audit` vs DuckDB on the same run directory (group-by queries).

    python3 -m venv "$VENV" && "$VENV/bin/pip" install duckdb pyarrow numpy
    cargo build --release
    "$VENV/bin/python" benches/audit_gen.py target/audit-bench/run     # >= 1 GB, 1.2M rejects
    "$VENV/bin/python" benches/audit_bench.py target/audit-bench/run target/release/sluice

usage: audit_bench.py RUN_DIR SLUICE_BIN [--reps 3]

Both sides are timed the same way: a fresh process per query (the sluice CLI; `python -c`
with duckdb, minus the measured cost of starting python and importing duckdb), wall
clock, best and median of --reps runs. Results are checked equal (row by row).
"""
import argparse
import csv
import io
import json
import statistics
import subprocess
import sys
import time

QUERIES = [
    ("rejects by stage, reason (1.2M rows)",
     "SELECT stage, reason, COUNT(*) AS n, SUM(n_chars) AS chars FROM {rejects} GROUP BY stage, reason ORDER BY stage, reason"),
    ("tokens per source, lang (docs)",
     "SELECT source, lang, COUNT(*) AS docs, SUM(n_tokens) AS tokens FROM {docs} GROUP BY source, lang ORDER BY source, lang NULLS LAST"),
    ("top domains of rejects",
     "SELECT {domain} AS d, COUNT(*) AS n FROM {rejects} GROUP BY d ORDER BY n DESC, d LIMIT 10"),
]


def sluice_sql(q):
    return q.format(rejects="rejects", docs="docs", domain="domain(url)")


def duck_sql(q, run):
    return q.format(rejects=f"read_parquet('{run}/rejects/*.parquet')",
                    docs=f"read_parquet('{run}/shards/*.parquet')",
                    domain=r"regexp_extract(url, '^[a-z]+://(www\.)?([^/:?#]+)', 2)")


def timed(cmd):
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run directory (e.g. made by benches/audit_gen.py)")
    ap.add_argument("sluice", help="the sluice binary to time (a release build)")
    ap.add_argument("--reps", type=int, default=3, help="runs per query and side (default 3)")
    a = ap.parse_args()
    run, sluice, reps = a.run, a.sluice, a.reps
    py = sys.executable
    # Cost of a python process that imports duckdb and does nothing: subtracted from DuckDB.
    base = min(timed([py, "-c", "import duckdb, json"])[0] for _ in range(reps))
    rows = []
    for name, q in QUERIES:
        s_times, d_times = [], []
        for _ in range(reps):
            t, s_out = timed([sluice, "audit", run, "--sql", sluice_sql(q), "--format", "csv"])
            s_times.append(t)
            code = ("import duckdb, json, sys; c = duckdb.connect(); "
                    "c.execute('PRAGMA disable_progress_bar'); "
                    f"print(json.dumps(c.sql({duck_sql(q, run)!r}).fetchall(), default=str))")
            t, d_out = timed([py, "-c", code])
            d_times.append(t - base)
        s_rows = [[c for c in r] for r in csv.reader(io.StringIO(s_out))][1:]
        d_rows = [["" if c is None else str(c) for c in r] for r in json.loads(d_out.strip().splitlines()[-1])]
        same = s_rows == d_rows
        rows.append((name, min(s_times), statistics.median(s_times), min(d_times), statistics.median(d_times), same))
        if not same:
            print(f"MISMATCH in {name}:\n sluice {s_rows[:5]}\n duckdb {d_rows[:5]}", file=sys.stderr)
    print(f"{'query':40} {'sluice best/median s':>22} {'duckdb best/median s':>22}  same")
    for name, sb, sm, db, dm, same in rows:
        print(f"{name:40} {sb:10.2f} / {sm:8.2f}  {db:10.2f} / {dm:8.2f}  {same}")
    print(f"(duckdb times exclude {base:.2f}s of python start + import)")


if __name__ == "__main__":
    main()
