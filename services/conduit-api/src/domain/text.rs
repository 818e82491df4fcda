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
    if !multiline && value.chars().any(is_invisible_format) {
        return Err("must not contain bidirectional-override or zero-width characters".into());
    }
    Ok(())
}

/// Characters that change how the text around them is shown without being seen themselves:
/// bidirectional embeddings, overrides and isolates, and zero-width spaces and joiners. In a
/// one-line field (a title, a tag) they can make one value look like another. Bodies keep them:
/// a zero-width joiner is part of many emoji, and right-to-left text needs its marks.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_text_refuses_bidi_overrides_and_zero_width_characters() {
        for bad in [
            "admin\u{202E}nimda",
            "rust\u{200B}",
            "a\u{2066}b\u{2069}",
            "\u{FEFF}x",
        ] {
            assert!(check_text(bad, 1, 100, false).is_err(), "{bad:?}");
        }
        assert!(check_text("Ünïcode, émoji 🦀 and עברית", 1, 100, false).is_ok());
        assert!(check_text("family: 👩\u{200D}👩\u{200D}👧", 1, 100, true).is_ok());
    }
}
