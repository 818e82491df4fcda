//! Shared rules for user-supplied text and a collector of per-field errors.

use crate::error::{ApiError, FieldErrors};

/// Checks common to every text field: not blank (when required), within `max` characters,
/// and free of NUL and other control characters except newline, carriage return and tab.
pub(crate) fn check_text(
    value: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<(), String> {
    let len = value.chars().count();
    if min > 0 && value.trim().is_empty() {
        return Err("can't be blank".into());
    }
    if len < min {
        return Err(format!("is too short (minimum is {min} characters)"));
    }
    if len > max {
        return Err(format!("is too long (maximum is {max} characters)"));
    }
    let bad = |c: char| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'));
    if value.chars().any(bad) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Collects field errors so a request reports every invalid field at once.
#[derive(Debug, Default)]
pub struct Validation {
    errors: FieldErrors,
}

impl Validation {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a required field, recording its error under `field`.
    pub fn required<T>(
        &mut self,
        field: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match value {
            None => {
                self.errors
                    .entry(field.to_owned())
                    .or_default()
                    .push("can't be blank".into());
                None
            }
            Some(v) => self.optional(field, Some(v), parse),
        }
    }

    /// Parses an optional field, recording its error under `field`.
    pub fn optional<T>(
        &mut self,
        field: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        value.and_then(|v| self.check(field, parse(v)))
    }

    /// Records the error of an already computed parse under `field`.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(msg) => {
                self.errors.entry(field.to_owned()).or_default().push(msg);
                None
            }
        }
    }

    /// Records an error that is not tied to one parse.
    pub fn fail(&mut self, field: &str, message: &str) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .push(message.to_owned());
    }

    /// `Ok` when nothing failed, else a 422 with every message.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Unprocessable(self.errors))
        }
    }
}
