//! Article and comment fields, tags, slugs, and the validated article a request makes.

use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::text::{check_text, schema_of_string, text_pattern};

/// A text field of `$min` to `$max` characters, on one line unless `$multiline`: the rule
/// `parse` checks and the OpenAPI schema that states it.
macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, $multiline:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, String> {
                check_text(s, $min, $max, $multiline)?;
                Ok(Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        schema_of_string!($name, $min, $max, Some(text_pattern($min, $multiline, "")));
    };
}

text_newtype!(
    /// An article title, 1 to 200 characters on one line.
    Title, 1, 200, false
);
text_newtype!(
    /// An article description, 1 to 1000 characters.
    Description, 1, 1000, true
);
text_newtype!(
    /// An article body, 1 to 60000 characters.
    ArticleBody, 1, 60_000, true
);
text_newtype!(
    /// A comment body, 1 to 10000 characters.
    CommentBody, 1, 10_000, true
);

/// One tag: 1 to 40 characters, no commas or control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tag(String);

const TAG_MAX: usize = 40;
schema_of_string!(Tag, 1, TAG_MAX, Some(text_pattern(1, false, ",")));

impl Tag {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        check_text(s, 1, TAG_MAX, false).map_err(|m| format!("tag {m}"))?;
        if s.contains(',') {
            return Err("tag must not contain ','".into());
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An article's tags: at most 20 as sent, stored without duplicates, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagList(Vec<Tag>);

const TAGS_MAX: usize = 20;

impl PartialSchema for TagList {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Tag::schema())
            .max_items(Some(TAGS_MAX))
            .into()
    }
}

impl ToSchema for TagList {}

impl TagList {
    pub fn parse(tags: &[String]) -> Result<Self, String> {
        // Counted as sent, so the limit does not depend on which tags turn out to be duplicates.
        if tags.len() > TAGS_MAX {
            return Err(format!("may hold at most {TAGS_MAX} tags"));
        }
        let mut parsed = tags
            .iter()
            .map(|t| Tag::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        parsed.sort();
        parsed.dedup();
        Ok(Self(parsed))
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(Tag::as_str)
    }
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }
}

/// A new article, every field valid.
#[derive(Debug)]
pub struct NewArticle {
    pub title: Title,
    pub description: Description,
    pub body: ArticleBody,
    pub tags: TagList,
}

/// Changes to an article, every field sent valid; `None` leaves a field as it is.
#[derive(Debug)]
pub struct ArticleUpdate {
    pub title: Option<Title>,
    pub description: Option<Description>,
    pub body: Option<ArticleBody>,
    pub tags: Option<TagList>,
}

/// Slugs a route of its own shadows: `GET /api/articles/feed` is the feed, never an article.
const RESERVED_SLUGS: [&str; 1] = ["feed"];

/// The URL-safe base of a slug: lowercase ASCII letters and digits joined by single dashes,
/// at most 80 characters; `article` when nothing usable is left, and `<slug>-article` for a
/// reserved one. Collisions get a numeric suffix when the article is stored.
pub fn slugify(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 80 {
            break;
        }
    }
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        "article".to_owned()
    } else if RESERVED_SLUGS.contains(&slug) {
        format!("{slug}-article")
    } else {
        slug.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::super::text::stated_max_length;
    use super::*;

    #[test]
    fn schemas_state_the_lengths_parse_checks() {
        fn at_limit<T: PartialSchema>(parse: fn(&str) -> Result<T, String>) {
            let max = stated_max_length::<T>();
            assert!(parse(&"x".repeat(max)).is_ok(), "{max}");
            assert!(parse(&"x".repeat(max + 1)).is_err(), "{max}");
        }
        at_limit(Title::parse);
        at_limit(Description::parse);
        at_limit(ArticleBody::parse);
        at_limit(CommentBody::parse);
        at_limit(Tag::parse);
    }

    #[test]
    fn slugs_are_lowercase_dashed_and_never_empty() {
        assert_eq!(
            slugify("How to Train Your Dragon"),
            "how-to-train-your-dragon"
        );
        assert_eq!(slugify("  a::b{c}*d  "), "a-b-c-d");
        assert_eq!(slugify("***"), "article");
        assert_eq!(slugify("Feed"), "feed-article");
        assert_eq!(slugify("Feed me"), "feed-me");
        assert_eq!(slugify("Ünïcode ok"), "n-code-ok");
        assert!(slugify(&"word ".repeat(100)).len() <= 80);
    }

    #[test]
    fn tag_lists_are_sorted_and_deduplicated() {
        let tags = TagList::parse(&["b".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(tags.to_vec(), vec!["a", "b"]);
        assert!(TagList::parse(&["".into()]).is_err());
        assert!(TagList::parse(&["a,b".into()]).is_err());
        assert!(TagList::parse(&(0..21).map(|i| i.to_string()).collect::<Vec<_>>()).is_err());
    }

    #[test]
    fn text_fields_refuse_blank_and_nul() {
        assert!(Title::parse(" ").is_err());
        assert!(Title::parse("a\0b").is_err());
        assert!(Title::parse("line\nbreak").is_err());
        assert!(ArticleBody::parse("line\nbreak").is_ok());
    }
}
