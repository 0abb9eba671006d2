//! Architecture and the flat parameter layout.

use serde::{Deserialize, Serialize};

/// The hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Relu,
}

impl Activation {
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Tanh => crate::fast_math::fast_tanh(x),
            Activation::Relu => x.max(0.0),
        }
    }

    /// The name PyTorch gives the module (`nn.Tanh`, `nn.ReLU`).
    pub fn torch_module(self) -> &'static str {
        match self {
            Activation::Tanh => "Tanh",
            Activation::Relu => "ReLU",
        }
    }
}

/// How actions come from the actor's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionHead {
    /// PPO: a Categorical over `n` logits, for `Discrete(n)`.
    Categorical { n: usize },
    /// PPO: a diagonal Gaussian over `dim` values with a state-independent
    /// log-std parameter, for `Box` actions.
    Gaussian { dim: usize },
    /// SAC: a tanh-squashed Gaussian whose mean and log-std both come from
    /// the actor (`2 * dim` outputs: the means, then the log-stds before
    /// CleanRL's `tanh` rescaling into `[LOG_STD_MIN, LOG_STD_MAX]`),
    /// scaled into the `Box` bounds by `action_scale` and `action_bias`.
    SquashedGaussian { dim: usize },
    /// TD3: a deterministic actor, `tanh` then scaled into the `Box`
    /// bounds; collectors add Gaussian exploration noise.
    Deterministic { dim: usize },
    /// DQN: one Q-value per action of `Discrete(n)`; collectors act
    /// epsilon-greedily.
    QValues { n: usize },
}

/// CleanRL's bounds of SAC's log-std (`sac_continuous_action.py`).
pub const LOG_STD_MIN: f32 = -5.0;
pub const LOG_STD_MAX: f32 = 2.0;

impl ActionHead {
    /// Outputs of the actor network.
    pub fn actor_outputs(self) -> usize {
        match self {
            ActionHead::Categorical { n } | ActionHead::QValues { n } => n,
            ActionHead::Gaussian { dim } | ActionHead::Deterministic { dim } => dim,
            ActionHead::SquashedGaussian { dim } => 2 * dim,
        }
    }

    /// Values stored per action in rollouts: 1 index or `dim` values.
    pub fn action_dim(self) -> usize {
        match self {
            ActionHead::Categorical { .. } | ActionHead::QValues { .. } => 1,
            ActionHead::Gaussian { dim }
            | ActionHead::SquashedGaussian { dim }
            | ActionHead::Deterministic { dim } => dim,
        }
    }

    /// Whether actions are indices into a `Discrete` space.
    pub fn is_discrete(self) -> bool {
        matches!(
            self,
            ActionHead::Categorical { .. } | ActionHead::QValues { .. }
        )
    }

    /// Whether the policy has PPO's value critic (the off-policy
    /// algorithms keep their Q-networks in the learner only).
    pub fn has_critic(self) -> bool {
        matches!(
            self,
            ActionHead::Categorical { .. } | ActionHead::Gaussian { .. }
        )
    }

    /// Whether the head belongs to an off-policy algorithm: its collectors
    /// keep each ended episode's final observation (the replay buffer's
    /// next observation).
    pub fn is_off_policy(self) -> bool {
        !self.has_critic()
    }

    /// Whether actions are squashed into the bounds, with the
    /// `action_scale` and `action_bias` buffers in the layout.
    pub fn is_squashed(self) -> bool {
        matches!(
            self,
            ActionHead::SquashedGaussian { .. } | ActionHead::Deterministic { .. }
        )
    }

    /// The name in policy files' `action_head` metadata.
    pub fn kind(self) -> &'static str {
        match self {
            ActionHead::Categorical { .. } => "categorical",
            ActionHead::Gaussian { .. } => "gaussian",
            ActionHead::SquashedGaussian { .. } => "squashed_gaussian",
            ActionHead::Deterministic { .. } => "deterministic",
            ActionHead::QValues { .. } => "q_values",
        }
    }

    /// The head called `kind` (see [`ActionHead::kind`]) for an action of
    /// `dim` values or `n` choices.
    pub fn from_kind(kind: &str, size: usize) -> Option<Self> {
        Some(match kind {
            "categorical" => ActionHead::Categorical { n: size },
            "gaussian" => ActionHead::Gaussian { dim: size },
            "squashed_gaussian" => ActionHead::SquashedGaussian { dim: size },
            "deterministic" => ActionHead::Deterministic { dim: size },
            "q_values" => ActionHead::QValues { n: size },
            _ => return None,
        })
    }

    /// The action size `from_kind` takes: `n` or `dim`.
    pub fn size(self) -> usize {
        match self {
            ActionHead::Categorical { n } | ActionHead::QValues { n } => n,
            ActionHead::Gaussian { dim }
            | ActionHead::SquashedGaussian { dim }
            | ActionHead::Deterministic { dim } => dim,
        }
    }
}

/// The acting architecture: the actor MLP and, for PPO's heads, the critic
/// MLP (the off-policy algorithms' Q-networks live in the learner only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    pub obs_dim: usize,
    pub head: ActionHead,
    pub actor_hidden: Vec<usize>,
    pub critic_hidden: Vec<usize>,
    pub activation: Activation,
}

