//! The MLP forward pass over blocks of observations.
//!
//! A block holds up to [`BLOCK`] observations **feature-major**
//! (`[features][BLOCK]`), so one linear layer is, for every output `o`,
//! `y[o][r] = (sum_i w[o][i] * x[i][r]) + b[o]` with the sum taken over `i` in
//! order, starting from zero, one multiply and one add per term (Rust never
//! fuses them). The lanes `r` never interact: the compiler vectorises across
//! observations, and an observation's result is bit-for-bit the same whichever
//! block, block size or instruction set computes it. That is what lets a
//! rollout split over worker processes reproduce a single-process one exactly.
//!
//! On x86-64 the kernels are compiled twice, for the baseline (SSE2) and for
//! AVX2, and the AVX2 copy is used when the CPU has it; both execute the same
//! IEEE operations in the same order per lane.

use crate::fast_math::fast_tanh;
use crate::layout::Activation;

/// Observations per block.
pub const BLOCK: usize = 16;
/// Outputs computed together (independent accumulator chains).
const OUTPUTS_AT_ONCE: usize = 4;

/// One linear layer's place in the flat weights.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Linear {
    pub weight: usize, // [out, in]
    pub bias: usize,   // [out]
    pub input: usize,
    pub output: usize,
}

/// Which instruction set the kernels run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Kernel::Avx2;
        }
        Kernel::Baseline
    }
}

/// `y [output][R] = act(W x + b)` for a block of `R` lanes.
#[inline(always)]
fn linear<const R: usize>(
    weights: &[f32],
    layer: &Linear,
    activation: Option<Activation>,
    x: &[f32],
    y: &mut [f32],
) {
    let (input, output) = (layer.input, layer.output);
    let w = &weights[layer.weight..layer.weight + input * output];
    let b = &weights[layer.bias..layer.bias + output];
    let x = &x[..input * R];
    let finish = |acc: &[f32; R], bias: f32, out: &mut [f32]| {
        for r in 0..R {
            let v = acc[r] + bias;
            out[r] = match activation {
                Some(Activation::Tanh) => fast_tanh(v),
                Some(Activation::Relu) => v.max(0.0),
                None => v,
            };
        }
    };
    let mut o = 0;
    while o + OUTPUTS_AT_ONCE <= output {
        let rows: [&[f32]; OUTPUTS_AT_ONCE] =
            std::array::from_fn(|k| &w[(o + k) * input..(o + k + 1) * input]);
        let mut acc = [[0.0_f32; R]; OUTPUTS_AT_ONCE];
        for (i, xi) in x.chunks_exact(R).enumerate() {
            for k in 0..OUTPUTS_AT_ONCE {
                let wk = rows[k][i];
                for r in 0..R {
                    acc[k][r] += wk * xi[r];
                }
            }
        }
        for k in 0..OUTPUTS_AT_ONCE {
            finish(&acc[k], b[o + k], &mut y[(o + k) * R..(o + k + 1) * R]);
        }
        o += OUTPUTS_AT_ONCE;
    }
    while o < output {
        let row = &w[o * input..(o + 1) * input];
        let mut acc = [0.0_f32; R];
        for (wi, xi) in row.iter().zip(x.chunks_exact(R)) {
            for r in 0..R {
                acc[r] += wi * xi[r];
            }
        }
        finish(&acc, b[o], &mut y[o * R..(o + 1) * R]);
        o += 1;
    }
}

