//! Policy files (`policy.safetensors`, `best_policy.safetensors`): the
//! networks' parameters by their PyTorch names, the observation
//! normaliser, and metadata that describes the architecture and the env.
//!
//! ```text
//! tensors   actor.0.weight, actor.0.bias, ..., critic.N.bias, actor_logstd   f32, nn.Sequential names
//!           (SAC, TD3: actor.* and the buffers action_scale, action_bias;
//!           DQN: actor.* is the Q-network)
//!           obs_norm.mean, obs_norm.var                                       f64, when observations are normalised
//! metadata  format "ferrorl-policy-v2", env_id, env_kwargs (JSON, only when there are any), obs_dim, action_head (categorical | gaussian | squashed_gaussian | deterministic | q_values),
//!           action_outputs, actor_hidden, critic_hidden, activation (Tanh | ReLU),
//!           obs_norm_clip ("none" or a number),
//!           checksum: CRC-32C of the whole file with this field's value as 00000000
//! ```
//!
//! Any safetensors reader loads them (the README's PyTorch recipe needs
//! nothing else); [`decode_policy`] checks the checksum, the format, that
//! the architecture fits in the file, every shape, and that every number is
//! finite. Files of format `ferrorl-policy-v1` (written before policy files
//! had a checksum) are still read, and say they could not be verified.
//! Checkpoints carry the same tensors and metadata (see `checkpoint`).

use std::collections::BTreeMap;

use rl_env::Kwargs;
use rl_policy::{ActionHead, Activation, ObsNormalizer, ParamLayout, PolicySpec};

use crate::storage::safetensors::{
    checksum, encode, seal, SafeTensors, TensorData, CHECKSUM_PLACEHOLDER,
};

/// The format of the policy files this build writes.
pub const POLICY_FORMAT: &str = "ferrorl-policy-v2";
/// Policy files without a checksum, still read.
pub const POLICY_FORMAT_V1: &str = "ferrorl-policy-v1";

/// A policy read back from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyFile {
    pub spec: PolicySpec,
    pub env_id: String,
    /// The env's keyword arguments (`[env.kwargs]`).
    pub env_kwargs: Kwargs,
    /// Parameters, flat in layout order.
    pub weights: Vec<f32>,
    pub obs_norm: Option<ObsNormalizer>,
    /// Whether a checksum vouched for the bytes (false for a v1 file).
    pub verified: bool,
}

/// What a policy file's metadata says: the architecture, the env it was
/// trained on, and the observation clip (when observations are normalised).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyHeader {
    pub spec: PolicySpec,
    pub env_id: String,
    pub env_kwargs: Kwargs,
    pub obs_norm_clip: Option<f64>,
}

/// The weights of a policy file and its observation normaliser.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyWeights {
    /// Parameters, flat in layout order.
    pub weights: Vec<f32>,
    pub obs_norm: Option<ObsNormalizer>,
}

/// Reads and checks a policy file's bytes (see the module documentation).
pub fn decode_policy(bytes: &[u8]) -> Result<PolicyFile, String> {
    let st = SafeTensors::decode(bytes)?;
    let format = st.meta("format")?;
    let verified = match format {
        POLICY_FORMAT => {
            let (stored, computed) = checksum(bytes)?;
            if stored != computed {
                return Err(format!(
                    "checksum mismatch (stored {stored}, computed {computed}): the file is damaged"
                ));
            }
            true
        }
        POLICY_FORMAT_V1 => false,
        other => {
            return Err(format!(
                "format {other:?} is not a policy file this build reads ({POLICY_FORMAT}, or {POLICY_FORMAT_V1} without a checksum)"
            ))
        }
    };
    let header = policy_from_metadata(&st)?;
    let PolicyWeights { weights, obs_norm } =
        policy_weights(&st, &header.spec, header.obs_norm_clip)?;
    Ok(PolicyFile {
        spec: header.spec,
        env_id: header.env_id,
        env_kwargs: header.env_kwargs,
        weights,
        obs_norm,
        verified,
    })
}

/// The tensors of a policy: every network parameter (float32, names and
/// shapes of the layout) and the observation normaliser's mean and variance
/// when there is one (`obs_norm.mean`, `obs_norm.var`, float64).
pub fn policy_tensors(
    spec: &PolicySpec,
    weights: &[f32],
    obs_norm: Option<&ObsNormalizer>,
) -> Vec<TensorData> {
    let layout: ParamLayout = spec.layout();
    let mut tensors: Vec<TensorData> = layout
        .entries
        .iter()
        .map(|e| {
            TensorData::f32s(
                e.name.clone(),
                e.shape.clone(),
                &weights[e.offset..e.offset + e.len],
            )
        })
        .collect();
    if let Some(norm) = obs_norm {
        tensors.push(TensorData::f64s("obs_norm.mean", &norm.stats.mean));
        tensors.push(TensorData::f64s("obs_norm.var", &norm.stats.var));
    }
    tensors
}

