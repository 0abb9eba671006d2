#!/usr/bin/env python3
"""Reads env_step JSON lines (ours and Gymnasium's) on stdin and prints one
"env_step_ratio" JSON line per env: our single-env rate over Gymnasium's
single-env rate, our VecEnv(8) over SyncVectorEnv(8), and our best rate over
Gymnasium's single-env rate."""

import json
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip().startswith("{")]
envs = sorted({r["env"] for r in rows if r.get("bench") == "env_step"})


def rate(impl, env, mode, num_envs):
    for r in rows:
        if (r.get("impl"), r["env"], r["mode"], r["num_envs"]) == (impl, env, mode, num_envs):
            return r["steps_per_s"]
    return None


for env in envs:
    ours_single = rate("ours", env, "single", 1)
    ours_vec8 = rate("ours", env, "vector", 8)
    ours_best = max(r["steps_per_s"] for r in rows if r["impl"] == "ours" and r["env"] == env)
    gym_single = rate("gymnasium", env, "single", 1)
    gym_vec8 = rate("gymnasium", env, "vector", 8)
    if None in (ours_single, ours_vec8, gym_single, gym_vec8):
        continue
    print(
        json.dumps(
            {
                "bench": "env_step_ratio",
                "env": env,
                "single_vs_gymnasium_single": round(ours_single / gym_single, 1),
                "vec8_vs_gymnasium_sync_vec8": round(ours_vec8 / gym_vec8, 1),
                "best_vs_gymnasium_single": round(ours_best / gym_single, 1),
                "target": 100,
            }
        )
    )
