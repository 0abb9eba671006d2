//! One update's training data, and what is measured on it.

use rl_env::rng::Rng;

/// Fisher-Yates with our generator, so shuffles are the same on any device.
pub fn shuffle(indices: &mut [usize], rng: &mut Rng) {
    for i in (1..indices.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        indices.swap(i, j);
    }
}

/// `1 - Var(returns - values) / Var(returns)`, NaN when the returns are constant.
pub fn explained_variance(values: &[f32], returns: &[f32]) -> f64 {
    let n = returns.len() as f64;
    let var = |xs: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = xs.collect();
        let mean = v.iter().sum::<f64>() / n;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n
    };
    let var_y = var(&mut returns.iter().map(|x| *x as f64));
    if var_y == 0.0 {
        return f64::NAN;
    }
    let var_diff = var(&mut returns.iter().zip(values).map(|(r, v)| (*r - *v) as f64));
    1.0 - var_diff / var_y
}
