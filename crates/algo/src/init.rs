//! CleanRL's initialisation, computed with our own generator (no global
//! libtorch state, so learners in one process never race on a seed).

use rl_env::rng::Rng;
use rl_policy::PolicySpec;

/// A `[rows, cols]` row-major matrix with orthonormal rows or columns
/// (whichever are fewer), times `gain`: the Q factor of a Gaussian matrix, as
/// `torch.nn.init.orthogonal_` draws it.
pub fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut Rng) -> Vec<f32> {
    // Work on an n x m matrix with n >= m, whose m columns get orthonormalised.
    let (n, m) = if rows >= cols {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let mut columns: Vec<Vec<f64>> = (0..m)
        .map(|_| (0..n).map(|_| rng.standard_normal()).collect())
        .collect();
    // Modified Gram-Schmidt, twice for numerical orthogonality.
    for j in 0..m {
        for _ in 0..2 {
            for k in 0..j {
                let dot: f64 = columns[j].iter().zip(&columns[k]).map(|(a, b)| a * b).sum();
                let (left, right) = columns.split_at_mut(j);
                for (a, b) in right[0].iter_mut().zip(&left[k]) {
                    *a -= dot * b;
                }
            }
        }
        let norm = columns[j]
            .iter()
            .map(|a| a * a)
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        columns[j].iter_mut().for_each(|a| *a /= norm);
    }
    let mut out = vec![0.0_f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            // q is n x m with q[i][j] = columns[j][i]; the result is q or qᵀ.
            let v = if rows >= cols {
                columns[c][r]
            } else {
                columns[r][c]
            };
            out[r * cols + c] = (gain * v) as f32;
        }
    }
    out
}

/// Initial flat weights (layout order): hidden layers orthogonal with gain
/// sqrt(2), the actor's output layer with 0.01, the critic's with 1, biases
/// 0, log-std `initial_log_std`.
pub fn initial_weights(spec: &PolicySpec, seed: u64, initial_log_std: f64) -> Vec<f32> {
    let layout = spec.layout();
    let mut rng = Rng::from_seed(rl_env::seeds::init_seed(seed));
    let mut flat = vec![0.0_f32; layout.total_len];
    for (prefix, layers) in [
        ("actor", spec.actor_layers()),
        ("critic", spec.critic_layers()),
    ] {
        let last = layers.len() - 1;
        for (i, (input, output)) in layers.into_iter().enumerate() {
            let gain = match (i == last, prefix) {
                (false, _) => 2f64.sqrt(),
                (true, "actor") => 0.01,
                (true, _) => 1.0,
            };
            let weight = orthogonal(output, input, gain, &mut rng);
            if let Some(entry) = layout.get(&format!("{prefix}.{}.weight", 2 * i)) {
                flat[entry.offset..entry.offset + entry.len].copy_from_slice(&weight);
            }
        }
    }
    if let Some(entry) = layout.get("actor_logstd") {
        flat[entry.offset..entry.offset + entry.len].fill(initial_log_std as f32);
    }
    flat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_matrices_have_orthonormal_rows_or_columns_times_gain() {
        let mut rng = Rng::from_seed(1);
        for (rows, cols) in [(64, 4), (4, 64), (64, 64), (2, 64), (1, 32)] {
            let w = orthogonal(rows, cols, 2.0, &mut rng);
            let (n, m) = if rows >= cols {
                (rows, cols)
            } else {
                (cols, rows)
            };
            for a in 0..m {
                for b in 0..m {
                    let dot: f64 = (0..n)
                        .map(|k| {
                            let (x, y) = if rows >= cols {
                                (w[k * cols + a], w[k * cols + b])
                            } else {
                                (w[a * cols + k], w[b * cols + k])
                            };
                            x as f64 * y as f64
                        })
                        .sum();
                    let expected = if a == b { 4.0 } else { 0.0 };
                    assert!(
                        (dot - expected).abs() < 1e-4,
                        "{rows}x{cols}: <{a},{b}> = {dot}"
                    );
                }
            }
        }
    }
}
