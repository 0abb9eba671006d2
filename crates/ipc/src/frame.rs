//! A rollout as bytes: one fixed 64-byte typed header, then one flat payload
//! of the rollout's arrays in their in-memory layout. No element-wise
//! serialisation: encoding is one copy per array.
//!
//! ```text
//! header (little-endian)
//!   0  magic u32 "FRL2"      4  kind u32 (1 = rollout)
//!   8  worker u32           12  generation u32
//!  16  weights_version u64
//!  24  num_steps u32        28  num_envs u32
//!  32  obs_dim u32          36  action_dim u32
//!  40  num_episodes u32     44  flags u32 (bit 0: final_obs present)
//!  48  payload_len u64      56  snapshot_len u64
//! payload, T = num_steps, E = num_envs
//!   obs f32[T*E*obs_dim] | actions f32[T*E*action_dim] | log_probs f32[T*E]
//!   | values f32[T*E] | rewards f32[T*E] | final_values f32[T*E]
//!   | last_obs f32[E*obs_dim] | last_values f32[E]
//!   | final_obs f32[T*E*obs_dim] (only with flag bit 0: off-policy heads)
//!   | terminated u8[T*E] | truncated u8[T*E]
//!   | episodes (return f64, length u32, step u32, env u32)[num_episodes]
//! then, in the slot, snapshot_len bytes: the worker's collector snapshot
//! after this rollout (its envs and sampling streams; see
//! `rl_policy::RolloutCollector::snapshot`), which checkpoints keep
//! ```
//!
//! The header travels as a message on the worker's socket; the payload sits
//! in the worker's [`crate::RolloutSlot`] (shared memory). Decoding checks the
//! magic, the kind, that the sizes are plausible and agree with the payload
//! length, that every float is finite and every flag is 0 or 1: a malformed
//! message is an error, never a panic or an allocation the header alone asked
//! for. Values are checked after they are copied into the reader's own
//! memory, so a writer that changes the shared bytes meanwhile cannot slip
//! anything past the checks.

use rl_policy::{EpisodeRecord, Rollout};
use thiserror::Error;

const MAGIC: u32 = u32::from_le_bytes(*b"FRL2");
const KIND_ROLLOUT: u32 = 1;
/// Bytes of one episode record in the payload.
const EPISODE_BYTES: usize = 20;
/// The largest payload a reader accepts (1 GiB).
pub const MAX_PAYLOAD: u64 = 1 << 30;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("malformed rollout message: {0}")]
    Malformed(String),
}

fn malformed(message: impl Into<String>) -> FrameError {
    FrameError::Malformed(message.into())
}

/// Who sent a rollout, with which weights, and its sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutHeader {
    pub worker: u32,
    /// Which incarnation of the worker (0 for the first process, +1 per
    /// restart).
    pub generation: u32,
    pub weights_version: u64,
    pub num_steps: u32,
    pub num_envs: u32,
    pub obs_dim: u32,
    pub action_dim: u32,
    pub num_episodes: u32,
    /// Whether the payload holds final observations (off-policy
    /// collectors; see `Rollout::final_obs`).
    pub final_obs: bool,
    pub payload_len: u64,
    /// Bytes of the collector snapshot that follow the payload in the slot
    /// (0: none).
    pub snapshot_len: u64,
}

/// Bytes of a payload with these sizes, if it can exist at all.
pub fn payload_len(
    t: usize,
    e: usize,
    od: usize,
    ad: usize,
    episodes: usize,
    final_obs: bool,
) -> Option<u64> {
    let te = t.checked_mul(e)?;
    let final_floats = if final_obs { te.checked_mul(od)? } else { 0 };
    let floats = te
        .checked_mul(od)?
        .checked_add(te.checked_mul(ad)?)?
        .checked_add(te.checked_mul(4)?)?
        .checked_add(e.checked_mul(od)?)?
        .checked_add(e)?
        .checked_add(final_floats)?;
    let bytes = floats
        .checked_mul(4)?
        .checked_add(te.checked_mul(2)?)?
        .checked_add(episodes.checked_mul(EPISODE_BYTES)?)?;
    u64::try_from(bytes).ok()
}

/// The largest payload a rollout of these sizes can have (every env ending
/// an episode at every step, final observations kept).
pub fn max_payload_len(t: usize, e: usize, od: usize, ad: usize) -> Option<u64> {
    payload_len(t, e, od, ad, t.checked_mul(e)?, true)
}

fn u32_at(h: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

fn u64_at(h: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[at..at + 8]);
    u64::from_le_bytes(b)
}

