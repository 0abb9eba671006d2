//! Observation and action spaces, and the actions that live in them.

use std::fmt;

use crate::EnvError;

/// A box of real numbers: `low[i] <= x[i] <= high[i]` for every element of an
/// array of `shape`. Bounds may be infinite. Like Gymnasium's `Box(float32)`.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxSpace {
    /// Lower bounds, one per element, in row-major order.
    pub low: Vec<f32>,
    /// Upper bounds, one per element, in row-major order.
    pub high: Vec<f32>,
    /// The array's shape; its product is the number of elements.
    pub shape: Vec<usize>,
}

impl BoxSpace {
    /// A box of the given shape with per-element bounds.
    ///
    /// Panics if the bound lengths do not match the shape: that is a bug in
    /// the env definition, found the first time the env is built.
    pub fn new(low: Vec<f32>, high: Vec<f32>, shape: Vec<usize>) -> Self {
        let len: usize = shape.iter().product();
        assert!(
            low.len() == len && high.len() == len,
            "BoxSpace bounds have {} and {} values but shape {:?} has {} elements",
            low.len(),
            high.len(),
            shape,
            len
        );
        BoxSpace { low, high, shape }
    }

    /// A one-dimensional box with the same bounds for every element.
    pub fn uniform(low: f32, high: f32, len: usize) -> Self {
        BoxSpace::new(vec![low; len], vec![high; len], vec![len])
    }

    /// A one-dimensional box with per-element bounds `high` and `-high`.
    pub fn symmetric(high: &[f32]) -> Self {
        BoxSpace::new(
            high.iter().map(|h| -h).collect(),
            high.to_vec(),
            vec![high.len()],
        )
    }

    /// The number of elements.
    pub fn flat_dim(&self) -> usize {
        self.low.len()
    }

    /// Whether `x` lies inside the box (NaN never does).
    pub fn contains(&self, x: &[f32]) -> bool {
        x.len() == self.flat_dim()
            && x.iter()
                .zip(self.low.iter().zip(&self.high))
                .all(|(v, (lo, hi))| *lo <= *v && *v <= *hi)
    }
}

/// A space, as in Gymnasium: `Discrete(n)` or `Box`.
#[derive(Clone, Debug, PartialEq)]
pub enum Space {
    /// The integers `0..n`.
    Discrete { n: usize },
    /// Real vectors inside a box.
    Box(BoxSpace),
}

impl Space {
    /// Values needed to hold one element of the space: 1 for `Discrete`
    /// (one integer), the element count for `Box`.
    pub fn flat_dim(&self) -> usize {
        match self {
            Space::Discrete { .. } => 1,
            Space::Box(b) => b.flat_dim(),
        }
    }

    /// Whether actions from this space are integers.
    pub fn is_discrete(&self) -> bool {
        matches!(self, Space::Discrete { .. })
    }

    /// Checks one action against this space: range for `Discrete`, length
    /// and finiteness for `Box` (values outside the bounds are allowed: the
    /// env clips them, as Gymnasium's envs do).
    #[inline]
    pub fn check_action(&self, env: &str, action: Action<'_>) -> Result<(), EnvError> {
        let valid = match (self, action) {
            (Space::Discrete { n }, Action::Discrete(a)) => a >= 0 && (a as u64) < *n as u64,
            (Space::Box(b), Action::Continuous(values)) => {
                values.len() == b.flat_dim() && values.iter().all(|v| v.is_finite())
            }
            _ => false,
        };
        if valid {
            Ok(())
        } else {
            Err(self.action_error(env, action))
        }
    }

    /// The error for an action that `check_action` rejected.
    #[cold]
    #[inline(never)]
    fn action_error(&self, env: &str, action: Action<'_>) -> EnvError {
        match (self, action) {
            (Space::Discrete { n }, Action::Discrete(a)) => EnvError::ActionOutOfRange {
                env: env.to_string(),
                action: a,
                n: *n,
            },
            (Space::Box(b), Action::Continuous(values)) if values.len() != b.flat_dim() => {
                EnvError::ActionLength {
                    env: env.to_string(),
                    got: values.len(),
                    expected: b.flat_dim(),
                    space: self.to_string(),
                }
            }
            (Space::Box(b), Action::Continuous(values)) => {
                let index = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
                EnvError::ActionNotFinite {
                    env: env.to_string(),
                    index,
                    value: values.get(index).copied().unwrap_or(f32::NAN),
                    low: b.low[index],
                    high: b.high[index],
                }
            }
            (_, action) => EnvError::ActionKind {
                env: env.to_string(),
                got: action.kind(),
                space: self.to_string(),
            },
        }
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Space::Discrete { n } => write!(f, "Discrete({n})"),
            Space::Box(b) => {
                let all_same = |v: &[f32]| v.iter().all(|x| *x == v[0]);
                if !b.low.is_empty() && all_same(&b.low) && all_same(&b.high) {
                    write!(f, "Box({}, {}, {:?})", b.low[0], b.high[0], b.shape)
                } else {
                    write!(f, "Box({:?}, {:?}, {:?})", b.low, b.high, b.shape)
                }
            }
        }
    }
}

/// One action for one env.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action<'a> {
    /// An index into a `Discrete` space. Signed, so that a negative value from
    /// a caller is reported rather than wrapped.
    Discrete(i64),
    /// A vector for a `Box` space, in row-major order.
    Continuous(&'a [f32]),
}

impl Action<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Action::Discrete(_) => "discrete",
            Action::Continuous(_) => "continuous",
        }
    }
}

/// One action for each of `num_envs` envs, in one flat buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Actions<'a> {
    /// `[num_envs]` indices.
    Discrete(&'a [i64]),
    /// `[num_envs, action_dim]` values, row-major.
    Continuous(&'a [f32]),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrete_action_out_of_range_names_env_value_and_range() {
        let space = Space::Discrete { n: 2 };
        assert!(space
            .check_action("CartPole-v1", Action::Discrete(1))
            .is_ok());
        let err = space
            .check_action("CartPole-v1", Action::Discrete(2))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CartPole-v1") && err.contains("action 2") && err.contains("0..=1"),
            "{err}"
        );
        assert!(space
            .check_action("CartPole-v1", Action::Discrete(-1))
            .is_err());
    }

    #[test]
    fn continuous_action_with_wrong_length_or_nan_is_rejected_but_out_of_bounds_is_allowed() {
        let space = Space::Box(BoxSpace::uniform(-2.0, 2.0, 1));
        assert!(space
            .check_action("Pendulum-v1", Action::Continuous(&[5.0]))
            .is_ok());
        let err = space
            .check_action("Pendulum-v1", Action::Continuous(&[1.0, 2.0]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2 value(s)") && err.contains("Box(-2, 2, [1])"),
            "{err}"
        );
        let err = space
            .check_action("Pendulum-v1", Action::Continuous(&[f32::NAN]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("NaN") && err.contains("not finite"), "{err}");
        let err = space
            .check_action("Pendulum-v1", Action::Discrete(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("discrete action"), "{err}");
    }

    #[test]
    fn box_contains_respects_bounds_and_rejects_nan() {
        let b = BoxSpace::symmetric(&[1.0, 8.0]);
        assert!(b.contains(&[0.5, -8.0]));
        assert!(!b.contains(&[1.5, 0.0]));
        assert!(!b.contains(&[f32::NAN, 0.0]));
        assert!(!b.contains(&[0.0]));
    }
}
