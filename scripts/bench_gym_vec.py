#!/usr/bin/env python3
"""Baselines for `scripts/bench gymnasium`: env steps/s of Gymnasium's own
AsyncVectorEnv and Stable-Baselines3's SubprocVecEnv stepping Gymnasium envs
with random actions (no policy: their process-parallel stepping alone), one
process per env as both do; then, reading our lines from --ours, one
"gym_vec_ratio" line per env and env count: ours (2 worker processes, each
stepping its share of the envs and acting with the 64-64 policy) against
each baseline with the same number of envs.

    .venv-tools/bin/python scripts/bench_gym_vec.py --seconds S --ours FILE
"""

import argparse
import json
import time

import numpy as np
import gymnasium as gym


def emit(line):
    print(json.dumps(line), flush=True)


def measure(kind, env_id, n, seconds):
    fns = [lambda: gym.make(env_id) for _ in range(n)]
    if kind == "gymnasium_async":
        envs = gym.vector.AsyncVectorEnv(fns)
        envs.reset(seed=list(range(n)))
        space = envs.single_action_space
        step = envs.step
    else:
        from stable_baselines3.common.vec_env import SubprocVecEnv

        envs = SubprocVecEnv(fns)
        envs.seed(0)
        envs.reset()
        space = envs.action_space
        step = envs.step
    rng = np.random.default_rng(0)
    if isinstance(space, gym.spaces.Discrete):
        actions = rng.integers(0, space.n, size=(64, n))
    else:
        actions = rng.uniform(space.low, space.high, size=(64, n) + space.shape).astype(space.dtype)
    for i in range(20):
        step(actions[i % 64])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(64):
            step(actions[i])
        steps += 64 * n
    elapsed = time.perf_counter() - start
    envs.close()
    return {
        "bench": "gym_vec_steps",
        "impl": kind,
        "env": env_id,
        "processes": n,
        "envs": n,
        "env_steps": steps,
        "seconds": elapsed,
        "steps_per_s": steps / elapsed,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--envs", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--env-ids", nargs="+", default=["CartPole-v1", "HalfCheetah-v5"])
    parser.add_argument("--ours", help="our bench rollout JSON lines")
    args = parser.parse_args()
    baselines = []
    for env_id in args.env_ids:
        for n in args.envs:
            for kind in ("gymnasium_async", "sb3_subproc"):
                line = measure(kind, env_id, n, args.seconds)
                emit(line)
                baselines.append(line)
    if not args.ours:
        return
    ours = [json.loads(l) for l in open(args.ours) if l.strip().startswith("{")]
    for b in baselines:
        for o in ours:
            if o.get("mode") != "processes" or o.get("env") != "gymnasium:" + b["env"]:
                continue
            if o["workers"] * o["envs_per_worker"] != b["envs"]:
                continue
            emit(
                {
                    "bench": "gym_vec_ratio",
                    "env": b["env"],
                    "envs": b["envs"],
                    "ours_processes": o["workers"],
                    "baseline": b["impl"],
                    "baseline_processes": b["processes"],
                    "ours_steps_per_s": o["steps_per_s"],
                    "baseline_steps_per_s": b["steps_per_s"],
                    "ratio": o["steps_per_s"] / b["steps_per_s"],
                }
            )


if __name__ == "__main__":
    main()
