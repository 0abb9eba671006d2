#!/usr/bin/env python3
"""Off-policy benchmarks of our trainer (SAC, TD3, DQN): JSON lines on stdout,
the trainer's output and progress on stderr. Build the trainer (`cargo build
--release -p rl-cli`) and the tools venv (`scripts/setup --tools`), then:

    .venv-tools/bin/python scripts/bench_offpolicy.py targets [--seeds 1,2,3,4,5]
        [--configs sac_pendulum,td3_pendulum,sac_mountaincar_continuous,dqn_cartpole]
    .venv-tools/bin/python scripts/bench_offpolicy.py compare [--seeds 1] [--steps 20000]

The trainer is --train PATH, else $FERRORL_TRAIN, else target/release/train;
run directories go to a temporary directory, removed at the end.

targets: `train --config configs/NAME.toml --run-dir DIR --seed S` per config
and seed (--steps N sets run.total_timesteps, for smoke tests). One
"offpolicy-target" line per run (reached_at: env steps of the first eval.csv
row with return_mean >= target, else null; wall_s: the whole command), one
"offpolicy-target-summary" line per config. Targets: sac_pendulum and
td3_pendulum -200 (Pendulum-v1, 20k steps), sac_mountaincar_continuous 90
(50k), dqn_cartpole 475 (CartPole-v1, 50k).

compare: SAC on Pendulum-v1 with rl-baselines3-zoo's hyperparameters, ours
(configs/sac_pendulum.toml, run.torch_threads=T) then Stable-Baselines3 in a
child process of .venv-tools/bin/python (SAC("MlpPolicy", "Pendulum-v1",
learning_rate=1e-3), other settings SB3's defaults, torch.set_num_threads(T));
T = os.cpu_count() unless --threads. Every 2000 env steps (as our config) and
at the end, SB3's callback plays 10 deterministic episodes on a separate,
seeded env and keeps that time out of the training time, so both steps_per_s
count training only, as train.csv's does. train_s_to_target: training seconds
up to the first evaluation >= -200. Lines: "offpolicy-sac-pendulum" per impl
and seed; "cpu-fp32-peak" (torch float32 2048^3 matmul, best of 5, 1 and T
threads); "sac-step-flops" (one SAC gradient step, see sac_step_flops, and its
time at the T-thread peak); "sac-step-vs-floor" (our ms per env step over that
floor); last "offpolicy-sac-pendulum-ratio" (steps/s ours/SB3, time to target
SB3/ours; means over seeds).
"""
import argparse
import collections
import csv
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRAIN = Path(os.environ.get("FERRORL_TRAIN") or ROOT / "target" / "release" / "train")
TOOLS_PYTHON = ROOT / ".venv-tools" / "bin" / "python"
TARGETS = {"sac_pendulum": -200.0, "td3_pendulum": -200.0, "sac_mountaincar_continuous": 90.0, "dqn_cartpole": 475.0}
COMPARE_CONFIG, COMPARE_TARGET = "sac_pendulum", -200.0
EVAL_INTERVAL, EVAL_EPISODES, EVAL_SEED_OFFSET = 2000, 10, 10_000  # as configs/sac_pendulum.toml
OBS_DIM, ACT_DIM, HIDDEN, BATCH = 3, 1, [256, 256], 256  # Pendulum-v1, SB3's SAC defaults


class BenchError(Exception):
    """A failure worth one clear message on stderr and a non-zero exit."""


def log(message):
    print(f"bench_offpolicy: {message}", file=sys.stderr, flush=True)


def emit(record):
    print(json.dumps(record), flush=True)


def as_record(line):
    """The JSON object on this line, or None."""
    try:
        return json.loads(line) if line.startswith("{") else None
    except json.JSONDecodeError:
        return None


def run_child(cmd, what):
    """Runs cmd with its stderr merged into its stdout: returns its JSON lines and
    passes the rest to our stderr; on failure, repeats the last 30 of those."""
    log(f"{what}: {' '.join(cmd)}")
    records, tail = [], collections.deque(maxlen=30)
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            for line in proc.stdout:
                record = as_record(line)
                if record is not None:
                    records.append(record)
                else:
                    tail.append(line)
                    print(line, end="", file=sys.stderr, flush=True)
        except BaseException:
            proc.kill()
            raise
    if proc.returncode != 0:
        raise BenchError(
            f"{what} failed (exit status {proc.returncode}); command: {' '.join(cmd)}\n"
            f"--- the last {len(tail)} lines of its output ---\n{''.join(tail)}--- end ---"
        )
    return records


