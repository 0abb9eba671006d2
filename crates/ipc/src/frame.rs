//! Rollouts on a byte stream (a pipe): one fixed 64-byte typed header, then
//! one flat payload of the rollout's arrays in their in-memory layout. No
//! element-wise serialisation: encoding is a few `extend_from_slice` calls.
//!
//! ```text
//! header (little-endian)
//!   0  magic u32 "FRL1"      4  kind u32 (1 = rollout)
//!   8  worker_id u32        12  reserved u32
//!  16  weights_version u64
//!  24  num_steps u32        28  num_envs u32
//!  32  obs_dim u32          36  action_dim u32
//!  40  num_episodes u32     44  reserved u32
//!  48  payload_len u64      56  reserved u64
//! payload, T = num_steps, E = num_envs
//!   obs f32[T*E*obs_dim] | actions f32[T*E*action_dim] | log_probs f32[T*E]
//!   | values f32[T*E] | rewards f32[T*E] | final_values f32[T*E]
//!   | last_obs f32[E*obs_dim] | last_values f32[E]
//!   | terminated u8[T*E] | truncated u8[T*E]
//!   | episodes (return f64, length u32)[num_episodes]
//! ```
//!
//! Decoding checks the magic, the kind, that the sizes are plausible and
//! agree with the payload length, that every float is finite and every flag
//! is 0 or 1: a malformed message is an error, never a panic or an
//! allocation the header alone asked for.

use std::io::{self, Read, Write};

use rl_policy::{EpisodeRecord, Rollout};
use thiserror::Error;

const MAGIC: u32 = u32::from_le_bytes(*b"FRL1");
const KIND_ROLLOUT: u32 = 1;
pub const HEADER_LEN: usize = 64;
/// The largest payload a reader accepts (1 GiB).
pub const MAX_PAYLOAD: u64 = 1 << 30;

/// Who sent a rollout, and with which weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutMeta {
    pub worker_id: u32,
    pub weights_version: u64,
}

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("pipe: {0}")]
    Io(#[from] io::Error),
    #[error("malformed rollout message: {0}")]
    Malformed(String),
}

fn malformed(message: impl Into<String>) -> FrameError {
    FrameError::Malformed(message.into())
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

fn sizes(r: &Rollout) -> [usize; 4] {
    [r.num_steps, r.num_envs, r.obs_dim, r.action_dim]
}

fn payload_len(t: usize, e: usize, od: usize, ad: usize, episodes: usize) -> Option<u64> {
    let te = t.checked_mul(e)?;
    let floats = te
        .checked_mul(od)?
        .checked_add(te.checked_mul(ad)?)?
        .checked_add(te.checked_mul(4)?)?
        .checked_add(e.checked_mul(od)?)?
        .checked_add(e)?;
    let bytes = floats
        .checked_mul(4)?
        .checked_add(te.checked_mul(2)?)?
        .checked_add(episodes.checked_mul(12)?)?;
    u64::try_from(bytes).ok()
}

/// Appends the little-endian bytes of `values`: one copy on little-endian
/// machines.
fn put_f32s(out: &mut Vec<u8>, values: &[f32]) {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: any f32 is 4 initialised bytes; u8 has no alignment needs.
        let bytes =
            unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), values.len() * 4) };
        out.extend_from_slice(bytes);
    }
    #[cfg(not(target_endian = "little"))]
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Encodes a rollout with its header into one new buffer.
pub fn encode_rollout(meta: RolloutMeta, r: &Rollout) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_rollout_into(meta, r, &mut out)?;
    Ok(out)
}

/// Encodes a rollout with its header into `out` (cleared first; its
/// capacity is reused, so a sender that keeps one buffer never touches fresh
/// pages).
pub fn encode_rollout_into(
    meta: RolloutMeta,
    r: &Rollout,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let len = encode_header(meta, r, out)?;
    out.reserve(len as usize);
    for values in float_arrays(r) {
        put_f32s(out, values);
    }
    out.extend(r.terminated.iter().map(|b| u8::from(*b)));
    out.extend(r.truncated.iter().map(|b| u8::from(*b)));
    for ep in &r.episodes {
        out.extend_from_slice(&ep.episode_return.to_le_bytes());
        out.extend_from_slice(&ep.length.to_le_bytes());
    }
    debug_assert_eq!(out.len() as u64, HEADER_LEN as u64 + len);
    Ok(())
}