fn to_u32(value: usize, what: &str) -> Result<u32, FrameError> {
    u32::try_from(value).map_err(|_| malformed(format!("{what} = {value} does not fit a header")))
}

impl RolloutHeader {
    pub const LEN: usize = 64;

    /// The header of `r`, after checking that its arrays match its sizes.
    pub fn for_rollout(
        worker: u32,
        generation: u32,
        weights_version: u64,
        r: &Rollout,
    ) -> Result<Self, FrameError> {
        let (t, e, od, ad) = (r.num_steps, r.num_envs, r.obs_dim, r.action_dim);
        let te = t * e;
        let consistent = r.obs.len() == te * od
            && r.actions.len() == te * ad
            && [&r.log_probs, &r.values, &r.rewards, &r.final_values]
                .iter()
                .all(|v| v.len() == te)
            && r.terminated.len() == te
            && r.truncated.len() == te
            && r.last_obs.len() == e * od
            && r.last_values.len() == e
            && (r.final_obs.is_empty() || r.final_obs.len() == te * od);
        if !consistent {
            return Err(malformed("the rollout's arrays do not match its sizes"));
        }
        let final_obs = !r.final_obs.is_empty();
        let payload_len = payload_len(t, e, od, ad, r.episodes.len(), final_obs)
            .filter(|l| *l <= MAX_PAYLOAD)
            .ok_or_else(|| malformed("the rollout is larger than a message may be"))?;
        Ok(RolloutHeader {
            worker,
            generation,
            weights_version,
            num_steps: to_u32(t, "num_steps")?,
            num_envs: to_u32(e, "num_envs")?,
            obs_dim: to_u32(od, "obs_dim")?,
            action_dim: to_u32(ad, "action_dim")?,
            num_episodes: to_u32(r.episodes.len(), "num_episodes")?,
            final_obs,
            payload_len,
            snapshot_len: 0,
        })
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut h = [0u8; Self::LEN];
        h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        h[4..8].copy_from_slice(&KIND_ROLLOUT.to_le_bytes());
        h[8..12].copy_from_slice(&self.worker.to_le_bytes());
        h[12..16].copy_from_slice(&self.generation.to_le_bytes());
        h[16..24].copy_from_slice(&self.weights_version.to_le_bytes());
        for (at, v) in [
            (24, self.num_steps),
            (28, self.num_envs),
            (32, self.obs_dim),
            (36, self.action_dim),
            (40, self.num_episodes),
        ] {
            h[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        h[44..48].copy_from_slice(&u32::from(self.final_obs).to_le_bytes());
        h[48..56].copy_from_slice(&self.payload_len.to_le_bytes());
        h[56..64].copy_from_slice(&self.snapshot_len.to_le_bytes());
        h
    }

    /// Parses and checks a header: magic, kind, sizes that agree with the
    /// payload length, and the payload limit.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        if bytes.len() != Self::LEN {
            return Err(malformed(format!(
                "a header is {} bytes, got {}",
                Self::LEN,
                bytes.len()
            )));
        }
        if u32_at(bytes, 0) != MAGIC {
            return Err(malformed("bad magic: not a rollout header"));
        }
        if u32_at(bytes, 4) != KIND_ROLLOUT {
            return Err(malformed(format!(
                "unknown message kind {}",
                u32_at(bytes, 4)
            )));
        }
        let flags = u32_at(bytes, 44);
        if flags > 1 {
            return Err(malformed(format!("unknown flags {flags:#x}")));
        }
        let header = RolloutHeader {
            final_obs: flags == 1,
            worker: u32_at(bytes, 8),
            generation: u32_at(bytes, 12),
            weights_version: u64_at(bytes, 16),
            num_steps: u32_at(bytes, 24),
            num_envs: u32_at(bytes, 28),
            obs_dim: u32_at(bytes, 32),
            action_dim: u32_at(bytes, 36),
            num_episodes: u32_at(bytes, 40),
            payload_len: u64_at(bytes, 48),
            snapshot_len: u64_at(bytes, 56),
        };
        header.check()?;
        Ok(header)
    }

    fn sizes(&self) -> [usize; 5] {
        [
            self.num_steps,
            self.num_envs,
            self.obs_dim,
            self.action_dim,
            self.num_episodes,
        ]
        .map(|v| v as usize)
    }

