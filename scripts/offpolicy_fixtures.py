#!/usr/bin/env python3
"""Writes PyTorch reference numbers for SAC, TD3 and DQN to
tests/fixtures/offpolicy_*.json.

Run with the tools venv (`scripts/setup --tools`):

    .venv-tools/bin/python scripts/offpolicy_fixtures.py [--out DIR]

Each fixture holds small networks written the way CleanRL writes them
(`sac_continuous_action.py`, `td3_continuous_action.py`, `dqn.py`), their
initial parameters flattened in our order (each network's `parameters()`
one after the other; SAC's `fc_mean` and `fc_logstd` as one output layer,
means first), then three updates: the batch, the standard normal draws the
update uses (CleanRL draws them inside `rsample` / `randn_like`; here they
are drawn first and passed in), which parts are trained, the statistics and
every tensor of the state after the update (networks, targets, each Adam's
moments, SAC's log_alpha). The Q-networks share one Adam as in CleanRL;
its moments are split per network.
"""

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
LOG_STD_MAX = 2
LOG_STD_MIN = -5

OBS, ACT, HIDDEN, BATCH = 3, 2, [16, 16], 32
LOW = torch.tensor([-2.0, -1.0])
HIGH = torch.tensor([2.0, 3.0])


def flat(params):
    return torch.cat([p.detach().reshape(-1) for p in params]).tolist()


def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SoftQNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp([OBS + ACT, *HIDDEN, 1])

    def forward(self, x, a):
        return self.net(torch.cat([x, a], 1))


class SacActor(nn.Module):
    """CleanRL's Actor: a trunk, then fc_mean and fc_logstd."""

    def __init__(self):
        super().__init__()
        self.trunk = mlp([OBS, *HIDDEN])
        self.fc_mean = nn.Linear(HIDDEN[-1], ACT)
        self.fc_logstd = nn.Linear(HIDDEN[-1], ACT)
        self.register_buffer("action_scale", (HIGH - LOW) / 2.0)
        self.register_buffer("action_bias", (HIGH + LOW) / 2.0)

    def ours(self):
        # Our actor is one MLP whose last layer holds both heads.
        *trunk, = self.trunk.parameters()
        w = torch.cat([self.fc_mean.weight, self.fc_logstd.weight], 0)
        b = torch.cat([self.fc_mean.bias, self.fc_logstd.bias], 0)
        return flat(trunk) + flat([w, b])

    def forward(self, x):
        x = F.relu(self.trunk(x))
        mean = self.fc_mean(x)
        log_std = self.fc_logstd(x)
        log_std = torch.tanh(log_std)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return mean, log_std

    def get_action(self, x, eps):
        mean, log_std = self(x)
        std = log_std.exp()
        normal = torch.distributions.Normal(mean, std)
        x_t = mean + eps * std  # normal.rsample() with this draw
        y_t = torch.tanh(x_t)
        action = y_t * self.action_scale + self.action_bias
        log_prob = normal.log_prob(x_t)
        log_prob -= torch.log(self.action_scale * (1 - y_t.pow(2)) + 1e-6)
        log_prob = log_prob.sum(1, keepdim=True)
        mean = torch.tanh(mean) * self.action_scale + self.action_bias
        return action, log_prob, mean


class Td3Actor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp([OBS, *HIDDEN, ACT])
        self.register_buffer("action_scale", (HIGH - LOW) / 2.0)
        self.register_buffer("action_bias", (HIGH + LOW) / 2.0)

    def forward(self, x):
        return torch.tanh(self.net(x)) * self.action_scale + self.action_bias


def adam_moments(opt, params):
    m, v = [], []
    for p in params:
        st = opt.state.get(p, {})
        m.append(st["exp_avg"].reshape(-1) if "exp_avg" in st else torch.zeros(p.numel()))
        v.append(st["exp_avg_sq"].reshape(-1) if "exp_avg_sq" in st else torch.zeros(p.numel()))
    return torch.cat(m).tolist(), torch.cat(v).tolist()


def adam_step(opt, params):
    st = opt.state.get(params[0], {})
    return int(st["step"].item()) if "step" in st else 0


