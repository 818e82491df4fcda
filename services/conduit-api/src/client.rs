//! Who is calling, as far as the connection tells: the client's address, from the peer or,
//! behind a trusted proxy, from the `X-Forwarded-For` header it appends to.

use actix_web::HttpRequest;

/// The client's address: the peer, or with `trust_forwarded` (`CONDUIT_TRUST_FORWARDED`) the
/// last `X-Forwarded-For` entry, the one the proxy itself appended. Earlier entries are the
/// client's to write, so they are never used.
pub(crate) fn client_address(req: &HttpRequest, trust_forwarded: bool) -> String {
    if trust_forwarded {
        if let Some(last) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 64)
        {
            return last.to_owned();
        }
    }
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The address a rate limit counts: an IPv6 client by its /64 (one subscriber usually holds a
/// whole /64, and could otherwise pick a fresh address for every try), an IPv4 client (also one
/// written as IPv4-mapped IPv6) by its address. Anything else is counted as it is.
pub(crate) fn limited_address(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{prefix}/64")
            }
        },
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(forwarded: Option<&str>) -> HttpRequest {
        let req = TestRequest::default().peer_addr("10.0.0.9:5000".parse().unwrap());
        match forwarded {
            Some(value) => req.insert_header(("x-forwarded-for", value)),
            None => req,
        }
        .to_http_request()
    }

    #[test]
    fn the_peer_is_the_client_unless_the_proxy_is_trusted() {
        assert_eq!(client_address(&request(Some("1.2.3.4")), false), "10.0.0.9");
        assert_eq!(client_address(&request(None), true), "10.0.0.9");
    }

    #[test]
    fn behind_a_trusted_proxy_the_last_forwarded_entry_is_the_client() {
        let req = request(Some("6.6.6.6, 1.2.3.4"));
        assert_eq!(client_address(&req, true), "1.2.3.4");
        let blank = request(Some("6.6.6.6, "));
        assert_eq!(client_address(&blank, true), "10.0.0.9");
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_and_ipv4_by_address() {
        assert_eq!(limited_address("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(
            limited_address("2001:db8:1:2:ffff:1:2:3"),
            limited_address("2001:db8:1:2::9")
        );
        assert_ne!(
            limited_address("2001:db8:1:3::1"),
            limited_address("2001:db8:1:2::1")
        );
        assert_eq!(limited_address("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(limited_address("192.0.2.7"), "192.0.2.7");
        assert_eq!(limited_address("unknown"), "unknown");
    }
}