/// One parameter's place in the flat buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamEntry {
    pub name: String,
    /// PyTorch shape: `[out, in]` for weights, `[out]` for biases.
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// Every parameter in sorted-name order, with offsets into one flat buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamLayout {
    pub entries: Vec<ParamEntry>,
    pub total_len: usize,
}

impl ParamLayout {
    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// The sizes of each linear layer of an MLP: `(in, out)` pairs.
pub fn layer_sizes(input: usize, hidden: &[usize], output: usize) -> Vec<(usize, usize)> {
    let mut sizes = Vec::with_capacity(hidden.len() + 1);
    let mut previous = input;
    for &h in hidden {
        sizes.push((previous, h));
        previous = h;
    }
    sizes.push((previous, output));
    sizes
}

impl PolicySpec {
    /// The linear layers of the actor, `(in, out)`.
    pub fn actor_layers(&self) -> Vec<(usize, usize)> {
        layer_sizes(self.obs_dim, &self.actor_hidden, self.head.actor_outputs())
    }

    /// The linear layers of the critic, `(in, out)`; none for the
    /// off-policy heads.
    pub fn critic_layers(&self) -> Vec<(usize, usize)> {
        if self.head.has_critic() {
            layer_sizes(self.obs_dim, &self.critic_hidden, 1)
        } else {
            Vec::new()
        }
    }

    /// Names and shapes of every parameter, unsorted. Linear layer `i` of the
    /// actor is module `actor.{2i}` (activations sit at the odd indices of the
    /// equivalent `nn.Sequential`).
    fn params(&self) -> Vec<(String, Vec<usize>)> {
        let mut params = Vec::new();
        for (prefix, layers) in [
            ("actor", self.actor_layers()),
            ("critic", self.critic_layers()),
        ] {
            for (i, (input, output)) in layers.into_iter().enumerate() {
                params.push((format!("{prefix}.{}.weight", 2 * i), vec![output, input]));
                params.push((format!("{prefix}.{}.bias", 2 * i), vec![output]));
            }
        }
        if let ActionHead::Gaussian { dim } = self.head {
            params.push(("actor_logstd".to_string(), vec![dim]));
        }
        // CleanRL's SAC and TD3 actors keep these as buffers: constants
        // from the action space, never trained.
        if self.head.is_squashed() {
            let dim = self.head.action_dim();
            params.push(("action_bias".to_string(), vec![dim]));
            params.push(("action_scale".to_string(), vec![dim]));
        }
        params
    }

    /// The flat layout: parameters sorted by name.
    pub fn layout(&self) -> ParamLayout {
        let mut params = self.params();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let mut offset = 0;
        let entries = params
            .into_iter()
            .map(|(name, shape)| {
                let len = shape.iter().product();
                let entry = ParamEntry {
                    name,
                    shape,
                    offset,
                    len,
                };
                offset += len;
                entry
            })
            .collect();
        ParamLayout {
            entries,
            total_len: offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_policy_heads_have_no_critic_and_squashed_ones_their_scale() {
        let spec = PolicySpec {
            obs_dim: 3,
            head: ActionHead::SquashedGaussian { dim: 2 },
            actor_hidden: vec![8],
            critic_hidden: vec![8],
            activation: Activation::Relu,
        };
        let names: Vec<String> = spec.layout().entries.into_iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "action_bias",
                "action_scale",
                "actor.0.bias",
                "actor.0.weight",
                "actor.2.bias",
                "actor.2.weight"
            ]
        );
        assert_eq!(
            spec.layout().get("actor.2.weight").unwrap().shape,
            vec![4, 8]
        );
        let dqn = PolicySpec {
            head: ActionHead::QValues { n: 5 },
            ..spec
        };
        assert_eq!(dqn.layout().total_len, (3 * 8 + 8) + (8 * 5 + 5));
        for head in [
            ActionHead::Categorical { n: 3 },
            ActionHead::Gaussian { dim: 3 },
            ActionHead::SquashedGaussian { dim: 3 },
            ActionHead::Deterministic { dim: 3 },
            ActionHead::QValues { n: 3 },
        ] {
            assert_eq!(ActionHead::from_kind(head.kind(), head.size()), Some(head));
        }
    }

    #[test]
    fn layout_is_sorted_by_name_and_contiguous() {
        let spec = PolicySpec {
            obs_dim: 3,
            head: ActionHead::Gaussian { dim: 1 },
            actor_hidden: vec![64, 64],
            critic_hidden: vec![32],
            activation: Activation::Tanh,
        };
        let layout = spec.layout();
        let names: Vec<&str> = layout.entries.iter().map(|e| e.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(names.contains(&"actor.4.weight") && names.contains(&"actor_logstd"));
        assert_eq!(layout.get("actor.0.weight").unwrap().shape, vec![64, 3]);
        assert_eq!(layout.get("critic.2.weight").unwrap().shape, vec![1, 32]);
        let mut offset = 0;
        for e in &layout.entries {
            assert_eq!(e.offset, offset);
            offset += e.len;
        }
        assert_eq!(
            layout.total_len,
            (3 * 64 + 64) + (64 * 64 + 64) + (64 + 1) + 1 + (3 * 32 + 32) + (32 + 1)
        );
    }
}
