//! The safetensors format (as Hugging Face's `safetensors` reads it):
//! an 8-byte little-endian header length, a JSON header naming each tensor's
//! dtype, shape and byte range, an optional `__metadata__` map of strings,
//! then the tensors' bytes. Written and read here without a dependency; the
//! reader checks everything before any number is used.
//!
//! Our files (policy files, checkpoints) carry a `checksum` metadata entry:
//! the CRC-32C of the whole file with that entry's value read as
//! `00000000` ([`seal`] writes it, [`checksum`] recomputes it), so a flipped
//! bit anywhere is caught, while any safetensors reader still loads them.

use std::collections::BTreeMap;
use std::ops::Range;

use rl_metrics::crc32c::crc32c;

/// One tensor to write.
pub struct TensorData {
    pub name: String,
    /// "F32", "F64" or "U8".
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl TensorData {
    pub fn f32s(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        TensorData {
            name: name.into(),
            dtype: "F32",
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn f64s(name: impl Into<String>, values: &[f64]) -> Self {
        TensorData {
            name: name.into(),
            dtype: "F64",
            shape: vec![values.len()],
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn u8s(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        TensorData {
            name: name.into(),
            dtype: "U8",
            shape: vec![bytes.len()],
            bytes,
        }
    }
}

fn dtype_size(dtype: &str) -> Option<usize> {
    match dtype {
        "F32" => Some(4),
        "F64" => Some(8),
        "U8" => Some(1),
        _ => None,
    }
}

/// Encodes tensors (sorted by name) and string metadata.
pub fn encode(mut tensors: Vec<TensorData>, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".to_string(),
        serde_json::Value::Object(
            metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        ),
    );
    let mut offset = 0usize;
    for t in &tensors {
        header.insert(
            t.name.clone(),
            serde_json::json!({
                "dtype": t.dtype,
                "shape": t.shape,
                "data_offsets": [offset, offset + t.bytes.len()],
            }),
        );
        offset += t.bytes.len();
    }
    let mut header_bytes = serde_json::Value::Object(header).to_string().into_bytes();
    while header_bytes.len() % 8 != 0 {
        header_bytes.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header_bytes.len() + offset);
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    for t in &tensors {
        out.extend_from_slice(&t.bytes);
    }
    out
}

/// A decoded file: metadata and where each tensor's bytes are.
pub struct SafeTensors<'a> {
    pub metadata: BTreeMap<String, String>,
    tensors: BTreeMap<String, (String, Vec<usize>, Range<usize>)>,
    data: &'a [u8],
    /// The raw JSON header, for checksums over it.
    pub header: &'a [u8],
}

impl<'a> SafeTensors<'a> {
    /// Parses and checks a file's bytes: header length and JSON, known
    /// dtypes, byte ranges that match the shapes, lie inside the data and
    /// cover it exactly.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, String> {
        let len_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("truncated: {} bytes, not even a header length", bytes.len()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        let header_end = usize::try_from(header_len)
            .ok()
            .and_then(|l| l.checked_add(8))
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| {
                format!(
                    "truncated: the header claims {header_len} bytes, the file has {} in all",
                    bytes.len()
                )
            })?;
        let header = &bytes[8..header_end];
        let json: serde_json::Value = serde_json::from_slice(header)
            .map_err(|e| format!("the header is not valid JSON ({e})"))?;
        let object = json.as_object().ok_or("the header is not a JSON object")?;
        let data = &bytes[header_end..];
        let mut metadata = BTreeMap::new();
        let mut tensors = BTreeMap::new();
        for (name, entry) in object {
            if name == "__metadata__" {
                for (k, v) in entry.as_object().ok_or("__metadata__ is not an object")? {
                    let v = v
                        .as_str()
                        .ok_or_else(|| format!("metadata {k} is not a string"))?;
                    metadata.insert(k.clone(), v.to_string());
                }
                continue;
            }
            let bad = |what: &str| format!("tensor {name}: {what}");
            let dtype = entry["dtype"].as_str().ok_or_else(|| bad("no dtype"))?;
            let size =
                dtype_size(dtype).ok_or_else(|| bad(&format!("unsupported dtype {dtype}")))?;
            let shape: Vec<usize> = entry["shape"]
                .as_array()
                .ok_or_else(|| bad("no shape"))?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("a shape that is not a list of sizes"))?;
            let offsets = entry["data_offsets"]
                .as_array()
                .ok_or_else(|| bad("no data_offsets"))?;
            let (start, end) = match offsets[..] {
                [ref s, ref e] => (
                    s.as_u64().ok_or_else(|| bad("bad offsets"))? as usize,
                    e.as_u64().ok_or_else(|| bad("bad offsets"))? as usize,
                ),
                _ => return Err(bad("data_offsets is not [start, end]")),
            };
            let elements = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
            let expected = elements.and_then(|e| e.checked_mul(size));
            if start > end || end > data.len() || Some(end - start) != expected {
                return Err(bad(&format!(
                    "bytes {start}..{end} do not hold a {dtype} tensor of shape {shape:?} inside {} bytes of data (truncated?)",
                    data.len()
                )));
            }
            tensors.insert(name.clone(), (dtype.to_string(), shape, start..end));
        }
        let covered: usize = tensors.values().map(|(_, _, r)| r.len()).sum();
        if covered != data.len() {
            return Err(format!(
                "the tensors cover {covered} bytes of data, the file has {}",
                data.len()
            ));
        }
        Ok(SafeTensors {
            metadata,
            tensors,
            data,
            header,
        })
    }

    /// Bytes of tensor data in the file.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|(_, s, _)| s.as_slice())
    }