def batch(gen, discrete=0):
    obs = torch.randn(BATCH, OBS, generator=gen)
    if discrete:
        actions = torch.randint(0, discrete, (BATCH, 1), generator=gen).float()
    else:
        actions = LOW + (HIGH - LOW) * torch.rand(BATCH, ACT, generator=gen)
    rewards = torch.randn(BATCH, 1, generator=gen)
    next_obs = torch.randn(BATCH, OBS, generator=gen)
    dones = (torch.rand(BATCH, 1, generator=gen) < 0.2).float()
    return dict(obs=obs, actions=actions, rewards=rewards, next_obs=next_obs, dones=dones)


def as_lists(b):
    return {k: v.reshape(-1).tolist() for k, v in b.items()}


def soft_update(net, target, tau):
    for param, target_param in zip(net.parameters(), target.parameters()):
        target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)


def sac_fixture(gen, autotune):
    cfg = dict(gamma=0.99, tau=0.1, q_lr=1e-3, policy_lr=3e-4, policy_frequency=2,
               target_network_frequency=1, alpha=0.2, autotune=autotune)
    actor, qf1, qf2 = SacActor(), SoftQNetwork(), SoftQNetwork()
    qf1_target, qf2_target = SoftQNetwork(), SoftQNetwork()
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=cfg["q_lr"])
    actor_optimizer = torch.optim.Adam(list(actor.parameters()), lr=cfg["policy_lr"])
    target_entropy = -torch.prod(torch.Tensor([ACT])).item()
    log_alpha = torch.zeros(1, requires_grad=True)
    alpha = log_alpha.exp().item() if autotune else cfg["alpha"]
    a_optimizer = torch.optim.Adam([log_alpha], lr=cfg["q_lr"])

    # Actor parameter order of ours vs CleanRL's parameters(): trunk, then
    # the joint head. Adam moments are per element, so they map the same way.
    def actor_moments():
        st = actor_optimizer.state
        def part(key):
            def get(p):
                return st[p][key] if p in st and key in st[p] else torch.zeros_like(p)
            trunk = [get(p).reshape(-1) for p in actor.trunk.parameters()]
            w = torch.cat([get(actor.fc_mean.weight), get(actor.fc_logstd.weight)], 0)
            b = torch.cat([get(actor.fc_mean.bias), get(actor.fc_logstd.bias)], 0)
            return torch.cat(trunk + [w.reshape(-1), b.reshape(-1)]).tolist()
        return part("exp_avg"), part("exp_avg_sq")

    def state():
        am, av = actor_moments()
        q1m, q1v = adam_moments(q_optimizer, list(qf1.parameters()))
        q2m, q2v = adam_moments(q_optimizer, list(qf2.parameters()))
        lm, lv = adam_moments(a_optimizer, [log_alpha])
        return {
            "actor": actor.ours(), "qf1": flat(qf1.parameters()), "qf2": flat(qf2.parameters()),
            "qf1_target": flat(qf1_target.parameters()), "qf2_target": flat(qf2_target.parameters()),
            "log_alpha": log_alpha.detach().tolist(),
            "actor_adam.exp_avg": am, "actor_adam.exp_avg_sq": av,
            "qf1_adam.exp_avg": q1m, "qf1_adam.exp_avg_sq": q1v,
            "qf2_adam.exp_avg": q2m, "qf2_adam.exp_avg_sq": q2v,
            "alpha_adam.exp_avg": lm, "alpha_adam.exp_avg_sq": lv,
        }

    initial = state()
    steps = []
    for update_actor, update_targets in [(True, True), (False, True), (True, False)]:
        data = batch(gen)
        rows = 1 + (cfg["policy_frequency"] * (2 if autotune else 1) if update_actor else 0)
        noise = torch.randn(rows, BATCH, ACT, generator=gen)
        stats = [math.nan] * 8
        with torch.no_grad():
            next_state_actions, next_state_log_pi, _ = actor.get_action(data["next_obs"], noise[0])
            qf1_next_target = qf1_target(data["next_obs"], next_state_actions)
            qf2_next_target = qf2_target(data["next_obs"], next_state_actions)
            min_qf_next_target = torch.min(qf1_next_target, qf2_next_target) - alpha * next_state_log_pi
            next_q_value = data["rewards"].flatten() + (1 - data["dones"].flatten()) * cfg["gamma"] * (min_qf_next_target).view(-1)
        qf1_a_values = qf1(data["obs"], data["actions"]).view(-1)
        qf2_a_values = qf2(data["obs"], data["actions"]).view(-1)
        qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
        qf2_loss = F.mse_loss(qf2_a_values, next_q_value)
        qf_loss = qf1_loss + qf2_loss
        q_optimizer.zero_grad()
        qf_loss.backward()
        q_optimizer.step()
        stats[0:5] = [qf1_a_values.mean().item(), qf2_a_values.mean().item(), qf1_loss.item(),
                      qf2_loss.item(), qf_loss.item() / 2.0]
        stats[6] = alpha
        if update_actor:
            per = 2 if autotune else 1
            for k in range(cfg["policy_frequency"]):
                pi, log_pi, _ = actor.get_action(data["obs"], noise[1 + per * k])
                qf1_pi = qf1(data["obs"], pi)
                qf2_pi = qf2(data["obs"], pi)
                min_qf_pi = torch.min(qf1_pi, qf2_pi)
                actor_loss = ((alpha * log_pi) - min_qf_pi).mean()
                actor_optimizer.zero_grad()
                actor_loss.backward()
                actor_optimizer.step()
                stats[5] = actor_loss.item()
                if autotune:
                    with torch.no_grad():
                        _, log_pi, _ = actor.get_action(data["obs"], noise[2 + per * k])
                    alpha_loss = (-log_alpha.exp() * (log_pi + target_entropy)).mean()
                    a_optimizer.zero_grad()
                    alpha_loss.backward()
                    a_optimizer.step()
                    alpha = log_alpha.exp().item()
                    stats[7] = alpha_loss.item()
            stats[6] = alpha
        if update_targets:
            soft_update(qf1, qf1_target, cfg["tau"])
            soft_update(qf2, qf2_target, cfg["tau"])
        steps.append(dict(batch=as_lists(data), noise=noise.reshape(-1).tolist(),
                          update_actor=update_actor, update_targets=update_targets,
                          stats=[None if math.isnan(s) else s for s in stats], after=state(),
                          counters={"actor_adam.step": adam_step(actor_optimizer, list(actor.parameters())),
                                    "q_adam.step": adam_step(q_optimizer, list(qf1.parameters())),
                                    "alpha_adam.step": adam_step(a_optimizer, [log_alpha])}))
    return dict(algo="sac", config=cfg, initial=initial, steps=steps)


