#!/usr/bin/env python3
"""PPO benchmarks of our trainer, printed as JSON lines on stdout (the
trainer's own output and progress go to stderr).

Build the trainer first (`cargo build --release -p rl-cli`), then:

    .venv/bin/python scripts/bench_ppo.py compare [--seeds 0 1 2] [--config NAME]...
    .venv/bin/python scripts/bench_ppo.py targets [--seeds 0 1 2 3 4] [--env ID]...
    .venv/bin/python scripts/bench_ppo.py e2e [--seeds 0 1 2] [--workers 2]

Both modes take --train PATH (the trainer, default target/release/train) and
--keep-runs DIR (keep the run directories under DIR instead of a temporary
directory that is removed at the end).

compare: training speed and env steps to the target against Stable-Baselines3
on rl-baselines3-zoo's hyperparameters. For each config and seed it runs
`train --config CFG --run-dir DIR --seed S --set run.total_timesteps=BUDGET`
and prints a "ppo_train" line with "impl": "ours"; then it runs
scripts/bench_sb3.py with .venv-tools/bin/python (`scripts/setup --tools`)
for the same configs and seeds and passes its "ppo_train" lines through
(SB3 keeps the zoo's budget of 100k steps but stops at the target); last, one
"ppo_train_ratio" line per config with the mean training rates and the
speedup (ours over SB3).

    cartpole_zoo  configs/ppo_cartpole_zoo.toml   CartPole-v1  target 475   budget 100000
    pendulum_zoo  configs/ppo_pendulum_zoo.toml   Pendulum-v1  target -200  budget 100000

targets: the learning targets of the tuned configs. One "ppo_target" line per
run and one "ppo_target_summary" line per env. A target counts as reached when
the first evaluation with a mean return >= target comes at or before the
budget. Where a budget is given, the run's total_timesteps is set to it;
otherwise the config's own total_timesteps is the budget.

    CartPole-v1               configs/ppo.toml                          target 475   budget 50000
    Pendulum-v1               configs/ppo_pendulum.toml                 target -200  budget 100000
    Acrobot-v1                configs/ppo_acrobot.toml                  target -100
    MountainCar-v0            configs/ppo_mountaincar.toml              no target
    MountainCarContinuous-v0  configs/ppo_mountaincar_continuous.toml   no target

e2e: wall time to an evaluation >= 475 on CartPole-v1 with the zoo config
(configs/ppo_cartpole_zoo.toml, 100k steps), single process
(`--set run.num_workers=0`) and multi-process (`--set run.num_workers=N`),
alternating per seed in the same run. One "ppo_e2e" line per run (seconds
from the run's start to the first evaluation at or above the target, as
eval.csv's time_s records it, and the command's whole wall time, start-up
and shutdown included) and one "ppo_e2e_ratio" line.

What the trainer writes into its run directory and this script reads:
train.csv (env_steps, steps_per_s, ...; steps_per_s of the last row is the
run's training rate, evaluation excluded) and eval.csv (time_s, env_steps,
return_mean, ...; one row per evaluation of the deterministic policy).
"""

import argparse
import contextlib
import csv
import json
import math
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRAIN = ROOT / "target" / "release" / "train"
TOOLS_PYTHON = ROOT / ".venv-tools" / "bin" / "python"
BENCH_SB3 = ROOT / "scripts" / "bench_sb3.py"


@dataclass(frozen=True)
class Bench:
    name: str  # short name: the bench_sb3.py config, or the config file's stem
    config: str  # path relative to the repository root
    env: str
    target: float | None
    budget: int | None  # env steps; None: the config's total_timesteps


COMPARE = [
    # The zoo's own budgets, as SB3 gets them, so both anneal on the same schedule.
    Bench("cartpole_zoo", "configs/ppo_cartpole_zoo.toml", "CartPole-v1", 475.0, 100_000),
    Bench("pendulum_zoo", "configs/ppo_pendulum_zoo.toml", "Pendulum-v1", -200.0, 100_000),
]

TARGETS = [
    Bench("ppo", "configs/ppo.toml", "CartPole-v1", 475.0, 50_000),
    Bench("ppo_pendulum", "configs/ppo_pendulum.toml", "Pendulum-v1", -200.0, 100_000),
    Bench("ppo_acrobot", "configs/ppo_acrobot.toml", "Acrobot-v1", -100.0, None),
    Bench("ppo_mountaincar", "configs/ppo_mountaincar.toml", "MountainCar-v0", None, None),
    Bench(
        "ppo_mountaincar_continuous",
        "configs/ppo_mountaincar_continuous.toml",
        "MountainCarContinuous-v0",
        None,
        None,
    ),
]

