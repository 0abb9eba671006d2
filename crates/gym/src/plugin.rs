//! Finding and opening the plugin, once per process, and calling it.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::abi::{AbiStep, ABI_VERSION, PLUGIN_FILE};

/// An opened plugin handle for one env.
pub(crate) type Handle = *mut c_void;

pub(crate) struct Plugin {
    last_error: unsafe extern "C" fn(*mut u8, usize) -> usize,
    pub(crate) make: unsafe extern "C" fn(*const u8, usize) -> Handle,
    pub(crate) describe: unsafe extern "C" fn(Handle, *mut u8, usize) -> usize,
    pub(crate) reset: unsafe extern "C" fn(Handle, i32, u64, *mut f32, usize) -> i32,
    pub(crate) step:
        unsafe extern "C" fn(Handle, i64, *const f32, usize, *mut f32, usize, *mut AbiStep) -> i32,
    pub(crate) render: unsafe extern "C" fn(Handle, *mut u8, usize, *mut usize) -> i64,
    pub(crate) close: unsafe extern "C" fn(Handle),
    _library: libloading::Library,
}

impl Plugin {
    /// The message of this thread's last failure in the plugin.
    pub(crate) fn last_error(&self) -> String {
        let mut buf = vec![0u8; 1 << 16];
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { (self.last_error)(buf.as_mut_ptr(), buf.len()) };
        if n > buf.len() {
            buf = vec![0u8; n];
            // SAFETY: as above, with room for the whole message.
            unsafe { (self.last_error)(buf.as_mut_ptr(), buf.len()) };
        }
        buf.truncate(n);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Where the plugin is looked for, in order: `$FERRORL_GYM_PLUGIN`, next
/// to the executable (and in its `deps/` and parent folders, where cargo
/// puts libraries and test binaries), then the folder this crate was built
/// into.
pub fn plugin_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("FERRORL_GYM_PLUGIN") {
        candidates.push(PathBuf::from(path));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join(PLUGIN_FILE));
        candidates.push(dir.join("deps").join(PLUGIN_FILE));
        if let Some(up) = dir.parent() {
            candidates.push(up.join(PLUGIN_FILE));
        }
    }
    let built_into = Path::new(env!("FERRORL_TARGET_PROFILE_DIR"));
    candidates.push(built_into.join(PLUGIN_FILE));
    candidates.push(built_into.join("deps").join(PLUGIN_FILE));
    candidates
}

fn open(path: &Path) -> Result<Plugin, String> {
    // RTLD_GLOBAL: Python's extension modules (NumPy's, MuJoCo's) resolve
    // the interpreter's symbols globally, so libpython, which the plugin
    // brings in, must be loaded into the global namespace.
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: the plugin is our own library, built from this source; its
    // initialisers are CPython's (which does nothing until asked).
    let library: libloading::Library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }
        .map_err(|e| e.to_string())?
        .into();
    macro_rules! symbol {
        ($name:literal) => {
            // SAFETY: the symbol has the type the ABI (checked below) gives it.
            *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("{}: {e}", $name))?
        };
    }
    let abi: unsafe extern "C" fn() -> u32 = symbol!("ferrorl_gym_abi");
    // SAFETY: a function without arguments.
    let found = unsafe { abi() };
    if found != ABI_VERSION {
        return Err(format!(
            "it is of ABI version {found}, this program needs {ABI_VERSION}: rebuild both from the same source"
        ));
    }
    let version: unsafe extern "C" fn(*mut u8, usize) -> usize = symbol!("ferrorl_gym_version");
    let mut buf = [0u8; 64];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { version(buf.as_mut_ptr(), buf.len()) }.min(buf.len());
    let theirs = String::from_utf8_lossy(&buf[..n]).into_owned();
    if theirs != env!("CARGO_PKG_VERSION") {
        return Err(format!(
            "it is version {theirs}, this program is {}: rebuild both from the same source",
            env!("CARGO_PKG_VERSION")
        ));
    }
    Ok(Plugin {
        last_error: symbol!("ferrorl_gym_last_error"),
        make: symbol!("ferrorl_gym_make"),
        describe: symbol!("ferrorl_gym_describe"),
        reset: symbol!("ferrorl_gym_reset"),
        step: symbol!("ferrorl_gym_step"),
        render: symbol!("ferrorl_gym_render"),
        close: symbol!("ferrorl_gym_close"),
        _library: library,
    })
}

static PLUGIN: OnceLock<Result<Plugin, String>> = OnceLock::new();

/// The plugin, opened on first use (and then for the life of the process).
pub(crate) fn plugin() -> Result<&'static Plugin, String> {
    PLUGIN
        .get_or_init(|| {
            let candidates = plugin_candidates();
            let mut tried = Vec::new();
            for path in &candidates {
                if !path.exists() {
                    continue;
                }
                match open(path) {
                    Ok(plugin) => return Ok(plugin),
                    Err(e) => tried.push(format!("{}: {e}", path.display())),
                }
            }
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            Err(if tried.is_empty() {
                format!(
                    "the Gymnasium bridge ({PLUGIN_FILE}) is not built: looked in {}; build it with `cargo build --release -p rl-gym-python` (scripts/train does), or set FERRORL_GYM_PLUGIN to its path",
                    looked.join(", ")
                )
            } else {
                format!("cannot load the Gymnasium bridge: {}", tried.join("; "))
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}