def td3_fixture(gen):
    cfg = dict(gamma=0.99, tau=0.1, learning_rate=1e-3, policy_noise=0.2, noise_clip=0.5,
               policy_frequency=2, exploration_noise=0.1)
    actor, qf1, qf2 = Td3Actor(), SoftQNetwork(), SoftQNetwork()
    target_actor, qf1_target, qf2_target = Td3Actor(), SoftQNetwork(), SoftQNetwork()
    target_actor.load_state_dict(actor.state_dict())
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=cfg["learning_rate"])
    actor_optimizer = torch.optim.Adam(list(actor.parameters()), lr=cfg["learning_rate"])

    def state():
        am, av = adam_moments(actor_optimizer, list(actor.parameters()))
        q1m, q1v = adam_moments(q_optimizer, list(qf1.parameters()))
        q2m, q2v = adam_moments(q_optimizer, list(qf2.parameters()))
        return {
            "actor": flat(actor.parameters()), "actor_target": flat(target_actor.parameters()),
            "qf1": flat(qf1.parameters()), "qf2": flat(qf2.parameters()),
            "qf1_target": flat(qf1_target.parameters()), "qf2_target": flat(qf2_target.parameters()),
            "actor_adam.exp_avg": am, "actor_adam.exp_avg_sq": av,
            "qf1_adam.exp_avg": q1m, "qf1_adam.exp_avg_sq": q1v,
            "qf2_adam.exp_avg": q2m, "qf2_adam.exp_avg_sq": q2v,
        }

    initial = state()
    steps = []
    for update_actor in [True, False, True]:
        data = batch(gen)
        noise = torch.randn(1, BATCH, ACT, generator=gen)
        stats = [math.nan] * 6
        with torch.no_grad():
            clipped_noise = (noise[0] * cfg["policy_noise"]).clamp(-cfg["noise_clip"], cfg["noise_clip"]) * target_actor.action_scale
            next_state_actions = (target_actor(data["next_obs"]) + clipped_noise).clamp(LOW, HIGH)
            qf1_next_target = qf1_target(data["next_obs"], next_state_actions)
            qf2_next_target = qf2_target(data["next_obs"], next_state_actions)
            min_qf_next_target = torch.min(qf1_next_target, qf2_next_target)
            next_q_value = data["rewards"].flatten() + (1 - data["dones"].flatten()) * cfg["gamma"] * (min_qf_next_target).view(-1)
        qf1_a_values = qf1(data["obs"], data["actions"]).view(-1)
        qf2_a_values = qf2(data["obs"], data["actions"]).view(-1)
        qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
        qf2_loss = F.mse_loss(qf2_a_values, next_q_value)
        qf_loss = qf1_loss + qf2_loss
        q_optimizer.zero_grad()
        qf_loss.backward()
        q_optimizer.step()
        stats[0:5] = [qf1_a_values.mean().item(), qf2_a_values.mean().item(), qf1_loss.item(),
                      qf2_loss.item(), qf_loss.item() / 2.0]
        if update_actor:
            actor_loss = -qf1(data["obs"], actor(data["obs"])).mean()
            actor_optimizer.zero_grad()
            actor_loss.backward()
            actor_optimizer.step()
            stats[5] = actor_loss.item()
            soft_update(actor, target_actor, cfg["tau"])
            soft_update(qf1, qf1_target, cfg["tau"])
            soft_update(qf2, qf2_target, cfg["tau"])
        steps.append(dict(batch=as_lists(data), noise=noise.reshape(-1).tolist(),
                          update_actor=update_actor, update_targets=update_actor,
                          stats=[None if math.isnan(s) else s for s in stats], after=state(),
                          counters={"actor_adam.step": adam_step(actor_optimizer, list(actor.parameters())),
                                    "q_adam.step": adam_step(q_optimizer, list(qf1.parameters()))}))
    return dict(algo="td3", config=cfg, initial=initial, steps=steps)


