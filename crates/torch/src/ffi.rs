//! The plugin's C ABI (see `rl_algo::engine::libtorch` for the list and
//! the loader). Every function catches panics (libtorch errors reach Rust
//! as panics in tch) and reports them through `ferrorl_torch_last_error`;
//! none unwinds into the caller.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rl_algo::engine::gradient::Device;
use rl_algo::engine::gradient::{GradientEngine, OptimizerState};
use rl_algo::engine::libtorch::{
    AbiBatch, AbiLoss, AbiSpec, AbiTerms, ABI_VERSION, NON_FINITE_NAMES,
};

use crate::engine::NativeEngine;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_error(message: String) {
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "libtorch raised an error".to_string())
}

/// Runs `f`, turning a panic into -1 and the thread's last error.
fn guarded(f: impl FnOnce() -> Result<(), String>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            set_error(message);
            -1
        }
        Err(payload) => {
            set_error(panic_message(payload));
            -1
        }
    }
}

/// Copies `text` into `buf` (at most `cap` bytes); returns its length.
///
/// # Safety
/// `buf` must be valid for `cap` bytes.
unsafe fn copy_out(text: &str, buf: *mut u8, cap: usize) -> usize {
    let n = text.len().min(cap);
    if n > 0 {
        // SAFETY: the caller's contract; `text` has at least `n` bytes.
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf, n) };
    }
    n
}

/// # Safety
/// `engine` must come from [`ferrorl_torch_new`] and not be freed.
unsafe fn engine<'a>(engine: *mut NativeEngine) -> &'a mut NativeEngine {
    // SAFETY: the caller's contract.
    unsafe { &mut *engine }
}

#[no_mangle]
pub extern "C" fn ferrorl_torch_abi() -> u32 {
    ABI_VERSION
}

/// # Safety
/// `buf` must be valid for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_version(buf: *mut u8, cap: usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe { copy_out(env!("CARGO_PKG_VERSION"), buf, cap) }
}

/// # Safety
/// `buf` must be valid for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_last_error(buf: *mut u8, cap: usize) -> usize {
    // SAFETY: the caller's contract.
    LAST_ERROR.with(|e| unsafe { copy_out(&e.borrow(), buf, cap) })
}

#[no_mangle]
pub extern "C" fn ferrorl_torch_cuda_devices() -> i64 {
    catch_unwind(tch::Cuda::device_count).unwrap_or(0)
}

#[no_mangle]
pub extern "C" fn ferrorl_torch_set_threads(threads: i64) {
    let _ = catch_unwind(|| tch::set_num_threads(threads.max(1) as i32));
}

/// # Safety
/// `spec` must point to a valid [`AbiSpec`] whose arrays are valid.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_new(
    spec: *const AbiSpec,
    seed: u64,
    init_log_std: f64,
    adam_eps: f64,
    device: i64,
) -> *mut NativeEngine {
    let made = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller's contract.
        let spec = unsafe { (*spec).to_spec() }.ok_or("an unknown action head or activation")?;
        let device = match Device::from_abi(device) {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(i) => tch::Device::Cuda(i),
        };
        Ok::<_, &str>(Box::new(NativeEngine::new(
            spec,
            seed,
            init_log_std,
            adam_eps,
            device,
        )))
    }));
    match made {
        Ok(Ok(engine)) => Box::into_raw(engine),
        Ok(Err(message)) => {
            set_error(message.to_string());
            std::ptr::null_mut()
        }
        Err(payload) => {
            set_error(panic_message(payload));
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `engine` must come from [`ferrorl_torch_new`]; it is freed once.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_free(engine: *mut NativeEngine) {
    if !engine.is_null() {
        // SAFETY: the caller's contract.
        let boxed = unsafe { Box::from_raw(engine) };
        let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
    }
}

/// # Safety
/// `e` must be a live engine.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_len(e: *mut NativeEngine) -> usize {
    // SAFETY: the caller's contract.
    let e = unsafe { engine(e) };
    catch_unwind(AssertUnwindSafe(|| e.weights().len())).unwrap_or(0)
}

/// # Safety
/// `e` must be a live engine and `out` valid for `len` values.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_weights(
    e: *mut NativeEngine,
    out: *mut f32,
    len: usize,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (e, out) = unsafe { (engine(e), std::slice::from_raw_parts_mut(out, len)) };
        let w = e.weights();
        if w.len() != len {
            return Err(format!("{} weights, asked for {len}", w.len()));
        }
        out.copy_from_slice(&w);
        Ok(())
    })
}

/// # Safety
/// `e` must be a live engine, `m` and `v` valid for `len` values.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_optimizer(
    e: *mut NativeEngine,
    m: *mut f32,
    v: *mut f32,
    len: usize,
    step: *mut u64,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let e = unsafe { engine(e) };
        let state = e.optimizer_state();
        if state.exp_avg.len() != len {
            return Err(format!("{} moments, asked for {len}", state.exp_avg.len()));
        }
        // SAFETY: the caller's contract.
        unsafe {
            std::slice::from_raw_parts_mut(m, len).copy_from_slice(&state.exp_avg);
            std::slice::from_raw_parts_mut(v, len).copy_from_slice(&state.exp_avg_sq);
            *step = state.step;
        }
        Ok(())
    })
}

