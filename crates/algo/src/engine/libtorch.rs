//! The libtorch engine, loaded only by the process that uses it.
//!
//! libtorch is a shared library of several hundred megabytes whose loading
//! costs about a quarter of a CPU-second. The binaries do not link it: the
//! engine lives in `librl_torch.so` (crate `rl-torch`), which this module
//! opens with `dlopen` the first time a learner asks for libtorch
//! (`learner = "torch"`, or a CUDA device). Workers, the evaluator, `curves`,
//! `evaluate` and every CPU run with the host engine never load it.
//!
//! The plugin is found, in order, at `$FERRORL_TORCH_PLUGIN`, next to the
//! running executable or in its `deps/` folder (where cargo puts it when
//! `rl-cli`, which depends on `rl-torch` for that reason, is built), one
//! folder up (test binaries live in `deps/`), and in the target folder this
//! crate was built into. Both sides are built from the same source;
//! [`ABI_VERSION`] and the package version are checked.
//!
//! ```text
//! ferrorl_torch_abi() -> u32                       ABI_VERSION
//! ferrorl_torch_version(buf, cap) -> len           the package version
//! ferrorl_torch_cuda_devices() -> i64              CUDA devices libtorch sees
//! ferrorl_torch_set_threads(n)                     intra-op threads
//! ferrorl_torch_last_error(buf, cap) -> len        this thread's last error
//! ferrorl_torch_new(spec, seed, log_std, eps, device) -> engine | null
//! ferrorl_torch_free(engine)
//! ferrorl_torch_len / weights / optimizer / load / save / restore /
//! begin_update / backward / step / non_finite      -> 0 ok, -1 error
//! ferrorl_torch_gradient(engine, values, len, set) the gradient, out (0) or in (1)
//! ferrorl_torch_clip(engine, max_norm, &norm)      clip_grad_norm_
//! ```

use std::borrow::Cow;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rl_policy::{ActionHead, Activation, PolicySpec};

use crate::engine::gradient::{Backend, Batch, Device, GradientEngine, LossTerms, OptimizerState};
use crate::exchange::ExchangeError;
use crate::ppo::config::PpoConfig;

/// Bumped with any change to the functions or structs below (or in
/// [`crate::engine::agent`]).
pub const ABI_VERSION: u32 = 3;

/// The plugin's file name.
pub const PLUGIN_FILE: &str = "librl_torch.so";

/// The policy architecture.
#[repr(C)]
pub struct AbiSpec {
    pub obs_dim: usize,
    /// 0: categorical over `head_size` logits; 1: Gaussian of `head_size` dims.
    pub head: u32,
    pub head_size: usize,
    pub actor_hidden: *const usize,
    pub actor_len: usize,
    pub critic_hidden: *const usize,
    pub critic_len: usize,
    /// 0: tanh; 1: relu.
    pub activation: u32,
}

impl AbiSpec {
    /// Borrows `spec`'s vectors: valid while `spec` lives.
    pub fn of(spec: &PolicySpec) -> Self {
        let (head, head_size) = match spec.head {
            ActionHead::Categorical { n } => (0, n),
            // PPO's heads only (PpoLearner refuses the others).
            head => (1, head.action_dim()),
        };
        AbiSpec {
            obs_dim: spec.obs_dim,
            head,
            head_size,
            actor_hidden: spec.actor_hidden.as_ptr(),
            actor_len: spec.actor_hidden.len(),
            critic_hidden: spec.critic_hidden.as_ptr(),
            critic_len: spec.critic_hidden.len(),
            activation: match spec.activation {
                Activation::Tanh => 0,
                Activation::Relu => 1,
            },
        }
    }

    /// # Safety
    /// The pointers must be valid for their lengths.
    pub unsafe fn to_spec(&self) -> Option<PolicySpec> {
        let slice = |p: *const usize, n: usize| {
            if n == 0 {
                Vec::new()
            } else {
                // SAFETY: the caller's contract.
                unsafe { std::slice::from_raw_parts(p, n) }.to_vec()
            }
        };
        Some(PolicySpec {
            obs_dim: self.obs_dim,
            head: match self.head {
                0 => ActionHead::Categorical { n: self.head_size },
                1 => ActionHead::Gaussian {
                    dim: self.head_size,
                },
                _ => return None,
            },
            actor_hidden: slice(self.actor_hidden, self.actor_len),
            critic_hidden: slice(self.critic_hidden, self.critic_len),
            activation: match self.activation {
                0 => Activation::Tanh,
                1 => Activation::Relu,
                _ => return None,
            },
        })
    }
}

