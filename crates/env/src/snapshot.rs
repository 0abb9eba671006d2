//! Snapshots: an env's whole state as bytes (its random generator included),
//! so that a run can stop and continue exactly where it was.
//!
//! The encoding is private to each env: little-endian numbers written and
//! read back in the same order. A snapshot restores only into an env of the
//! same kind; anything that does not fit is an [`EnvError::State`], never a
//! panic.

use crate::rng::Rng;
use crate::EnvError;

/// Writes a snapshot.
#[derive(Debug, Default)]
pub struct SnapshotWriter {
    bytes: Vec<u8>,
}

impl SnapshotWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.u32(v.to_bits())
    }

    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.u64(v.to_bits())
    }

    pub fn f64s(&mut self, vs: &[f64]) -> &mut Self {
        for v in vs {
            self.f64(*v);
        }
        self
    }

    /// A generator's position in its stream.
    pub fn rng(&mut self, rng: &Rng) -> &mut Self {
        for word in rng.state() {
            self.u64(word);
        }
        self
    }

    /// A generator that may not exist yet.
    pub fn optional_rng(&mut self, rng: Option<&Rng>) -> &mut Self {
        self.bool(rng.is_some());
        if let Some(rng) = rng {
            self.rng(rng);
        }
        self
    }

    /// Bytes with their length in front.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.u64(bytes.len() as u64);
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// Reads a snapshot back; every read checks the length left.
#[derive(Debug)]
pub struct SnapshotReader<'a> {
    env: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> SnapshotReader<'a> {
    /// Reads `bytes`, naming `env` in errors.
    pub fn new(env: &'a str, bytes: &'a [u8]) -> Self {
        SnapshotReader { env, bytes, at: 0 }
    }

    fn error(&self, problem: String) -> EnvError {
        EnvError::State {
            env: self.env.to_string(),
            problem: format!("cannot restore the snapshot: {problem}"),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvError> {
        if self.bytes.len() - self.at < n {
            return Err(self.error(format!(
                "it ends after {} bytes, {} more were expected",
                self.bytes.len(),
                n - (self.bytes.len() - self.at)
            )));
        }
        let part = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(part)
    }

    pub fn u8(&mut self) -> Result<u8, EnvError> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, EnvError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.error(format!("a flag is {other}, not 0 or 1"))),
        }
    }

    pub fn u32(&mut self) -> Result<u32, EnvError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, EnvError> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(word))
    }

    pub fn f32(&mut self) -> Result<f32, EnvError> {
        Ok(f32::from_bits(self.u32()?))
    }

    pub fn f64(&mut self) -> Result<f64, EnvError> {
        Ok(f64::from_bits(self.u64()?))
    }

    pub fn f64s<const N: usize>(&mut self) -> Result<[f64; N], EnvError> {
        let mut out = [0.0; N];
        for v in &mut out {
            *v = self.f64()?;
        }
        Ok(out)
    }

    pub fn rng(&mut self) -> Result<Rng, EnvError> {
        let state = [self.u64()?, self.u64()?, self.u64()?, self.u64()?];
        Rng::from_state(state).ok_or_else(|| self.error("a generator state of all zeros".into()))
    }

    pub fn optional_rng(&mut self) -> Result<Option<Rng>, EnvError> {
        if self.bool()? {
            Ok(Some(self.rng()?))
        } else {
            Ok(None)
        }
    }

    /// Bytes written with [`SnapshotWriter::bytes`].
    pub fn bytes(&mut self) -> Result<&'a [u8], EnvError> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| self.error(format!("a length of {n}")))?;
        self.take(n)
    }

    /// Checks that nothing is left over.
    pub fn finish(&self) -> Result<(), EnvError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error(format!(
                "{} bytes are left over (a snapshot of another kind of env?)",
                self.bytes.len() - self.at
            )))
        }
    }
}
