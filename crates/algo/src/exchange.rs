//! Data-parallel learners: what K learners (MPI ranks, one per node) share
//! so that they hold the same weights after every update, as DD-PPO and
//! OpenAI Baselines' MPI PPO do. Each rank collects with its own envs and
//! computes the gradient of its own minibatch; the gradient is averaged
//! over ranks before it is clipped and stepped, so every rank takes the
//! same step.
//!
//! [`Exchange`] is the interface (the MPI implementation lives in crate
//! `rl-mpi`, behind the `mpi` feature of `rl-cli`); the functions here are
//! what an algorithm does with it, written once for every algorithm:
//! [`average_gradient_and_vote`] (a minibatch's one collective: the mean
//! gradient and the ranks' votes to stop or that they went non-finite),
//! [`vote_and_average`] (means of float64 terms), [`merge_moments`]
//! (observation statistics), [`gather_rows`] (reward scaling over every
//! rank's envs) and [`check_identical`] (the weights' checksum, compared
//! at every update, with the ranks' votes that their state went
//! non-finite).
//!
//! With one rank every function leaves its input as it is (a sum over one
//! rank is the value, a division by 1 is exact), so K = 1 under `mpirun`
//! is bit-identical to a run without it.

use std::fmt;

use rl_policy::RunningMeanStd;

/// Why an exchange failed: the collective failed, or the ranks disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeError(pub String);

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExchangeError {}

/// The collectives the ranks of a data-parallel run call, every rank in
/// the same order (a rank that skips one leaves the others waiting; the
/// votes of [`vote_and_average`] keep them in step).
pub trait Exchange {
    /// This rank, `0..ranks()`.
    fn rank(&self) -> usize;
    /// Ranks in the run.
    fn ranks(&self) -> usize;
    /// Element-wise sum over ranks, in place; every rank gets the same
    /// values.
    fn sum_f32(&mut self, values: &mut [f32]) -> Result<(), ExchangeError>;
    /// The same in float64.
    fn sum_f64(&mut self, values: &mut [f64]) -> Result<(), ExchangeError>;
    /// Every rank's `values` (all of the same length), in rank order.
    fn gather_f64(&mut self, values: &[f64]) -> Result<Vec<f64>, ExchangeError>;
    /// Every rank's `values` (all of the same length), in rank order.
    fn gather_u64(&mut self, values: &[u64]) -> Result<Vec<u64>, ExchangeError>;
    /// The collectives so far: their number, time and bytes sent.
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}

/// What a rank's collectives have cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Traffic {
    pub calls: u64,
    /// Wall time inside the collectives (waiting for the other ranks
    /// included).
    pub seconds: f64,
    /// Bytes this rank handed to them.
    pub bytes: u64,
}

/// What each rank says at a synchronisation point; any rank's `true` wins,
/// so every rank takes the same decision and none is left waiting in a
/// collective the others skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Votes {
    /// This rank is asked to stop (Ctrl-C, SIGTERM from `mpirun`).
    pub stop: bool,
    /// A number of this rank's went non-finite.
    pub bad: bool,
}

/// One collective: every rank's [`Votes`] (any rank's `true` wins) and the
/// mean of `values` over ranks (in place; unchanged with one rank).
pub fn vote_and_average(
    exchange: &mut dyn Exchange,
    votes: Votes,
    values: &mut [f64],
) -> Result<Votes, ExchangeError> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let mut all = Vec::with_capacity(values.len() + 2);
    all.push(flag(votes.stop));
    all.push(flag(votes.bad));
    all.extend_from_slice(values);
    exchange.sum_f64(&mut all)?;
    let ranks = exchange.ranks() as f64;
    for (v, s) in values.iter_mut().zip(&all[2..]) {
        *v = *s / ranks;
    }
    Ok(Votes {
        stop: all[0] > 0.0,
        bad: all[1] > 0.0,
    })
}

