//! Gymnasium environments behind [`rl_env::Env`].
//!
//! An id `gymnasium:<id>` names the env `gymnasium.make(<id>, **kwargs)`
//! builds, including Gymnasium's module-import form
//! `gymnasium:my_module:MyEnv-v0`. [`register`] adds the `gymnasium:`
//! family to a [`Registry`]; the commands do it for every registry they are
//! given.
//!
//! The Python side lives in a plugin, `librl_gym_python.so` (crate
//! rl-gym-python), which embeds CPython. It is opened with `dlopen` the
//! first time a process makes such an env, so only the processes that step
//! Gymnasium envs (workers, the evaluator, and `train` itself while it
//! checks the config) start an interpreter, each its own: envs step in
//! parallel with no shared GIL. No binary links libpython.
//!
//! Which Python: `$FERRORL_PYTHON` (a Python executable, usually a venv's
//! `bin/python`), else the active venv (`$VIRTUAL_ENV`), else the project's
//! `.venv` (looked for above the executable, then in the source tree this
//! was built from), else `python3` on `PATH`. The plugin is built against
//! one CPython minor version (the one `scripts/setup` used); an interpreter
//! of another minor version is refused with a message saying so.

pub mod abi;
mod env;
mod plugin;

pub use env::GymEnv;
pub use plugin::plugin_candidates;

use std::path::{Path, PathBuf};

use rl_env::{EnvError, Registry};

/// The prefix of the ids of Gymnasium envs.
pub const PREFIX: &str = "gymnasium:";

/// Registers the `gymnasium:` family (if `registry` has none yet).
pub fn register(registry: &mut Registry) {
    if registry.has_family(PREFIX) {
        return;
    }
    // A family is only refused when its prefix is taken, checked above.
    let _ = registry.register_family(PREFIX, |id, kwargs| {
        Ok(Box::new(GymEnv::make(id, kwargs, None)?) as Box<dyn rl_env::Env>)
    });
}

/// The Python executable the bridge starts its interpreter from (see the
/// crate's documentation for the order).
pub fn python_executable() -> Result<PathBuf, EnvError> {
    if let Some(path) = std::env::var_os("FERRORL_PYTHON").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(absolute(&path))
        } else {
            Err(EnvError::Custom {
                env: "gymnasium".to_string(),
                message: format!(
                    "FERRORL_PYTHON={} is not a file; set it to a Python executable such as /path/to/venv/bin/python",
                    path.display()
                ),
            })
        };
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|p| !p.is_empty()) {
        let python = Path::new(&venv).join("bin/python");
        if python.is_file() {
            return Ok(python);
        }
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .map(|d| d.join(".venv/bin/python"))
            .find(|p| p.is_file())
    });
    if let Some(python) = from_exe {
        return Ok(python);
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if source.is_file() {
        return Ok(absolute(&source));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
        .ok_or_else(|| EnvError::Custom {
            env: "gymnasium".to_string(),
            message: "no Python found: run scripts/setup (it makes .venv with Gymnasium), or set FERRORL_PYTHON to a Python executable that has gymnasium installed".to_string(),
        })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