/// An update's batch in host memory, `rows` rows.
#[repr(C)]
pub struct AbiBatch {
    pub obs: *const f32,
    pub actions: *const f32,
    pub log_probs: *const f32,
    pub advantages: *const f32,
    pub returns: *const f32,
    pub values: *const f32,
    pub rows: usize,
    pub obs_dim: usize,
    pub action_dim: usize,
}

impl AbiBatch {
    pub fn of(batch: &Batch<'_>) -> Self {
        AbiBatch {
            obs: batch.obs.as_ptr(),
            actions: batch.actions.as_ptr(),
            log_probs: batch.log_probs.as_ptr(),
            advantages: batch.advantages.as_ptr(),
            returns: batch.returns.as_ptr(),
            values: batch.values.as_ptr(),
            rows: batch.log_probs.len(),
            obs_dim: batch.obs_dim,
            action_dim: batch.action_dim,
        }
    }

    /// # Safety
    /// The pointers must be valid for `rows` rows.
    pub unsafe fn to_batch(&self) -> Batch<'_> {
        let n = self.rows;
        // SAFETY: the caller's contract.
        let s = |p: *const f32, len: usize| unsafe { std::slice::from_raw_parts(p, len) };
        Batch {
            obs: s(self.obs, n * self.obs_dim),
            actions: s(self.actions, n * self.action_dim),
            log_probs: s(self.log_probs, n),
            advantages: s(self.advantages, n),
            returns: s(self.returns, n),
            values: s(self.values, n),
            obs_dim: self.obs_dim,
            action_dim: self.action_dim,
        }
    }
}

/// The loss settings of one minibatch.
#[repr(C)]
pub struct AbiLoss {
    pub norm_adv: u8,
    pub clip_vloss: u8,
    pub ent_coef: f64,
    pub vf_coef: f64,
    pub max_grad_norm: f64,
    pub clip_coef: f64,
}

impl AbiLoss {
    pub fn of(config: &PpoConfig, clip_coef: f64) -> Self {
        AbiLoss {
            norm_adv: config.norm_adv.into(),
            clip_vloss: config.clip_vloss.into(),
            ent_coef: config.ent_coef,
            vf_coef: config.vf_coef,
            max_grad_norm: config.max_grad_norm,
            clip_coef,
        }
    }

    /// The config the loss reads (other fields at their defaults), and the
    /// clip coefficient.
    pub fn to_config(&self) -> (PpoConfig, f64) {
        (
            PpoConfig {
                norm_adv: self.norm_adv != 0,
                clip_vloss: self.clip_vloss != 0,
                ent_coef: self.ent_coef,
                vf_coef: self.vf_coef,
                max_grad_norm: self.max_grad_norm,
                ..PpoConfig::default()
            },
            self.clip_coef,
        )
    }
}

/// A minibatch's loss terms and gradient norm.
#[repr(C)]
#[derive(Default)]
pub struct AbiTerms {
    pub policy_loss: f64,
    pub value_loss: f64,
    pub entropy: f64,
    pub approx_kl: f64,
    pub old_approx_kl: f64,
    pub clip_frac: f64,
    pub grad_norm: f64,
}

impl AbiTerms {
    /// A minibatch's terms and gradient norm, to cross the ABI.
    pub fn of(terms: &LossTerms, grad_norm: f64) -> Self {
        AbiTerms {
            policy_loss: terms.policy_loss,
            value_loss: terms.value_loss,
            entropy: terms.entropy,
            approx_kl: terms.approx_kl,
            old_approx_kl: terms.old_approx_kl,
            clip_frac: terms.clip_frac,
            grad_norm,
        }
    }

    /// Back to the terms and the gradient norm.
    pub fn terms(&self) -> (LossTerms, f64) {
        let terms = LossTerms {
            loss: 0.0,
            policy_loss: self.policy_loss,
            value_loss: self.value_loss,
            entropy: self.entropy,
            approx_kl: self.approx_kl,
            old_approx_kl: self.old_approx_kl,
            clip_frac: self.clip_frac,
        };
        (terms, self.grad_norm)
    }
}

/// What [`GradientEngine::non_finite_state`] names, by number.
pub const NON_FINITE_NAMES: [&str; 3] = [
    "the weights",
    "Adam's first moments",
    "Adam's second moments",
];

type Engine = *mut c_void;
type AgentHandle = *mut c_void;