def dqn_fixture(gen, double_q):
    n = 3
    cfg = dict(gamma=0.99, tau=0.5, learning_rate=2.5e-4, double_q=double_q)
    q_network = mlp([OBS, *HIDDEN, n])
    target_network = mlp([OBS, *HIDDEN, n])
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=cfg["learning_rate"])

    def state():
        m, v = adam_moments(optimizer, list(q_network.parameters()))
        return {"q": flat(q_network.parameters()), "q_target": flat(target_network.parameters()),
                "q_adam.exp_avg": m, "q_adam.exp_avg_sq": v}

    initial = state()
    steps = []
    for update_targets in [True, False, True]:
        data = batch(gen, discrete=n)
        with torch.no_grad():
            if double_q:
                next_actions = q_network(data["next_obs"]).argmax(dim=1, keepdim=True)
                target_max = target_network(data["next_obs"]).gather(1, next_actions).squeeze(1)
            else:
                target_max, _ = target_network(data["next_obs"]).max(dim=1)
            td_target = data["rewards"].flatten() + cfg["gamma"] * target_max * (1 - data["dones"].flatten())
        old_val = q_network(data["obs"]).gather(1, data["actions"].long()).squeeze()
        # SB3's Huber loss where CleanRL has F.mse_loss(td_target, old_val).
        loss = F.smooth_l1_loss(old_val, td_target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if update_targets:
            soft_update(q_network, target_network, cfg["tau"])
        steps.append(dict(batch=as_lists(data), noise=[], update_actor=False,
                          update_targets=update_targets, stats=[loss.item(), old_val.mean().item()],
                          after=state(),
                          counters={"q_adam.step": adam_step(optimizer, list(q_network.parameters()))}))
    return dict(algo="dqn", config=cfg, initial=initial, steps=steps, actions=n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(11)
    common = dict(obs_dim=OBS, action_dim=ACT, hidden=HIDDEN, batch=BATCH,
                  low=LOW.tolist(), high=HIGH.tolist())
    for name, fx in [
        ("offpolicy_sac", sac_fixture(gen, autotune=True)),
        ("offpolicy_sac_fixed_alpha", sac_fixture(gen, autotune=False)),
        ("offpolicy_td3", td3_fixture(gen)),
        ("offpolicy_dqn", dqn_fixture(gen, double_q=False)),
        ("offpolicy_double_dqn", dqn_fixture(gen, double_q=True)),
    ]:
        fx.update(common)
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(fx))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
