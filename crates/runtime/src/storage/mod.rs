//! What a run keeps on disk, one module per format: the run directory
//! (`run_dir`), safetensors files (`safetensors`), policy files
//! (`policy_file`), checkpoints (`checkpoint`), the `checkpoints/` folder
//! (`checkpoint_dir`), and how checkpoints are built from the learner
//! (`checkpointer`).

pub mod checkpoint;
pub mod checkpoint_dir;
pub mod checkpointer;
pub mod policy_file;
pub mod run_dir;
pub mod safetensors;
