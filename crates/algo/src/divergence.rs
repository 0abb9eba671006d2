//! When an update's numbers stop being numbers: what went non-finite, where,
//! and which settings most likely made it so.
//!
//! The learner checks every quantity before it can reach anything another
//! part of the run uses: the returns and advantages it computes from a
//! rollout, each minibatch's loss terms and gradient norm (before the
//! optimizer step), and after the update the weights, Adam's moments, the
//! normalisers' statistics and the new policy's outputs on observations of
//! the rollout. The first non-finite one ends the update with a
//! [`Divergence`], and the learner goes back to the state it had before the
//! update, so nothing non-finite is ever published, saved or checkpointed.

use crate::ppo::config::PpoConfig;

/// A quantity of an update that went non-finite.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The update that failed, counted from 1.
    pub update: u64,
    /// Where in the update: before the minibatches, or epoch and minibatch
    /// (from 1), or after them.
    pub stage: Stage,
    /// What went non-finite ("the returns", "the gradient", ...).
    pub quantity: String,
    /// The value found (NaN, inf or -inf).
    pub value: f64,
    /// What the rollout looked like, when it explains the failure (the
    /// largest reward, say).
    pub context: Option<String>,
    /// The settings most likely responsible, most likely first, as
    /// `("ppo.ent_coef", "1e300 (usually 0 to 0.1)")`.
    pub suspects: Vec<(&'static str, String)>,
}

/// Where in an update a quantity was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Returns and advantages, from the rollout.
    BeforeMinibatches,
    Minibatch {
        epoch: usize,
        minibatch: usize,
    },
    /// The new weights and statistics.
    AfterMinibatches,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.stage {
            Stage::BeforeMinibatches => String::new(),
            Stage::Minibatch { epoch, minibatch } => {
                format!(" (epoch {epoch}, minibatch {minibatch})")
            }
            Stage::AfterMinibatches => " (after its minibatches)".to_string(),
        };
        write!(
            f,
            "training diverged in update {}{stage}: {} became {}",
            self.update, self.quantity, self.value
        )?;
        if let Some(context) = &self.context {
            write!(f, "; {context}")?;
        }
        if !self.suspects.is_empty() {
            let list: Vec<String> = self
                .suspects
                .iter()
                .map(|(key, why)| {
                    let (table, field) = key.split_once('.').unwrap_or(("", key));
                    format!("[{table}] {field} = {why}")
                })
                .collect();
            write!(f, ". Settings most likely responsible: {}", list.join(", "))?;
        }
        Ok(())
    }
}

/// A setting with the range it usually takes: values outside are the first
/// suspects when an update diverges.
struct Usual {
    key: &'static str,
    value: f64,
    low: f64,
    high: f64,
    range: &'static str,
}

impl Usual {
    /// How many orders of magnitude the value lies outside its usual range
    /// (0 inside it).
    fn distance(&self) -> f64 {
        let log = |x: f64| x.abs().max(1e-300).log10();
        if self.value > self.high {
            log(self.value) - log(self.high)
        } else if self.value < self.low {
            log(self.low) - log(self.value)
        } else {
            0.0
        }
    }

    fn describe(&self) -> String {
        format!("{} (usually {})", short(self.value), self.range)
    }
}

/// Which normalisation the run has (`[env] normalize_obs`,
/// `normalize_reward`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Normalised {
    /// The clip of normalised observations, when they are.
    pub obs_clip: Option<f64>,
    pub rewards: bool,
}