/// # Safety
/// `e` must be a live engine, `w`, `m` and `v` valid for `len` values.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_load(
    e: *mut NativeEngine,
    w: *const f32,
    m: *const f32,
    v: *const f32,
    len: usize,
    step: u64,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (e, w, m, v) = unsafe {
            (
                engine(e),
                std::slice::from_raw_parts(w, len),
                std::slice::from_raw_parts(m, len),
                std::slice::from_raw_parts(v, len),
            )
        };
        e.load(
            w,
            &OptimizerState {
                exp_avg: m.to_vec(),
                exp_avg_sq: v.to_vec(),
                step,
            },
        );
        Ok(())
    })
}

/// # Safety
/// `e` must be a live engine.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_save(e: *mut NativeEngine) -> i32 {
    // SAFETY: the caller's contract.
    guarded(|| {
        unsafe { engine(e) }.save();
        Ok(())
    })
}

/// # Safety
/// `e` must be a live engine.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_restore(e: *mut NativeEngine) -> i32 {
    // SAFETY: the caller's contract.
    guarded(|| {
        unsafe { engine(e) }.restore();
        Ok(())
    })
}

/// # Safety
/// `e` must be a live engine and `batch` a valid batch.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_begin_update(
    e: *mut NativeEngine,
    batch: *const AbiBatch,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (e, batch) = unsafe { (engine(e), (*batch).to_batch()) };
        e.begin_update(&batch);
        Ok(())
    })
}

/// # Safety
/// `e` must be a live engine, `batch` a valid batch, `rows` valid for `n`
/// indices below its row count, `loss` and `out` valid.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_backward(
    e: *mut NativeEngine,
    batch: *const AbiBatch,
    rows: *const usize,
    n: usize,
    loss: *const AbiLoss,
    out: *mut AbiTerms,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (e, batch, rows, loss) = unsafe {
            (
                engine(e),
                (*batch).to_batch(),
                std::slice::from_raw_parts(rows, n),
                &*loss,
            )
        };
        if let Some(bad) = rows.iter().find(|r| **r >= batch.log_probs.len()) {
            return Err(format!("row {bad} of a batch of {}", batch.log_probs.len()));
        }
        let (config, clip_coef) = loss.to_config();
        let (terms, grad_norm) = e.backward(&batch, rows, &config, clip_coef);
        // SAFETY: the caller's contract.
        unsafe {
            *out = AbiTerms::of(&terms, grad_norm);
        }
        Ok(())
    })
}

/// The gradient of the last backward, flat: copied into `values` (`set`
/// 0) or replaced by them (`set` 1), for data-parallel averaging.
///
/// # Safety
/// `e` must be a live engine; `values` valid for `len` floats.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_gradient(
    e: *mut NativeEngine,
    values: *mut f32,
    len: usize,
    set: u32,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (e, values) = unsafe { (engine(e), std::slice::from_raw_parts_mut(values, len)) };
        let mut wrong = None;
        e.exchange_gradient(&mut |grad| {
            if grad.len() != values.len() {
                wrong = Some(grad.len());
            } else if set == 0 {
                values.copy_from_slice(grad);
            } else {
                grad.copy_from_slice(values);
            }
            Ok(false)
        })
        .map_err(|e| e.to_string())?;
        match wrong {
            Some(n) => Err(format!("the gradient holds {n} values, given {len}")),
            None => Ok(()),
        }
    })
}

/// `clip_grad_norm_` on the gradient of the last backward; its norm
/// before clipping in `norm`.
///
/// # Safety
/// `e` must be a live engine; `norm` valid.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_clip(
    e: *mut NativeEngine,
    max_norm: f64,
    norm: *mut f64,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        unsafe {
            *norm = engine(e).clip_gradient(max_norm);
        }
        Ok(())
    })
}

/// # Safety
/// `e` must be a live engine.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_step(e: *mut NativeEngine, lr: f64) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        unsafe { engine(e) }.step(lr);
        Ok(())
    })
}

/// # Safety
/// `e` must be a live engine; `which` and `value` valid.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_non_finite(
    e: *mut NativeEngine,
    which: *mut i32,
    value: *mut f64,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let found = unsafe { engine(e) }.non_finite_state();
        let (index, v) = match found {
            Some((name, v)) => (
                NON_FINITE_NAMES
                    .iter()
                    .position(|n| *n == name)
                    .map_or(-1, |i| i as i32),
                v,
            ),
            None => (-1, 0.0),
        };
        // SAFETY: the caller's contract.
        unsafe {
            *which = index;
            *value = v;
        }
        Ok(())
    })
}

/// An off-policy agent and where its tensors live.
pub struct AgentHandle {
    agent: crate::agents::Agent,
    device: tch::Device,
    action_size: usize,
}

/// # Safety
/// `agent` must come from [`ferrorl_torch_agent_new`] and not be freed.
unsafe fn agent<'a>(agent: *mut AgentHandle) -> &'a mut AgentHandle {
    // SAFETY: the caller's contract.
    unsafe { &mut *agent }
}

