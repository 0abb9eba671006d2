//! What a run records as it goes, for people and their tools to read while
//! it runs: `train.csv` and `train/*` TensorBoard scalars (`train`);
//! `eval.csv`, `eval/*` scalars, `curve.png` and the best policy (`eval`).

pub mod eval;
pub mod train;
