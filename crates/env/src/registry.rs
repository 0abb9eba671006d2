//! The registry: environment ids mapped to constructors, like `gym.make`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Checked, Env, EnvError, VecEnv};

type Constructor = Arc<dyn Fn() -> Box<dyn Env> + Send + Sync>;

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

    /// Whether `id` is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// The registered ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The time limit registered with `id`.
    pub fn max_episode_steps(&self, id: &str) -> Result<Option<u32>, EnvError> {
        Ok(self.entry(id)?.max_episode_steps)
    }

    fn entry(&self, id: &str) -> Result<&Entry, EnvError> {
        self.entries.get(id).ok_or_else(|| EnvError::UnknownId {
            id: id.to_string(),
            known: self.ids().map(str::to_string).collect(),
        })
    }

    /// Builds one env, wrapped in [`Checked`] with its time limit.
    pub fn make(&self, id: &str) -> Result<Checked<Box<dyn Env>>, EnvError> {
        let entry = self.entry(id)?;
        Ok(Checked::new(
            id,
            (entry.constructor)(),
            entry.max_episode_steps,
        ))
    }

    /// Builds a vectorised env of `num_envs` envs of `id`. Call
    /// [`VecEnv::reset`] before stepping it.
    pub fn make_vec(&self, id: &str, num_envs: usize) -> Result<VecEnv, EnvError> {
        if num_envs == 0 {
            return Err(EnvError::NoEnvs {
                env: id.to_string(),
                num_envs,
            });
        }
        let envs = (0..num_envs)
            .map(|_| self.make(id))
            .collect::<Result<Vec<_>, _>>()?;
        VecEnv::new(envs)
    }
}
