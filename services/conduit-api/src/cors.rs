//! Cross-origin access for browser frontends (`CONDUIT_CORS_ORIGINS`).
//!
//! A RealWorld frontend is served from its own origin, so the browser asks before each
//! non-simple call (a preflight: `OPTIONS` with `Access-Control-Request-Method`) and lets the
//! page read a response only if it names the page's origin. The `actix-cors` middleware does the
//! protocol; this module turns the setting into its configuration and shapes its answers:
//! a preflight gets 204 with no body, a refused one a 400 in the API's error format.
//!
//! Tokens travel in the `Authorization` header, never in cookies, so credentials mode is never
//! enabled and `*` is a safe default: a page from another origin can only send what its own
//! script holds.

use std::fmt;

use actix_cors::{Cors, CorsError};
use actix_web::body::MessageBody;
use actix_web::dev::{RequestHead, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Condition, Next};

use crate::error::{error_response, FieldErrors};

/// Seconds a browser may cache a preflight answer (Chromium caps it at 7200).
pub const MAX_AGE_SECONDS: usize = 3600;

/// Request headers a page may send besides the CORS-safelisted ones.
pub const ALLOWED_HEADERS: [&str; 4] = [
    "authorization",
    "content-type",
    "idempotency-key",
    "traceparent",
];

/// Response headers a page may read besides the CORS-safelisted ones.
pub const EXPOSED_HEADERS: [&str; 4] = [
    "x-served-by",
    "x-trace-id",
    "idempotent-replayed",
    "retry-after",
];

/// Methods the API serves.
pub const ALLOWED_METHODS: [Method; 4] = [Method::GET, Method::POST, Method::PUT, Method::DELETE];

/// Which origins may read the API's responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    /// No CORS headers at all: only same-origin pages (and non-browser clients) can use the API.
    Off,
    /// Any origin (`Access-Control-Allow-Origin: *`).
    Any,
    /// These origins, each `scheme://host[:port]` as a browser sends it in `Origin`.
    List(Vec<String>),
}

/// Why a `CONDUIT_CORS_ORIGINS` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOrigins(String);

impl fmt::Display for InvalidOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; expected `*`, `none`, or comma-separated origins like \
             http://localhost:5173,https://app.example.com",
            self.0
        )
    }
}

impl std::error::Error for InvalidOrigins {}

impl CorsPolicy {
    /// Reads the setting: `*`, `none` (or an empty value) to switch CORS off, or a
    /// comma-separated list of origins. Scheme and host are lower-cased and a default port is
    /// dropped, as browsers do.
    pub fn parse(value: &str) -> Result<Self, InvalidOrigins> {
        let value = value.trim();
        if value.is_empty() || value.eq_ignore_ascii_case("none") {
            return Ok(Self::Off);
        }
        if value == "*" {
            return Ok(Self::Any);
        }
        let mut origins = Vec::new();
        for item in value.split(',').map(str::trim) {
            if item == "*" || item.eq_ignore_ascii_case("none") {
                return Err(InvalidOrigins(format!(
                    "`{item}` cannot be combined with other origins"
                )));
            }
            let origin = parse_origin(item)?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(Self::List(origins))
    }

    /// The middleware for this policy; a no-op when CORS is off.
    pub fn middleware(&self) -> Condition<Cors> {
        let cors = Cors::default()
            .allowed_methods(ALLOWED_METHODS)
            .allowed_headers(ALLOWED_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(MAX_AGE_SECONDS);
        match self {
            Self::Off => Condition::new(false, cors),
            Self::Any => Condition::new(true, cors.allow_any_origin().send_wildcard()),
            Self::List(origins) => Condition::new(
                true,
                origins
                    .iter()
                    .fold(cors, |cors, origin| cors.allowed_origin(origin)),
            ),
        }
    }
}

impl fmt::Display for CorsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("none"),
            Self::Any => f.write_str("*"),
            Self::List(origins) => f.write_str(&origins.join(",")),
        }
    }
}