/// The plugin's functions (see the module documentation, and
/// [`crate::engine::agent`] for the `agent_` ones).
pub(crate) struct Plugin {
    path: PathBuf,
    cuda_devices: unsafe extern "C" fn() -> i64,
    set_threads: unsafe extern "C" fn(i64),
    last_error: unsafe extern "C" fn(*mut u8, usize) -> usize,
    new: unsafe extern "C" fn(*const AbiSpec, u64, f64, f64, i64) -> Engine,
    free: unsafe extern "C" fn(Engine),
    len: unsafe extern "C" fn(Engine) -> usize,
    weights: unsafe extern "C" fn(Engine, *mut f32, usize) -> i32,
    optimizer: unsafe extern "C" fn(Engine, *mut f32, *mut f32, usize, *mut u64) -> i32,
    load: unsafe extern "C" fn(Engine, *const f32, *const f32, *const f32, usize, u64) -> i32,
    save: unsafe extern "C" fn(Engine) -> i32,
    restore: unsafe extern "C" fn(Engine) -> i32,
    begin_update: unsafe extern "C" fn(Engine, *const AbiBatch) -> i32,
    backward: unsafe extern "C" fn(
        Engine,
        *const AbiBatch,
        *const usize,
        usize,
        *const AbiLoss,
        *mut AbiTerms,
    ) -> i32,
    step: unsafe extern "C" fn(Engine, f64) -> i32,
    gradient: unsafe extern "C" fn(Engine, *mut f32, usize, u32) -> i32,
    clip: unsafe extern "C" fn(Engine, f64, *mut f64) -> i32,
    non_finite: unsafe extern "C" fn(Engine, *mut i32, *mut f64) -> i32,
    pub(crate) agent_new: unsafe extern "C" fn(*const u8, usize, i64) -> AgentHandle,
    pub(crate) agent_free: unsafe extern "C" fn(AgentHandle),
    pub(crate) agent_describe: unsafe extern "C" fn(AgentHandle, *mut u8, usize) -> usize,
    pub(crate) agent_get: unsafe extern "C" fn(AgentHandle, usize, *mut f32, usize) -> i32,
    pub(crate) agent_set: unsafe extern "C" fn(AgentHandle, usize, *const f32, usize) -> i32,
    pub(crate) agent_get_counters: unsafe extern "C" fn(AgentHandle, *mut u64, usize) -> i32,
    pub(crate) agent_set_counters: unsafe extern "C" fn(AgentHandle, *const u64, usize) -> i32,
    pub(crate) agent_update: unsafe extern "C" fn(
        AgentHandle,
        *const crate::engine::agent_abi::AbiTransitions,
        *mut f64,
        usize,
    ) -> i32,
    _library: libloading::Library,
}

/// Where the plugin is looked for, in order.
pub fn plugin_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("FERRORL_TORCH_PLUGIN") {
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
    // SAFETY: the plugin is our own library, built from this source; its
    // initialisers are libtorch's.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    macro_rules! symbol {
        ($name:literal) => {
            // SAFETY: the symbol has the type the ABI (checked below) gives it.
            *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("{}: {e}", $name))?
        };
    }
    let abi: unsafe extern "C" fn() -> u32 = symbol!("ferrorl_torch_abi");
    // SAFETY: a function without arguments.
    let found = unsafe { abi() };
    if found != ABI_VERSION {
        return Err(format!(
            "it is of ABI version {found}, this program needs {ABI_VERSION}: rebuild both from the same source"
        ));
    }
    let version: unsafe extern "C" fn(*mut u8, usize) -> usize = symbol!("ferrorl_torch_version");
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
        path: path.to_path_buf(),
        cuda_devices: symbol!("ferrorl_torch_cuda_devices"),
        set_threads: symbol!("ferrorl_torch_set_threads"),
        last_error: symbol!("ferrorl_torch_last_error"),
        new: symbol!("ferrorl_torch_new"),
        free: symbol!("ferrorl_torch_free"),
        len: symbol!("ferrorl_torch_len"),
        weights: symbol!("ferrorl_torch_weights"),
        optimizer: symbol!("ferrorl_torch_optimizer"),
        load: symbol!("ferrorl_torch_load"),
        save: symbol!("ferrorl_torch_save"),
        restore: symbol!("ferrorl_torch_restore"),
        begin_update: symbol!("ferrorl_torch_begin_update"),
        backward: symbol!("ferrorl_torch_backward"),
        step: symbol!("ferrorl_torch_step"),
        gradient: symbol!("ferrorl_torch_gradient"),
        clip: symbol!("ferrorl_torch_clip"),
        non_finite: symbol!("ferrorl_torch_non_finite"),
        agent_new: symbol!("ferrorl_torch_agent_new"),
        agent_free: symbol!("ferrorl_torch_agent_free"),
        agent_describe: symbol!("ferrorl_torch_agent_describe"),
        agent_get: symbol!("ferrorl_torch_agent_get"),
        agent_set: symbol!("ferrorl_torch_agent_set"),
        agent_get_counters: symbol!("ferrorl_torch_agent_get_counters"),
        agent_set_counters: symbol!("ferrorl_torch_agent_set_counters"),
        agent_update: symbol!("ferrorl_torch_agent_update"),
        _library: library,
    })
}

