#!/usr/bin/env python3
"""Writes golden traces of Gymnasium's classic-control envs to tests/golden.

Run with the project's venv (scripts/setup installs gymnasium==1.4.0):

    .venv/bin/python scripts/golden.py [--out DIR]

Each file is one episode: the env id, seed, the internal state right after
reset(seed) as float64, the reset observation, and every step's action,
observation, reward and flags. Episodes are long: simple controllers drive
CartPole to its 500-step truncation and the mountain cars to the goal, and
other episodes use random actions, some of them outside the action bounds so
that clipping is part of the contract.
"""

import argparse
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def cartpole_balance(obs, rng):
    x, x_dot, theta, theta_dot = obs
    push = theta + 0.5 * theta_dot + 0.01 * x + 0.05 * x_dot
    return int(push > 0)


def pendulum_swing_up(obs, rng):
    cos_th, sin_th, th_dot = obs
    theta = math.atan2(sin_th, cos_th)
    energy = 0.5 * th_dot**2 + 10.0 * (cos_th - 1.0)
    if cos_th > 0.8:
        torque = -8.0 * theta - 1.5 * th_dot
    else:
        torque = -2.5 * energy * np.sign(th_dot if th_dot != 0 else 1.0)
    # Deliberately allowed to exceed the bounds of [-2, 2]: the env clips.
    return [float(np.float32(np.clip(torque, -3.0, 3.0)))]


def mountain_car_energy(obs, rng):
    _, velocity = obs
    return 2 if velocity >= 0 else 0


def mountain_car_continuous_energy(obs, rng):
    _, velocity = obs
    push = 1.0 if velocity >= 0 else -1.0
    # Magnitudes both inside and outside [-1, 1].
    return [float(np.float32(push * rng.uniform(0.6, 1.6)))]


def acrobot_pump(obs, rng):
    # Torque along the first link's velocity plus some of the second's pumps
    # energy into the chain until the tip clears the line.
    return 2 if obs[4] + 0.3 * obs[5] > 0 else 0


def random_discrete(n):
    return lambda obs, rng: int(rng.integers(n))


def random_continuous(low, high):
    return lambda obs, rng: [float(np.float32(rng.uniform(low, high)))]


EPISODES = [
    # (env id, seed, controller name, controller)
    ("CartPole-v1", 3, "balance", cartpole_balance),
    ("CartPole-v1", 11, "balance", cartpole_balance),
    ("CartPole-v1", 5, "random", random_discrete(2)),
    ("Pendulum-v1", 3, "swing_up", pendulum_swing_up),
    ("Pendulum-v1", 7, "random", random_continuous(-3.0, 3.0)),
    ("MountainCar-v0", 3, "energy", mountain_car_energy),
    ("MountainCar-v0", 8, "random", random_discrete(3)),
    ("MountainCarContinuous-v0", 3, "energy", mountain_car_continuous_energy),
    ("MountainCarContinuous-v0", 4, "random", random_continuous(-1.5, 1.5)),
    ("Acrobot-v1", 3, "pump", acrobot_pump),
    ("Acrobot-v1", 4, "pump", acrobot_pump),
    ("Acrobot-v1", 6, "random", random_discrete(3)),
]


def record(env_id, seed, controller):
    env = gym.make(env_id)
    rng = np.random.default_rng(seed + 1000)
    obs, _ = env.reset(seed=seed)
    trace = {
        "env_id": env_id,
        "source": f"gymnasium {gym.__version__}",
        "seed": seed,
        "state": [float(v) for v in np.asarray(env.unwrapped.state, dtype=np.float64)],
        "obs": [float(v) for v in obs],
        "steps": [],
    }
    continuous = isinstance(env.action_space, gym.spaces.Box)
    while True:
        action = controller(obs, rng)
        step_action = np.array(action, dtype=np.float32) if continuous else action
        obs, reward, terminated, truncated, _ = env.step(step_action)
        trace["steps"].append(
            {
                "action": action,
                "obs": [float(v) for v in obs],
                "reward": float(reward),
                "terminated": bool(terminated),
                "truncated": bool(truncated),
            }
        )
        if terminated or truncated:
            break
    env.close()
    return trace


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "golden")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for env_id, seed, name, controller in EPISODES:
        trace = record(env_id, seed, controller)
        last = trace["steps"][-1]
        how = "terminated" if last["terminated"] else "truncated"
        path = args.out / f"{env_id}_seed{seed}_{name}.json"
        path.write_text(json.dumps(trace, separators=(",", ":")) + "\n")
        print(f"{path.name}: {len(trace['steps'])} steps, {how}")


if __name__ == "__main__":
    main()
