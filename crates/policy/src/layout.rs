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

/// The distribution actions are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionHead {
    /// A Categorical over `n` logits, for `Discrete(n)`.
    Categorical { n: usize },
    /// A diagonal Gaussian over `dim` values with a state-independent
    /// log-std parameter, for `Box` actions.
    Gaussian { dim: usize },
}

impl ActionHead {
    /// Outputs of the actor network: `n` logits or `dim` means.
    pub fn actor_outputs(self) -> usize {
        match self {
            ActionHead::Categorical { n } => n,
            ActionHead::Gaussian { dim } => dim,
        }
    }

    /// Values stored per action in rollouts: 1 index or `dim` values.
    pub fn action_dim(self) -> usize {
        match self {
            ActionHead::Categorical { .. } => 1,
            ActionHead::Gaussian { dim } => dim,
        }
    }
}

/// The actor-critic architecture: separate actor and critic MLPs.
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
pub(crate) fn layer_sizes(input: usize, hidden: &[usize], output: usize) -> Vec<(usize, usize)> {
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

    /// The linear layers of the critic, `(in, out)`.
    pub fn critic_layers(&self) -> Vec<(usize, usize)> {
        layer_sizes(self.obs_dim, &self.critic_hidden, 1)
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
