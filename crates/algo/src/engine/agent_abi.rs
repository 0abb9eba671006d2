//! The struct the off-policy agents' update takes across the plugin's C
//! ABI (see [`crate::engine::agent`]), below both the loader and the agent
//! handle.

/// One update's input (pointers valid for the call).
#[repr(C)]
pub struct AbiTransitions {
    pub batch_size: usize,
    pub obs: *const f32,      // [B, obs_dim]
    pub actions: *const f32,  // [B, action_size] (DQN: [B], the index)
    pub rewards: *const f32,  // [B]
    pub next_obs: *const f32, // [B, obs_dim]
    pub dones: *const f32,    // [B], 1.0 where terminated
    pub noise: *const f32,    // [noise_rows, B, action_size]
    pub noise_len: usize,
    /// Train the actor (and SAC's alpha) in this update.
    pub update_actor: u32,
    /// Polyak-update the target networks after this update.
    pub update_targets: u32,
}