/// A minibatch's one collective: every rank's [`Votes`], sent as two more
/// floats after the gradient (0 or 1 each, so their sum is exact in
/// float32), and the gradient's mean over ranks, in place. When a rank
/// votes to stop or went non-finite the gradient is not to be used (it
/// is left as summed). `scratch` is reused between calls.
pub fn average_gradient_and_vote(
    exchange: &mut dyn Exchange,
    grad: &mut [f32],
    votes: Votes,
    scratch: &mut Vec<f32>,
) -> Result<Votes, ExchangeError> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let n = grad.len();
    scratch.clear();
    scratch.extend_from_slice(grad);
    scratch.push(flag(votes.stop));
    scratch.push(flag(votes.bad));
    exchange.sum_f32(scratch)?;
    let votes = Votes {
        stop: scratch[n] > 0.0,
        bad: scratch[n + 1] > 0.0,
    };
    grad.copy_from_slice(&scratch[..n]);
    let ranks = exchange.ranks() as f32;
    if ranks != 1.0 {
        grad.iter_mut().for_each(|g| *g /= ranks);
    }
    Ok(votes)
}

/// Folds every rank's batch of observations (`rows`, `[n, dim]`) into
/// `stats`, in rank order: each rank's batch moments are gathered and
/// merged one after the other, as [`RunningMeanStd::update`] merges one
/// batch, so every rank ends with the same statistics (and one rank with
/// exactly what `update` gives).
pub fn merge_moments(
    exchange: &mut dyn Exchange,
    stats: &mut RunningMeanStd,
    rows: &[f32],
) -> Result<(), ExchangeError> {
    let dim = stats.dim();
    let (mean, var, count) = RunningMeanStd::batch_moments(rows, dim);
    let mut mine = Vec::with_capacity(1 + 2 * dim);
    mine.push(count);
    mine.extend_from_slice(&mean);
    mine.extend_from_slice(&var);
    let all = exchange.gather_f64(&mine)?;
    for rank in all.chunks_exact(mine.len()) {
        let (count, rest) = rank.split_first().unwrap_or((&0.0, &[]));
        let (mean, var) = rest.split_at(dim);
        if *count > 0.0 {
            stats.update_from_moments(mean, var, *count);
        }
    }
    Ok(())
}

/// Every rank's `[T, E]` time-major array (`values`, E = `per_rank`
/// columns), as one `[T, ranks * E]` array whose columns are the global
/// env indices (rank r's envs are r*E .. (r+1)*E).
pub fn gather_rows(
    exchange: &mut dyn Exchange,
    values: &[f64],
    per_rank: usize,
) -> Result<Vec<f64>, ExchangeError> {
    let all = exchange.gather_f64(values)?;
    let ranks = exchange.ranks();
    let steps = values.len() / per_rank.max(1);
    let mut out = vec![0.0; all.len()];
    for r in 0..ranks {
        for t in 0..steps {
            let from = r * values.len() + t * per_rank;
            let to = t * ranks * per_rank + r * per_rank;
            out[to..to + per_rank].copy_from_slice(&all[from..from + per_rank]);
        }
    }
    Ok(out)
}

/// Every rank's `blobs` (byte strings of any length and number), rank by
/// rank in one list: two collectives (the lengths, then the bytes, padded
/// to the longest rank's). With one rank, `blobs` as they are.
pub fn gather_bytes(
    exchange: &mut dyn Exchange,
    blobs: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, ExchangeError> {
    let mut words = encode_blobs(blobs);
    let lengths = exchange.gather_u64(&[words.len() as u64])?;
    let longest = lengths.iter().copied().max().unwrap_or(0) as usize;
    words.resize(longest, 0);
    let all = exchange.gather_u64(&words)?;
    let mut out = Vec::new();
    for (rank, (words, len)) in all.chunks_exact(longest.max(1)).zip(&lengths).enumerate() {
        let mine = words.get(..*len as usize).unwrap_or(words);
        out.extend(decode_blobs(mine).map_err(|e| {
            ExchangeError(format!("rank {rank}'s gathered bytes do not decode: {e}"))
        })?);
    }
    Ok(out)
}

/// `blobs` as u64 words: their number, each one's length, then their
/// bytes, 8 to a word (little-endian, the last word zero-padded).
fn encode_blobs(blobs: &[Vec<u8>]) -> Vec<u64> {
    let mut words = vec![blobs.len() as u64];
    words.extend(blobs.iter().map(|b| b.len() as u64));
    let bytes: Vec<u8> = blobs.concat();
    words.extend(bytes.chunks(8).map(|c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(w)
    }));
    words
}