    fn raw(&self, name: &str, dtype: &str) -> Result<&'a [u8], String> {
        let (got, _, range) = self
            .tensors
            .get(name)
            .ok_or_else(|| format!("tensor {name} is missing"))?;
        if got != dtype {
            return Err(format!("tensor {name} is {got}, expected {dtype}"));
        }
        Ok(&self.data[range.clone()])
    }

    /// A float32 tensor's values; NaN or infinity is an error naming where.
    pub fn f32s(&self, name: &str) -> Result<Vec<f32>, String> {
        let values: Vec<f32> = self
            .raw(name, "F32")?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!("tensor {name} holds {} at index {i}", values[i]));
        }
        Ok(values)
    }

    /// A float64 tensor's values; NaN or infinity is an error naming where.
    pub fn f64s(&self, name: &str) -> Result<Vec<f64>, String> {
        let values: Vec<f64> = self
            .raw(name, "F64")?
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!("tensor {name} holds {} at index {i}", values[i]));
        }
        Ok(values)
    }

    pub fn u8s(&self, name: &str) -> Result<&'a [u8], String> {
        self.raw(name, "U8")
    }

    /// A metadata string, or an error naming it.
    pub fn meta(&self, key: &str) -> Result<&str, String> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("metadata {key} is missing"))
    }

    /// A metadata value parsed as a number (or anything `FromStr`).
    pub fn meta_parse<T: std::str::FromStr>(&self, key: &str) -> Result<T, String> {
        let raw = self.meta(key)?;
        raw.parse()
            .map_err(|_| format!("metadata {key} = {raw:?} is not a valid value"))
    }
}

/// The placeholder a file's `checksum` metadata holds until [`seal`]
/// writes the real value.
pub const CHECKSUM_PLACEHOLDER: &str = "00000000";

/// Where the checksum's 8 hex digits are in a file: found in the header
/// text, without parsing the rest.
fn checksum_field(bytes: &[u8]) -> Result<std::ops::Range<usize>, String> {
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("truncated: {} bytes", bytes.len()))?;
    let end = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .and_then(|l| l.checked_add(8))
        .filter(|e| *e <= bytes.len())
        .ok_or("truncated: the header is longer than the file")?;
    let key = b"\"checksum\":\"";
    let at = bytes[8..end]
        .windows(key.len())
        .position(|w| w == key)
        .ok_or("not a checkpoint: its metadata has no checksum")?;
    let value = 8 + at + key.len();
    if value + 8 > end {
        return Err("the checksum field is cut short".into());
    }
    Ok(value..value + 8)
}

/// The stored and the computed checksum: CRC-32C of the whole file with
/// the checksum's value replaced by zeros.
pub fn checksum(bytes: &[u8]) -> Result<(String, String), String> {
    let field = checksum_field(bytes)?;
    let stored = String::from_utf8_lossy(&bytes[field.clone()]).into_owned();
    // Over the file as if the field held zeros, without copying the file.
    let crc = crc32c(&bytes[..field.start]);
    let crc = rl_metrics::crc32c::update(crc, b"00000000");
    let crc = rl_metrics::crc32c::update(crc, &bytes[field.end..]);
    Ok((stored, format!("{crc:08x}")))
}

/// Fills in the checksum of an encoded file (one whose checksum field holds
/// the placeholder, or a stale value after an edit: tools and tests that
/// alter a file on purpose reseal it).
pub fn seal(bytes: &mut [u8]) {
    if let (Ok(field), Ok((_, sum))) = (checksum_field(bytes), checksum(bytes)) {
        bytes[field].copy_from_slice(sum.as_bytes());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tensors_and_metadata_round_trip_and_damage_is_named() {
        let meta: BTreeMap<String, String> = [("format".to_string(), "x".to_string())].into();
        let bytes = encode(
            vec![
                TensorData::f32s("b", vec![2, 2], &[1.0, 2.0, 3.0, 4.0]),
                TensorData::f64s("a", &[0.5]),
                TensorData::u8s("c", vec![7, 8, 9]),
            ],
            &meta,
        );
        let st = SafeTensors::decode(&bytes).unwrap();
        assert_eq!(st.meta("format").unwrap(), "x");
        assert_eq!(st.f32s("b").unwrap(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(st.shape("b").unwrap(), [2, 2]);
        assert_eq!(st.f64s("a").unwrap(), [0.5]);
        assert_eq!(st.u8s("c").unwrap(), [7, 8, 9]);
        assert!(st.f64s("b").unwrap_err().contains("is F32"));
        assert!(st.f32s("zz").unwrap_err().contains("missing"));

        let truncated = SafeTensors::decode(&bytes[..bytes.len() - 2])
            .err()
            .unwrap();
        assert!(
            truncated.contains("truncated") || truncated.contains("cover"),
            "{truncated}"
        );
        assert!(SafeTensors::decode(&bytes[..5])
            .err()
            .unwrap()
            .contains("truncated"));
        let nan = encode(
            vec![TensorData::f32s("n", vec![2], &[1.0, f32::NAN])],
            &meta,
        );
        assert!(SafeTensors::decode(&nan)
            .unwrap()
            .f32s("n")
            .unwrap_err()
            .contains("NaN at index 1"));
    }
}
