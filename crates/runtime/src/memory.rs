//! What a run needs in memory, worked out from its settings before anything
//! starts, and what the machine has to give.
//!
//! Every buffer whose size a setting decides is counted: the rollout and the
//! learner's per-update arrays (`[ppo] num_steps` x `[env] num_envs`), the
//! networks with their optimizer state, backups, checkpoints and published
//! copies (`[network]`), the activations of a minibatch. Sizes are computed
//! in 128 bits, so no setting can overflow them. What is available is the
//! smallest of the kernel's `MemAvailable`, the room left under the cgroup's
//! memory limit, and the address-space limit of a process.

use rl_policy::PolicySpec;

use crate::settings::TrainSettings;

/// Resident memory of one of our processes before any buffer of the run:
/// the executable, libtorch and the allocator's arenas (measured on a CPU
/// build, CartPole with 2 workers: 114-120 MB resident in each of the five
/// processes, libtorch's shared pages counted in each; rounded up).
pub const PROCESS_BASE_BYTES: u128 = 128 << 20;

/// Evaluation points whose full learner state the learner keeps for a best
/// checkpoint (the evaluator may lag this many points).
pub const RETAINED_EVAL_POINTS: usize = 8;

/// One part of a run's memory.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryItem {
    /// What it is, for messages.
    pub what: String,
    pub bytes: u128,
    /// The settings that decide its size, as `table.key`.
    pub keys: &'static [&'static str],
}

/// Everything a run will hold at once.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    pub items: Vec<MemoryItem>,
}

impl MemoryPlan {
    pub fn total(&self) -> u128 {
        self.items.iter().map(|i| i.bytes).sum()
    }

    /// The item that takes most.
    pub fn largest(&self) -> Option<&MemoryItem> {
        self.items.iter().max_by_key(|i| i.bytes)
    }
}

/// Parameters of an MLP, in 128 bits.
fn mlp_params(input: usize, hidden: &[usize], output: usize) -> u128 {
    let mut total = 0u128;
    let mut previous = input as u128;
    for &h in hidden.iter().chain(std::iter::once(&output)) {
        total += previous * h as u128 + h as u128;
        previous = h as u128;
    }
    total
}

/// Parameters of a network, in 128 bits (never overflows).
pub fn num_params(spec: &PolicySpec) -> u128 {
    let mlp = mlp_params;
    let head = spec.head.actor_outputs();
    let log_std = match spec.head {
        rl_policy::ActionHead::Gaussian { dim } => dim as u128,
        _ => 0,
    };
    let critic = if spec.head.has_critic() {
        mlp(spec.obs_dim, &spec.critic_hidden, 1)
    } else {
        0
    };
    mlp(spec.obs_dim, &spec.actor_hidden, head) + critic + log_std
}

/// The memory a run with these settings and this network needs.
pub fn plan(settings: &TrainSettings, spec: &PolicySpec) -> MemoryPlan {
    const F32: u128 = 4;
    let workers = settings.run.num_workers as u128;
    let processes = if workers == 0 { 1 } else { workers + 3 };
    let (od, ad) = (spec.obs_dim as u128, spec.head.action_dim() as u128);
    let rows = settings.round_steps() as u128 * settings.env.num_envs as u128;
    let round_key = round_key(settings);
    // One rollout: obs, actions, log-probs, values, rewards, final values,
    // two flags per row.
    let rollout_row = F32 * (od + ad + 4) + 2;
    // The learner's arrays of an update: normalised obs, rewards, dones,
    // advantages, returns, shuffled indices.
    let update_row = F32 * (od + 4) + 1 + 8;
    // With workers, the learner holds each worker's part and the merged
    // rollout, each worker its own, and the slots are shared memory.
    let rollout_copies = if workers == 0 { 1 } else { 4 };
    let torch_copy = if settings.run.learner == "torch" {
        F32 * (od + ad + 4)
    } else {
        0
    };
    let params = num_params(spec);
    // The learner: weights, gradient, Adam's moments and their backup for an
    // all-or-nothing update; a policy to check the new weights; libtorch's
    // copies when it computes the gradient.
    let torch_params = if settings.run.learner == "torch" {
        6
    } else {
        0
    };
    let learner_params = 4 + 3 + 1 + torch_params;
    // A checkpoint being written: the state, its tensors and the file, and
    // the full state at each retained evaluation point.
    let checkpoint_params = 9 + 3 * RETAINED_EVAL_POINTS as u128;
    // Acting copies: each worker and the evaluator; two weight blocks of two
    // buffers each.
    let acting_params = if workers == 0 { 1 } else { workers + 1 + 4 };
    let minibatch = rows / settings.ppo.num_minibatches.max(1) as u128;
    let widest: u128 = spec
        .actor_hidden
        .iter()
        .chain(&spec.critic_hidden)
        .map(|h| *h as u128)
        .sum::<u128>()
        + od
        + spec.head.actor_outputs() as u128;
    let mut items = off_policy_items(settings, spec);
    items.extend([
            MemoryItem {
                what: format!(
                    "rollouts of {} steps x {} envs",
                    settings.round_steps(),
                    settings.env.num_envs
                ),
                bytes: rows * (rollout_copies * rollout_row + update_row + torch_copy),
                keys: round_key,
            },
            MemoryItem {
                what: format!(
                    "networks of {params} parameters (actor {:?}, critic {:?}) with optimizer state, checkpoints and published copies",
                    spec.actor_hidden, spec.critic_hidden
                ),
                bytes: F32 * params * (learner_params + checkpoint_params + acting_params),
                keys: &["network.actor_hidden", "network.critic_hidden"],
            },
            MemoryItem {
                what: format!("the activations of minibatches of {minibatch} samples"),
                // Inputs and outputs of each layer, kept for the backward
                // pass, and their gradients.
                bytes: F32 * 3 * minibatch * widest,
                keys: &["ppo.num_steps", "env.num_envs", "ppo.num_minibatches"],
            },
            MemoryItem {
                what: format!("{processes} processes (executable, libraries)"),
                bytes: processes * PROCESS_BASE_BYTES,
                keys: &["run.num_workers"],
            },
        ]);
    MemoryPlan { items }
}