static PLUGIN: OnceLock<Result<Plugin, String>> = OnceLock::new();

/// The plugin, opened on first use (and then for the life of the process).
fn plugin() -> Result<&'static Plugin, String> {
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
                    "the libtorch engine ({PLUGIN_FILE}) is not built: looked in {}; build it with `cargo build --release -p rl-torch` (scripts/train does), or set FERRORL_TORCH_PLUGIN to its path",
                    looked.join(", ")
                )
            } else {
                format!("cannot load the libtorch engine: {}", tried.join("; "))
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Whether the plugin was loaded in this process (for tests and checks).
pub fn loaded_from() -> Option<PathBuf> {
    PLUGIN.get()?.as_ref().ok().map(|p| p.path.clone())
}

/// How many CUDA devices libtorch sees (loads the plugin).
pub fn cuda_devices() -> Result<usize, String> {
    let p = plugin()?;
    // SAFETY: a function without pointer arguments.
    Ok(unsafe { (p.cuda_devices)() }.max(0) as usize)
}

/// Sets libtorch's intra-op threads, if the plugin is loaded (it is not
/// loaded for that alone).
pub fn set_threads(threads: usize) {
    if let Some(Ok(p)) = PLUGIN.get() {
        // SAFETY: a function without pointer arguments.
        unsafe { (p.set_threads)(threads.max(1) as i64) }
    }
}

/// The plugin, opened on first use, for [`crate::engine::agent`].
pub(crate) fn plugin_handle() -> Result<&'static Plugin, String> {
    plugin()
}

/// This thread's last error in the plugin.
pub(crate) fn last_error_of(p: &Plugin) -> String {
    last_error(p)
}

