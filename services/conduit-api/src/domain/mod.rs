//! Validated values. Each newtype can only be built through `parse`, so a handler holding one
//! knows it passed validation; each also states its rule as an OpenAPI schema. A request body
//! becomes a value here (`NewArticle`, `Registration`, ...) or the errors of all its fields.

mod article;
mod text;
mod user;

pub use article::{
    slugify, ArticleBody, ArticleUpdate, CommentBody, Description, NewArticle, Tag, TagList, Title,
};
pub use text::{
    at_least_one, check, optional, required, AllValid, Checked, FieldError, Validation,
    ValidationErrors,
};
pub use user::{
    Bio, Credentials, Email, ImageUrl, LoginPassword, Password, Registration, UserUpdate, Username,
};
