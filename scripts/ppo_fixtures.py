#!/usr/bin/env python3
"""Writes PyTorch reference numbers for PPO to tests/fixtures/*.json.

Run with the tools venv (`scripts/setup --tools`):

    .venv-tools/bin/python scripts/ppo_fixtures.py [--out DIR]

For a Categorical and a Gaussian actor-critic with fixed weights and a fixed
batch, each fixture holds the weights (flat, in sorted-name order), the batch,
the PPO loss terms computed the way CleanRL computes them, and the gradient of
the total loss for every parameter. A GAE fixture covers terminated and
truncated episodes with the truncation bootstrap.
"""

import argparse
import json
from pathlib import Path

import torch
from torch import nn
from torch.distributions import Categorical, Normal

ROOT = Path(__file__).resolve().parent.parent


def mlp(sizes, activation):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(activation())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    def __init__(self, obs_dim, hidden, outputs, continuous):
        super().__init__()
        self.actor = mlp([obs_dim, *hidden, outputs], nn.Tanh)
        self.critic = mlp([obs_dim, *hidden, 1], nn.Tanh)
        self.continuous = continuous
        if continuous:
            self.actor_logstd = nn.Parameter(torch.zeros(outputs))

    def evaluate(self, obs, actions):
        out = self.actor(obs)
        if self.continuous:
            dist = Normal(out, self.actor_logstd.expand_as(out).exp())
            log_prob = dist.log_prob(actions).sum(1)
            entropy = dist.entropy().sum(1)
        else:
            dist = Categorical(logits=out)
            log_prob = dist.log_prob(actions[:, 0].long())
            entropy = dist.entropy()
        return log_prob, entropy, self.critic(obs).view(-1)


def ppo_loss(model, batch, cfg):
    log_prob, entropy, new_value = model.evaluate(batch["obs"], batch["actions"])
    logratio = log_prob - batch["old_log_probs"]
    ratio = logratio.exp()
    with torch.no_grad():
        old_approx_kl = (-logratio).mean()
        approx_kl = ((ratio - 1) - logratio).mean()
        clip_frac = ((ratio - 1.0).abs() > cfg["clip_coef"]).float().mean()
    adv = batch["advantages"]
    if cfg["norm_adv"]:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - cfg["clip_coef"], 1 + cfg["clip_coef"])).mean()
    if cfg["clip_vloss"]:
        unclipped = (new_value - batch["returns"]) ** 2
        clipped = batch["old_values"] + torch.clamp(new_value - batch["old_values"], -cfg["clip_coef"], cfg["clip_coef"])
        v_loss = 0.5 * torch.max(unclipped, (clipped - batch["returns"]) ** 2).mean()
    else:
        v_loss = 0.5 * ((new_value - batch["returns"]) ** 2).mean()
    entropy_loss = entropy.mean()
    loss = pg_loss - cfg["ent_coef"] * entropy_loss + v_loss * cfg["vf_coef"]
    return loss, {
        "policy_loss": pg_loss.item(),
        "value_loss": v_loss.item(),
        "entropy": entropy_loss.item(),
        "approx_kl": approx_kl.item(),
        "old_approx_kl": old_approx_kl.item(),
        "clip_frac": clip_frac.item(),
        "loss": loss.item(),
    }


def flat(tensor):
    return [float(x) for x in tensor.detach().reshape(-1)]


