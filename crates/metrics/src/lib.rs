//! What a run leaves to watch, and how to read it while it grows.
//!
//! * [`tensorboard`]: TensorBoard event files (TFRecord of scalar events),
//!   written without TensorFlow;
//! * [`csv`]: the run's CSV files read tolerantly (a last line still being
//!   written is not a row), and cut back to a checkpoint on resume;
//! * [`plot`]: the learning-curve PNG, drawn with a built-in bitmap font (no
//!   system font needed);
//! * [`crc32c`]: the checksum TFRecord and our checkpoints use.
//!
//! **Invariant:** no libtorch, no processes; plain files only.

pub mod crc32c;
pub mod csv;
pub mod plot;
pub mod tensorboard;
