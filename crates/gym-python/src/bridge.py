"""ferrorl's Gymnasium bridge, the Python half (the Rust half is
crates/gym-python/src/lib.rs): makes an env and describes its spaces, and
converts what the Rust side cannot take directly."""

import json
import os
import sys

import numpy as np
import gymnasium as gym
from gymnasium import spaces

SUPPORTED = "Box (any shape and numeric dtype; a floating-point dtype for actions) and Discrete"


class Unsupported(Exception):
    """A space the bridge does not support: a config error, not a crash."""


def _bounds(values, space):
    out = []
    for v in np.asarray(values, dtype=np.float64).ravel().tolist():
        if v != v:
            raise Unsupported(f"the space {space} has a NaN bound")
        out.append(None if v in (float("inf"), float("-inf")) else v)
    return out


def _describe(space, role):
    if isinstance(space, spaces.Box):
        if role == "action" and not np.issubdtype(space.dtype, np.floating):
            raise Unsupported(
                f"the action space {space} has the integer dtype {space.dtype}; supported action spaces: "
                "Box of a floating-point dtype, and Discrete"
            )
        if int(np.prod(space.shape)) == 0:
            raise Unsupported(f"the {role} space {space} has no elements")
        return {
            "kind": "Box",
            "low": _bounds(space.low, space),
            "high": _bounds(space.high, space),
            "shape": [int(d) for d in space.shape],
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.Discrete):
        return {"kind": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise Unsupported(
        f"the {role} space {space} ({type(space).__name__}) is not supported; supported: {SUPPORTED}"
    )


class Bridge:
    """One env with what the Rust side needs to step it fast."""

    def __init__(self, env_id, kwargs, render_mode):
        if env_id.startswith("ALE/") and "ale_py" not in sys.modules:
            import ale_py

            gym.register_envs(ale_py)
        kw = dict(kwargs)
        if render_mode is not None:
            kw["render_mode"] = render_mode
        self.env = gym.make(env_id, **kw)
        observation = _describe(self.env.observation_space, "observation")
        action = _describe(self.env.action_space, "action")
        spec = self.env.spec
        self.description = json.dumps(
            {
                "observation": observation,
                "action": action,
                "max_episode_steps": None if spec is None else spec.max_episode_steps,
            }
        )
        obs_space = self.env.observation_space
        self.one_hot = obs_space.n if isinstance(obs_space, spaces.Discrete) else 0
        self.obs_start = int(obs_space.start) if self.one_hot else 0
        act_space = self.env.action_space
        self.discrete_start = int(act_space.start) if isinstance(act_space, spaces.Discrete) else 0
        self.act_dtype = None if isinstance(act_space, spaces.Discrete) else act_space.dtype
        self.act_shape = None if self.act_dtype is None else act_space.shape

    def action(self, values):
        """Flat float32 bytes to an action of the space's dtype and shape."""
        return np.frombuffer(values, dtype=np.float32).astype(self.act_dtype).reshape(self.act_shape)

    def observation(self, obs):
        """Any observation to a contiguous float32 array (one-hot for Discrete)."""
        if self.one_hot:
            out = np.zeros(self.one_hot, dtype=np.float32)
            i = int(obs) - self.obs_start
            if 0 <= i < self.one_hot:
                out[i] = 1.0
            else:
                raise ValueError(f"observation {obs!r} is outside the observation space {self.env.observation_space}")
            return out
        return np.ascontiguousarray(obs, dtype=np.float32)


def make(env_id, kwargs_json, render_mode):
    return Bridge(env_id, json.loads(kwargs_json), render_mode)


def where():
    """The interpreter, for messages."""
    return f"Python {sys.version.split()[0]} at {sys.prefix}"


if os.getcwd() not in sys.path:
    # As `python -m`: modules next to where the run was started import.
    sys.path.insert(0, os.getcwd())
