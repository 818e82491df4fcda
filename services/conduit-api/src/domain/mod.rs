//! Validated values. Each newtype can only be built through `parse`, so a handler holding one
//! knows it passed validation.

mod article;
mod text;
mod user;

pub use article::{slugify, ArticleBody, CommentBody, Description, Tag, TagList, Title};
pub use text::Validation;
pub use user::{Bio, Email, ImageUrl, Password, Username};
