//! Running statistics for observation and reward normalisation.

/// Running mean and variance over batches, merged with the parallel
/// algorithm (Chan et al.), in float64, as Stable-Baselines3's
/// `RunningMeanStd`: it starts at mean 0, variance 1 and a tiny count.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningMeanStd {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    pub count: f64,
}

impl RunningMeanStd {
    pub fn new(dim: usize) -> Self {
        RunningMeanStd {
            mean: vec![0.0; dim],
            var: vec![1.0; dim],
            count: 1e-4,
        }
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Merges a batch of `rows.len() / dim` rows, `[rows, dim]` row-major.
    pub fn update(&mut self, rows: &[f32]) {
        let dim = self.dim();
        if dim == 0 || rows.is_empty() {
            return;
        }
        let (batch_mean, batch_var, n) = Self::batch_moments(rows, dim);
        self.update_from_moments(&batch_mean, &batch_var, n);
    }

    /// A batch's mean, (population) variance and row count, `[rows, dim]`
    /// row-major: what [`Self::update`] merges (data-parallel learners
    /// exchange these and merge every rank's).
    pub fn batch_moments(rows: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>, f64) {
        if dim == 0 || rows.is_empty() {
            return (vec![0.0; dim], vec![0.0; dim], 0.0);
        }
        let n = rows.len() / dim;
        let mut batch_mean = vec![0.0_f64; dim];
        for row in rows.chunks_exact(dim) {
            for (m, x) in batch_mean.iter_mut().zip(row) {
                *m += *x as f64;
            }
        }
        batch_mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut batch_var = vec![0.0_f64; dim];
        for row in rows.chunks_exact(dim) {
            for ((v, x), m) in batch_var.iter_mut().zip(row).zip(&batch_mean) {
                let d = *x as f64 - m;
                *v += d * d;
            }
        }
        batch_var.iter_mut().for_each(|v| *v /= n as f64);
        (batch_mean, batch_var, n as f64)
    }

    /// Merges a batch given by its moments (Chan et al.).
    pub fn update_from_moments(&mut self, batch_mean: &[f64], batch_var: &[f64], batch_count: f64) {
        let total = self.count + batch_count;
        for i in 0..self.dim() {
            let delta = batch_mean[i] - self.mean[i];
            let m_a = self.var[i] * self.count;
            let m_b = batch_var[i] * batch_count;
            let m_2 = m_a + m_b + delta * delta * self.count * batch_count / total;
            self.mean[i] += delta * batch_count / total;
            self.var[i] = m_2 / total;
        }
        self.count = total;
    }
}

/// Observation normalisation: `clip((obs - mean) / sqrt(var + 1e-8), -clip, clip)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ObsNormalizer {
    pub stats: RunningMeanStd,
    pub clip: f64,
}

impl ObsNormalizer {
    pub const EPSILON: f64 = 1e-8;

    pub fn new(dim: usize, clip: f64) -> Self {
        ObsNormalizer {
            stats: RunningMeanStd::new(dim),
            clip,
        }
    }

    /// Normalises one or more rows of raw observations into `out`.
    pub fn normalize(&self, raw: &[f32], out: &mut [f32]) {
        let dim = self.stats.dim();
        for (raw_row, out_row) in raw.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            for i in 0..dim {
                let z = (raw_row[i] as f64 - self.stats.mean[i])
                    / (self.stats.var[i] + Self::EPSILON).sqrt();
                out_row[i] = z.clamp(-self.clip, self.clip) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_updates_match_the_statistics_of_all_data() {
        let data: Vec<f32> = (0..600)
            .map(|i| ((i * 37) % 101) as f32 * 0.1 - 3.0)
            .collect();
        let mut rms = RunningMeanStd::new(3);
        for chunk in data.chunks(3 * 20) {
            rms.update(chunk);
        }
        for d in 0..3 {
            let column: Vec<f64> = data.iter().skip(d).step_by(3).map(|x| *x as f64).collect();
            let mean = column.iter().sum::<f64>() / column.len() as f64;
            let var = column.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / column.len() as f64;
            assert!(
                (rms.mean[d] - mean).abs() < 1e-4,
                "{} vs {mean}",
                rms.mean[d]
            );
            assert!(
                (rms.var[d] - var).abs() / var < 1e-4,
                "{} vs {var}",
                rms.var[d]
            );
        }
    }

    #[test]
    fn normalized_observations_are_clipped() {
        let mut norm = ObsNormalizer::new(1, 5.0);
        norm.stats.update(&[0.0, 0.0, 0.0, 0.002]);
        let mut out = [0.0_f32; 1];
        norm.normalize(&[1000.0], &mut out);
        assert_eq!(out[0], 5.0);
    }
}
