"""Gymnasium envs that misbehave on purpose, for the bridge's error tests
(crates/cli/tests/gymnasium_envs.rs). Imported through Gymnasium's
module-import form: gymnasium:ferrorl_test_envs:Flaky-v0."""

import numpy as np
import gymnasium as gym
from gymnasium import spaces


class _Base(gym.Env):
    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def obs(self):
        return np.full(3, 0.5, np.float32)

    def step(self, action):
        self.t += 1
        return self.obs(), 1.0, False, self.t % 20 == 0, {}


class Flaky(_Base):
    """Raises in step() on its 40th step, every time it is made."""

    def step(self, action):
        if self.t + 1 == 40:
            raise ValueError("the flaky env broke at step 40")
        return super().step(action)


class NanObs(_Base):
    """Returns a NaN observation on its 5th step."""

    def obs(self):
        return np.array([0.0, np.nan, 0.0], np.float32) if self.t == 5 else super().obs()


class WrongShape(_Base):
    """Returns 4 values where its space has 3."""

    def obs(self):
        return np.zeros(4, np.float32)


class DictObs(_Base):
    def __init__(self):
        super().__init__()
        self.observation_space = spaces.Dict({"a": spaces.Box(-1.0, 1.0, (3,), np.float32)})


for name, cls in [("Flaky-v0", Flaky), ("NanObs-v0", NanObs), ("WrongShape-v0", WrongShape), ("DictObs-v0", DictObs)]:
    gym.register(name, entry_point=cls, max_episode_steps=None)