TRAIN_COLUMNS = ["env_steps", "steps_per_s"]
EVAL_COLUMNS = ["time_s", "env_steps", "return_mean"]


class BenchError(Exception):
    """A failure worth one clear line on stderr and a non-zero exit."""


def log(message):
    print(f"bench_ppo: {message}", file=sys.stderr, flush=True)


def emit(record):
    print(json.dumps(record), flush=True)


# --- Running the trainer --------------------------------------------------


def check_inputs(train, benches):
    if not train.is_file():
        hint = " first" if train == DEFAULT_TRAIN else ", or pass the trainer with --train PATH"
        raise BenchError(f"trainer {train} not found; run `cargo build --release -p rl-cli`{hint}")
    missing = [b.config for b in benches if not (ROOT / b.config).is_file()]
    if missing:
        raise BenchError(f"config file(s) not found: {', '.join(missing)}")


@contextlib.contextmanager
def runs_root(keep_runs):
    """Where the run directories go: --keep-runs DIR, or a temporary directory
    that is removed when the block ends, however it ends."""
    if keep_runs is not None:
        keep_runs.mkdir(parents=True, exist_ok=True)
        yield keep_runs
    else:
        with tempfile.TemporaryDirectory(prefix="bench_ppo-") as tmp:
            yield Path(tmp)


def new_run_dir(root, bench, seed):
    run_dir = root / f"{bench.name}-seed{seed}"
    if run_dir.exists():
        raise BenchError(f"run directory {run_dir} already exists; give --keep-runs an empty directory")
    run_dir.mkdir()
    return run_dir


def train(train_bin, bench, seed, run_dir, sets):
    """Runs the trainer (its stdout goes to our stderr) and returns its wall seconds."""
    cmd = [str(train_bin), "--config", bench.config, "--run-dir", str(run_dir), "--seed", str(seed)]
    for setting in sets:
        cmd += ["--set", setting]
    log(f"{bench.env} {bench.config} seed {seed}: {' '.join(cmd)}")
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(
            f"trainer failed (exit status {result.returncode}) on {bench.config} seed {seed}; command: {' '.join(cmd)}"
        )
    return seconds


# --- Reading a run ----------------------------------------------------------