/// # Safety
/// `spec` must be valid for `len` bytes (an `AgentSpec` as JSON).
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_agent_new(
    spec: *const u8,
    len: usize,
    device: i64,
) -> *mut AgentHandle {
    let made = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller's contract.
        let bytes = unsafe { std::slice::from_raw_parts(spec, len) };
        let spec: rl_algo::engine::agent::AgentSpec =
            serde_json::from_slice(bytes).map_err(|e| format!("a malformed agent spec: {e}"))?;
        let device = match Device::from_abi(device) {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(i) => tch::Device::Cuda(i),
        };
        Ok::<_, String>(Box::new(AgentHandle {
            agent: crate::agents::Agent::new(&spec, device),
            device,
            action_size: spec.action_size,
        }))
    }));
    match made {
        Ok(Ok(handle)) => Box::into_raw(handle),
        Ok(Err(message)) => {
            set_error(message);
            std::ptr::null_mut()
        }
        Err(payload) => {
            set_error(panic_message(payload));
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `a` must come from [`ferrorl_torch_agent_new`]; it is freed once.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_agent_free(a: *mut AgentHandle) {
    if !a.is_null() {
        // SAFETY: the caller's contract.
        let boxed = unsafe { Box::from_raw(a) };
        let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
    }
}

/// # Safety
/// `a` must be a live agent and `buf` valid for `cap` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_agent_describe(
    a: *mut AgentHandle,
    buf: *mut u8,
    cap: usize,
) -> usize {
    // SAFETY: the caller's contract.
    let a = unsafe { agent(a) };
    let text = catch_unwind(AssertUnwindSafe(|| {
        serde_json::to_string(&a.agent.describe()).unwrap_or_default()
    }))
    .unwrap_or_default();
    // SAFETY: the caller's contract.
    unsafe { copy_out(&text, buf, cap) }
}

/// # Safety
/// `a` must be a live agent and `out` valid for `len` values.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_agent_get(
    a: *mut AgentHandle,
    index: usize,
    out: *mut f32,
    len: usize,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let a = unsafe { agent(a) };
        let values = a.agent.get(index)?;
        if values.len() != len {
            return Err(format!("{} values, asked for {len}", values.len()));
        }
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(out, len) }.copy_from_slice(&values);
        Ok(())
    })
}

/// # Safety
/// `a` must be a live agent and `data` valid for `len` values.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_agent_set(
    a: *mut AgentHandle,
    index: usize,
    data: *const f32,
    len: usize,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (a, values) = unsafe { (agent(a), std::slice::from_raw_parts(data, len)) };
        a.agent.set(index, values)
    })
}

/// # Safety
/// `a` must be a live agent and `out` valid for `n` values.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_agent_get_counters(
    a: *mut AgentHandle,
    out: *mut u64,
    n: usize,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let a = unsafe { agent(a) };
        let values = a.agent.counters();
        if values.len() != n {
            return Err(format!("{} counters, asked for {n}", values.len()));
        }
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(out, n) }.copy_from_slice(&values);
        Ok(())
    })
}

/// # Safety
/// `a` must be a live agent and `data` valid for `n` values.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_agent_set_counters(
    a: *mut AgentHandle,
    data: *const u64,
    n: usize,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (a, values) = unsafe { (agent(a), std::slice::from_raw_parts(data, n)) };
        a.agent.set_counters(values)
    })
}

/// # Safety
/// `a` must be a live agent, `t` a valid [`AbiTransitions`] whose arrays
/// hold the sizes it gives, and `stats` valid for `n` values.
#[no_mangle]
pub unsafe extern "C" fn ferrorl_torch_agent_update(
    a: *mut AgentHandle,
    t: *const rl_algo::engine::agent::AbiTransitions,
    stats: *mut f64,
    n: usize,
) -> i32 {
    guarded(|| {
        // SAFETY: the caller's contract.
        let (a, t) = unsafe { (agent(a), &*t) };
        let b = t.batch_size;
        let od_len = {
            // obs and next_obs have the same length; the agent knows
            // obs_dim from its first layer, the batch from `b`.
            let first = a.agent.obs_dim();
            b * first
        };
        let action_len = b * a.agent.action_values(a.action_size);
        // SAFETY: the caller's contract (sizes from the batch and the spec).
        let slice = |p: *const f32, len: usize| unsafe { std::slice::from_raw_parts(p, len) };
        let batch = crate::agents::Batch::new(
            slice(t.obs, od_len),
            slice(t.actions, action_len),
            slice(t.rewards, b),
            slice(t.next_obs, od_len),
            slice(t.dones, b),
            slice(t.noise, t.noise_len),
            b,
            a.action_size,
            a.device,
        );
        let values = a
            .agent
            .update(&batch, t.update_actor != 0, t.update_targets != 0)?;
        if values.len() != n {
            return Err(format!("{} statistics, asked for {n}", values.len()));
        }
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(stats, n) }.copy_from_slice(&values);
        Ok(())
    })
}