def loss_fixture(name, continuous, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    obs_dim, hidden, outputs, batch_size = 4, [8, 8], (2 if continuous else 3), 32
    model = ActorCritic(obs_dim, hidden, outputs, continuous)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    obs = torch.randn(batch_size, obs_dim, generator=gen)
    if continuous:
        actions = torch.randn(batch_size, outputs, generator=gen) * 1.5
    else:
        actions = torch.randint(0, outputs, (batch_size, 1), generator=gen).float()
    with torch.no_grad():
        lp, _, values = model.evaluate(obs, actions)
    batch = {
        "obs": obs,
        "actions": actions,
        # Old log-probs a little off the current ones, so some ratios clip.
        "old_log_probs": lp + torch.randn(batch_size, generator=gen) * 0.3,
        "advantages": torch.randn(batch_size, generator=gen),
        "returns": values + torch.randn(batch_size, generator=gen),
        "old_values": values + torch.randn(batch_size, generator=gen) * 0.3,
    }
    loss, terms = ppo_loss(model, batch, cfg)
    loss.backward()
    params = sorted(model.named_parameters())
    grads = {n: flat(p.grad) for n, p in params}
    # Then one optimizer step as the learner takes it: clip the global
    # gradient norm, Adam (CleanRL's eps=1e-5).
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), 0.5).item()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
    weights_before = [x for _, p in params for x in flat(p)]
    optimizer.step()
    return {
        "name": name,
        "source": f"torch {torch.__version__}",
        "continuous": continuous,
        "obs_dim": obs_dim,
        "hidden": hidden,
        "outputs": outputs,
        "config": cfg,
        "weights": weights_before,
        "param_names": [n for n, _ in params],
        "batch": {k: flat(v) for k, v in batch.items()},
        "terms": terms,
        "grads": grads,
        "grad_norm": grad_norm,
        "max_grad_norm": 0.5,
        "adam": {"lr": 1e-3, "eps": 1e-5},
        "weights_after_step": [x for _, p in params for x in flat(p)],
    }


def gae_fixture():
    gen = torch.Generator().manual_seed(7)
    num_steps, num_envs, gamma, lam = 12, 3, 0.97, 0.9
    rewards = torch.randn(num_steps, num_envs, generator=gen)
    values = torch.randn(num_steps, num_envs, generator=gen)
    terminated = torch.zeros(num_steps, num_envs, dtype=torch.bool)
    truncated = torch.zeros(num_steps, num_envs, dtype=torch.bool)
    terminated[3, 0] = terminated[8, 1] = terminated[11, 2] = True
    truncated[5, 0] = truncated[2, 2] = True
    truncated[7, 2] = terminated[7, 2] = True  # both: terminated wins, no bootstrap
    final_values = torch.where(truncated & ~terminated, torch.randn(num_steps, num_envs, generator=gen), torch.zeros(()))
    last_values = torch.randn(num_envs, generator=gen)
    # Truncation is not termination: add gamma * V(final obs), then cut.
    boot = rewards + gamma * final_values
    dones = (terminated | truncated).float()
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros(num_envs)
    for t in reversed(range(num_steps)):
        next_values = last_values if t == num_steps - 1 else values[t + 1]
        non_terminal = 1.0 - dones[t]
        delta = boot[t] + gamma * next_values * non_terminal - values[t]
        last_gae = delta + gamma * lam * non_terminal * last_gae
        advantages[t] = last_gae
    return {
        "name": "gae",
        "source": f"torch {torch.__version__}",
        "num_steps": num_steps,
        "num_envs": num_envs,
        "gamma": gamma,
        "gae_lambda": lam,
        "rewards": flat(rewards),
        "values": flat(values),
        "terminated": [bool(x) for x in terminated.reshape(-1)],
        "truncated": [bool(x) for x in truncated.reshape(-1)],
        "final_values": flat(final_values),
        "last_values": flat(last_values),
        "advantages": flat(advantages),
        "returns": flat(advantages + values),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    base = {"clip_coef": 0.2, "norm_adv": True, "clip_vloss": True, "ent_coef": 0.01, "vf_coef": 0.5}
    fixtures = [
        loss_fixture("ppo_loss_categorical", False, base, 1),
        loss_fixture("ppo_loss_gaussian", True, base, 2),
        loss_fixture("ppo_loss_gaussian_plain", True, {**base, "norm_adv": False, "clip_vloss": False, "ent_coef": 0.0}, 3),
        gae_fixture(),
    ]
    for fx in fixtures:
        path = args.out / f"{fx['name']}.json"
        path.write_text(json.dumps(fx) + "\n")
        print(path)


if __name__ == "__main__":
    main()
