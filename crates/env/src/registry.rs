//! The registry: environment ids mapped to constructors, like `gym.make`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Checked, Env, EnvError, VecEnv};

type Constructor = Arc<dyn Fn() -> Box<dyn Env> + Send + Sync>;

/// Keyword arguments for an env's constructor (a config's `[env.kwargs]`
/// table), as Gymnasium's `gymnasium.make(id, **kwargs)` takes them.
pub type Kwargs = serde_json::Map<String, serde_json::Value>;

/// Builds the env a family gives an id (the part after the family's
/// prefix), with its keyword arguments.
pub type FamilyConstructor =
    Arc<dyn Fn(&str, &Kwargs) -> Result<Box<dyn Env>, EnvError> + Send + Sync>;

#[derive(Clone)]
struct Entry {
    constructor: Constructor,
    max_episode_steps: Option<u32>,
}

/// Maps ids such as `"CartPole-v1"` to constructors and time limits.
///
/// A program builds one registry, registers its own envs next to the
/// built-ins, and hands it explicitly to whatever needs to build envs; there
/// is no global registry.
#[derive(Clone, Default)]
pub struct Registry {
    entries: BTreeMap<String, Entry>,
    /// Envs named by a prefix and whatever follows it, such as
    /// `gymnasium:HalfCheetah-v5`: built on demand, with keyword arguments
    /// and their own time limits.
    families: BTreeMap<String, FamilyConstructor>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// A registry with the built-in envs (classic control) registered under
    /// their Gymnasium ids and time limits.
    pub fn with_builtins() -> Self {
        let mut registry = Registry::new();
        crate::classic::register_all(&mut registry);
        registry
    }

    /// Registers `constructor` under `id`, with a time limit (in steps) that
    /// truncates episodes, or none.
    pub fn register<E, F>(
        &mut self,
        id: &str,
        max_episode_steps: Option<u32>,
        constructor: F,
    ) -> Result<(), EnvError>
    where
        E: Env + 'static,
        F: Fn() -> E + Send + Sync + 'static,
    {
        if self.entries.contains_key(id) {
            return Err(EnvError::DuplicateId { id: id.to_string() });
        }
        let constructor: Constructor = Arc::new(move || Box::new(constructor()) as Box<dyn Env>);
        self.entries.insert(
            id.to_string(),
            Entry {
                constructor,
                max_episode_steps,
            },
        );
        Ok(())
    }

    /// Registers a family of envs: every id that starts with `prefix` is
    /// built by `constructor` from the rest of the id and the kwargs. The
    /// env applies its own time limit (none is added around it).
    pub fn register_family<F>(&mut self, prefix: &str, constructor: F) -> Result<(), EnvError>
    where
        F: Fn(&str, &Kwargs) -> Result<Box<dyn Env>, EnvError> + Send + Sync + 'static,
    {
        if prefix.is_empty() || self.families.contains_key(prefix) {
            return Err(EnvError::DuplicateId {
                id: prefix.to_string(),
            });
        }
        self.families
            .insert(prefix.to_string(), Arc::new(constructor));
        Ok(())
    }

    /// Whether a family with this prefix is registered.
    pub fn has_family(&self, prefix: &str) -> bool {
        self.families.contains_key(prefix)
    }

    /// The family an id belongs to: its prefix, the rest of the id and the
    /// constructor.
    fn family_of<'a>(&self, id: &'a str) -> Option<(&str, &'a str, &FamilyConstructor)> {
        self.families.iter().find_map(|(prefix, c)| {
            id.strip_prefix(prefix.as_str())
                .map(|rest| (prefix.as_str(), rest, c))
        })
    }

    /// Whether `id` is registered, or belongs to a registered family (which
    /// may still fail to build it).
    pub fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id) || self.family_of(id).is_some()
    }

    /// The registered ids, sorted (families not included).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The prefixes of the registered families, sorted.
    pub fn families(&self) -> impl Iterator<Item = &str> {
        self.families.keys().map(String::as_str)
    }

    /// Every id and family (as `prefix<id>`), for messages.
    pub fn known(&self) -> Vec<String> {
        self.ids()
            .map(str::to_string)
            .chain(self.families().map(|p| format!("{p}<id>")))
            .collect()
    }

    /// The time limit registered with `id`; `None` for a family's envs,
    /// which apply their own.
    pub fn max_episode_steps(&self, id: &str) -> Result<Option<u32>, EnvError> {
        if !self.entries.contains_key(id) && self.family_of(id).is_some() {
            return Ok(None);
        }
        Ok(self.entry(id)?.max_episode_steps)
    }

    fn entry(&self, id: &str) -> Result<&Entry, EnvError> {
        self.entries.get(id).ok_or_else(|| EnvError::UnknownId {
            id: id.to_string(),
            known: self.known(),
        })
    }

    /// Builds one env, wrapped in [`Checked`] with its time limit.
    pub fn make(&self, id: &str) -> Result<Checked<Box<dyn Env>>, EnvError> {
        self.make_with(id, &Kwargs::new())
    }

    /// Builds one env with keyword arguments. Only a family's envs take
    /// them; a registered Rust env is built by a constructor without
    /// arguments, so non-empty `kwargs` for one is an error.
    pub fn make_with(&self, id: &str, kwargs: &Kwargs) -> Result<Checked<Box<dyn Env>>, EnvError> {
        if !self.entries.contains_key(id) {
            if let Some((_, rest, constructor)) = self.family_of(id) {
                return Ok(Checked::new(id, constructor(rest, kwargs)?, None));
            }
        }
        let entry = self.entry(id)?;
        if !kwargs.is_empty() {
            return Err(EnvError::Custom {
                env: id.to_string(),
                message: format!(
                    "takes no keyword arguments (got {}); [env.kwargs] is for envs such as gymnasium:... that are built with arguments",
                    kwargs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        Ok(Checked::new(
            id,
            (entry.constructor)(),
            entry.max_episode_steps,
        ))
    }

    /// Builds a vectorised env of `num_envs` envs of `id`. Call
    /// [`VecEnv::reset`] before stepping it.
    pub fn make_vec(&self, id: &str, num_envs: usize) -> Result<VecEnv, EnvError> {
        self.make_vec_with(id, num_envs, &Kwargs::new())
    }

    /// [`Registry::make_vec`] with keyword arguments for every env.
    pub fn make_vec_with(
        &self,
        id: &str,
        num_envs: usize,
        kwargs: &Kwargs,
    ) -> Result<VecEnv, EnvError> {
        if num_envs == 0 {
            return Err(EnvError::NoEnvs {
                env: id.to_string(),
                num_envs,
            });
        }
        let envs = (0..num_envs)
            .map(|_| self.make_with(id, kwargs))
            .collect::<Result<Vec<_>, _>>()?;
        VecEnv::new(envs)
    }
}
