//! Vectorisable `exp` and `tanh` for f32, used by every forward pass of the
//! policy networks on the CPU (acting and learning), so both compute the same
//! activations.

/// exp(x) with a relative error below 1e-6: 2^n through the exponent bits,
/// 2^f by a degree-6 polynomial. Written without calls (rounding by the
/// 1.5 * 2^23 trick) so that loops over it vectorise on baseline x86-64.
#[inline]
pub fn fast_exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23
    let x = x.clamp(-87.0, 88.0);
    let y = x * std::f32::consts::LOG2_E;
    let n = (y + ROUND) - ROUND; // round to nearest
    let f = (y - n) * std::f32::consts::LN_2; // |f| <= ln2 / 2
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// tanh(x) with an absolute error below 1e-6.
#[inline]
pub fn fast_tanh(x: f32) -> f32 {
    let e = fast_exp(2.0 * x.clamp(-9.0, 9.0));
    (e - 1.0) / (e + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_and_exp_are_accurate() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            assert!((fast_tanh(x) - x.tanh()).abs() < 1e-6, "tanh({x})");
            if x.abs() < 15.0 {
                let rel = (fast_exp(x) - x.exp()).abs() / x.exp();
                assert!(rel < 1e-6, "exp({x}) rel error {rel}");
            }
        }
        assert_eq!(fast_tanh(50.0), 1.0);
        assert_eq!(fast_tanh(-50.0), -1.0);
    }
}