# --- Our trainer ---------------------------------------------------------------


def check_train(train_bin):
    if not train_bin.is_file():
        raise BenchError(f"trainer {train_bin} not found; run `cargo build --release -p rl-cli` (or set FERRORL_TRAIN)")


def config_info(name):
    """(env id, algo, total_timesteps) of configs/NAME.toml."""
    path = ROOT / "configs" / f"{name}.toml"
    try:
        with path.open("rb") as f:
            cfg = tomllib.load(f)
        return cfg["env"]["id"], cfg["run"]["algo"], int(cfg["run"]["total_timesteps"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise BenchError(f"config {path}: cannot read env.id, run.algo and run.total_timesteps ({e!r})") from None


def train(train_bin, name, seed, root, sets):
    """Runs the trainer into a new run directory; returns (run dir, wall seconds)."""
    run_dir = Path(root) / f"{name}-seed{seed}"
    cmd = [str(train_bin), "--config", f"configs/{name}.toml", "--run-dir", str(run_dir), "--seed", str(seed)]
    for setting in sets:
        cmd += ["--set", setting]
    start = time.perf_counter()
    run_child(cmd, f"trainer ({name} seed {seed})")
    return run_dir, time.perf_counter() - start


def read_csv(path, columns):
    """The rows of a trainer CSV as dicts of floats (an empty cell is NaN)."""
    if not path.is_file():
        raise BenchError(f"{path} is missing; the trainer did not write it")
    with path.open(newline="") as f:
        try:
            rows = [{c: float(row[c] or "nan") for c in columns} for row in csv.DictReader(f)]
        except (KeyError, TypeError, ValueError) as e:
            raise BenchError(f"{path}: no column or not a number: {e!r}") from None
    if not rows:
        raise BenchError(f"{path} has no rows")
    return rows


def eval_summary(run_dir, target):
    """(env steps of the first evaluation >= target or None, final, best) from eval.csv."""
    rows = read_csv(run_dir / "eval.csv", ["env_steps", "return_mean"])
    returns = [(int(r["env_steps"]), r["return_mean"]) for r in rows]
    hit = next((steps for steps, ret in returns if ret >= target), None)
    best = max((ret for _, ret in returns if math.isfinite(ret)), default=None)
    return hit, returns[-1][1] if math.isfinite(returns[-1][1]) else None, best


# --- targets -----------------------------------------------------------------------


def targets(args):
    unknown = [c for c in args.configs if c not in TARGETS]
    if unknown:
        raise BenchError(f"unknown config(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    check_train(args.train)
    infos = {name: config_info(name) for name in args.configs}
    sets = [f"run.total_timesteps={args.steps}"] if args.steps else []
    with tempfile.TemporaryDirectory(prefix="bench_offpolicy-") as root:
        for name in args.configs:
            env, algo, total = infos[name]
            runs = []
            for seed in args.seeds:
                run_dir, wall = train(args.train, name, seed, root, sets)
                hit, final, best = eval_summary(run_dir, TARGETS[name])
                runs.append({
                    "bench": "offpolicy-target", "config": name, "env": env, "algo": algo, "seed": seed,
                    "target": TARGETS[name], "budget": args.steps or total, "reached_at": hit,
                    "final_eval": final, "best_eval": best, "wall_s": round(wall, 2),
                })
                emit(runs[-1])
            finals = [r["final_eval"] for r in runs if r["final_eval"] is not None]
            emit({
                "bench": "offpolicy-target-summary", "config": name, "seeds": len(runs),
                "reached": sum(r["reached_at"] is not None for r in runs),
                "final_eval_mean": statistics.mean(finals) if finals else None,
                "final_eval_min": min(finals) if finals else None,
            })


# --- compare -------------------------------------------------------------------------


def ours_sac(args, seed, root):
    sets = [f"run.total_timesteps={args.steps}", f"run.torch_threads={args.threads}"]
    run_dir, wall = train(args.train, COMPARE_CONFIG, seed, root, sets)
    hit, final, _ = eval_summary(run_dir, COMPARE_TARGET)
    rows = read_csv(run_dir / "train.csv", ["env_steps", "steps_per_s"])
    rows = [r for r in rows if math.isfinite(r["steps_per_s"]) and r["steps_per_s"] > 0]
    if not rows:
        raise BenchError(f"{run_dir / 'train.csv'}: no positive steps_per_s")
    # steps_per_s is env_steps over the training seconds so far, and train.csv
    # has a row at every evaluation point: their quotient there is the time.
    at_hit = [r for r in rows if hit is not None and r["env_steps"] <= hit]
    return {
        "bench": "offpolicy-sac-pendulum", "impl": "ferrorl", "seed": seed, "env_steps": args.steps,
        "torch_threads": args.threads, "steps_per_s": rows[-1]["steps_per_s"], "steps_to_target": hit,
        "train_s_to_target": at_hit[-1]["env_steps"] / at_hit[-1]["steps_per_s"] if at_hit else None,
        "final_eval": final, "wall_s": wall,
    }


def sb3_child(args):
    """SB3's SAC on Pendulum-v1 (tools venv only); prints one JSON line."""
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger

    class EvalTimed(BaseCallback):
        """Evaluates every EVAL_INTERVAL env steps (once that step's update is
        done) and at the end; the evaluation time is kept out of train_s."""

        def __init__(self):
            super().__init__()
            self.env = gym.make("Pendulum-v1")
            self.env.reset(seed=args.seed + EVAL_SEED_OFFSET)
            self.next, self.start, self.eval_s, self.evals = EVAL_INTERVAL, 0.0, 0.0, []

        def _on_training_start(self):
            self.start = time.perf_counter()

        def _evaluate(self):
            began = time.perf_counter()
            returns = []
            for _ in range(EVAL_EPISODES):
                obs, _ = self.env.reset()
                total, done = 0.0, False
                while not done:
                    action, _ = self.model.predict(obs, deterministic=True)
                    obs, reward, terminated, truncated, _ = self.env.step(action)
                    total, done = total + float(reward), terminated or truncated
                returns.append(total)
            train_s = began - self.start - self.eval_s
            self.eval_s += time.perf_counter() - began
            self.evals.append((self.num_timesteps, train_s, float(np.mean(returns))))
            log(f"  SB3 {self.num_timesteps:>7} steps  train {train_s:7.2f} s  return {self.evals[-1][2]:8.1f}")

        def _on_rollout_start(self):  # after the previous step's update
            if self.num_timesteps >= self.next:
                self._evaluate()
                self.next += EVAL_INTERVAL

        def _on_step(self):
            return True

        def _on_training_end(self):
            if not self.evals or self.evals[-1][0] < self.num_timesteps:
                self._evaluate()

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = SAC("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, seed=args.seed, device="cpu", verbose=0)
    model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default one makes a /tmp directory
    callback = EvalTimed()
    model.learn(total_timesteps=args.steps, callback=callback)
    steps, train_s, final = callback.evals[-1]
    hit = next((e for e in callback.evals if e[2] >= COMPARE_TARGET), None)
    emit({
        "bench": "offpolicy-sac-pendulum", "impl": "sb3", "seed": args.seed, "env_steps": steps,
        "torch_threads": torch.get_num_threads(), "steps_per_s": steps / train_s,
        "steps_to_target": hit[0] if hit else None, "train_s_to_target": hit[1] if hit else None,
        "final_eval": final, "wall_s": time.perf_counter() - start,
    })


def peak_child(args):
    """torch float32 matmul GFLOP/s with 1 and T threads (tools venv only)."""
    import torch

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    for threads in sorted({1, args.threads}):
        torch.set_num_threads(threads)
        torch.mm(a, b)  # warm-up
        best = math.inf
        for _ in range(5):
            began = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - began)
        emit({"bench": "cpu-fp32-peak", "threads": threads, "gflops": 2 * n**3 / best / 1e9})


def sac_step_flops():
    """FLOPs of one SAC gradient step, batch B. A linear layer n_in -> n_out costs
    F = 2*B*n_in*n_out forward and 2F backward (weight and input gradients).
    A = one actor forward (obs -> 256 -> 256 -> mean and log-std heads, 2*act),
    Q = one Q-network forward (obs+act -> 256 -> 256 -> 1):
      critic update: target actor fwd on next obs + 2 target Q fwd + 2 Q fwd+bwd
                     = A + 2Q + 2*3Q = A + 8Q
      actor update:  actor fwd+bwd + 2 Q fwd+bwd (through the input) = 3A + 6Q
      alpha update:  one more actor forward = A
      total = 5A + 14Q (elementwise ops and the Polyak averaging left out)."""

    def mlp(sizes):
        return sum(2 * BATCH * n_in * n_out for n_in, n_out in zip(sizes, sizes[1:]))

    return 5 * mlp([OBS_DIM, *HIDDEN, 2 * ACT_DIM]) + 14 * mlp([OBS_DIM + ACT_DIM, *HIDDEN, 1])


def compare(args):
    check_train(args.train)
    config_info(COMPARE_CONFIG)
    if not TOOLS_PYTHON.is_file():
        raise BenchError(f"{TOOLS_PYTHON} not found; run `scripts/setup --tools` first (SB3 baseline)")
    me = [str(TOOLS_PYTHON), str(Path(__file__).resolve())]
    ours, sb3 = [], []
    with tempfile.TemporaryDirectory(prefix="bench_offpolicy-") as root:
        for seed in args.seeds:
            ours.append(ours_sac(args, seed, root))
            emit(ours[-1])
            cmd = [*me, "sb3-child", "--seed", str(seed), "--steps", str(args.steps), "--threads", str(args.threads)]
            records = run_child(cmd, f"SB3 SAC seed {seed}")
            if len(records) != 1:
                raise BenchError(f"the SB3 child printed {len(records)} result lines, not 1")
            sb3.append(records[0])
            emit(sb3[-1])
    peaks = run_child([*me, "peak-child", "--threads", str(args.threads)], "float32 peak")
    for record in peaks:
        emit(record)
    peak = {r["threads"]: r["gflops"] for r in peaks}
    flops = sac_step_flops()
    floor_ms = flops / (peak[args.threads] * 1e9) * 1e3
    emit({
        "bench": "sac-step-flops", "batch": BATCH, "hidden": HIDDEN, "flops": flops, "peak_threads": args.threads,
        "floor_ms_at_peak": floor_ms, "floor_ms_at_1_thread_peak": flops / (peak[1] * 1e9) * 1e3,
    })
    ours_rate = statistics.mean(r["steps_per_s"] for r in ours)
    ours_ms = 1000 / ours_rate
    emit({"bench": "sac-step-vs-floor", "ours_ms_per_step": ours_ms, "ratio_to_floor": ours_ms / floor_ms})
    ours_t, sb3_t = ([r["train_s_to_target"] for r in runs] for runs in (ours, sb3))
    reached = None not in ours_t + sb3_t
    emit({
        "bench": "offpolicy-sac-pendulum-ratio", "torch_threads": args.threads,
        "steps_per_s_ratio": ours_rate / statistics.mean(r["steps_per_s"] for r in sb3),
        "time_to_target_ratio": statistics.mean(sb3_t) / statistics.mean(ours_t) if reached else None,
    })


# --- Command line ---------------------------------------------------------------------


def int_list(text):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def positive_int(text):
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def parse_args(argv):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--train", type=Path, default=DEFAULT_TRAIN, help="the trainer (default: %(default)s)")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    p = modes.add_parser("targets", parents=[common], help="learning targets of the off-policy configs, 5 seeds")
    p.add_argument("--seeds", type=int_list, default=[1, 2, 3, 4, 5], help="e.g. 1,2,3 (default: 1,2,3,4,5)")
    p.add_argument("--configs", type=lambda s: [c for c in s.split(",") if c], default=list(TARGETS),
                   help=f"comma-separated (default: {','.join(TARGETS)})")
    p.add_argument("--steps", type=positive_int, help="sets run.total_timesteps (smoke tests)")
    p.set_defaults(run=targets)
    p = modes.add_parser("compare", parents=[common], help="SAC Pendulum-v1: ours vs Stable-Baselines3")
    p.add_argument("--seeds", type=int_list, default=[1], help="e.g. 1,2 (default: 1)")
    p.add_argument("--steps", type=positive_int, default=20_000, help="env steps of each run (default: 20000)")
    p.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1,
                   help="torch threads of both (default: os.cpu_count() = %(default)s)")
    p.set_defaults(run=compare)
    for child, run in [("sb3-child", sb3_child), ("peak-child", peak_child)]:  # internal, tools venv
        p = modes.add_parser(child)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--steps", type=positive_int, default=20_000)
        p.add_argument("--threads", type=positive_int, default=1)
        p.set_defaults(run=run)
    args = parser.parse_args(argv)
    if getattr(args, "seeds", None) == []:
        parser.error("--seeds: no seeds given")
    if hasattr(args, "train"):
        args.train = args.train.resolve()
    return args


def on_sigterm(signum, frame):
    # Unwind like Ctrl-C does, so the temporary run directories are removed.
    raise SystemExit(128 + signum)


def main():
    args = parse_args(sys.argv[1:])
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
