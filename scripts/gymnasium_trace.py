"""Reference trace for the Gymnasium bridge's golden test: steps a Gymnasium
env in plain Python with the given seed and actions, resetting (without a
seed) after every episode end, as ferrorl's vectorised env does, and prints
one JSON line per step.

Usage: python gymnasium_trace.py REQUEST_JSON
REQUEST_JSON: {"id", "kwargs", "seed", "actions": [[...] or int, ...]}
"""

import json
import sys

import numpy as np
import gymnasium as gym


def main():
    request = json.loads(sys.argv[1])
    if request["id"].startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    env = gym.make(request["id"], **request["kwargs"])
    obs, _ = env.reset(seed=request["seed"])
    print(json.dumps({"reset": np.asarray(obs, dtype=np.float64).ravel().tolist()}))
    for action in request["actions"]:
        if isinstance(env.action_space, gym.spaces.Discrete):
            a = int(action)
        else:
            a = np.asarray(action, dtype=np.float32).astype(env.action_space.dtype)
        obs, reward, terminated, truncated, _ = env.step(a)
        line = {
            "obs": np.asarray(obs, dtype=np.float64).ravel().tolist(),
            "reward": float(reward),
            "terminated": bool(terminated),
            "truncated": bool(truncated),
        }
        if terminated or truncated:
            obs, _ = env.reset()
            line["next"] = np.asarray(obs, dtype=np.float64).ravel().tolist()
        print(json.dumps(line))


if __name__ == "__main__":
    main()
