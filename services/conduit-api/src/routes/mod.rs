//! HTTP routes, one file per resource. Each file exposes `configure`, which `startup` merges in;
//! a handler's whole story (request shape, validation, store calls, response shape) is in its file.

mod articles;
mod comments;
mod health;
pub(crate) mod openapi;
mod profiles;
mod tags;
mod users;

use actix_web::web::ServiceConfig;
use chrono::{DateTime, SecondsFormat};

pub use comments::COMMENT_PAGE_BYTES;
pub use health::Draining;

/// Registers every route.
pub fn configure(cfg: &mut ServiceConfig) {
    health::configure(cfg);
    users::configure(cfg);
    profiles::configure(cfg);
    articles::configure(cfg);
    comments::configure(cfg);
    tags::configure(cfg);
    openapi::configure(cfg);
}

/// Formats Unix milliseconds as RFC 3339 UTC with milliseconds, e.g. `2026-11-28T05:00:00.123Z`.
pub(crate) fn timestamp(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `None` for an empty stored string, as the API sends `null` for an unset bio or image.
pub(crate) fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

/// The route template a request is served by (`/api/articles/{slug}`), read the way the router
/// reads the path: `/api/users/%6Cogin` is the login route too. `None` when no route matches.
pub(crate) fn matched_route(req: &actix_web::HttpRequest) -> Option<String> {
    req.resource_map().match_pattern(req.match_info().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(timestamp(1_795_842_000_123), "2026-11-28T05:00:00.123Z");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
    }
}