/// Runs an MLP on one feature-major block of `R` lanes held in `a`
/// (`[input][R]`); the output (`[output][R]`) ends in `a` too.
#[inline(always)]
fn mlp_block<const R: usize>(
    weights: &[f32],
    layers: &[Linear],
    activation: Activation,
    a: &mut Vec<f32>,
    b: &mut Vec<f32>,
) {
    let last = layers.len() - 1;
    for (k, layer) in layers.iter().enumerate() {
        let act = (k != last).then_some(activation);
        linear::<R>(weights, layer, act, a, b);
        std::mem::swap(a, b);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mlp_block_avx2<const R: usize>(
    weights: &[f32],
    layers: &[Linear],
    activation: Activation,
    a: &mut Vec<f32>,
    b: &mut Vec<f32>,
) {
    mlp_block::<R>(weights, layers, activation, a, b);
}

/// Scratch space for the forward pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
}

impl Scratch {
    pub fn new(widest: usize) -> Self {
        Scratch {
            a: vec![0.0; widest * BLOCK],
            b: vec![0.0; widest * BLOCK],
        }
    }
}

fn run_block<const R: usize>(
    kernel: Kernel,
    weights: &[f32],
    layers: &[Linear],
    activation: Activation,
    scratch: &mut Scratch,
) {
    match kernel {
        Kernel::Baseline => {
            mlp_block::<R>(weights, layers, activation, &mut scratch.a, &mut scratch.b)
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx2` is only chosen when the CPU reports AVX2.
        Kernel::Avx2 => unsafe {
            mlp_block_avx2::<R>(weights, layers, activation, &mut scratch.a, &mut scratch.b)
        },
    }
}

/// Runs an MLP on `rows` observations (`input [rows, in]`, row-major) into
/// `out [rows, out]`.
pub(crate) fn mlp_rows(
    kernel: Kernel,
    weights: &[f32],
    layers: &[Linear],
    activation: Activation,
    input: &[f32],
    out: &mut [f32],
    scratch: &mut Scratch,
) {
    let in_dim = layers[0].input;
    let out_dim = layers[layers.len() - 1].output;
    let rows = input.len() / in_dim;
    debug_assert_eq!(out.len(), rows * out_dim);
    let mut start = 0;
    while start < rows {
        let n = (rows - start).min(BLOCK);
        // Small remainders use narrow blocks: fewer idle lanes, same results.
        let width = match n {
            1 => 1,
            2 => 2,
            3 | 4 => 4,
            5..=8 => 8,
            _ => BLOCK,
        };
        let block = &input[start * in_dim..(start + n) * in_dim];
        for (r, row) in block.chunks_exact(in_dim).enumerate() {
            for (i, x) in row.iter().enumerate() {
                scratch.a[i * width + r] = *x;
            }
        }
        for r in n..width {
            for i in 0..in_dim {
                scratch.a[i * width + r] = 0.0;
            }
        }
        match width {
            1 => run_block::<1>(kernel, weights, layers, activation, scratch),
            2 => run_block::<2>(kernel, weights, layers, activation, scratch),
            4 => run_block::<4>(kernel, weights, layers, activation, scratch),
            8 => run_block::<8>(kernel, weights, layers, activation, scratch),
            _ => run_block::<BLOCK>(kernel, weights, layers, activation, scratch),
        }
        let block_out = &mut out[start * out_dim..(start + n) * out_dim];
        for (r, row) in block_out.chunks_exact_mut(out_dim).enumerate() {
            for (o, y) in row.iter_mut().enumerate() {
                *y = scratch.a[o * width + r];
            }
        }
        start += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rl_env::rng::Rng;

    fn layers() -> (Vec<f32>, Vec<Linear>) {
        // 5 -> 37 -> 9 -> 3: sizes that exercise every remainder path.
        let sizes = [(5, 37), (37, 9), (9, 3)];
        let mut offset = 0;
        let mut layers = Vec::new();
        for (input, output) in sizes {
            layers.push(Linear {
                weight: offset,
                bias: offset + input * output,
                input,
                output,
            });
            offset += input * output + output;
        }
        let mut rng = Rng::from_seed(3);
        let weights = (0..offset).map(|_| rng.next_f64() as f32 - 0.5).collect();
        (weights, layers)
    }

    fn reference_row(weights: &[f32], layers: &[Linear], x: &[f32]) -> Vec<f32> {
        let mut h = x.to_vec();
        for (k, l) in layers.iter().enumerate() {
            h = (0..l.output)
                .map(|o| {
                    let mut acc = 0.0_f32;
                    for (i, xi) in h.iter().enumerate() {
                        acc += weights[l.weight + o * l.input + i] * xi;
                    }
                    acc += weights[l.bias + o];
                    if k + 1 < layers.len() {
                        fast_tanh(acc)
                    } else {
                        acc
                    }
                })
                .collect();
        }
        h
    }

    /// Every batch size, block width and instruction set gives each row
    /// exactly the plain sequential computation.
    #[test]
    fn every_batch_size_and_kernel_gives_each_row_the_sequential_result() {
        let (weights, layers) = layers();
        let mut rng = Rng::from_seed(8);
        let rows = 41;
        let input: Vec<f32> = (0..rows * 5)
            .map(|_| rng.next_f64() as f32 * 4.0 - 2.0)
            .collect();
        let expected: Vec<f32> = input
            .chunks_exact(5)
            .flat_map(|row| reference_row(&weights, &layers, row))
            .collect();
        let mut kernels = vec![Kernel::Baseline];
        if Kernel::detect() != Kernel::Baseline {
            kernels.push(Kernel::detect());
        }
        for kernel in kernels {
            let mut scratch = Scratch::new(37);
            for n in 1..=rows {
                let mut out = vec![f32::NAN; n * 3];
                mlp_rows(
                    kernel,
                    &weights,
                    &layers,
                    Activation::Tanh,
                    &input[..n * 5],
                    &mut out,
                    &mut scratch,
                );
                assert_eq!(out, expected[..n * 3], "{kernel:?}, {n} rows");
            }
        }
    }
}
