"""PyTorch's own time for one PPO minibatch step, the baseline of
`bench learner-time` (run by scripts/gpu-check).

The same work as ferrorl's learner on the same shapes: a Gaussian actor and
a critic (tanh MLPs of the given hidden sizes, Pendulum-v1's 3 inputs and 1
action), CleanRL's PPO loss (clipped surrogate, clipped value loss, entropy
bonus, advantage normalisation), global gradient-norm clipping and Adam, on
minibatches of a batch held on the device. Prints one JSON line.
"""

import argparse
import json
import time

import torch
from torch import nn


def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda")
    p.add_argument("--hidden", default="64,64")
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--minibatches", type=int, default=4)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5.0)
    a = p.parse_args()
    device = torch.device(a.device)
    hidden = [int(h) for h in a.hidden.split(",")]
    obs_dim, act_dim = 3, 1
    actor = mlp([obs_dim] + hidden + [act_dim]).to(device)
    critic = mlp([obs_dim] + hidden + [1]).to(device)
    logstd = nn.Parameter(torch.zeros(act_dim, device=device))
    params = list(actor.parameters()) + list(critic.parameters()) + [logstd]
    opt = torch.optim.Adam(params, lr=2.5e-4, eps=1e-5)
    g = torch.Generator(device="cpu").manual_seed(0)
    n = a.batch
    obs = torch.randn(n, obs_dim, generator=g).to(device)
    actions = torch.randn(n, act_dim, generator=g).to(device)
    old_logp = (-0.5 * actions.pow(2) - 0.9189385).sum(-1)
    adv = torch.randn(n, generator=g).to(device)
    returns = torch.randn(n, generator=g).to(device)
    old_values = torch.randn(n, generator=g).to(device)
    mb = n // a.minibatches
    clip, ent_coef, vf_coef = 0.2, 0.01, 0.5

    def step(idx):
        mean = actor(obs[idx])
        std = logstd.exp().expand_as(mean)
        dist = torch.distributions.Normal(mean, std)
        logp = dist.log_prob(actions[idx]).sum(-1)
        ratio = (logp - old_logp[idx]).exp()
        adv_mb = adv[idx]
        adv_mb = (adv_mb - adv_mb.mean()) / (adv_mb.std() + 1e-8)
        pg = torch.max(-adv_mb * ratio, -adv_mb * ratio.clamp(1 - clip, 1 + clip)).mean()
        value = critic(obs[idx]).view(-1)
        v_clipped = old_values[idx] + (value - old_values[idx]).clamp(-clip, clip)
        v_loss = 0.5 * torch.max((value - returns[idx]) ** 2, (v_clipped - returns[idx]) ** 2).mean()
        loss = pg - ent_coef * dist.entropy().sum(-1).mean() + vf_coef * v_loss
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()

    def update():
        for _ in range(a.epochs):
            perm = torch.randperm(n, device=device)
            for k in range(a.minibatches):
                step(perm[k * mb:(k + 1) * mb])

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    update()
    sync()
    start = time.perf_counter()
    updates = 0
    while time.perf_counter() - start < a.seconds or updates < 2:
        update()
        sync()
        updates += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "bench": "learner_update",
        "impl": "pytorch",
        "device": str(device),
        "hidden": hidden,
        "batch": n,
        "minibatch": mb,
        "ms_per_minibatch": elapsed * 1e3 / (updates * a.epochs * a.minibatches),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