    fn check(&self) -> Result<(), FrameError> {
        let [t, e, od, ad, episodes] = self.sizes();
        let expected = payload_len(t, e, od, ad, episodes, self.final_obs)
            .ok_or_else(|| malformed("sizes overflow"))?;
        if self.payload_len != expected {
            return Err(malformed(format!(
                "payload of {} bytes, but the sizes (T={t}, E={e}, obs {od}, action {ad}, {episodes} episodes) need {expected}",
                self.payload_len
            )));
        }
        if self.payload_len > MAX_PAYLOAD || self.snapshot_len > MAX_PAYLOAD {
            return Err(malformed(format!(
                "payload of {} bytes and snapshot of {} exceed the limit of {MAX_PAYLOAD}",
                self.payload_len, self.snapshot_len
            )));
        }
        if episodes > t * e {
            return Err(malformed(format!(
                "{episodes} episodes cannot end in {t} steps of {e} envs"
            )));
        }
        Ok(())
    }
}

/// The rollout's float arrays in payload order.
fn float_arrays(r: &Rollout) -> [&[f32]; 8] {
    [
        &r.obs,
        &r.actions,
        &r.log_probs,
        &r.values,
        &r.rewards,
        &r.final_values,
        &r.last_obs,
        &r.last_values,
    ]
}

fn float_arrays_mut(r: &mut Rollout) -> [(&mut Vec<f32>, &'static str); 8] {
    [
        (&mut r.obs, "obs"),
        (&mut r.actions, "actions"),
        (&mut r.log_probs, "log_probs"),
        (&mut r.values, "values"),
        (&mut r.rewards, "rewards"),
        (&mut r.final_values, "final_values"),
        (&mut r.last_obs, "last_obs"),
        (&mut r.last_values, "last_values"),
    ]
}

/// Where encoded bytes go: a raw destination of known length (a `Vec` or a
/// shared-memory mapping).
pub(crate) struct Sink {
    ptr: *mut u8,
    len: usize,
    at: usize,
}

impl Sink {
    /// # Safety
    /// `ptr` must be valid for writes of `len` bytes for the sink's lifetime.
    pub(crate) unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        Sink { ptr, len, at: 0 }
    }

    fn put(&mut self, bytes: &[u8]) {
        assert!(
            self.at + bytes.len() <= self.len,
            "encoder overran its sink"
        );
        // SAFETY: in bounds (checked above); the source is our own memory.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(self.at), bytes.len());
        }
        self.at += bytes.len();
    }
}

fn f32_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: any f32 is 4 initialised bytes; u8 has no alignment needs.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), values.len() * 4) }
}

/// Writes the payload of `r` (described by `header`) into `sink`.
pub(crate) fn encode_payload(r: &Rollout, header: &RolloutHeader, sink: &mut Sink) {
    debug_assert_eq!(sink.len as u64, header.payload_len);
    #[cfg(target_endian = "little")]
    for values in float_arrays(r).into_iter().chain([&r.final_obs[..]]) {
        sink.put(f32_bytes(values));
    }
    #[cfg(not(target_endian = "little"))]
    for values in float_arrays(r).into_iter().chain([&r.final_obs[..]]) {
        for v in values {
            sink.put(&v.to_le_bytes());
        }
    }
    // Flags go through a small stack buffer, a chunk at a time.
    for flags in [&r.terminated, &r.truncated] {
        let mut buf = [0u8; 256];
        for chunk in flags.chunks(buf.len()) {
            for (b, f) in buf.iter_mut().zip(chunk) {
                *b = u8::from(*f);
            }
            sink.put(&buf[..chunk.len()]);
        }
    }
    for ep in &r.episodes {
        let mut record = [0u8; EPISODE_BYTES];
        record[0..8].copy_from_slice(&ep.episode_return.to_le_bytes());
        record[8..12].copy_from_slice(&ep.length.to_le_bytes());
        record[12..16].copy_from_slice(&ep.step.to_le_bytes());
        record[16..20].copy_from_slice(&ep.env.to_le_bytes());
        sink.put(&record);
    }
    debug_assert_eq!(sink.at, sink.len);
}

/// Encodes a rollout's payload into a new buffer (for tests and benchmarks;
/// workers encode straight into their slot).
pub fn encode_payload_to_vec(r: &Rollout, header: &RolloutHeader) -> Vec<u8> {
    let mut out = vec![0u8; header.payload_len as usize];
    // SAFETY: `out` holds exactly `payload_len` bytes and outlives the sink.
    let mut sink = unsafe { Sink::new(out.as_mut_ptr(), out.len()) };
    encode_payload(r, header, &mut sink);
    out
}

/// Bytes to decode: read once each, with raw copies, because the memory
/// may be shared with a process that could still write it.
pub(crate) struct Source {
    ptr: *const u8,
    len: usize,
    at: usize,
}

impl Source {
    /// # Safety
    /// `ptr` must be valid for reads of `len` bytes for the source's
    /// lifetime (another process may change them; they are only copied).
    pub(crate) unsafe fn new(ptr: *const u8, len: usize) -> Self {
        Source { ptr, len, at: 0 }
    }