fn decode_blobs(words: &[u64]) -> Result<Vec<Vec<u8>>, String> {
    let (&count, rest) = words.split_first().ok_or("no words")?;
    let count = usize::try_from(count).map_err(|e| e.to_string())?;
    if count > rest.len() {
        return Err(format!("{count} blobs in {} words", words.len()));
    }
    let (lengths, data) = rest.split_at(count);
    let bytes: Vec<u8> = data.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut at = 0usize;
    let mut out = Vec::with_capacity(count);
    for &len in lengths {
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| format!("a blob of {len} bytes past the {} there are", bytes.len()))?;
        out.push(bytes[at..end].to_vec());
        at = end;
    }
    Ok(out)
}

/// FNV-1a over the bytes of `values`: the weights' checksum that ranks
/// compare.
pub fn checksum(values: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// After an update, one collective: every rank says whether its state
/// went non-finite (`bad`; the answer is whether any rank's did) and,
/// when none did, the checksums of `weights` are compared: an error
/// naming the ranks that differ from rank 0, after update `update`.
pub fn check_identical(
    exchange: &mut dyn Exchange,
    weights: &[f32],
    update: u64,
    bad: bool,
) -> Result<bool, ExchangeError> {
    let pairs = exchange.gather_u64(&[checksum(weights), u64::from(bad)])?;
    if pairs.chunks_exact(2).any(|p| p[1] != 0) {
        return Ok(true);
    }
    let all: Vec<u64> = pairs.chunks_exact(2).map(|p| p[0]).collect();
    let differ: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != all[0])
        .map(|(r, c)| format!("rank {r} ({c:016x})"))
        .collect();
    if differ.is_empty() {
        Ok(false)
    } else {
        Err(ExchangeError(format!(
            "the ranks' weights differ after update {update}: rank 0 has checksum {:016x}, {}; data-parallel learners must hold identical weights (every rank must run the same binary, config and seed)",
            all[0],
            differ.join(", ")
        )))
    }
}

/// One rank alone, without MPI: every collective returns its input. What
/// the functions above do with one rank, for tests and for the code paths
/// that need an `Exchange` without MPI.
#[derive(Debug, Default)]
pub struct SingleRank;

