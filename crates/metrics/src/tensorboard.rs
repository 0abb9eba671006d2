//! TensorBoard event files, written directly: a TFRecord stream of `Event`
//! protocol buffers (`wall_time`, `step`, and a `Summary` of scalar values),
//! which TensorBoard 2.x and `tbparse` read.
//!
//! ```text
//! record: length u64 | masked CRC-32C of length u32 | data | masked CRC-32C of data u32
//! Event   { 1: double wall_time, 2: int64 step, 3: string file_version | 5: Summary }
//! Summary { 1: repeated Value }
//! Value   { 1: string tag, 2: float simple_value }
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::crc32c::masked;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn length_delimited(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One `Event` message.
fn event(wall_time: f64, step: i64, body: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(16 + body.len());
    e.push(1 << 3 | 1); // wall_time, 64-bit
    e.extend_from_slice(&wall_time.to_le_bytes());
    e.push(2 << 3); // step, varint
    varint(&mut e, step as u64);
    e.extend_from_slice(body);
    e
}

fn summary(values: &[(&str, f64)]) -> Vec<u8> {
    let mut s = Vec::new();
    for (tag, value) in values {
        let mut v = Vec::new();
        length_delimited(&mut v, 1, tag.as_bytes());
        v.push(2 << 3 | 5); // simple_value, 32-bit
        v.extend_from_slice(&(*value as f32).to_le_bytes());
        length_delimited(&mut s, 1, &v);
    }
    let mut body = Vec::new();
    length_delimited(&mut body, 5, &s);
    body
}

fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(data.len() + 16);
    r.extend_from_slice(&len);
    r.extend_from_slice(&masked(&len).to_le_bytes());
    r.extend_from_slice(data);
    r.extend_from_slice(&masked(data).to_le_bytes());
    r
}

/// Appends scalar events to one event file, flushed after every event so
/// TensorBoard sees a run as it goes.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<wall_time>.<host>.<suffix>` with
    /// its `brain.Event:2` header event.
    pub fn create(dir: &Path, suffix: &str, wall_time: f64) -> io::Result<Self> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string());
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{suffix}",
            wall_time as u64
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut writer = EventWriter {
            path,
            file: BufWriter::new(file),
        };
        let mut body = Vec::new();
        length_delimited(&mut body, 3, b"brain.Event:2");
        writer.write_event(&event(wall_time, 0, &body))?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, event: &[u8]) -> io::Result<()> {
        self.file.write_all(&record(event))?;
        self.file.flush()
    }

    /// One event at `step` with every finite value of `values` as a scalar
    /// (non-finite values are left out, as the CSV files leave them empty).
    pub fn scalars(&mut self, step: i64, wall_time: f64, values: &[(&str, f64)]) -> io::Result<()> {
        let finite: Vec<(&str, f64)> = values
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite())
            .collect();
        if finite.is_empty() {
            return Ok(());
        }
        self.write_event(&event(wall_time, step, &summary(&finite)))
    }
}

/// One scalar of an event file: `(step, tag, value)`.
pub type Scalar = (i64, String, f32);

/// The scalar values of an event file in file order. For checks; every
/// record's checksums are verified.
pub fn read_scalars(path: &Path) -> io::Result<Vec<Scalar>> {
    let (scalars, damage) = read_scalars_until_damage(path)?;
    match damage {
        None => Ok(scalars),
        Some(what) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )),
    }
}

/// The scalar values of an event file up to its first damaged record (a
/// record cut short by a killed writer, a flipped bit), and what the damage
/// is, if any.
pub fn read_scalars_until_damage(path: &Path) -> io::Result<(Vec<Scalar>, Option<String>)> {
    Ok(scalars_until_damage(&std::fs::read(path)?))
}