fn last_error(p: &Plugin) -> String {
    let mut buf = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { (p.last_error)(buf.as_mut_ptr(), buf.len()) }.min(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The engine, computing in the plugin.
pub struct TorchEngine {
    plugin: &'static Plugin,
    engine: Engine,
    device: Device,
    len: usize,
}

// SAFETY: the engine handle is only used through `&mut self` or `&self`
// from one thread at a time, like the tch tensors it holds.
unsafe impl Send for TorchEngine {}

impl TorchEngine {
    /// CleanRL's initialisation drawn from `seed` (identical to the host
    /// engine's), on `device`.
    pub fn new(
        spec: &PolicySpec,
        seed: u64,
        init_log_std: f64,
        adam_eps: f64,
        device: Device,
    ) -> Result<Self, String> {
        let plugin = plugin()?;
        let abi = AbiSpec::of(spec);
        // SAFETY: `abi` borrows `spec`, alive for the call.
        let engine = unsafe { (plugin.new)(&abi, seed, init_log_std, adam_eps, device.to_abi()) };
        if engine.is_null() {
            return Err(last_error(plugin));
        }
        // SAFETY: a live engine.
        let len = unsafe { (plugin.len)(engine) };
        Ok(TorchEngine {
            plugin,
            engine,
            device,
            len,
        })
    }

    /// A failed call: libtorch raised (a CUDA error, say). As when tch
    /// panics, the learner stops with the message.
    fn check(&self, code: i32, what: &str) {
        if code != 0 {
            panic!("libtorch engine: {what}: {}", last_error(self.plugin));
        }
    }
}

impl Drop for TorchEngine {
    fn drop(&mut self) {
        // SAFETY: a live engine, freed once.
        unsafe { (self.plugin.free)(self.engine) }
    }
}

impl GradientEngine for TorchEngine {
    fn backend(&self) -> Backend {
        Backend::Torch(self.device)
    }

    fn weights(&self) -> Cow<'_, [f32]> {
        let mut out = vec![0.0_f32; self.len];
        // SAFETY: `out` holds `len` values.
        let code = unsafe { (self.plugin.weights)(self.engine, out.as_mut_ptr(), out.len()) };
        self.check(code, "reading the weights");
        Cow::Owned(out)
    }

    fn optimizer_state(&self) -> OptimizerState {
        let mut state = OptimizerState {
            exp_avg: vec![0.0; self.len],
            exp_avg_sq: vec![0.0; self.len],
            step: 0,
        };
        // SAFETY: both buffers hold `len` values.
        let code = unsafe {
            (self.plugin.optimizer)(
                self.engine,
                state.exp_avg.as_mut_ptr(),
                state.exp_avg_sq.as_mut_ptr(),
                self.len,
                &mut state.step,
            )
        };
        self.check(code, "reading Adam's state");
        state
    }

    fn load(&mut self, weights: &[f32], optimizer: &OptimizerState) {
        assert!(
            weights.len() == self.len
                && optimizer.exp_avg.len() == self.len
                && optimizer.exp_avg_sq.len() == self.len,
            "the caller checks the lengths"
        );
        // SAFETY: all three hold `len` values.
        let code = unsafe {
            (self.plugin.load)(
                self.engine,
                weights.as_ptr(),
                optimizer.exp_avg.as_ptr(),
                optimizer.exp_avg_sq.as_ptr(),
                self.len,
                optimizer.step,
            )
        };
        self.check(code, "loading a state");
    }

    fn save(&mut self) {
        // SAFETY: a live engine.
        let code = unsafe { (self.plugin.save)(self.engine) };
        self.check(code, "saving the state");
    }

    fn restore(&mut self) {
        // SAFETY: a live engine.
        let code = unsafe { (self.plugin.restore)(self.engine) };
        self.check(code, "restoring the state");
    }

    fn begin_update(&mut self, batch: &Batch<'_>) {
        let abi = AbiBatch::of(batch);
        // SAFETY: `abi` borrows `batch`, alive for the call.
        let code = unsafe { (self.plugin.begin_update)(self.engine, &abi) };
        self.check(code, "copying the batch to the device");
    }

    fn backward(
        &mut self,
        batch: &Batch<'_>,
        rows: &[usize],
        config: &PpoConfig,
        clip_coef: f64,
    ) -> (LossTerms, f64) {
        let abi = AbiBatch::of(batch);
        let loss = AbiLoss::of(config, clip_coef);
        let mut out = AbiTerms::default();
        // SAFETY: every pointer borrows a value alive for the call.
        let code = unsafe {
            (self.plugin.backward)(
                self.engine,
                &abi,
                rows.as_ptr(),
                rows.len(),
                &loss,
                &mut out,
            )
        };
        self.check(code, "computing a minibatch's gradient");
        out.terms()
    }

    fn exchange_gradient(
        &mut self,
        f: &mut dyn FnMut(&mut [f32]) -> Result<bool, ExchangeError>,
    ) -> Result<bool, ExchangeError> {
        let mut values = vec![0.0_f32; self.len];
        // SAFETY: `values` holds the engine's parameter count.
        let code =
            unsafe { (self.plugin.gradient)(self.engine, values.as_mut_ptr(), values.len(), 0) };
        self.check(code, "reading the gradient");
        let answer = f(&mut values)?;
        // SAFETY: as above.
        let code =
            unsafe { (self.plugin.gradient)(self.engine, values.as_mut_ptr(), values.len(), 1) };
        self.check(code, "writing the averaged gradient");
        Ok(answer)
    }

    fn clip_gradient(&mut self, max_norm: f64) -> f64 {
        let mut norm = f64::NAN;
        // SAFETY: a live engine, `norm` valid.
        let code = unsafe { (self.plugin.clip)(self.engine, max_norm, &mut norm) };
        self.check(code, "clipping the gradient");
        norm
    }

    fn step(&mut self, lr: f64) {
        // SAFETY: a live engine.
        let code = unsafe { (self.plugin.step)(self.engine, lr) };
        self.check(code, "the optimizer step");
    }

    fn non_finite_state(&self) -> Option<(&'static str, f64)> {
        let (mut which, mut value) = (-1_i32, 0.0_f64);
        // SAFETY: both outputs are valid.
        let code = unsafe { (self.plugin.non_finite)(self.engine, &mut which, &mut value) };
        self.check(code, "checking the state");
        usize::try_from(which)
            .ok()
            .and_then(|i| NON_FINITE_NAMES.get(i))
            .map(|name| (*name, value))
    }
}
