//! Authentication: signed tokens from a key ring, the request extractors, and password hashing.
//!
//! Nothing here remembers a client: a token is verified from its signature and claims alone.

mod extractor;
mod jwt;
mod password;

pub(crate) use extractor::authenticate_request;
pub use extractor::{AuthUser, MaybeAuthUser};
pub use jwt::{keygen_line, Claims, KeyRing, KeyRingError, TokenError};
pub use password::{PasswordError, Passwords};
