//! Shared rules for user-supplied text, the OpenAPI schema that states them, and field errors.

use std::collections::BTreeMap;

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

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
const INVISIBLE_FORMAT: [(char, char); 5] = [
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{2069}'),
    ('\u{FEFF}', '\u{FEFF}'),
];

fn is_invisible_format(c: char) -> bool {
    INVISIBLE_FORMAT
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// The regular expression for what `check_text` accepts, for the OpenAPI document: no control
/// characters (newline, carriage return and tab allowed when `multiline`), no invisible format
/// characters on one line, none of `also_refused`, and, when `min > 0`, one visible character.
pub(crate) fn text_pattern(min: usize, multiline: bool, also_refused: &str) -> String {
    let controls = if multiline {
        r"\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F"
    } else {
        r"\x00-\x1F\x7F-\x9F"
    };
    let invisible: String = if multiline {
        String::new()
    } else {
        INVISIBLE_FORMAT
            .iter()
            .map(|&(first, last)| match first == last {
                true => format!(r"\u{:04X}", u32::from(first)),
                false => format!(r"\u{:04X}-\u{:04X}", u32::from(first), u32::from(last)),
            })
            .collect()
    };
    let allowed = format!("[^{also_refused}{controls}{invisible}]");
    if min == 0 {
        format!("^{allowed}*$")
    } else {
        let visible = format!(r"[^{also_refused}\s\x00-\x1F\x7F-\x9F{invisible}]");
        format!("^{allowed}*{visible}{allowed}*$")
    }
}

/// The OpenAPI schema of a string of `min` to `max` characters matching `pattern`.
pub(crate) fn string_schema(min: usize, max: usize, pattern: Option<String>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length((min > 0).then_some(min))
        .max_length(Some(max))
        .pattern(pattern)
        .into()
}

/// Implements `utoipa::ToSchema` for a string newtype: `$name` is documented as a string of
/// `$min` to `$max` characters matching `$pattern` (an `Option<String>`).
macro_rules! schema_of_string {
    ($name:ident, $min:expr, $max:expr, $pattern:expr) => {
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                super::text::string_schema($min, $max, $pattern)
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use schema_of_string;

/// One invalid field: its name as sent and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    field: &'static str,
    message: String,
}

/// Every invalid field of a request: field name to messages, as sent in a 422.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ValidationErrors(BTreeMap<String, Vec<String>>);

impl ValidationErrors {
    fn push(&mut self, field: &str, message: String) {
        self.0.entry(field.to_owned()).or_default().push(message);
    }

    /// Field name to messages.
    pub fn into_map(self) -> BTreeMap<String, Vec<String>> {
        self.0
    }
}

impl From<FieldError> for ValidationErrors {
    fn from(error: FieldError) -> Self {
        let mut errors = Self::default();
        errors.push(error.field, error.message);
        errors
    }
}

/// A field's parsed value, or its error.
pub type Checked<T> = Result<T, FieldError>;

/// Names the error of a parse after `field`.
pub fn check<T>(field: &'static str, result: Result<T, String>) -> Checked<T> {
    result.map_err(|message| FieldError { field, message })
}

/// Parses a field that must be sent; a missing one "can't be blank".
pub fn required<T>(
    field: &'static str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Checked<T> {
    check(field, value.ok_or_else(|| "can't be blank".to_owned()))
        .and_then(|v| check(field, parse(v)))
}

/// Parses a field that may be left out.
pub fn optional<T>(
    field: &'static str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Checked<Option<T>> {
    check(field, value.map(parse).transpose())
}

/// An update must change something: an error under `field` when `any` is false.
pub fn at_least_one(field: &'static str, any: bool) -> Checked<()> {
    match any {
        true => Ok(()),
        false => check(field, Err("at least one field is required".to_owned())),
    }
}

/// Turns a tuple of checked fields into the tuple of their values, or every error at once.
pub trait AllValid {
    type Values;

    /// # Returns
    /// The values when every field is valid, else the errors of all invalid fields.
    fn all_valid(self) -> Result<Self::Values, ValidationErrors>;
}

macro_rules! all_valid_for_tuples {
    ($($value:ident: $ty:ident),+) => {
        impl<$($ty),+> AllValid for ($(Checked<$ty>,)+) {
            type Values = ($($ty,)+);

            fn all_valid(self) -> Result<Self::Values, ValidationErrors> {
                match self {
                    ($(Ok($value),)+) => Ok(($($value,)+)),
                    ($($value,)+) => {
                        let mut errors = ValidationErrors::default();
                        $(if let Err(e) = $value {
                            errors.push(e.field, e.message);
                        })+
                        Err(errors)
                    }
                }
            }
        }
    };
}

all_valid_for_tuples!(a: A, b: B);
all_valid_for_tuples!(a: A, b: B, c: C);
all_valid_for_tuples!(a: A, b: B, c: C, d: D);
all_valid_for_tuples!(a: A, b: B, c: C, d: D, e: E);
all_valid_for_tuples!(a: A, b: B, c: C, d: D, e: E, f: F);

/// Collects field errors one by one, for inputs read in steps (query parameters); a request
/// body converts with `AllValid` instead.
#[derive(Debug, Default)]
pub struct Validation {
    errors: ValidationErrors,
}

impl Validation {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses an optional field, recording its error under `field`.
    pub fn optional<T>(
        &mut self,
        field: &'static str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match optional(field, value, parse) {
            Ok(value) => value,
            Err(e) => {
                self.errors.push(e.field, e.message);
                None
            }
        }
    }

    /// `Ok` when nothing failed, else every message.
    pub fn finish(self) -> Result<(), ValidationErrors> {
        if self.errors.0.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// The `maxLength` a string newtype's schema states, for tests comparing it with `parse`.
#[cfg(test)]
pub(crate) fn stated_max_length<T: utoipa::PartialSchema>() -> usize {
    match T::schema() {
        RefOr::T(Schema::Object(object)) => object.max_length.unwrap_or(usize::MAX),
        _ => panic!("not a string schema"),
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

    #[test]
    fn one_line_patterns_refuse_the_invisible_format_characters() {
        let pattern = text_pattern(1, false, ",");
        assert_eq!(
            pattern,
            r"^[^,\x00-\x1F\x7F-\x9F\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]*[^,\s\x00-\x1F\x7F-\x9F\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF][^,\x00-\x1F\x7F-\x9F\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]*$"
        );
        assert_eq!(
            text_pattern(0, true, ""),
            r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
        );
    }

    #[test]
    fn all_valid_reports_every_invalid_field_at_once() {
        let parse = |s: &str| s.parse::<u8>().map_err(|_| "is not a number".to_owned());
        let ok = (required("a", Some("1"), parse), optional("b", None, parse)).all_valid();
        assert_eq!(ok, Ok((1, None)));
        let errors = (
            required("a", None, parse),
            optional("b", Some("x"), parse),
            at_least_one("c", true),
        )
            .all_valid()
            .unwrap_err()
            .into_map();
        assert_eq!(errors["a"], ["can't be blank"]);
        assert_eq!(errors["b"], ["is not a number"]);
        assert!(!errors.contains_key("c"));
    }
}