/// The metadata that describes a policy's architecture and env, shared by
/// policy files and checkpoints (`evaluate` reads either).
pub fn policy_metadata(
    spec: &PolicySpec,
    env_id: &str,
    env_kwargs: &Kwargs,
    obs_norm_clip: Option<f64>,
) -> BTreeMap<String, String> {
    let (head, dim) = (spec.head.kind(), spec.head.size());
    [
        ("format", POLICY_FORMAT.to_string()),
        ("env_id", env_id.to_string()),
        ("obs_dim", spec.obs_dim.to_string()),
        ("action_head", head.to_string()),
        ("action_outputs", dim.to_string()),
        ("actor_hidden", format!("{:?}", spec.actor_hidden)),
        ("critic_hidden", format!("{:?}", spec.critic_hidden)),
        ("activation", spec.activation.torch_module().to_string()),
        (
            "obs_norm_clip",
            obs_norm_clip.map_or("none".to_string(), |c| c.to_string()),
        ),
    ]
    .into_iter()
    .chain((!env_kwargs.is_empty()).then(|| {
        (
            "env_kwargs",
            serde_json::Value::Object(env_kwargs.clone()).to_string(),
        )
    }))
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The bytes of a policy file: [`policy_tensors`] and [`policy_metadata`],
/// sealed with its checksum.
pub fn encode_policy(
    spec: &PolicySpec,
    env_id: &str,
    env_kwargs: &Kwargs,
    weights: &[f32],
    obs_norm: Option<&ObsNormalizer>,
) -> Vec<u8> {
    let mut meta = policy_metadata(spec, env_id, env_kwargs, obs_norm.map(|n| n.clip));
    meta.insert("checksum".into(), CHECKSUM_PLACEHOLDER.into());
    let mut bytes = encode(policy_tensors(spec, weights, obs_norm), &meta);
    seal(&mut bytes);
    bytes
}

/// Parses the policy metadata (see [`policy_metadata`]) back into the
/// architecture, env id and observation clip. The architecture must fit in
/// the file: a network the tensors could not hold is refused before
/// anything the size of the network is allocated.
pub fn policy_from_metadata(st: &SafeTensors<'_>) -> Result<PolicyHeader, String> {
    let sizes = |key: &str| -> Result<Vec<usize>, String> {
        let raw = st.meta(key)?;
        let inner = raw.trim().trim_start_matches('[').trim_end_matches(']');
        if inner.trim().is_empty() {
            return Ok(Vec::new());
        }
        inner
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|_| format!("metadata {key} = {raw:?} is not a list of sizes"))
            })
            .collect()
    };
    let outputs: usize = st.meta_parse("action_outputs")?;
    let kind = st.meta("action_head")?;
    let head = ActionHead::from_kind(kind, outputs).ok_or_else(|| {
        format!(
            "metadata action_head = {kind:?} is not categorical, gaussian, squashed_gaussian, deterministic or q_values"
        )
    })?;
    let activation = match st.meta("activation")? {
        "Tanh" => Activation::Tanh,
        "ReLU" => Activation::Relu,
        other => {
            return Err(format!(
                "metadata activation = {other:?} is not Tanh or ReLU"
            ))
        }
    };
    let spec = PolicySpec {
        obs_dim: st.meta_parse("obs_dim")?,
        head,
        actor_hidden: sizes("actor_hidden")?,
        critic_hidden: sizes("critic_hidden")?,
        activation,
    };
    let params = crate::memory::num_params(&spec);
    if params * 4 > st.data_len() as u128 {
        return Err(format!(
            "the metadata describes a network of {params} parameters ({} bytes), the file holds {} bytes of tensors",
            params * 4,
            st.data_len()
        ));
    }
    let clip = match st.meta("obs_norm_clip")? {
        "none" => None,
        raw => Some(
            raw.parse()
                .map_err(|_| format!("metadata obs_norm_clip = {raw:?} is not a number"))?,
        ),
    };
    Ok(PolicyHeader {
        spec,
        env_id: st.meta("env_id")?.to_string(),
        env_kwargs: match st.metadata.get("env_kwargs") {
            None => Kwargs::new(),
            Some(raw) => serde_json::from_str(raw)
                .map_err(|e| format!("metadata env_kwargs = {raw:?} is not a JSON object: {e}"))?,
        },
        obs_norm_clip: clip,
    })
}

/// Reads a policy's parameters (flat, layout order) and observation
/// normaliser from a policy file or checkpoint, checking every shape.
pub fn policy_weights(
    st: &SafeTensors<'_>,
    spec: &PolicySpec,
    clip: Option<f64>,
) -> Result<PolicyWeights, String> {
    let layout = spec.layout();
    let mut weights = vec![0.0_f32; layout.total_len];
    for e in &layout.entries {
        let shape = st
            .shape(&e.name)
            .ok_or_else(|| format!("tensor {} is missing", e.name))?;
        if shape != e.shape.as_slice() {
            return Err(format!(
                "tensor {} has shape {shape:?}, the architecture in the metadata needs {:?}",
                e.name, e.shape
            ));
        }
        weights[e.offset..e.offset + e.len].copy_from_slice(&st.f32s(&e.name)?);
    }
    let obs_norm = match clip {
        None => None,
        Some(clip) => {
            let (mean, var) = (st.f64s("obs_norm.mean")?, st.f64s("obs_norm.var")?);
            if mean.len() != spec.obs_dim
                || var.len() != spec.obs_dim
                || var.iter().any(|v| *v < 0.0)
            {
                return Err(format!(
                    "observation statistics of {} and {} values (variances >= 0) for observations of {}",
                    mean.len(),
                    var.len(),
                    spec.obs_dim
                ));
            }
            let mut norm = ObsNormalizer::new(spec.obs_dim, clip);
            norm.stats.mean = mean;
            norm.stats.var = var;
            Some(norm)
        }
    };
    Ok(PolicyWeights { weights, obs_norm })
}
