#!/usr/bin/env python3
"""Data-parallel PPO over MPI on this machine: JSON lines on stdout, progress
on stderr. Needs OpenMPI (`scripts/setup --mpi`) and a train built with MPI
support (`scripts/bench mpi` builds it):

    python3 scripts/bench_mpi.py [--ranks 1,2,3] [--updates 100] [--workers 0] [--train PATH]

For each K: `mpirun -np K train --config configs/ppo.toml --set
run.num_workers=W` (W = --workers: 0 steps the envs in each rank's learner;
W >= 1 gives each rank W worker processes, and its learner's collectives
go through its supervisor) for the same number of updates per rank (total steps =
updates * K * 256), then one "mpi-ranks" line: global env steps/s (the last
train.csv row's steps_per_s), the learner's milliseconds per update, the
part in collectives, collectives and bytes sent per update (rank 0's "mpi:"
line). Then "mpi-projection" lines: throughput on N = 8, 32, 128 nodes of a
10 Gb/s network from the measured bytes per update and the single-rank
update and collection times (see docs/mpi.md for the model and its
assumptions).
"""
import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS_PER_RANK_UPDATE = 8 * 32  # configs/ppo.toml: 8 envs x 32 steps
LINE = re.compile(
    r"mpi: per update ([0-9.]+) ms in the learner, ([0-9.]+) ms in ([0-9.]+) collectives, "
    r"([0-9]+) bytes sent by rank 0 \((\d+) updates\)"
)
# The projection's network: 10 Gb/s links and 25 us per message
# (a typical TCP latency between hosts in one rack).
BANDWIDTH_BYTES_PER_S = 10e9 / 8
LATENCY_S = 25e-6


def log(message):
    print(f"bench_mpi: {message}", file=sys.stderr, flush=True)


def emit(record):
    print(json.dumps(record), flush=True)


def run(train, ranks, updates, workers, root):
    run_dir = Path(root) / f"k{ranks}-w{workers}"
    total = updates * ranks * STEPS_PER_RANK_UPDATE
    cmd = ["mpirun", "--oversubscribe", "-np", str(ranks)]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    if workers > 0:
        # mpirun binds a rank to one core by default; its workers are its
        # children and would share that core.
        cmd.insert(1, "--bind-to")
        cmd.insert(2, "none")
    cmd += [str(train), "--config", str(ROOT / "configs" / "ppo.toml"), "--run-dir", str(run_dir),
            "--set", f"run.num_workers={workers}", "--set", f"run.total_timesteps={total}",
            "--set", f"eval.interval_steps={total}"]
    log(" ".join(cmd))
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"bench_mpi: K = {ranks} failed (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
    match = LINE.search(out.stdout)
    if not match:
        sys.exit(f"bench_mpi: no 'mpi:' line from rank 0:\n{out.stdout}")
    with open(run_dir / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    update_ms, exchange_ms, calls, sent, done = match.groups()
    return {
        "bench": "mpi-ranks",
        "ranks": ranks,
        "workers_per_rank": workers,
        "updates": int(done),
        "env_steps": int(rows[-1]["env_steps"]),
        "env_steps_per_s": float(rows[-1]["steps_per_s"]),
        "update_ms": float(update_ms),
        "collectives_ms_per_update": float(exchange_ms),
        "collectives_per_update": float(calls),
        "bytes_per_update": int(sent),
    }


def projection(one, measured):
    """Steps/s on N nodes: each node does one rank's collection and update
    compute (measured with K = 1) plus the measured collectives, costed as
    Rabenseifner's allreduce (reduce-scatter then allgather, what MPI
    libraries use for these sizes): 2 (N - 1) / N * bytes / bandwidth for
    the data and 2 log2(N) * latency per collective."""
    steps_per_update_one = STEPS_PER_RANK_UPDATE
    per_update_s = steps_per_update_one / one["env_steps_per_s"]  # collection + update, one rank
    compute_s = per_update_s - one["collectives_ms_per_update"] / 1e3
    bytes_per_update = measured["bytes_per_update"]
    calls = measured["collectives_per_update"]
    for nodes in (8, 32, 128):
        ring = 2 * (nodes - 1) / nodes * bytes_per_update / BANDWIDTH_BYTES_PER_S
        latency = calls * 2 * math.ceil(math.log2(nodes)) * LATENCY_S
        step_s = compute_s + ring + latency
        emit({
            "bench": "mpi-projection", "nodes": nodes, "bandwidth_gbit_s": 10, "latency_us": LATENCY_S * 1e6,
            "bytes_per_update": bytes_per_update, "collectives_per_update": calls,
            "compute_ms": compute_s * 1e3, "allreduce_bandwidth_ms": ring * 1e3,
            "allreduce_latency_ms": latency * 1e3,
            "env_steps_per_s": nodes * steps_per_update_one / step_s,
            "efficiency": compute_s / step_s,
        })


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", default="1,2,3")
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--train", default=str(ROOT / "target" / "release" / "train"))
    args = parser.parse_args()
    ranks = [int(k) for k in args.ranks.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-mpi-") as root:
        for k in ranks:
            results.append(run(args.train, k, args.updates, args.workers, root))
            emit(results[-1])
    one = next((r for r in results if r["ranks"] == 1), None)
    if one is not None:
        projection(one, results[-1])


if __name__ == "__main__":
    main()
