//! The replay buffer, in the learner's memory: a ring of transitions
//! (observation, action, reward, next observation, terminated) filled from
//! collected chunks and sampled uniformly with replacement (SB3's and
//! CleanRL's `ReplayBuffer.sample`), with the learner's own generator so
//! that the same seed samples the same batches.
//!
//! Memory: the arrays grow as transitions arrive, up to `capacity`; the
//! run checks `capacity` transitions against the machine's free memory
//! before it starts (`rl_runtime::memory`).

use rl_env::rng::Rng;
use rl_policy::Rollout;

/// One sampled minibatch, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub size: usize,
    pub obs: Vec<f32>,      // [B, obs_dim]
    pub actions: Vec<f32>,  // [B, action_dim]
    pub rewards: Vec<f32>,  // [B]
    pub next_obs: Vec<f32>, // [B, obs_dim]
    pub dones: Vec<f32>,    // [B], 1.0 where the episode terminated
}

/// See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBuffer {
    capacity: usize,
    obs_dim: usize,
    action_dim: usize,
    obs: Vec<f32>,
    actions: Vec<f32>,
    rewards: Vec<f32>,
    next_obs: Vec<f32>,
    dones: Vec<f32>,
    /// Where the next transition goes once the buffer is full.
    pos: usize,
}

/// Bytes one transition takes in memory.
pub fn transition_bytes(obs_dim: usize, action_dim: usize) -> u64 {
    4 * (2 * obs_dim as u64 + action_dim as u64 + 2)
}

impl ReplayBuffer {
    pub fn new(capacity: usize, obs_dim: usize, action_dim: usize) -> Self {
        ReplayBuffer {
            capacity: capacity.max(1),
            obs_dim,
            action_dim,
            obs: Vec::new(),
            actions: Vec::new(),
            rewards: Vec::new(),
            next_obs: Vec::new(),
            dones: Vec::new(),
            pos: 0,
        }
    }