/// The scalars of an event file's bytes up to the first damaged record, and
/// what the damage is, if any (see [`read_scalars_until_damage`]).
pub fn scalars_until_damage(bytes: &[u8]) -> (Vec<Scalar>, Option<String>) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at.saturating_add(12)) else {
            return (out, Some("truncated record header".into()));
        };
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&header[..8]);
        if masked(&header[..8]).to_le_bytes() != header[8..12] {
            return (out, Some("length checksum".into()));
        }
        let len = usize::try_from(u64::from_le_bytes(len_bytes)).unwrap_or(usize::MAX);
        let data_end = (at + 12).saturating_add(len);
        let (Some(data), Some(crc)) = (
            bytes.get(at + 12..data_end),
            bytes.get(data_end..data_end.saturating_add(4)),
        ) else {
            return (out, Some("truncated record".into()));
        };
        if masked(data).to_le_bytes() != crc {
            return (out, Some("data checksum".into()));
        }
        let mut event = Vec::new();
        if let Err(e) = parse_event(data, &mut event) {
            return (out, Some(e));
        }
        out.extend(event);
        at = data_end + 4;
    }
    (out, None)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at).ok_or("truncated varint")?;
            self.at += 1;
            v |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).ok_or("truncated field")?;
        let part = self.b.get(self.at..end).ok_or("truncated field")?;
        self.at += n;
        Ok(part)
    }

    /// The next `(field, wire type)`, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u64)>, String> {
        if self.at >= self.b.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, k & 7)))
    }

    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.take(8).map(|_| ()),
            2 => {
                let n = self.varint()? as usize;
                self.take(n).map(|_| ())
            }
            5 => self.take(4).map(|_| ()),
            w => Err(format!("wire type {w}")),
        }
    }
}

fn parse_event(data: &[u8], out: &mut Vec<(i64, String, f32)>) -> Result<(), String> {
    let mut r = Reader { b: data, at: 0 };
    let mut step = 0i64;
    let mut values = Vec::new();
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (2, 0) => step = r.varint()? as i64,
            (5, 2) => {
                let n = r.varint()? as usize;
                let mut s = Reader {
                    b: r.take(n)?,
                    at: 0,
                };
                while let Some((f, w)) = s.key()? {
                    if (f, w) != (1, 2) {
                        s.skip(w)?;
                        continue;
                    }
                    let n = s.varint()? as usize;
                    let mut v = Reader {
                        b: s.take(n)?,
                        at: 0,
                    };
                    let (mut tag, mut value) = (String::new(), None);
                    while let Some((f, w)) = v.key()? {
                        match (f, w) {
                            (1, 2) => {
                                let n = v.varint()? as usize;
                                tag = String::from_utf8_lossy(v.take(n)?).into_owned();
                            }
                            (2, 5) => {
                                let b = v.take(4)?;
                                value = Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                            }
                            (_, w) => v.skip(w)?,
                        }
                    }
                    if let Some(value) = value {
                        values.push((tag, value));
                    }
                }
            }
            (_, w) => r.skip(w)?,
        }
    }
    out.extend(values.into_iter().map(|(tag, value)| (step, tag, value)));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_back_with_their_steps_and_tags() {
        let dir = std::env::temp_dir().join(format!("rl-tb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = EventWriter::create(&dir, "train", 1.7e9).unwrap();
        w.scalars(
            128,
            1.7e9 + 1.0,
            &[("train/policy_loss", -0.25), ("train/nan", f64::NAN)],
        )
        .unwrap();
        w.scalars(300_000_000_000, 1.7e9 + 2.0, &[("eval/return_mean", 500.0)])
            .unwrap();
        let got = read_scalars(w.path()).unwrap();
        assert_eq!(
            got,
            [
                (128, "train/policy_loss".to_string(), -0.25),
                (300_000_000_000, "eval/return_mean".to_string(), 500.0)
            ]
        );
        let mut bytes = std::fs::read(w.path()).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(w.path(), &bytes).unwrap();
        assert!(read_scalars(w.path()).is_err(), "a flipped bit is caught");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
