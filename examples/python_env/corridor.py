"""A Gymnasium env written in Python, trained by ferrorl with no Rust code.

The agent walks a corridor of `length` cells from the left end and is paid
1 for reaching the right end, minus 0.01 a step. Observation: the position
scaled to [0, 1] and a one-hot of the last action; actions: 0 left, 1 right.

Importing this module registers `Corridor-v0` with Gymnasium, so the id
`gymnasium:examples.python_env.corridor:Corridor-v0` (Gymnasium's
"module:id" form) makes it from the repository root:

    scripts/train --config examples/python_env/corridor.toml

In your own project, put `my_env.py` where you run `train` (or on
PYTHONPATH) and write `id = "gymnasium:my_env:MyEnv-v0"`.
"""

import numpy as np
import gymnasium as gym
from gymnasium import spaces


class Corridor(gym.Env):
    def __init__(self, length=10):
        self.length = int(length)
        self.observation_space = spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.position = 0
        self.last = 0

    def _obs(self):
        one_hot = [1.0, 0.0] if self.last == 0 else [0.0, 1.0]
        return np.array([self.position / (self.length - 1), *one_hot], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        # A random start in the left half: the seed matters, as it should.
        self.position = int(self.np_random.integers(0, self.length // 2))
        self.last = 0
        return self._obs(), {}

    def step(self, action):
        self.last = int(action)
        self.position = max(0, self.position + (1 if action == 1 else -1))
        terminated = self.position >= self.length - 1
        reward = 1.0 if terminated else -0.01
        return self._obs(), reward, terminated, False, {}


gym.register("Corridor-v0", entry_point=Corridor, max_episode_steps=100)
