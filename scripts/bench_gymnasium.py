#!/usr/bin/env python3
"""Gymnasium's env step rates, measured the way `bench envs` measures ours.

Prints JSON lines like the Rust benchmark, with "impl": "gymnasium":
mode "single" (gym.make, reset when an episode ends) and mode "vector"
(SyncVectorEnv of 8, autoreset). Actions come from a fixed table, so no
sampling cost is measured.

    .venv/bin/python scripts/bench_gymnasium.py [--seconds S] [--env ID]...
"""

import argparse
import json
import time

import gymnasium as gym
import numpy as np

ENV_IDS = [
    "Acrobot-v1",
    "CartPole-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
    "Pendulum-v1",
]
TABLE = 4096


def action_table(space, num_envs, rng):
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(space.n, size=(TABLE, num_envs)).astype(np.int64)
    low, high = space.low, space.high
    return rng.uniform(low, high, size=(TABLE, num_envs) + space.shape).astype(np.float32)


def emit(env_id, mode, num_envs, steps, seconds):
    print(
        json.dumps(
            {
                "bench": "env_step",
                "impl": "gymnasium",
                "version": gym.__version__,
                "env": env_id,
                "mode": mode,
                "num_envs": num_envs,
                "steps": steps,
                "seconds": seconds,
                "steps_per_s": steps / seconds,
            }
        ),
        flush=True,
    )


def bench_single(env_id, seconds):
    env = gym.make(env_id)
    table = action_table(env.action_space, 1, np.random.default_rng(1))
    # Elements of a NumPy array (np.int64 or float32 arrays), as
    # action_space.sample() returns them: Gymnasium checks those fastest.
    actions = [a[0] for a in table]
    env.reset(seed=0)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        steps += len(actions)
    emit(env_id, "single", 1, steps, time.perf_counter() - start)


def bench_sync_vector(env_id, num_envs, seconds):
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)])
    table = action_table(envs.single_action_space, num_envs, np.random.default_rng(2))
    envs.reset(seed=0)
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for actions in table[:512]:
            envs.step(actions)
        calls += 512
    emit(env_id, "vector", num_envs, calls * num_envs, time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--env", action="append", dest="envs")
    args = parser.parse_args()
    for env_id in args.envs or ENV_IDS:
        bench_single(env_id, args.seconds)
        bench_sync_vector(env_id, 8, args.seconds)


if __name__ == "__main__":
    main()
