#!/usr/bin/env python3
"""PPO on HalfCheetah-v5, ours against Stable-Baselines3 with the same
(rl-baselines3-zoo) hyperparameters, in one run: final deterministic
evaluation return and wall time. JSON lines on stdout; the trainer's output
and progress go to stderr.

Build the trainer (`cargo build --release -p rl-cli`) and the tools venv
(`scripts/setup --tools`) first, then:

    .venv/bin/python scripts/bench_mujoco.py [--seeds 1 2 3] [--sb3-seed 1]
        [--steps 1000000] [--sb3-steps N] [--eval-episodes 5]
        [--skip-ours] [--skip-sb3] [--train PATH] [--keep-runs DIR]

Ours: for each seed, `train --config configs/ppo_halfcheetah.toml --run-dir DIR
--seed S --set run.total_timesteps=STEPS`, timed from outside (start-up, the
config's periodic evaluations and shutdown included). The final evaluation is
the last row of the run's eval.csv, the training rate the last steps_per_s of
its train.csv. Run directories go to a temporary directory unless --keep-runs.

SB3: then (never at the same time) one seed of SB3's PPO in a child process,
`.venv-tools/bin/python scripts/bench_mujoco.py sb3-child --seed S --steps N
--eval-episodes E`: the zoo's HalfCheetah hyperparameters with 2 envs x 256
steps (the zoo's 512-step batch, as in our config), VecNormalize with the
algorithm's gamma, torch on the CPU with its default number of threads.
wall_s is the env and model set-up plus model.learn(); the final evaluation
(a separate HalfCheetah-v5 env, observations normalised with the trained
statistics, deterministic actions, episodes seeded 10000 + k) is timed
apart as eval_s.

Lines:

    {"bench": "mujoco_ppo", "impl": "ours", "env": "HalfCheetah-v5", "seed": S,
     "env_steps": N, "wall_s": ..., "final_eval_return": ..., "train_steps_per_s": ...}
    {"bench": "mujoco_ppo", "impl": "sb3", ..., "learn_s": ..., "eval_s": ...,
     "torch_threads": ...}
    {"bench": "mujoco_ppo_summary", "env": "HalfCheetah-v5",
     "ours_final_returns": [...], "ours_return_mean": ..., "ours_wall_s_mean": ...,
     "sb3_final_return": ..., "sb3_wall_s": ..., "wall_speedup": sb3 / ours mean,
     "reference": ..., "within_reference_range": [bool per seed of ours],
     "at_least_reference_low": [bool per seed of ours], "sb3_within_reference_range": bool}

The reference is the zoo's published PPO HalfCheetah result at 1M steps,
5819 +- 663, taken as the range [5156, 6482].
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRAIN = ROOT / "target" / "release" / "train"
TOOLS_PYTHON = ROOT / ".venv-tools" / "bin" / "python"
CONFIG = "configs/ppo_halfcheetah.toml"
ENV_ID = "HalfCheetah-v5"
REFERENCE = "rl-baselines3-zoo PPO HalfCheetah-v3, 1M steps: 5819 +- 663"
REFERENCE_RANGE = (5819.0 - 663.0, 5819.0 + 663.0)
EVAL_SEED_OFFSET = 10_000


class BenchError(Exception):
    """A failure worth one clear line on stderr and a non-zero exit."""


def log(message):
    print(f"bench_mujoco: {message}", file=sys.stderr, flush=True)


def emit(record):
    print(json.dumps(record), flush=True)


# --- Ours ---------------------------------------------------------------------


@contextlib.contextmanager
def runs_root(keep_runs):
    """--keep-runs DIR, or a temporary directory removed when the block ends."""
    if keep_runs is not None:
        keep_runs.mkdir(parents=True, exist_ok=True)
        yield keep_runs
    else:
        with tempfile.TemporaryDirectory(prefix="bench_mujoco-") as tmp:
            yield Path(tmp)


def new_run_dir(root, seed):
    run_dir = root / f"halfcheetah-seed{seed}"
    if run_dir.exists():
        raise BenchError(f"run directory {run_dir} already exists; give --keep-runs an empty directory")
    run_dir.mkdir()
    return run_dir


def last_row(path, column):
    """The last row's value of `column` in a trainer CSV, as a float (None if empty)."""
    if not path.is_file():
        raise BenchError(f"{path} is missing; the trainer did not write it")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            raise BenchError(f"{path}: no column {column}; header: {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise BenchError(f"{path} has no rows")
    try:
        value = float(rows[-1][column] or "nan")
    except ValueError:
        raise BenchError(f"{path}: last {column} is not a number: {rows[-1][column]!r}") from None
    return value if math.isfinite(value) else None


def ours(train_bin, seed, steps, root):
    run_dir = new_run_dir(root, seed)
    cmd = [str(train_bin), "--config", CONFIG, "--run-dir", str(run_dir), "--seed", str(seed)]
    cmd += ["--set", f"run.total_timesteps={steps}"]
    log(f"ours seed {seed}: {' '.join(cmd)}")
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(f"trainer failed (exit status {result.returncode}) on seed {seed}; command: {' '.join(cmd)}")
    return {
        "bench": "mujoco_ppo",
        "impl": "ours",
        "env": ENV_ID,
        "seed": seed,
        "env_steps": steps,
        "wall_s": wall,
        "final_eval_return": last_row(run_dir / "eval.csv", "return_mean"),
        "train_steps_per_s": last_row(run_dir / "train.csv", "steps_per_s"),
    }


# --- SB3 ------------------------------------------------------------------------


def sb3(seed, steps, episodes):
    """Runs the sb3-child with the tools venv and returns its result line."""
    if not TOOLS_PYTHON.is_file():
        raise BenchError(f"{TOOLS_PYTHON} not found; run `scripts/setup --tools` first (SB3 baseline)")
    cmd = [str(TOOLS_PYTHON), str(Path(__file__).resolve()), "sb3-child"]
    cmd += ["--seed", str(seed), "--steps", str(steps), "--eval-episodes", str(episodes)]
    log(f"SB3 seed {seed}: {' '.join(cmd)}")
    result = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or len(lines) != 1:
        raise BenchError(
            f"SB3 child failed (exit status {result.returncode}, {len(lines)} result lines); command: {' '.join(cmd)}"
        )
    return json.loads(lines[0])


def sb3_child(seed, steps, episodes):
    """SB3's PPO with the zoo's HalfCheetah hyperparameters; prints one JSON line.
    Runs under .venv-tools, the only place SB3 and torch are imported."""
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecNormalize

    class Progress(BaseCallback):
        def __init__(self, every):
            super().__init__()
            self.every, self.next, self.start = every, every, 0.0

        def _on_training_start(self):
            self.start = time.perf_counter()

        def _on_step(self):
            if self.num_timesteps >= self.next:
                rate = self.num_timesteps / (time.perf_counter() - self.start)
                log(f"  SB3 {self.num_timesteps:>8} steps  {rate:7.1f} steps/s")
                self.next += self.every
            return True

    start = time.perf_counter()
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=2, seed=seed), gamma=0.98)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=256,
        batch_size=64,
        gamma=0.98,
        learning_rate=2.0633e-5,
        ent_coef=0.000401762,
        clip_range=0.1,
        n_epochs=20,
        gae_lambda=0.92,
        max_grad_norm=0.8,
        vf_coef=0.58096,
        policy_kwargs=dict(
            log_std_init=-2,
            ortho_init=False,
            activation_fn=torch.nn.ReLU,
            net_arch=dict(pi=[256, 256], vf=[256, 256]),
        ),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    # A logger without outputs: SB3's default one makes a directory in /tmp.
    model.set_logger(Logger(folder=None, output_formats=[]))
    log(f"SB3 seed {seed}: training {ENV_ID} for {steps} env steps, torch threads {torch.get_num_threads()}")
    learn_start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Progress(max(steps // 20, 1)))
    learn_s = time.perf_counter() - learn_start
    wall = time.perf_counter() - start

    # Final deterministic evaluation with the trained observation statistics.
    eval_start = time.perf_counter()
    env.training = False
    eval_env = gym.make(ENV_ID)
    returns = []
    for k in range(episodes):
        obs, _ = eval_env.reset(seed=EVAL_SEED_OFFSET + k)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(env.normalize_obs(obs), deterministic=True)
            obs, reward, terminated, truncated, _ = eval_env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    eval_env.close()
    env.close()
    emit(
        {
            "bench": "mujoco_ppo",
            "impl": "sb3",
            "env": ENV_ID,
            "seed": seed,
            "env_steps": steps,
            "wall_s": wall,
            "final_eval_return": float(np.mean(returns)),
            "train_steps_per_s": model.num_timesteps / learn_s,
            "learn_s": learn_s,
            "eval_s": time.perf_counter() - eval_start,
            "torch_threads": torch.get_num_threads(),
        }
    )


# --- Summary and command line --------------------------------------------------


def in_range(value):
    return value is not None and REFERENCE_RANGE[0] <= value <= REFERENCE_RANGE[1]


def summary(ours_runs, sb3_run):
    returns = [r["final_eval_return"] for r in ours_runs]
    known = [r for r in returns if r is not None]
    ours_wall = statistics.mean(r["wall_s"] for r in ours_runs) if ours_runs else None
    sb3_wall = sb3_run["wall_s"] if sb3_run else None
    sb3_return = sb3_run["final_eval_return"] if sb3_run else None
    return {
        "bench": "mujoco_ppo_summary",
        "env": ENV_ID,
        "ours_final_returns": returns,
        "ours_return_mean": statistics.mean(known) if known else None,
        "ours_wall_s_mean": ours_wall,
        "sb3_final_return": sb3_return,
        "sb3_wall_s": sb3_wall,
        "wall_speedup": round(sb3_wall / ours_wall, 2) if ours_wall and sb3_wall else None,
        "reference": REFERENCE,
        "reference_range": list(REFERENCE_RANGE),
        "within_reference_range": [in_range(r) for r in returns],
        "at_least_reference_low": [r is not None and r >= REFERENCE_RANGE[0] for r in returns],
        "sb3_within_reference_range": in_range(sb3_return) if sb3_run else None,
    }


def run(args):
    ours_runs, sb3_run = [], None
    if not args.skip_ours:
        if not args.train.is_file():
            raise BenchError(f"trainer {args.train} not found; run `cargo build --release -p rl-cli` first")
        with runs_root(args.keep_runs) as root:
            for seed in args.seeds:
                ours_runs.append(ours(args.train, seed, args.steps, root))
                emit(ours_runs[-1])
    if not args.skip_sb3:
        sb3_run = sb3(args.sb3_seed, args.sb3_steps or args.steps, args.eval_episodes)
        emit(sb3_run)
    emit(summary(ours_runs, sb3_run))


def parse_args(argv):
    if argv[:1] == ["sb3-child"]:
        p = argparse.ArgumentParser(prog="bench_mujoco.py sb3-child", description="the SB3 run (tools venv)")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--steps", type=int, default=1_000_000)
        p.add_argument("--eval-episodes", type=int, default=5)
        args = p.parse_args(argv[1:])
        args.run = lambda a: sb3_child(a.seed, a.steps, a.eval_episodes)
        return args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of ours (default: 1 2 3)")
    p.add_argument("--sb3-seed", type=int, default=1, help="seed of the SB3 run (default: 1)")
    p.add_argument("--steps", type=int, default=1_000_000, help="env steps of ours (default: 1000000)")
    p.add_argument("--sb3-steps", type=int, help="env steps of SB3 (default: --steps)")
    p.add_argument("--eval-episodes", type=int, default=5, help="SB3's final evaluation episodes (default: 5)")
    p.add_argument("--skip-ours", action="store_true", help="run SB3 only")
    p.add_argument("--skip-sb3", action="store_true", help="run ours only")
    p.add_argument("--train", type=Path, default=DEFAULT_TRAIN, help="the trainer (default: target/release/train)")
    p.add_argument("--keep-runs", type=Path, metavar="DIR", help="keep the run directories under DIR")
    args = p.parse_args(argv)
    args.train = args.train.resolve()
    if args.keep_runs is not None:
        args.keep_runs = args.keep_runs.resolve()
    args.run = run
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
