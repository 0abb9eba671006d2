#!/usr/bin/env python3
"""Checks a run directory with the Python tools users read runs with.

    .venv-tools/bin/python scripts/check_run_files.py RUN_DIR --evaluate PATH

1. TensorBoard: the event files load with `tbparse` (TensorBoard's own
   reader underneath), and every value of train.csv and eval.csv is there
   as a scalar `train/<column>` / `eval/<column>` at step = env_steps (as
   float32), and nothing else is.
2. PyTorch interop: policy.safetensors loads with `safetensors` into the
   `nn.Sequential` networks the README shows, and on 200 observations gives
   the same actor outputs and deterministic actions as our own forward pass
   (`evaluate POLICY --obs CSV`, run with the path given by --evaluate).

Prints what it checked; exits 1 with the first difference.
"""

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path


def fail(message):
    print(f"check_run_files: {message}", file=sys.stderr)
    sys.exit(1)


def read_csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def check_tensorboard(run):
    from tbparse import SummaryReader

    scalars = SummaryReader(str(run), pivot=False).scalars
    got = {(row.tag, int(row.step)): float(row.value) for row in scalars.itertuples()}
    expected = {}
    for name, prefix in (("train.csv", "train"), ("eval.csv", "eval")):
        for row in read_csv(run / name):
            step = int(row["env_steps"])
            for column, cell in row.items():
                if column == "env_steps" or cell == "":
                    continue
                expected[(f"{prefix}/{column}", step)] = float(cell)
    if not expected:
        fail(f"{run}: the CSV files hold no rows")
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        fail(f"{run}: {len(missing)} CSV values are not in the TensorBoard files, e.g. {missing[:3]}")
    if extra:
        fail(f"{run}: {len(extra)} TensorBoard values are not in the CSV files, e.g. {extra[:3]}")
    for key, value in expected.items():
        # TensorBoard scalars are float32.
        if not math.isclose(got[key], value, rel_tol=1e-6, abs_tol=1e-30):
            fail(f"{run}: {key[0]} at step {key[1]}: TensorBoard {got[key]!r}, CSV {value!r}")
    print(f"tensorboard: {len(expected)} values of train.csv and eval.csv read back with tbparse")


def load_policy(path):
    """The README's recipe: nn.Sequential actor and critic from the file."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file
    from torch import nn

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    activation = {"Tanh": nn.Tanh, "ReLU": nn.ReLU}[meta["activation"]]

    def mlp(prefix, sizes):
        layers = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i + 2 < len(sizes):
                layers.append(activation())
        net = nn.Sequential(*layers)
        net.load_state_dict({k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
        return net

    obs_dim, outputs = int(meta["obs_dim"]), int(meta["action_outputs"])
    # SAC's actor outputs the means, then the log-stds.
    if meta["action_head"] == "squashed_gaussian":
        outputs *= 2
    actor = mlp("actor", [obs_dim] + json.loads(meta["actor_hidden"]) + [outputs])
    # The off-policy algorithms' policies have no critic (their Q-networks
    # are in the checkpoints only).
    critic = None
    if meta["action_head"] in ("categorical", "gaussian"):
        critic = mlp("critic", [obs_dim] + json.loads(meta["critic_hidden"]) + [1])
    norm = None
    if meta["obs_norm_clip"] != "none":
        norm = (tensors["obs_norm.mean"], tensors["obs_norm.var"], float(meta["obs_norm_clip"]))
    return actor, critic, norm, meta


def check_interop(run, evaluate):
    import numpy as np
    import torch

    policy = run / "policy.safetensors"
    actor, critic, norm, meta = load_policy(policy)
    obs_dim = int(meta["obs_dim"])
    rng = np.random.default_rng(0)
    obs = rng.normal(0.0, 1.5, size=(200, obs_dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        obs_csv = Path(tmp) / "obs.csv"
        with obs_csv.open("w") as f:
            f.write(",".join(f"o{i}" for i in range(obs_dim)) + "\n")
            for row in obs:
                f.write(",".join(repr(float(v)) for v in row) + "\n")
        out = subprocess.run([evaluate, str(policy), "--obs", str(obs_csv)], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"evaluate --obs failed: {out.stderr}")
    ours = [json.loads(line) for line in out.stdout.splitlines()]
    x = torch.from_numpy(obs).double()
    if norm is not None:
        mean, var, clip = norm
        x = ((x - mean) / torch.sqrt(var + 1e-8)).clamp(-clip, clip)
    x = x.float()
    head = meta["action_head"]
    with torch.no_grad():
        outputs = actor(x)
        values = critic(x).squeeze(-1) if critic is not None else torch.zeros(len(x))
        if head in ("squashed_gaussian", "deterministic"):
            # CleanRL's actors: tanh of the mean (SAC) or output (TD3), scaled
            # into the bounds by the action_scale and action_bias buffers.
            dim = int(meta["action_outputs"])
            tensors = __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(policy))
            squashed = torch.tanh(outputs[:, :dim]) * tensors["action_scale"] + tensors["action_bias"]
    for i, row in enumerate(ours):
        theirs = outputs[i].tolist()
        if not all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4) for a, b in zip(row["outputs"], theirs)):
            fail(f"observation {i}: our actor outputs {row['outputs']}, PyTorch's {theirs}")
        if not math.isclose(row["value"], float(values[i]), rel_tol=1e-4, abs_tol=1e-4):
            fail(f"observation {i}: our value {row['value']}, PyTorch's {float(values[i])}")
        if head == "gaussian":
            continue
        if head in ("squashed_gaussian", "deterministic"):
            action = squashed[i].tolist()
            if not all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4) for a, b in zip(row["action"], action)):
                fail(f"observation {i}: our action {row['action']}, PyTorch's {action}")
            continue
        action = [float(int(torch.argmax(outputs[i])))]
        if row["action"] != action:
            # A tie within float tolerance could flip an argmax; none is expected.
            fail(f"observation {i}: our action {row['action']}, PyTorch's {action}")
    print(f"interop: {policy} loads into nn.Sequential; {len(ours)} observations give the same outputs and actions")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--evaluate", required=True, help="our evaluate binary")
    args = parser.parse_args()
    check_tensorboard(args.run)
    check_interop(args.run, args.evaluate)


if __name__ == "__main__":
    main()