/// The settings that decide a round's length, as `table.key`.
fn round_key(settings: &TrainSettings) -> &'static [&'static str] {
    match settings.run.algo.as_str() {
        "sac" => &["sac.train_frequency", "env.num_envs"],
        "td3" => &["td3.train_frequency", "env.num_envs"],
        "dqn" => &["dqn.train_frequency", "env.num_envs"],
        _ => &["ppo.num_steps", "env.num_envs"],
    }
}

/// The off-policy learner's replay buffer (and its copies while a
/// checkpoint that saves it is written) and its networks: the actor, two
/// Q-networks, their targets and Adam's moments.
fn off_policy_items(settings: &TrainSettings, spec: &PolicySpec) -> Vec<MemoryItem> {
    let Some(common) = settings.off_policy_common() else {
        return Vec::new();
    };
    let (od, ad) = (spec.obs_dim, spec.head.action_dim());
    let transition = rl_algo::offpolicy::replay::transition_bytes(od, ad) as u128;
    // The buffer, and while a checkpoint saves it: the state's copy, the
    // encoded tensors and the file's bytes.
    let copies = if common.save_replay { 4 } else { 1 };
    let (buffer_key, critic_key): (&'static [&'static str], _) = match settings.run.algo.as_str() {
        "sac" => (&["sac.buffer_size"], &["network.critic_hidden"]),
        "td3" => (&["td3.buffer_size"], &["network.critic_hidden"]),
        _ => (&["dqn.buffer_size"], &["network.actor_hidden"]),
    };
    let critic = mlp_params(od + ad, &settings.network.critic_hidden, 1);
    // Online and target, each with two moments; the state's copy, a
    // checkpoint being written and the retained evaluation points.
    let agent = 2 * (num_params(spec) + 2 * critic) * 3 * (1 + 3 + RETAINED_EVAL_POINTS as u128);
    vec![
        MemoryItem {
            what: format!(
                "the replay buffer of {} transitions of {transition} bytes",
                common.buffer_size
            ),
            bytes: common.buffer_size as u128 * transition * copies,
            keys: buffer_key,
        },
        MemoryItem {
            what: "the off-policy networks, targets and optimizer state".to_string(),
            bytes: 4 * agent,
            keys: critic_key,
        },
    ]
}

/// Where the available memory figure comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Available {
    pub bytes: u128,
    /// "MemAvailable in /proc/meminfo", "the cgroup's memory.max", ...
    pub source: String,
}

fn meminfo_available() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Room left under this process's cgroup (v2) memory limit, if it has one.
fn cgroup_available() -> Option<(u128, String)> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let max: u128 = read("memory.max")?.trim().parse().ok()?; // "max": no limit
    let current: u128 = read("memory.current")?.trim().parse().ok()?;
    Some((
        max.saturating_sub(current),
        format!("the memory limit of cgroup {path} ({max} bytes)"),
    ))
}