    /// Copies the next `dst.len()` bytes into `dst`.
    fn copy_to(&mut self, dst: &mut [u8]) -> Result<(), FrameError> {
        if self.at + dst.len() > self.len {
            return Err(malformed("the payload is shorter than its sizes"));
        }
        // SAFETY: in bounds (checked above); `dst` is our own memory.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(self.at), dst.as_mut_ptr(), dst.len());
        }
        self.at += dst.len();
        Ok(())
    }

    fn f32s(&mut self, n: usize, what: &str, values: &mut Vec<f32>) -> Result<(), FrameError> {
        // Every element is overwritten: no need to clear a reused vector.
        values.resize(n, 0.0);
        // SAFETY: `values` has exactly `n * 4` initialised bytes, and every
        // bit pattern is a valid f32.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), n * 4) };
        self.copy_to(bytes)?;
        #[cfg(not(target_endian = "little"))]
        for v in values.iter_mut() {
            *v = f32::from_le_bytes(v.to_ne_bytes());
        }
        // A branch-free pass the compiler vectorises; find the culprit only
        // when there is one.
        let all_finite = values.iter().fold(true, |ok, v| ok & v.is_finite());
        if all_finite {
            return Ok(());
        }
        let i = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
        Err(malformed(format!(
            "{what}[{i}] is {} (not finite)",
            values[i]
        )))
    }

    fn flags(
        &mut self,
        n: usize,
        what: &str,
        scratch: &mut Vec<u8>,
        flags: &mut Vec<bool>,
    ) -> Result<(), FrameError> {
        scratch.resize(n, 0);
        self.copy_to(scratch)?;
        if let Some(i) = scratch.iter().position(|b| *b > 1) {
            return Err(malformed(format!(
                "{what}[{i}] is {}, not 0 or 1",
                scratch[i]
            )));
        }
        flags.clear();
        flags.extend(scratch.iter().map(|b| *b == 1));
        Ok(())
    }
}

/// Reusable space for decoding.
#[derive(Debug, Default)]
pub struct DecodeScratch {
    flags: Vec<u8>,
}

/// Decodes a payload described by a checked `header` into `out` (whose
/// vectors are reused). After an error `out` holds no valid rollout.
pub(crate) fn decode_payload(
    header: &RolloutHeader,
    src: &mut Source,
    scratch: &mut DecodeScratch,
    out: &mut Rollout,
) -> Result<(), FrameError> {
    header.check()?;
    if src.len as u64 != header.payload_len {
        return Err(malformed(format!(
            "{} payload bytes for a header that says {}",
            src.len, header.payload_len
        )));
    }
    let [t, e, od, ad, episodes] = header.sizes();
    let te = t * e;
    (out.num_steps, out.num_envs, out.obs_dim, out.action_dim) = (t, e, od, ad);
    let counts = [te * od, te * ad, te, te, te, te, e * od, e];
    for ((values, what), n) in float_arrays_mut(out).into_iter().zip(counts) {
        src.f32s(n, what, values)?;
    }
    if header.final_obs {
        src.f32s(te * od, "final_obs", &mut out.final_obs)?;
    } else {
        out.final_obs.clear();
    }
    src.flags(te, "terminated", &mut scratch.flags, &mut out.terminated)?;
    src.flags(te, "truncated", &mut scratch.flags, &mut out.truncated)?;
    out.episodes.clear();
    for k in 0..episodes {
        let mut record = [0u8; EPISODE_BYTES];
        src.copy_to(&mut record)?;
        let episode_return = f64::from_le_bytes(record[0..8].try_into().unwrap_or_default());
        let [length, step, env] = [8, 12, 16].map(|at| u32_at(&record, at));
        if !episode_return.is_finite() {
            return Err(malformed(format!(
                "episode {k}: return {episode_return} is not finite"
            )));
        }
        if step as usize >= t {
            return Err(malformed(format!(
                "episode {k}: ended at step {step}, the rollout has {t}"
            )));
        }
        out.episodes.push(EpisodeRecord {
            episode_return,
            length,
            step,
            env,
        });
    }
    Ok(())
}

/// Decodes a payload held in this process's own memory.
pub fn decode_payload_from_bytes(
    header: &RolloutHeader,
    bytes: &[u8],
    scratch: &mut DecodeScratch,
    out: &mut Rollout,
) -> Result<(), FrameError> {
    // SAFETY: `bytes` is valid for its length while the source lives.
    let mut src = unsafe { Source::new(bytes.as_ptr(), bytes.len()) };
    decode_payload(header, &mut src, scratch, out)
}