/// The settings most likely responsible for `quantity` going non-finite:
/// every setting outside its usual range (furthest first), then the ones
/// that act on that quantity directly.
pub fn suspects(
    config: &PpoConfig,
    normalised: Normalised,
    quantity: &str,
    max_abs_reward: f64,
) -> Vec<(&'static str, String)> {
    let usual = [
        Usual {
            key: "ppo.learning_rate",
            value: config.learning_rate,
            low: 1e-7,
            high: 1e-2,
            range: "1e-5 to 1e-3",
        },
        Usual {
            key: "ppo.ent_coef",
            value: config.ent_coef,
            low: 0.0,
            high: 0.1,
            range: "0 to 0.1",
        },
        Usual {
            key: "ppo.vf_coef",
            value: config.vf_coef,
            low: 0.0,
            high: 2.0,
            range: "0.25 to 1",
        },
        Usual {
            key: "ppo.max_grad_norm",
            value: config.max_grad_norm,
            low: 1e-3,
            high: 10.0,
            range: "0.5 to 1",
        },
        Usual {
            key: "ppo.clip_coef",
            value: config.clip_coef,
            low: 1e-3,
            high: 1.0,
            range: "0.1 to 0.3",
        },
        Usual {
            key: "ppo.adam_eps",
            value: config.adam_eps,
            low: 1e-12,
            high: 1e-2,
            range: "1e-8 to 1e-5",
        },
        Usual {
            key: "ppo.init_log_std",
            value: config.init_log_std,
            low: -5.0,
            high: 2.0,
            range: "-1 to 0.5",
        },
    ];
    let mut outside: Vec<&Usual> = usual.iter().filter(|u| u.distance() > 0.0).collect();
    outside.sort_by(|a, b| b.distance().total_cmp(&a.distance()));
    let mut list: Vec<(&'static str, String)> =
        outside.iter().map(|u| (u.key, u.describe())).collect();
    let mut add = |key: &'static str, why: String| {
        if !list.iter().any(|(k, _)| *k == key) {
            list.push((key, why));
        }
    };
    if !normalised.rewards && max_abs_reward > 1e4 {
        add(
            "env.normalize_reward",
            format!(
                "false (rewards reach {:e}; true scales them)",
                max_abs_reward as f32
            ),
        );
    }
    let direct: &[&'static str] = match quantity {
        q if q.contains("return") || q.contains("advantage") || q.contains("value loss") => {
            &["env.normalize_reward", "ppo.gamma", "ppo.vf_coef"]
        }
        q if q.contains("entropy") || q.contains("loss") => &["ppo.ent_coef", "ppo.vf_coef"],
        q if q.contains("gradient") => &["ppo.learning_rate", "ppo.max_grad_norm"],
        q if q.contains("observation") => &["env.normalize_obs", "env.obs_clip"],
        _ => &["ppo.learning_rate", "ppo.adam_eps"],
    };
    for key in direct {
        let value = match *key {
            "env.normalize_reward" => normalised.rewards.to_string(),
            "ppo.gamma" => short(config.gamma),
            "ppo.vf_coef" => short(config.vf_coef),
            "ppo.ent_coef" => short(config.ent_coef),
            "ppo.learning_rate" => short(config.learning_rate),
            "ppo.max_grad_norm" => short(config.max_grad_norm),
            "env.normalize_obs" => normalised.obs_clip.is_some().to_string(),
            "env.obs_clip" => normalised.obs_clip.map_or("none".to_string(), short),
            "ppo.adam_eps" => short(config.adam_eps),
            _ => continue,
        };
        add(key, value);
    }
    list
}

/// A number as a config file would hold it, in exponent form when that is
/// shorter (`1e300`, not three hundred digits).
fn short(v: f64) -> String {
    let plain = v.to_string();
    let exponent = format!("{v:e}");
    if exponent.len() < plain.len() {
        exponent
    } else {
        plain
    }
}

/// The first non-finite value of `values`, if any.
pub fn first_non_finite(values: &[f32]) -> Option<f32> {
    values.iter().copied().find(|v| !v.is_finite())
}

/// The first non-finite value of `values`, if any.
pub fn first_non_finite_f64(values: &[f64]) -> Option<f64> {
    values.iter().copied().find(|v| !v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_far_outside_their_usual_range_come_first() {
        let config = PpoConfig {
            ent_coef: 1e300,
            learning_rate: 0.5,
            ..PpoConfig::default()
        };
        let list = suspects(&config, Normalised::default(), "the gradient", 1.0);
        assert_eq!(list[0].0, "ppo.ent_coef");
        assert_eq!(list[1].0, "ppo.learning_rate");
        assert!(list[0].1.contains("usually 0 to 0.1"), "{list:?}");
        // Nothing unusual: the settings acting on the quantity.
        let list = suspects(
            &PpoConfig::default(),
            Normalised::default(),
            "the returns",
            1e30,
        );
        assert_eq!(list[0].0, "env.normalize_reward");
        assert!(list[0].1.contains("1e30"), "{list:?}");
        let shown = Divergence {
            update: 3,
            stage: Stage::Minibatch {
                epoch: 1,
                minibatch: 2,
            },
            quantity: "the gradient".into(),
            value: f64::NAN,
            context: None,
            suspects: vec![("ppo.ent_coef", "1e300 (usually 0 to 0.1)".into())],
        }
        .to_string();
        assert_eq!(
            shown,
            "training diverged in update 3 (epoch 1, minibatch 2): the gradient became NaN. Settings most likely responsible: [ppo] ent_coef = 1e300 (usually 0 to 0.1)"
        );
    }
}
