//! Which endpoints the server will call. A pusher's endpoint comes from a client, so a server
//! that POSTs to whatever it is given could be aimed at its own network (server-side request
//! forgery). Unless the operator allows private endpoints, an endpoint must be `https` on
//! the default port or any other, and its host must resolve only to public addresses: checked
//! at every connection (by the HTTP client's resolver), so a name that later points inward
//! is refused then.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use url::Url;

/// Endpoint URLs are at most this long.
pub const ENDPOINT_BYTES_MAX: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("the endpoint is not a URL")]
    NotAUrl,
    #[error("the endpoint is over {ENDPOINT_BYTES_MAX} bytes")]
    TooLong,
    #[error("the endpoint must be https")]
    NotHttps,
    #[error("the endpoint names a private, loopback or otherwise local address")]
    Private,
}

/// Checks a client's endpoint before it is stored.
pub fn check(endpoint: &str, allow_private: bool) -> Result<Url, EndpointError> {
    if endpoint.len() > ENDPOINT_BYTES_MAX {
        return Err(EndpointError::TooLong);
    }
    let url = Url::parse(endpoint).map_err(|_| EndpointError::NotAUrl)?;
    if allow_private {
        return match url.scheme() {
            "https" | "http" if url.host().is_some() => Ok(url),
            _ => Err(EndpointError::NotAUrl),
        };
    }
    if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::NotHttps);
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) if !is_public(IpAddr::V4(ip)) => Err(EndpointError::Private),
        Some(url::Host::Ipv6(ip)) if !is_public(IpAddr::V6(ip)) => Err(EndpointError::Private),
        Some(url::Host::Domain(name)) if name == "localhost" || name.ends_with(".localhost") => {
            Err(EndpointError::Private)
        }
        Some(_) => Ok(url),
        None => Err(EndpointError::NotAUrl),
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local, shared,
/// documentation, multicast, unspecified, or an IPv4 address mapped into IPv6 that is not).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// The HTTP client's resolver when private endpoints are refused: the system's answer, less
/// every address that is not public; no address left is an error.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_https_endpoints_unless_private_ones_are_allowed() {
        assert!(check("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        assert!(check("https://[2606:4700::1111]/x", false).is_ok());
        for (endpoint, error) in [
            ("http://push.example/x", EndpointError::NotHttps),
            ("https://127.0.0.1/x", EndpointError::Private),
            ("https://10.1.2.3/x", EndpointError::Private),
            ("https://169.254.169.254/latest", EndpointError::Private),
            ("https://[::1]/x", EndpointError::Private),
            ("https://[::ffff:192.168.0.1]/x", EndpointError::Private),
            ("https://[fd00::1]/x", EndpointError::Private),
            ("https://localhost:8443/x", EndpointError::Private),
            ("https://user:pw@push.example/x", EndpointError::NotHttps),
            ("not a url", EndpointError::NotAUrl),
        ] {
            assert_eq!(check(endpoint, false).unwrap_err(), error, "{endpoint}");
        }
        let long = format!("https://push.example/{}", "a".repeat(ENDPOINT_BYTES_MAX));
        assert_eq!(check(&long, false).unwrap_err(), EndpointError::TooLong);
        assert!(check("http://127.0.0.1:9000/push", true).is_ok());
        assert_eq!(check("ftp://127.0.0.1/x", true).unwrap_err(), EndpointError::NotAUrl);
    }
}
