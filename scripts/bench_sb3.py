#!/usr/bin/env python3
"""Stable-Baselines3 PPO baseline: training speed and env steps to a target.

Run with the tools venv (`scripts/setup --tools`):

    .venv-tools/bin/python scripts/bench_sb3.py --config cartpole_zoo [--seeds 0 1 2]
        [--eval-interval N] [--eval-episodes N] [--max-steps N]

Configs are rl-baselines3-zoo's PPO hyperparameters:

    cartpole_zoo  CartPole-v1, target return 475
    pendulum_zoo  Pendulum-v1, target return -200

Torch runs on the CPU with one thread. Every --eval-interval env steps (checked
at the start of each rollout, so the policy evaluated is the one trained on
all steps so far) the deterministic policy plays --eval-episodes episodes on a
separate, separately seeded env. Training stops at the first evaluation whose
mean return reaches the target, or after --max-steps env steps (the zoo's
n_timesteps by default, which also sets the length of the linear schedules).
Evaluation time is excluded from the training time.

Prints one JSON line per seed on stdout (progress goes to stderr):

    {"bench": "ppo_train", "impl": "sb3", "config": ..., "env": ..., "seed": ...,
     "train_steps_per_s": ..., "steps_to_target": int | null,
     "train_seconds_to_target": ..., "wall_seconds_to_target": ...,
     "final_eval_return": ...}
"""

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import LinearSchedule


def linear(start):
    """The zoo's `lin_<start>`: start at progress_remaining 1, 0 at the end."""
    return LinearSchedule(start, 0.0, 1.0)


@dataclass
class ZooConfig:
    env_id: str
    target: float
    n_envs: int
    n_timesteps: int
    eval_interval: int
    ppo_kwargs: dict = field(default_factory=dict)


CONFIGS = {
    "cartpole_zoo": ZooConfig(
        env_id="CartPole-v1",
        target=475.0,
        n_envs=8,
        n_timesteps=100_000,
        eval_interval=2048,
        ppo_kwargs=dict(
            n_steps=32,
            batch_size=256,
            n_epochs=20,
            gamma=0.98,
            gae_lambda=0.8,
            learning_rate=linear(1e-3),
            clip_range=linear(0.2),
            ent_coef=0.0,
        ),
    ),
    "pendulum_zoo": ZooConfig(
        env_id="Pendulum-v1",
        target=-200.0,
        n_envs=4,
        n_timesteps=100_000,
        eval_interval=4096,
        ppo_kwargs=dict(
            n_steps=1024,
            gae_lambda=0.95,
            gamma=0.9,
            n_epochs=10,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
            use_sde=True,
            sde_sample_freq=4,
        ),
    ),
}

# Offset of the evaluation env's seed from the training seed.
EVAL_SEED_OFFSET = 10_000


def log(message):
    print(f"bench_sb3: {message}", file=sys.stderr, flush=True)


def evaluate(model, env, episodes):
    """Mean return of `episodes` deterministic episodes on a plain Gymnasium env."""
    returns = []
    for _ in range(episodes):
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


class EvalAndStop(BaseCallback):
    """Evaluates every `interval` env steps, keeps the evaluation time out of
    the training time, and stops training once the target is reached."""

    def __init__(self, eval_env, interval, episodes, target):
        super().__init__()
        self.eval_env = eval_env
        self.interval = interval
        self.episodes = episodes
        self.target = target
        self.next_eval = interval
        self.evals = []  # (wall_s, train_s, env_steps, mean_return)
        self.eval_seconds = 0.0
        self.start = 0.0
        self.reached = False

    def _on_training_start(self):
        self.start = time.perf_counter()

    def _evaluate(self):
        began = time.perf_counter()
        train_s = began - self.start - self.eval_seconds
        mean_return = evaluate(self.model, self.eval_env, self.episodes)
        self.eval_seconds += time.perf_counter() - began
        wall_s = time.perf_counter() - self.start
        steps = self.num_timesteps
        self.evals.append((wall_s, train_s, steps, mean_return))
        log(f"  {steps:>7} steps  train {train_s:6.2f} s  wall {wall_s:6.2f} s  return {mean_return:8.1f}")
        if mean_return >= self.target:
            self.reached = True

    def _on_rollout_start(self):
        # Runs after each update, before the next rollout is collected.
        if self.num_timesteps >= self.next_eval and not self.reached:
            self._evaluate()
            while self.next_eval <= self.num_timesteps:
                self.next_eval += self.interval

    def _on_step(self):
        # Returning False ends learn() before the next update.
        return not self.reached

    def _on_training_end(self):
        # The step budget ended training: evaluate the final policy too.
        if not self.reached and (not self.evals or self.evals[-1][2] < self.num_timesteps):
            self._evaluate()


def run(name, cfg, seed, eval_interval, eval_episodes, max_steps):
    env = make_vec_env(cfg.env_id, n_envs=cfg.n_envs, seed=seed)  # DummyVecEnv
    eval_env = gym.make(cfg.env_id)
    eval_env.reset(seed=seed + EVAL_SEED_OFFSET)
    eval_env.action_space.seed(seed + EVAL_SEED_OFFSET)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **cfg.ppo_kwargs)
    # A logger without outputs: SB3's default one makes a directory in /tmp.
    model.set_logger(Logger(folder=None, output_formats=[]))
    callback = EvalAndStop(eval_env, eval_interval, eval_episodes, cfg.target)
    log(f"{name} seed {seed}: training {cfg.env_id} for at most {max_steps} env steps")
    model.learn(total_timesteps=max_steps, callback=callback)
    env.close()
    eval_env.close()

    # Training rate up to the last evaluation, whose clock reading is exact.
    _, train_s, steps, final_return = callback.evals[-1]
    hit = next((e for e in callback.evals if e[3] >= cfg.target), None)
    return {
        "bench": "ppo_train",
        "impl": "sb3",
        "config": name,
        "env": cfg.env_id,
        "seed": seed,
        "train_steps_per_s": steps / train_s,
        "steps_to_target": hit[2] if hit else None,
        "train_seconds_to_target": hit[1] if hit else None,
        "wall_seconds_to_target": hit[0] if hit else None,
        "final_eval_return": final_return,
    }


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS), help="zoo PPO config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument(
        "--eval-interval", type=positive_int, help="env steps between evaluations (default: 2048 CartPole, 4096 Pendulum)"
    )
    parser.add_argument("--eval-episodes", type=positive_int, default=10, help="episodes per evaluation (default: 10)")
    parser.add_argument(
        "--max-steps", type=positive_int, help="env step budget and schedule length (default: the zoo's 100000)"
    )
    args = parser.parse_args()

    cfg = CONFIGS[args.config]
    torch.set_num_threads(1)
    for seed in args.seeds:
        result = run(
            args.config,
            cfg,
            seed,
            args.eval_interval or cfg.eval_interval,
            args.eval_episodes,
            args.max_steps or cfg.n_timesteps,
        )
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
