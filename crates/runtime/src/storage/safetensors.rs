//! The safetensors format (Hugging Face's): an 8-byte little-endian header
//! length, a JSON header naming each tensor's dtype, shape and byte range,
//! an optional `__metadata__` map of strings, then the tensors' bytes.
//! Written and read with the `safetensors` crate; this module adds typed,
//! checked accessors and one thing the crate does not do: it writes the
//! header's keys in sorted order. (The crate writes the metadata in a hash
//! map's order, which changes from process to process; a policy file must
//! be byte-identical whatever process wrote it, which tests check.)
//!
//! Our files (policy files, checkpoints) carry a `checksum` metadata entry:
//! the CRC-32C of the whole file with that entry's value read as
//! `00000000` ([`seal`] writes it, [`checksum`] recomputes it), so a flipped
//! bit anywhere is caught, while any safetensors reader still loads them.

use std::collections::BTreeMap;

use rl_metrics::crc32c::crc32c;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError};

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

fn dtype_of(dtype: &str) -> Option<Dtype> {
    match dtype {
        "F32" => Some(Dtype::F32),
        "F64" => Some(Dtype::F64),
        "U8" => Some(Dtype::U8),
        _ => None,
    }
}

/// Encodes tensors and string metadata (the header's keys sorted).
pub fn encode(tensors: Vec<TensorData>, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .filter_map(|t| {
            let dtype = dtype_of(t.dtype)?;
            let view = TensorView::new(dtype, t.shape.clone(), &t.bytes).ok()?;
            Some((t.name.clone(), view))
        })
        .collect();
    assert_eq!(
        views.len(),
        tensors.len(),
        "every tensor has a known dtype and bytes for its shape"
    );
    let info: std::collections::HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut bytes = match safetensors::serialize(views, Some(info)) {
        Ok(bytes) => bytes,
        Err(e) => unreachable!("views were checked when made: {e}"),
    };
    sort_header(&mut bytes);
    bytes
}

/// Rewrites the JSON header of a file with its keys sorted (the same
/// bytes, in another order: the same length).
fn sort_header(bytes: &mut [u8]) {
    let Some(len) = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
        return;
    };
    let end = 8 + u64::from_le_bytes(len) as usize;
    let Some(header) = bytes.get(8..end) else {
        return;
    };
    // serde_json's map is a BTreeMap: parsing sorts every object's keys.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return;
    };
    let mut sorted = value.to_string().into_bytes();
    sorted.resize(end - 8, b' ');
    if sorted.len() == end - 8 {
        bytes[8..end].copy_from_slice(&sorted);
    }
}

/// A decoded file: metadata and each tensor's dtype, shape and bytes.
pub struct SafeTensors<'a> {
    pub metadata: BTreeMap<String, String>,
    tensors: BTreeMap<String, (&'static str, Vec<usize>, &'a [u8])>,
    data_len: usize,
}

/// The crate's refusal in words.
fn explain(e: SafeTensorError, len: usize) -> String {
    match e {
        SafeTensorError::HeaderTooSmall | SafeTensorError::InvalidHeaderLength => {
            format!("truncated: {len} bytes, not a whole header")
        }
        SafeTensorError::HeaderTooLarge => "the header claims more bytes than allowed".into(),
        SafeTensorError::InvalidHeader(_)
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization(_) => {
            "the header is not valid safetensors JSON".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "the tensors do not cover the file's data exactly (truncated?)".into()
        }
        other => format!("not a valid safetensors file: {other}"),
    }
}

impl<'a> SafeTensors<'a> {
    /// Parses and checks a file's bytes (the crate checks the header, the
    /// offsets against the shapes and that the tensors cover the data); only
    /// the dtypes our files use are accepted.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, String> {
        let parsed =
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| explain(e, bytes.len()))?;
        let (header_len, meta) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| explain(e, bytes.len()))?;
        let metadata: BTreeMap<String, String> = meta
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut tensors = BTreeMap::new();
        for (name, view) in parsed.tensors() {
            let dtype = match view.dtype() {
                Dtype::F32 => "F32",
                Dtype::F64 => "F64",
                Dtype::U8 => "U8",
                other => return Err(format!("tensor {name}: unsupported dtype {other:?}")),
            };
            tensors.insert(name, (dtype, view.shape().to_vec(), view.data()));
        }
        Ok(SafeTensors {
            metadata,
            tensors,
            data_len: bytes.len() - 8 - header_len,
        })
    }

    /// Bytes of tensor data in the file.
    pub fn data_len(&self) -> usize {
        self.data_len
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
        let (got, _, data) = self
            .tensors
            .get(name)
            .ok_or_else(|| format!("tensor {name} is missing"))?;
        if *got != dtype {
            return Err(format!("tensor {name} is {got}, expected {dtype}"));
        }
        Ok(data)
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