impl Exchange for SingleRank {
    fn rank(&self) -> usize {
        0
    }
    fn ranks(&self) -> usize {
        1
    }
    fn sum_f32(&mut self, _values: &mut [f32]) -> Result<(), ExchangeError> {
        Ok(())
    }
    fn sum_f64(&mut self, _values: &mut [f64]) -> Result<(), ExchangeError> {
        Ok(())
    }
    fn gather_f64(&mut self, values: &[f64]) -> Result<Vec<f64>, ExchangeError> {
        Ok(values.to_vec())
    }
    fn gather_u64(&mut self, values: &[u64]) -> Result<Vec<u64>, ExchangeError> {
        Ok(values.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// K in-memory ranks stepped in lockstep: rank r's collective sees the
    /// values the test gives for every rank.
    struct Fixed {
        rank: usize,
        all: Vec<Vec<f64>>,
    }

    impl Exchange for Fixed {
        fn rank(&self) -> usize {
            self.rank
        }
        fn ranks(&self) -> usize {
            self.all.len()
        }
        fn sum_f32(&mut self, values: &mut [f32]) -> Result<(), ExchangeError> {
            for (i, v) in values.iter_mut().enumerate() {
                *v = self.all.iter().map(|r| r[i] as f32).sum();
            }
            Ok(())
        }
        fn sum_f64(&mut self, values: &mut [f64]) -> Result<(), ExchangeError> {
            for (i, v) in values.iter_mut().enumerate() {
                *v = self.all.iter().map(|r| r[i]).sum();
            }
            Ok(())
        }
        fn gather_f64(&mut self, _values: &[f64]) -> Result<Vec<f64>, ExchangeError> {
            Ok(self.all.concat())
        }
        fn gather_u64(&mut self, values: &[u64]) -> Result<Vec<u64>, ExchangeError> {
            Ok(values
                .iter()
                .cycle()
                .take(self.all.len())
                .copied()
                .collect())
        }
    }

    #[test]
    fn one_rank_changes_nothing() {
        let rows: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        let (mut a, mut b) = (RunningMeanStd::new(3), RunningMeanStd::new(3));
        a.update(&rows);
        merge_moments(&mut SingleRank, &mut b, &rows).unwrap();
        assert_eq!(a, b);
        let mut grad = vec![0.1_f32, -3.0, 7.25];
        let before = grad.clone();
        let votes = average_gradient_and_vote(
            &mut SingleRank,
            &mut grad,
            Votes::default(),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!((grad, votes), (before, Votes::default()));
        let mut terms = [0.1, 1e300, -7.0 / 3.0];
        let votes = vote_and_average(&mut SingleRank, Votes::default(), &mut terms).unwrap();
        assert_eq!(votes, Votes::default());
        assert_eq!(terms, [0.1, 1e300, -7.0 / 3.0]);
    }

    #[test]
    fn merged_moments_equal_one_batch_of_every_rank() {
        // Two ranks' batches merged equal the statistics of both batches
        // folded in one after the other.
        let r0: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let r1: Vec<f32> = (0..8).map(|i| 10.0 - i as f32 * 0.5).collect();
        let moments = |rows: &[f32]| {
            let (m, v, c) = RunningMeanStd::batch_moments(rows, 2);
            [vec![c], m, v].concat()
        };
        let mut ex = Fixed {
            rank: 1,
            all: vec![moments(&r0), moments(&r1)],
        };
        let mut merged = RunningMeanStd::new(2);
        merge_moments(&mut ex, &mut merged, &r1).unwrap();
        let mut sequential = RunningMeanStd::new(2);
        sequential.update(&r0);
        sequential.update(&r1);
        assert_eq!(merged, sequential);
    }

    #[test]
    fn the_gradient_and_terms_are_means_and_any_vote_wins() {
        // The gradient with the votes after it (the mean of [1, 2] and
        // [3, -2]): rank 1 went non-finite.
        let mut ex = Fixed {
            rank: 0,
            all: vec![vec![1.0, 2.0, 0.0, 0.0], vec![3.0, -2.0, 0.0, 1.0]],
        };
        let mut grad = vec![1.0_f32, 2.0];
        let votes =
            average_gradient_and_vote(&mut ex, &mut grad, Votes::default(), &mut Vec::new())
                .unwrap();
        assert_eq!(grad, vec![2.0, 0.0]);
        assert!(!votes.stop && votes.bad);
        // Votes (stop, bad) then one value: rank 1 votes to stop.
        let mut ex = Fixed {
            rank: 0,
            all: vec![vec![0.0, 0.0, 4.0], vec![1.0, 0.0, 6.0]],
        };
        let mut kl = [4.0];
        let votes = vote_and_average(&mut ex, Votes::default(), &mut kl).unwrap();
        assert_eq!(kl, [5.0]);
        assert!(votes.stop && !votes.bad);
    }

    #[test]
    fn byte_strings_of_every_rank_come_back_in_rank_order() {
        // Rank 0 (this one) and rank 1, whose words the scripted exchange
        // plays: first its length, then its words padded to the longest.
        struct Scripted {
            other: std::collections::VecDeque<Vec<u64>>,
        }
        impl Exchange for Scripted {
            fn rank(&self) -> usize {
                0
            }
            fn ranks(&self) -> usize {
                2
            }
            fn sum_f32(&mut self, _: &mut [f32]) -> Result<(), ExchangeError> {
                Ok(())
            }
            fn sum_f64(&mut self, _: &mut [f64]) -> Result<(), ExchangeError> {
                Ok(())
            }
            fn gather_f64(&mut self, v: &[f64]) -> Result<Vec<f64>, ExchangeError> {
                Ok(v.to_vec())
            }
            fn gather_u64(&mut self, v: &[u64]) -> Result<Vec<u64>, ExchangeError> {
                let other = self.other.pop_front().unwrap();
                Ok([v.to_vec(), other].concat())
            }
        }
        let mine = vec![vec![1u8, 2, 3], vec![], vec![9; 17]];
        let theirs = vec![vec![7u8; 30]];
        let mut words = encode_blobs(&theirs);
        let longest = encode_blobs(&mine).len().max(words.len());
        let their_len = words.len() as u64;
        words.resize(longest, 0);
        let mut x = Scripted {
            other: [vec![their_len], words].into(),
        };
        let all = gather_bytes(&mut x, &mine).unwrap();
        assert_eq!(all, [mine.clone(), theirs].concat());
        assert_eq!(gather_bytes(&mut SingleRank, &mine).unwrap(), mine);
        assert!(decode_blobs(&[3, 1]).is_err());
        assert!(decode_blobs(&[1, 100, 0]).is_err());
    }

    #[test]
    fn rows_are_placed_by_global_env_index() {
        // 2 ranks, T = 2, E = 2: rank 0 [[a0, a1], [a2, a3]], rank 1 [[b0, b1], [b2, b3]].
        let mut ex = Fixed {
            rank: 0,
            all: vec![vec![0.0, 1.0, 2.0, 3.0], vec![10.0, 11.0, 12.0, 13.0]],
        };
        let rows = gather_rows(&mut ex, &[0.0, 1.0, 2.0, 3.0], 2).unwrap();
        assert_eq!(rows, vec![0.0, 1.0, 10.0, 11.0, 2.0, 3.0, 12.0, 13.0]);
    }

    #[test]
    fn differing_checksums_name_the_ranks() {
        struct Two;
        impl Exchange for Two {
            fn rank(&self) -> usize {
                0
            }
            fn ranks(&self) -> usize {
                2
            }
            fn sum_f32(&mut self, _: &mut [f32]) -> Result<(), ExchangeError> {
                Ok(())
            }
            fn sum_f64(&mut self, _: &mut [f64]) -> Result<(), ExchangeError> {
                Ok(())
            }
            fn gather_f64(&mut self, v: &[f64]) -> Result<Vec<f64>, ExchangeError> {
                Ok(v.to_vec())
            }
            fn gather_u64(&mut self, v: &[u64]) -> Result<Vec<u64>, ExchangeError> {
                Ok(vec![v[0], v[1], v[0] ^ 1, 0])
            }
        }
        let err = check_identical(&mut Two, &[1.0, 2.0], 7, false).unwrap_err();
        assert!(
            err.0.contains("after update 7") && err.0.contains("rank 1"),
            "{err}"
        );
        // A rank whose state went non-finite: said, checksums not compared.
        assert_eq!(check_identical(&mut Two, &[1.0, 2.0], 7, true), Ok(true));
        assert_eq!(
            check_identical(&mut SingleRank, &[1.0], 1, false),
            Ok(false)
        );
        assert_ne!(checksum(&[1.0, 2.0]), checksum(&[2.0, 1.0]));
    }
}
