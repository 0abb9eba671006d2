//! CRC-32C (Castagnoli), as TFRecord files and our checkpoints use it:
//! the `crc32c` crate (SSE 4.2 / ARMv8 instructions where the CPU has
//! them, which a table lookup per byte is not), and TFRecord's masking.

/// Continues a CRC-32C over more bytes (start from 0).
pub fn update(crc: u32, bytes: &[u8]) -> u32 {
    ::crc32c::crc32c_append(crc, bytes)
}

/// The CRC-32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    update(0, bytes)
}

/// TFRecord's masked CRC: rotated and offset so that a CRC of data that
/// holds CRCs does not degenerate.
pub fn masked(bytes: &[u8]) -> u32 {
    let crc = crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(0xA282_EAD8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // RFC 3720, B.4.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(update(crc32c(b"1234"), b"56789"), crc32c(b"123456789"));
    }
}
