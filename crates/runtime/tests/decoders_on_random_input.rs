//! Policy files and checkpoints, decoded from random bytes and from valid
//! files with flipped bits, cut ends and edited metadata (resealed, so
//! that the checks past the checksum are reached): a clean error or a
//! fully checked value, never a panic or an allocation the file cannot
//! back.

use proptest::prelude::*;
use rl_algo::algorithm::LearnerState;
use rl_policy::{ActionHead, Activation, ObsNormalizer, PolicySpec, RunningMeanStd};
use rl_runtime::storage::checkpoint::{Checkpoint, CheckpointKind};
use rl_runtime::storage::policy_file::{decode_policy, encode_policy};
use rl_runtime::storage::safetensors::seal;

fn spec() -> PolicySpec {
    PolicySpec {
        obs_dim: 3,
        head: ActionHead::Gaussian { dim: 1 },
        actor_hidden: vec![4],
        critic_hidden: vec![5],
        activation: Activation::Tanh,
    }
}

fn policy_bytes() -> Vec<u8> {
    let spec = spec();
    let n = spec.layout().total_len;
    let weights: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
    let mut norm = ObsNormalizer::new(3, 10.0);
    norm.stats.var = vec![1.0, 2.0, 3.0];
    let mut kwargs = rl_env::Kwargs::new();
    kwargs.insert("g".into(), serde_json::json!(9.81));
    let bytes = encode_policy(&spec, "Pendulum-v1", &kwargs, &weights, Some(&norm));
    // The kwargs come back with the policy (evaluate makes the env with them).
    let decoded =
        rl_runtime::storage::policy_file::decode_policy(&bytes).expect("the policy decodes");
    assert_eq!(decoded.env_kwargs, kwargs);
    bytes
}

fn checkpoint_bytes() -> Vec<u8> {
    let spec = spec();
    let n = spec.layout().total_len;
    Checkpoint {
        kind: CheckpointKind::Periodic,
        env_id: "Pendulum-v1".into(),
        env_kwargs: Default::default(),
        spec,
        obs_norm_clip: Some(10.0),
        learner: LearnerState {
            weights: vec![0.5; n],
            adam_exp_avg: vec![0.1; n],
            adam_exp_avg_sq: vec![0.2; n],
            adam_step: 3,
            obs_norm: Some(RunningMeanStd {
                mean: vec![0.0; 3],
                var: vec![1.0; 3],
                count: 10.0,
            }),
            reward_scaler: None,
            rng: [1, 2, 3, 4],
            updates_done: 2,
            tensors: vec![("agent.qf1".into(), vec![0.25; 4])],
            counters: vec![("agent.qf1_adam.step".into(), 3)],
        },
        num_updates: 10,
        env_steps: 512,
        elapsed_s: 1.0,
        train_s: 0.5,
        recent_returns: vec![-100.0],
        config_hash: "00000000".into(),
        settings_json: "{}".into(),
        collectors: vec![vec![1, 2, 3]],
    }
    .encode()
}

/// Replaces the value of a metadata key with `value` (JSON-escaped) in the
/// header, fixing the header length.
fn with_metadata(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()) as usize;
    let Ok(mut header) = serde_json::from_slice::<serde_json::Value>(&bytes[8..8 + len]) else {
        return bytes.to_vec();
    };
    header["__metadata__"][key] = serde_json::Value::String(value.to_string());
    let mut h = header.to_string().into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + len..]);
    out
}

const KEYS: &[&str] = &[
    "format",
    "obs_dim",
    "action_head",
    "action_outputs",
    "actor_hidden",
    "critic_hidden",
    "activation",
    "obs_norm_clip",
    "updates",
    "num_updates",
    "num_collectors",
    "rng",
    "adam_step",
    "obs_norm_count",
    "elapsed_s",
];

/// Damage to a valid file: flipped bytes, a cut end, an edited metadata
/// value (key index, value); resealed or not.
type Damage = (
    Vec<(prop::sample::Index, u8)>,
    Option<prop::sample::Index>,
    Option<(usize, String)>,
    bool,
);

/// Damage to a valid file: flipped bytes, a cut end, an edited metadata
/// value; resealed or not.
fn damage() -> impl Strategy<Value = Damage> {
    (
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<Option<prop::sample::Index>>(),
        prop::option::of((
            0..KEYS.len(),
            prop_oneof![
                "[0-9]{1,25}",
                "\\[[0-9, ]{0,40}\\]",
                any::<String>(),
                Just("18446744073709551615".to_string()),
                Just("[4294967296,4294967296]".to_string()),
            ],
        )),
        any::<bool>(),
    )
}

fn apply(mut bytes: Vec<u8>, (flips, cut, edit, reseal): Damage) -> Vec<u8> {
    if let Some((key, value)) = edit {
        bytes = with_metadata(&bytes, KEYS[key], &value);
    }
    for (at, b) in flips {
        let i = at.index(bytes.len());
        bytes[i] ^= b;
    }
    if let Some(at) = cut {
        bytes.truncate(at.index(bytes.len()));
    }
    if reseal {
        seal(&mut bytes);
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn policy_files_decode_or_say_why(d in damage(), noise in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_policy(&noise);
        if let Ok(p) = decode_policy(&apply(policy_bytes(), d)) {
            prop_assert!(p.weights.iter().all(|w| w.is_finite()));
            prop_assert_eq!(p.weights.len(), p.spec.layout().total_len);
        }
    }

    #[test]
    fn checkpoints_decode_or_say_why(d in damage(), noise in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Checkpoint::decode(&noise);
        if let Ok(c) = Checkpoint::decode(&apply(checkpoint_bytes(), d)) {
            prop_assert!(c.learner.weights.iter().all(|w| w.is_finite()));
            prop_assert!(c.learner.updates_done <= c.num_updates);
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_in_a_policy_file_is_caught() {
    let bytes = policy_bytes();
    assert!(decode_policy(&bytes).is_ok());
    for at in 0..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        assert!(
            decode_policy(&b).is_err(),
            "a flip at byte {at} went unnoticed"
        );
    }
}