/// Checks the rollout's arrays against its sizes and writes the header into
/// `out` (cleared first); returns the payload length.
fn encode_header(meta: RolloutMeta, r: &Rollout, out: &mut Vec<u8>) -> Result<u64, FrameError> {
    let [t, e, od, ad] = sizes(r);
    let te = t * e;
    let consistent = r.obs.len() == te * od
        && r.actions.len() == te * ad
        && [&r.log_probs, &r.values, &r.rewards, &r.final_values]
            .iter()
            .all(|v| v.len() == te)
        && r.terminated.len() == te
        && r.truncated.len() == te
        && r.last_obs.len() == e * od
        && r.last_values.len() == e;
    if !consistent {
        return Err(malformed("the rollout's arrays do not match its sizes"));
    }
    let len = payload_len(t, e, od, ad, r.episodes.len())
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or_else(|| malformed("the rollout is larger than a message may be"))?;
    out.clear();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&KIND_ROLLOUT.to_le_bytes());
    out.extend_from_slice(&meta.worker_id.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&meta.weights_version.to_le_bytes());
    for size in [t, e, od, ad, r.episodes.len()] {
        out.extend_from_slice(&(size as u32).to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    Ok(len)
}

/// Writes one rollout (allocating its buffer; see [`FrameWriter`]).
pub fn write_rollout(w: &mut impl Write, meta: RolloutMeta, r: &Rollout) -> Result<(), FrameError> {
    FrameWriter::default().write(w, meta, r)
}

/// Writes rollouts through one reused buffer.
#[derive(Default)]
pub struct FrameWriter {
    buf: Vec<u8>,
}

impl FrameWriter {
    pub fn write(
        &mut self,
        w: &mut impl Write,
        meta: RolloutMeta,
        r: &Rollout,
    ) -> Result<(), FrameError> {
        encode_rollout_into(meta, r, &mut self.buf)?;
        w.write_all(&self.buf)?;
        w.flush()?;
        Ok(())
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let part = &self.bytes[self.at..self.at + n];
        self.at += n;
        part
    }

    fn f32s(&mut self, n: usize, what: &str, values: &mut Vec<f32>) -> Result<(), FrameError> {
        let bytes = self.take(n * 4);
        values.clear();
        values.resize(n, 0.0);
        #[cfg(target_endian = "little")]
        // SAFETY: `values` has room for exactly `bytes.len()` bytes, and every
        // bit pattern is a valid f32.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                values.as_mut_ptr().cast::<u8>(),
                bytes.len(),
            );
        }
        #[cfg(not(target_endian = "little"))]
        for (v, c) in values.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
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

    fn flags(&mut self, n: usize, what: &str, flags: &mut Vec<bool>) -> Result<(), FrameError> {
        let bytes = self.take(n);
        if let Some(i) = bytes.iter().position(|b| *b > 1) {
            return Err(malformed(format!(
                "{what}[{i}] is {}, not 0 or 1",
                bytes[i]
            )));
        }
        flags.clear();
        flags.extend(bytes.iter().map(|b| *b == 1));
        Ok(())
    }
}

fn u32_at(h: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

fn u64_at(h: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Reads one rollout (allocating; see [`FrameReader`]). `Ok(None)` at a
/// clean end of stream (the writer closed the pipe between messages).
pub fn read_rollout(r: &mut impl Read) -> Result<Option<(RolloutMeta, Rollout)>, FrameError> {
    let mut rollout = Rollout::default();
    Ok(FrameReader::default()
        .read(r, &mut rollout)?
        .map(|meta| (meta, rollout)))
}

/// Reads rollouts through one reused payload buffer into a reused
/// `Rollout`, so a receiver in steady state allocates nothing.
#[derive(Default)]
pub struct FrameReader {
    payload: Vec<u8>,
}

impl FrameReader {
    /// Reads one rollout into `out` (whose vectors are reused). `Ok(None)` at
    /// a clean end of stream. After an error `out` holds no valid rollout.
    pub fn read(
        &mut self,
        r: &mut impl Read,
        out: &mut Rollout,
    ) -> Result<Option<RolloutMeta>, FrameError> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match r.read(&mut header[got..])? {
                0 if got == 0 => return Ok(None),
                0 => {
                    return Err(malformed(format!(
                        "the stream ended {got} bytes into a header"
                    )))
                }
                n => got += n,
            }
        }
        if u32_at(&header, 0) != MAGIC {
            return Err(malformed("bad magic: not a rollout message"));
        }
        if u32_at(&header, 4) != KIND_ROLLOUT {
            return Err(malformed(format!(
                "unknown message kind {}",
                u32_at(&header, 4)
            )));
        }
        let meta = RolloutMeta {
            worker_id: u32_at(&header, 8),
            weights_version: u64_at(&header, 16),
        };
        let [t, e, od, ad, episodes] = [24, 28, 32, 36, 40].map(|at| u32_at(&header, at) as usize);
        let len = u64_at(&header, 48);
        let expected =
            payload_len(t, e, od, ad, episodes).ok_or_else(|| malformed("sizes overflow"))?;
        if len != expected {
            return Err(malformed(format!(
                "payload of {len} bytes, but the sizes (T={t}, E={e}, obs {od}, action {ad}, {episodes} episodes) need {expected}"
            )));
        }
        if len > MAX_PAYLOAD {
            return Err(malformed(format!(
                "payload of {len} bytes exceeds the limit of {MAX_PAYLOAD}"
            )));
        }
        self.payload.resize(len as usize, 0);
        r.read_exact(&mut self.payload)?;
        let mut c = Cursor {
            bytes: &self.payload,
            at: 0,
        };
        let te = t * e;
        (out.num_steps, out.num_envs, out.obs_dim, out.action_dim) = (t, e, od, ad);
        c.f32s(te * od, "obs", &mut out.obs)?;
        c.f32s(te * ad, "actions", &mut out.actions)?;
        c.f32s(te, "log_probs", &mut out.log_probs)?;
        c.f32s(te, "values", &mut out.values)?;
        c.f32s(te, "rewards", &mut out.rewards)?;
        c.f32s(te, "final_values", &mut out.final_values)?;
        c.f32s(e * od, "last_obs", &mut out.last_obs)?;
        c.f32s(e, "last_values", &mut out.last_values)?;
        c.flags(te, "terminated", &mut out.terminated)?;
        c.flags(te, "truncated", &mut out.truncated)?;
        out.episodes.clear();
        for _ in 0..episodes {
            let ret = f64::from_le_bytes(c.take(8).try_into().map_err(|_| malformed("episode"))?);
            let length =
                u32::from_le_bytes(c.take(4).try_into().map_err(|_| malformed("episode"))?);
            if !ret.is_finite() {
                return Err(malformed(format!(
                    "an episode return is {ret} (not finite)"
                )));
            }
            out.episodes.push(EpisodeRecord {
                episode_return: ret,
                length,
            });
        }
        Ok(Some(meta))
    }
}