/// What this machine (and this process's limits) can give a run now.
pub fn available() -> Option<Available> {
    let mut best: Option<Available> = meminfo_available().map(|bytes| Available {
        bytes,
        source: "MemAvailable in /proc/meminfo".into(),
    });
    let mut consider = |bytes: u128, source: String| {
        if best.as_ref().is_none_or(|b| bytes < b.bytes) {
            best = Some(Available { bytes, source });
        }
    };
    if let Some((bytes, source)) = cgroup_available() {
        consider(bytes, source);
    }
    if let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_AS) {
        if soft != nix::sys::resource::RLIM_INFINITY {
            consider(soft as u128, "the address-space limit (ulimit -v)".into());
        }
    }
    best
}

/// A setting that asks for more than the machine or the transport can give.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeProblem {
    /// The setting most responsible, as `table.key`.
    pub key: &'static str,
    /// The whole story: what needs how many bytes, and how many there are.
    pub message: String,
}

/// Checks a run's sizes before anything starts: every rollout a worker
/// sends must fit in one message, and the whole run must fit in the memory
/// that is [`available`].
pub fn check_sizes(settings: &TrainSettings, spec: &PolicySpec) -> Vec<SizeProblem> {
    let mut problems = Vec::new();
    if settings.run.num_workers > 0 {
        let per_worker = settings.envs_per_worker();
        let payload = rl_ipc::frame::max_payload_len(
            settings.round_steps(),
            per_worker,
            spec.obs_dim,
            spec.head.action_dim(),
        );
        if payload.is_none_or(|p| p > rl_ipc::frame::MAX_PAYLOAD) {
            problems.push(SizeProblem {
                key: round_key(settings)[0],
                message: format!(
                    "a worker's rollout of {} steps x {per_worker} envs takes {}, more than the {} bytes one rollout message may hold; use more workers ([run] num_workers) or fewer steps",
                    settings.round_steps(),
                    payload.map_or("more than 2^64 bytes".into(), |p| {
                        format!("{p} bytes ({})", human_bytes(p.into()))
                    }),
                    rl_ipc::frame::MAX_PAYLOAD
                ),
            });
        }
    }
    let plan = plan(settings, spec);
    let needed = plan.total();
    if let (Some(largest), Some(available)) = (plan.largest(), available()) {
        if needed > available.bytes {
            problems.push(SizeProblem {
                key: largest.keys[0],
                message: format!(
                    "the run needs {} bytes ({}) of memory, {} of them for {}; {} bytes ({}) are available ({})",
                    needed,
                    human_bytes(needed),
                    human_bytes(largest.bytes),
                    largest.what,
                    available.bytes,
                    human_bytes(available.bytes),
                    available.source
                ),
            });
        }
    }
    problems
}

/// `1.5 GB`, `128.0 TB`: decimal units, one decimal.
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rl_policy::{ActionHead, Activation};

    fn spec(hidden: Vec<usize>) -> PolicySpec {
        PolicySpec {
            obs_dim: 4,
            head: ActionHead::Categorical { n: 2 },
            actor_hidden: hidden.clone(),
            critic_hidden: hidden,
            activation: Activation::Tanh,
        }
    }

    #[test]
    fn parameter_counts_match_the_layout_and_never_overflow() {
        let s = spec(vec![64, 64]);
        assert_eq!(num_params(&s), s.layout().total_len as u128);
        let gaussian = PolicySpec {
            head: ActionHead::Gaussian { dim: 3 },
            ..s
        };
        assert_eq!(num_params(&gaussian), gaussian.layout().total_len as u128);
        let huge = spec(vec![65_536; 16]);
        assert!(num_params(&huge) > 2 * 15 * 65_536u128 * 65_536);
    }

    #[test]
    fn the_largest_item_names_the_setting_that_makes_it_large() {
        let mut settings: TrainSettings =
            serde_json::from_str(r#"{"env": {"id": "CartPole-v1"}}"#).unwrap();
        settings.ppo.num_steps = 1_000_000_000_000;
        let p = plan(&settings, &spec(vec![64, 64]));
        let largest = p.largest().unwrap();
        assert_eq!(largest.keys[0], "ppo.num_steps");
        // 8 envs x 1e12 steps x (obs, action and 4 floats, 2 flags) at least.
        assert!(largest.bytes > 8 * 1_000_000_000_000 * 38, "{largest:?}");
        settings.ppo.num_steps = 128;
        let p = plan(&settings, &spec(vec![65_536; 16]));
        assert_eq!(p.largest().unwrap().keys[0], "network.actor_hidden");
        assert_eq!(human_bytes(1_500_000_000), "1.5 GB");
        assert_eq!(human_bytes(999), "999 bytes");
        assert!(available().is_some_and(|a| a.bytes > 0));
    }
}
