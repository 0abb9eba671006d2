//! Config validation shared by every algorithm's table: each out-of-range
//! field becomes a [`FieldError`] naming the field, its value and what is
//! allowed (the CLI adds the file and line).

/// A config field whose value is out of range: the field's name, the value
/// and what is allowed. The CLI adds the file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

/// The largest integer a config file can hold: TOML integers are signed 64-bit,
/// so every accepted value must read back from the `config.toml` a run writes.
pub const MAX_CONFIG_INT: u64 = i64::MAX as u64;

/// Collects the fields that fail their checks.
#[derive(Debug, Default)]
pub struct Checks {
    pub errors: Vec<FieldError>,
}

impl Checks {
    /// Records `field` (with `value`) unless `ok`.
    pub fn require(
        &mut self,
        ok: bool,
        field: &'static str,
        value: impl ToString,
        allowed: &'static str,
    ) -> &mut Self {
        if !ok {
            self.errors.push(FieldError {
                field,
                value: value.to_string(),
                allowed,
            });
        }
        self
    }

    /// A finite number > 0.
    pub fn positive(&mut self, field: &'static str, value: f64) -> &mut Self {
        self.require(
            value.is_finite() && value > 0.0,
            field,
            value,
            "a number > 0",
        )
    }

    /// A finite number >= 0.
    pub fn non_negative(&mut self, field: &'static str, value: f64) -> &mut Self {
        self.require(
            value.is_finite() && value >= 0.0,
            field,
            value,
            "a number >= 0",
        )
    }

    /// A number in [0, 1].
    pub fn unit(&mut self, field: &'static str, value: f64) -> &mut Self {
        self.require(
            (0.0..=1.0).contains(&value),
            field,
            value,
            "a number in [0, 1]",
        )
    }

    /// An integer in 1..=[`MAX_CONFIG_INT`].
    pub fn count(&mut self, field: &'static str, value: u64) -> &mut Self {
        self.require(
            (1..=MAX_CONFIG_INT).contains(&value),
            field,
            value,
            "an integer in 1..=9223372036854775807",
        )
    }

    pub fn finish(&mut self) -> Vec<FieldError> {
        std::mem::take(&mut self.errors)
    }
}