/// One origin, normalised the way a browser serialises it.
fn parse_origin(item: &str) -> Result<String, InvalidOrigins> {
    let invalid = |why: &str| InvalidOrigins(format!("`{item}` is not an origin: {why}"));
    if item.is_empty() {
        return Err(invalid("empty entry in the list"));
    }
    let Some((scheme, authority)) = item.split_once("://") else {
        return Err(invalid("it needs a scheme, http:// or https://"));
    };
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return Err(invalid("the scheme must be http or https")),
    };
    if let Some(bad) = authority
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '@' | '\\') || !c.is_ascii_graphic())
    {
        let why = if bad == '/' {
            "an origin has no path, not even a trailing /".to_owned()
        } else {
            format!("it must not contain {bad:?}")
        };
        return Err(invalid(&why));
    }
    // An IPv6 host is bracketed and contains colons itself.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, "")) => (format!("[{v6}]"), None),
            Some((v6, port)) => match port.strip_prefix(':') {
                Some(port) => (format!("[{v6}]"), Some(port)),
                None => return Err(invalid("unexpected text after the IPv6 address")),
            },
            None => return Err(invalid("unclosed [ in the host")),
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        },
    };
    let host_ok = if host.starts_with('[') {
        host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    };
    if !host_ok {
        return Err(invalid(
            "the host is empty or has characters a host cannot have",
        ));
    }
    let host = host.to_ascii_lowercase();
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(port) => match port.parse::<u16>() {
            Ok(0) | Err(_) => Err(invalid("the port must be a number from 1 to 65535")),
            Ok(_) if port.trim_start_matches('0') == default_port => {
                Ok(format!("{scheme}://{host}"))
            }
            Ok(n) => Ok(format!("{scheme}://{host}:{n}")),
        },
    }
}

/// Whether the request is a CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
pub fn is_preflight(head: &RequestHead) -> bool {
    head.method == Method::OPTIONS
        && head
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Wraps the CORS middleware: an accepted preflight is answered 204 (no content) rather than
/// `actix-cors`'s 200, and a refused one gets the API's JSON error body instead of plain text.
/// Everything else passes through untouched.
pub async fn shape_preflight(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> actix_web::Result<ServiceResponse<impl MessageBody>> {
    let preflight = is_preflight(req.head());
    let mut res = next.call(req).await?.map_into_boxed_body();
    if !preflight {
        return Ok(res);
    }
    if let Some(refusal) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
        .map(ToString::to_string)
    {
        let mut errors = FieldErrors::new();
        errors.insert("cors".to_owned(), vec![refusal]);
        let (req, old) = res.into_parts();
        let mut new = error_response(StatusCode::BAD_REQUEST, errors);
        if let Some(vary) = old.headers().get(header::VARY) {
            new.headers_mut().insert(header::VARY, vary.clone());
        }
        return Ok(ServiceResponse::new(req, new));
    }
    let answered_by_cors = res
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_METHODS);
    if res.status() == StatusCode::OK && answered_by_cors {
        *res.response_mut().status_mut() = StatusCode::NO_CONTENT;
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> CorsPolicy {
        CorsPolicy::List(items.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn star_none_and_empty() {
        assert_eq!(CorsPolicy::parse("*"), Ok(CorsPolicy::Any));
        assert_eq!(CorsPolicy::parse(" * "), Ok(CorsPolicy::Any));
        assert_eq!(CorsPolicy::parse("none"), Ok(CorsPolicy::Off));
        assert_eq!(CorsPolicy::parse("NONE"), Ok(CorsPolicy::Off));
        assert_eq!(CorsPolicy::parse(""), Ok(CorsPolicy::Off));
        assert_eq!(CorsPolicy::parse("  "), Ok(CorsPolicy::Off));
    }

    #[test]
    fn lists_are_normalised_like_browser_origins() {
        assert_eq!(
            CorsPolicy::parse(
                "http://localhost:5173, HTTPS://App.Example.com:443,http://127.0.0.1:80"
            ),
            Ok(list(&[
                "http://localhost:5173",
                "https://app.example.com",
                "http://127.0.0.1"
            ]))
        );
        assert_eq!(
            CorsPolicy::parse("http://[::1]:8080,http://[::1]:8080"),
            Ok(list(&["http://[::1]:8080"]))
        );
        assert_eq!(
            CorsPolicy::parse("https://a.example:8443")
                .unwrap()
                .to_string(),
            "https://a.example:8443"
        );
    }

    #[test]
    fn invalid_origins_are_refused_with_the_reason() {
        for (value, reason) in [
            ("localhost:5173", "scheme"),
            ("ftp://example.com", "http or https"),
            ("http://localhost:5173/", "no path"),
            ("http://example.com/app", "no path"),
            ("http://user@example.com", "'@'"),
            ("http://", "host"),
            ("http://exa mple.com", "' '"),
            ("http://example.com:0", "port"),
            ("http://example.com:99999", "port"),
            ("http://example.com:abc", "port"),
            ("http://[::1", "unclosed"),
            ("http://[zz]:80", "host"),
            ("http://a.example,,http://b.example", "empty entry"),
            ("http://a.example,*", "cannot be combined"),
            ("none,http://a.example", "cannot be combined"),
        ] {
            let err = CorsPolicy::parse(value).expect_err(value).to_string();
            assert!(err.contains(reason), "{value}: {err}");
            assert!(err.contains("expected `*`, `none`"), "{value}: {err}");
        }
    }
}