def read_csv(path, columns):
    """The rows of a trainer CSV as dicts of floats, for the given columns.
    An empty cell (the trainer's way of writing a non-finite number) is NaN."""
    if not path.is_file():
        raise BenchError(f"{path} is missing; the trainer did not write it")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchError(f"{path}: missing column(s) {', '.join(missing)}; header: {reader.fieldnames}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                values = {c: float(row[c] or "nan") for c in columns}
            except (TypeError, ValueError):
                values = None
            if values is None or not math.isfinite(values["env_steps"]):
                raise BenchError(f"{path}:{line}: not a number in {', '.join(columns)}: {row}")
            rows.append(values)
    if not rows:
        raise BenchError(f"{path} has no rows")
    return rows


def finite(x):
    return x if math.isfinite(x) else None


def training_rate(run_dir):
    """steps_per_s of the last train.csv row that has one."""
    path = run_dir / "train.csv"
    rates = [row["steps_per_s"] for row in read_csv(path, TRAIN_COLUMNS) if math.isfinite(row["steps_per_s"])]
    if not rates or rates[-1] <= 0:
        raise BenchError(f"{path}: no positive steps_per_s in the last row that has one")
    return rates[-1]


def first_reaching(evals, target):
    """The first evaluation row whose mean return reaches the target, or None."""
    if target is None:
        return None
    return next((row for row in evals if row["return_mean"] >= target), None)


def config_total_timesteps(bench):
    try:
        with (ROOT / bench.config).open("rb") as f:
            value = tomllib.load(f).get("run", {}).get("total_timesteps")
    except tomllib.TOMLDecodeError as e:
        raise BenchError(f"{bench.config}: not valid TOML: {e}") from None
    return int(value) if value is not None else None


# --- compare ----------------------------------------------------------------


def ours_compare(train_bin, bench, seed, root):
    run_dir = new_run_dir(root, bench, seed)
    train(train_bin, bench, seed, run_dir, [f"run.total_timesteps={bench.budget}"])
    rate = training_rate(run_dir)
    evals = read_csv(run_dir / "eval.csv", EVAL_COLUMNS)
    hit = first_reaching(evals, bench.target)
    steps = int(hit["env_steps"]) if hit else None
    return {
        "bench": "ppo_train",
        "impl": "ours",
        "config": bench.name,
        "env": bench.env,
        "seed": seed,
        "train_steps_per_s": rate,
        "steps_to_target": steps,
        "train_seconds_to_target": steps / rate if hit else None,
        "wall_seconds_to_target": hit["time_s"] if hit else None,
        "final_eval_return": finite(evals[-1]["return_mean"]),
    }


def sb3_compare(bench, seeds):
    """Runs bench_sb3.py for one config, passes its JSON lines through and returns them."""
    cmd = [str(TOOLS_PYTHON), str(BENCH_SB3), "--config", bench.name, "--seeds", *map(str, seeds)]
    log(f"SB3 {bench.name}: {' '.join(cmd)}")
    records = []
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            for line in proc.stdout:
                if line.startswith("{"):
                    records.append(json.loads(line))
                    print(line, end="", flush=True)
                else:
                    print(line, end="", file=sys.stderr)
        except BaseException:
            proc.kill()
            raise
    if proc.returncode != 0:
        raise BenchError(f"bench_sb3.py failed (exit status {proc.returncode}); command: {' '.join(cmd)}")
    if len(records) != len(seeds):
        raise BenchError(f"bench_sb3.py printed {len(records)} result line(s) for {len(seeds)} seed(s)")
    return records


def compare(args):
    benches = [b for b in COMPARE if not args.config or b.name in args.config]
    check_inputs(args.train, benches)
    if not TOOLS_PYTHON.is_file():
        raise BenchError(f"{TOOLS_PYTHON} not found; run `scripts/setup --tools` first (SB3 baseline)")

    ours = {b.name: [] for b in benches}
    with runs_root(args.keep_runs) as root:
        for bench in benches:
            for seed in args.seeds:
                record = ours_compare(args.train, bench, seed, root)
                ours[bench.name].append(record)
                emit(record)
    sb3 = {b.name: sb3_compare(b, args.seeds) for b in benches}

    for bench in benches:
        ours_rate = statistics.mean(r["train_steps_per_s"] for r in ours[bench.name])
        sb3_rate = statistics.mean(r["train_steps_per_s"] for r in sb3[bench.name])
        emit(
            {
                "bench": "ppo_train_ratio",
                "config": bench.name,
                "ours_train_steps_per_s_mean": ours_rate,
                "sb3_train_steps_per_s_mean": sb3_rate,
                "speedup": round(ours_rate / sb3_rate, 2),
                "ours_steps_to_target": [r["steps_to_target"] for r in ours[bench.name]],
                "sb3_steps_to_target": [r["steps_to_target"] for r in sb3[bench.name]],
            }
        )


# --- targets ------------------------------------------------------------------


def target_run(train_bin, bench, seed, root):
    run_dir = new_run_dir(root, bench, seed)
    sets = [f"run.total_timesteps={bench.budget}"] if bench.budget is not None else []
    wall = train(train_bin, bench, seed, run_dir, sets)
    evals = read_csv(run_dir / "eval.csv", EVAL_COLUMNS)
    budget = bench.budget or config_total_timesteps(bench)
    if budget is None:  # the trainer's default: read what the run did
        budget = int(read_csv(run_dir / "train.csv", TRAIN_COLUMNS)[-1]["env_steps"])
    hit = first_reaching(evals, bench.target)
    steps = int(hit["env_steps"]) if hit else None
    return {
        "bench": "ppo_target",
        "env": bench.env,
        "config": bench.config,
        "seed": seed,
        "target": bench.target,
        "budget_steps": budget,
        "steps_to_target": steps,
        "reached": None if bench.target is None else steps is not None and steps <= budget,
        "best_eval_return": max((r["return_mean"] for r in evals if math.isfinite(r["return_mean"])), default=None),
        "final_eval_return": finite(evals[-1]["return_mean"]),
        "wall_seconds": wall,
    }


def targets(args):
    wanted = {e.lower() for e in args.env or []}
    known = {b.env.lower() for b in TARGETS}
    unknown = sorted(wanted - known)
    if unknown:
        raise BenchError(f"unknown env(s) {', '.join(unknown)}; known: {', '.join(b.env for b in TARGETS)}")
    benches = [b for b in TARGETS if not wanted or b.env.lower() in wanted]
    check_inputs(args.train, benches)

    with runs_root(args.keep_runs) as root:
        for bench in benches:
            runs = []
            for seed in args.seeds:
                runs.append(target_run(args.train, bench, seed, root))
                emit(runs[-1])
            reached = sum(1 for r in runs if r["reached"])
            emit(
                {
                    "bench": "ppo_target_summary",
                    "env": bench.env,
                    "target": bench.target,
                    "reached": None if bench.target is None else f"{reached}/{len(runs)}",
                    "steps_to_target": [r["steps_to_target"] for r in runs],
                    "final_eval_return": [r["final_eval_return"] for r in runs],
                }
            )


# --- e2e ------------------------------------------------------------------------


def e2e_run(train_bin, bench, seed, workers, root):
    named = Bench(f"{bench.name}-w{workers}", bench.config, bench.env, bench.target, bench.budget)
    run_dir = new_run_dir(root, named, seed)
    wall = train(
        train_bin, bench, seed, run_dir, [f"run.total_timesteps={bench.budget}", f"run.num_workers={workers}"]
    )
    evals = read_csv(run_dir / "eval.csv", EVAL_COLUMNS)
    hit = first_reaching(evals, bench.target)
    return {
        "bench": "ppo_e2e",
        "config": bench.name,
        "env": bench.env,
        "seed": seed,
        "workers": workers,
        "steps_to_target": int(hit["env_steps"]) if hit else None,
        "wall_seconds_to_target": hit["time_s"] if hit else None,
        "command_wall_seconds": wall,
        "train_steps_per_s": training_rate(run_dir),
    }


def e2e(args):
    bench = COMPARE[0]
    check_inputs(args.train, [bench])
    runs = {0: [], args.workers: []}
    with runs_root(args.keep_runs) as root:
        for seed in args.seeds:
            for workers in (0, args.workers):
                runs[workers].append(e2e_run(args.train, bench, seed, workers, root))
                emit(runs[workers][-1])

    def mean(workers, key):
        values = [r[key] for r in runs[workers] if r[key] is not None]
        return statistics.mean(values) if len(values) == len(runs[workers]) else None

    single, multi = mean(0, "wall_seconds_to_target"), mean(args.workers, "wall_seconds_to_target")
    emit(
        {
            "bench": "ppo_e2e_ratio",
            "config": bench.name,
            "workers": args.workers,
            "single_wall_seconds_to_target_mean": single,
            "multi_wall_seconds_to_target_mean": multi,
            "multi_over_single": round(multi / single, 2) if single and multi else None,
            "single_command_wall_seconds_mean": mean(0, "command_wall_seconds"),
            "multi_command_wall_seconds_mean": mean(args.workers, "command_wall_seconds"),
        }
    )


# --- Command line -------------------------------------------------------------


def parse_args():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--train", type=Path, default=DEFAULT_TRAIN, help="the trainer binary (default: target/release/train)"
    )
    common.add_argument(
        "--keep-runs", type=Path, metavar="DIR", help="keep the run directories under DIR (default: a temporary directory)"
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    p = modes.add_parser("compare", parents=[common], help="training speed and steps to target against SB3")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument(
        "--config", action="append", choices=[b.name for b in COMPARE], help="only this config (repeatable)"
    )
    p.set_defaults(run=compare)
    p = modes.add_parser("targets", parents=[common], help="learning targets of the tuned configs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default: 0 1 2 3 4)")
    p.add_argument("--env", action="append", metavar="ID", help="only this env, e.g. CartPole-v1 (repeatable)")
    p.set_defaults(run=targets)
    p = modes.add_parser("e2e", parents=[common], help="wall time to the CartPole target, processes vs one process")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the multi-process runs (default: 2)")
    p.set_defaults(run=e2e)

    args = parser.parse_args()
    args.train = args.train.resolve()
    if args.keep_runs is not None:
        args.keep_runs = args.keep_runs.resolve()
    return args


def on_sigterm(signum, frame):
    # Unwind like Ctrl-C does, so the temporary run directories are removed.
    raise SystemExit(128 + signum)


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        args.run(args)
    except BenchError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
