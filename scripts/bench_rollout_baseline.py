#!/usr/bin/env python3
"""Baselines for `bench rollout`, printed as JSON lines like ours
("bench": "rollout_collect"):

* impl "gymnasium_torch": Gymnasium's SyncVectorEnv(8) of CartPole-v1 acting
  with a PyTorch actor-critic of the same shape as ours (64-64 tanh actor and
  critic, Categorical sampling, values computed as a PPO rollout needs them),
  under torch.no_grad with one torch thread: what a CleanRL-style rollout
  loop does each step.
* impl "sb3_subproc": Stable-Baselines3's SubprocVecEnv(8) stepping CartPole-v1
  with random actions and no policy at all: its process-parallel env
  stepping alone.

    .venv-tools/bin/python scripts/bench_rollout_baseline.py [--seconds S]
"""

import argparse
import json
import time


def emit(impl, mode, workers, envs, steps, seconds):
    print(
        json.dumps(
            {
                "bench": "rollout_collect",
                "impl": impl,
                "mode": mode,
                "workers": workers,
                "envs_per_worker": envs,
                "env_steps": steps,
                "seconds": seconds,
                "steps_per_s": steps / seconds,
            }
        ),
        flush=True,
    )


def gymnasium_torch(seconds):
    import gymnasium as gym
    import torch
    from torch import nn

    torch.set_num_threads(1)
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(8)])

    def mlp(out):
        return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, out))

    actor, critic = mlp(2), mlp(1)
    obs, _ = envs.reset(seed=0)
    steps = 0
    start = None
    with torch.no_grad():
        while True:
            x = torch.as_tensor(obs, dtype=torch.float32)
            dist = torch.distributions.Categorical(logits=actor(x))
            action = dist.sample()
            dist.log_prob(action)
            critic(x)
            obs, _, _, _, _ = envs.step(action.numpy())
            steps += 8
            if start is None and steps >= 800:  # warm-up
                start, steps = time.perf_counter(), 0
            if start is not None and time.perf_counter() - start >= seconds:
                break
    emit("gymnasium_torch", "in_process", 0, 8, steps, time.perf_counter() - start)


def sb3_subproc(seconds):
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.vec_env import SubprocVecEnv

    envs = SubprocVecEnv([lambda: gym.make("CartPole-v1") for _ in range(8)])
    try:
        envs.reset()
        rng = np.random.default_rng(0)
        steps, start = 0, None
        while True:
            envs.step(rng.integers(2, size=8))
            steps += 8
            if start is None and steps >= 800:
                start, steps = time.perf_counter(), 0
            if start is not None and time.perf_counter() - start >= seconds:
                break
        emit("sb3_subproc", "processes", 8, 1, steps, time.perf_counter() - start)
    finally:
        envs.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    gymnasium_torch(args.seconds)
    sb3_subproc(args.seconds)


if __name__ == "__main__":
    main()