    /// Transitions held.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the transitions held take.
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * transition_bytes(self.obs_dim, self.action_dim)
    }

    fn put(&mut self, obs: &[f32], action: &[f32], reward: f32, next_obs: &[f32], done: bool) {
        let done = if done { 1.0 } else { 0.0 };
        if self.len() < self.capacity {
            self.obs.extend_from_slice(obs);
            self.actions.extend_from_slice(action);
            self.rewards.push(reward);
            self.next_obs.extend_from_slice(next_obs);
            self.dones.push(done);
            return;
        }
        let (i, od, ad) = (self.pos, self.obs_dim, self.action_dim);
        self.obs[i * od..(i + 1) * od].copy_from_slice(obs);
        self.actions[i * ad..(i + 1) * ad].copy_from_slice(action);
        self.rewards[i] = reward;
        self.next_obs[i * od..(i + 1) * od].copy_from_slice(next_obs);
        self.dones[i] = done;
        self.pos = (self.pos + 1) % self.capacity;
    }

    /// Adds every transition of a chunk, step by step and env by env (the
    /// order one collector over all envs produced them in). The next
    /// observation is the ended episode's final one where a step ended an
    /// episode (truncation included); `done` is `terminated` only, so a
    /// truncated episode is bootstrapped.
    pub fn add_chunk(&mut self, r: &Rollout) {
        let (od, ad, n) = (r.obs_dim, r.action_dim, r.num_envs);
        for t in 0..r.num_steps {
            for e in 0..n {
                let i = t * n + e;
                self.put(
                    &r.obs[i * od..(i + 1) * od],
                    &r.actions[i * ad..(i + 1) * ad],
                    r.rewards[i],
                    r.next_obs(t, e),
                    r.terminated[i],
                );
            }
        }
    }

    /// Samples `size` transitions uniformly with replacement into `batch`.
    pub fn sample(&self, size: usize, rng: &mut Rng, batch: &mut Batch) {
        let (od, ad) = (self.obs_dim, self.action_dim);
        batch.size = size;
        batch.obs.clear();
        batch.actions.clear();
        batch.rewards.clear();
        batch.next_obs.clear();
        batch.dones.clear();
        let len = self.len();
        for _ in 0..size {
            let i = ((rng.next_f64() * len as f64) as usize).min(len.saturating_sub(1));
            batch.obs.extend_from_slice(&self.obs[i * od..(i + 1) * od]);
            batch
                .actions
                .extend_from_slice(&self.actions[i * ad..(i + 1) * ad]);
            batch.rewards.push(self.rewards[i]);
            batch
                .next_obs
                .extend_from_slice(&self.next_obs[i * od..(i + 1) * od]);
            batch.dones.push(self.dones[i]);
        }
    }

    /// The buffer's contents for a checkpoint: the arrays (as held, oldest
    /// not first once it wrapped) and the write position.
    pub fn parts(&self) -> ([&[f32]; 5], usize) {
        (
            [
                &self.obs,
                &self.actions,
                &self.rewards,
                &self.next_obs,
                &self.dones,
            ],
            self.pos,
        )
    }

    /// Names of [`ReplayBuffer::parts`]' arrays, in order.
    pub const PART_NAMES: [&'static str; 5] = ["obs", "actions", "rewards", "next_obs", "dones"];

    /// Puts back what [`ReplayBuffer::parts`] gave; an error says what
    /// does not fit this buffer.
    pub fn restore(&mut self, parts: [Vec<f32>; 5], pos: usize) -> Result<(), String> {
        let [obs, actions, rewards, next_obs, dones] = parts;
        let n = rewards.len();
        let (od, ad) = (self.obs_dim, self.action_dim);
        if n > self.capacity
            || obs.len() != n * od
            || next_obs.len() != n * od
            || actions.len() != n * ad
            || dones.len() != n
            || (pos != 0 && (n < self.capacity || pos >= n))
        {
            return Err(format!(
                "the replay buffer in the checkpoint ({n} transitions, position {pos}) does not fit a buffer of {} transitions of {od} + {ad} values",
                self.capacity
            ));
        }
        if let Some(i) = dones.iter().position(|d| *d != 0.0 && *d != 1.0) {
            return Err(format!("replay dones[{i}] is {}, not 0 or 1", dones[i]));
        }
        (
            self.obs,
            self.actions,
            self.rewards,
            self.next_obs,
            self.dones,
        ) = (obs, actions, rewards, next_obs, dones);
        self.pos = pos;
        Ok(())
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        *self = ReplayBuffer::new(self.capacity, self.obs_dim, self.action_dim);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chunk(t: usize, e: usize, base: f32) -> Rollout {
        let mut r = Rollout::default();
        r.reshape(t, e, 2, 1);
        r.keep_final_obs();
        for i in 0..t * e {
            r.obs[2 * i] = base + i as f32;
            r.obs[2 * i + 1] = -(base + i as f32);
            r.actions[i] = i as f32;
            r.rewards[i] = 10.0 * i as f32;
        }
        for e in 0..e {
            r.last_obs[2 * e] = base + 100.0 + e as f32;
        }
        // Env 1 ends its episode at step 0: terminated.
        r.terminated[1] = true;
        r.final_obs[2] = 77.0;
        r
    }

    #[test]
    fn chunks_go_in_step_then_env_order_with_final_observations() {
        let mut b = ReplayBuffer::new(100, 2, 1);
        b.add_chunk(&chunk(2, 2, 0.0));
        assert_eq!(b.len(), 4);
        let ([obs, actions, rewards, next_obs, dones], pos) = b.parts();
        assert_eq!(pos, 0);
        assert_eq!(obs, &[0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0]);
        assert_eq!(actions, &[0.0, 1.0, 2.0, 3.0]);
        assert_eq!(rewards, &[0.0, 10.0, 20.0, 30.0]);
        // env 0 step 0 -> obs of step 1; env 1 step 0 ended: its final
        // observation; step 1 -> the last observations.
        assert_eq!(next_obs, &[2.0, -2.0, 77.0, 0.0, 100.0, 0.0, 101.0, 0.0]);
        assert_eq!(dones, &[0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn a_full_buffer_overwrites_the_oldest_and_restores_exactly() {
        let mut b = ReplayBuffer::new(3, 2, 1);
        b.add_chunk(&chunk(2, 2, 0.0));
        assert_eq!((b.len(), b.parts().1), (3, 1));
        assert_eq!(b.parts().0[1], &[3.0, 1.0, 2.0]);
        let (parts, pos) = b.parts();
        let mut c = ReplayBuffer::new(3, 2, 1);
        c.restore(parts.map(<[f32]>::to_vec), pos).unwrap();
        assert_eq!(c, b);
        let mut wrong = ReplayBuffer::new(2, 2, 1);
        assert!(wrong.restore(b.parts().0.map(<[f32]>::to_vec), 1).is_err());
    }

    #[test]
    fn sampling_is_uniform_over_what_is_held_and_reproducible() {
        let mut b = ReplayBuffer::new(10, 2, 1);
        b.add_chunk(&chunk(2, 2, 0.0));
        let (mut x, mut y) = (Batch::default(), Batch::default());
        b.sample(4000, &mut Rng::from_seed(3), &mut x);
        b.sample(4000, &mut Rng::from_seed(3), &mut y);
        assert_eq!(x, y);
        let mut counts = [0usize; 4];
        for a in &x.actions {
            counts[*a as usize] += 1;
        }
        assert!(counts.iter().all(|c| (850..1150).contains(c)), "{counts:?}");
    }
}
