//! The web app on the client HTTP listener: its three built files (`clients/web/dist/`),
//! embedded in the binary at compile time and served at `GET /`, `GET /assets/app.js` and
//! `GET /assets/app.css`. Each is answered gzipped when the request accepts gzip (compressed
//! once, on first use), with an `ETag` that is revalidated on every use, and with the
//! security headers that keep the page to its own origin.
//!
//! This module serves bytes fixed at build time and nothing else: it reads no file at run
//! time, takes no request body, and never reaches the link server or the logic layer. The
//! app talks to the server only through the short and long links, as every client does.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::OnceLock;

/// The page's policy: everything from this origin only (`'self'` covers its `ws:`/`wss:` in
/// current browsers), images and media also from the blobs and data URLs the app makes of
/// downloads, and nothing inline, no plugin, no `<base>`, no framing, no form posting.
const PAGE_POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; \
    media-src 'self' blob:; connect-src 'self'; style-src 'self'; script-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// One embedded file and how it is served.
struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    /// The page's `Content-Security-Policy`; the script and the style sheet are no documents.
    policy: Option<&'static str>,
    /// Worked out on the file's first request, not at start, so a process that never serves
    /// the app never compresses it.
    prepared: OnceLock<Prepared>,
}

/// What is worked out once per file.
struct Prepared {
    gzip: Bytes,
    /// The identity representation's tag, and the gzipped one's: a strong tag names one
    /// sequence of bytes, so the two codings of a file carry different tags.
    etag: HeaderValue,
    etag_gzip: HeaderValue,
}

macro_rules! asset {
    ($file:literal, $content_type:literal, $policy:expr) => {{
        const BYTES: &[u8] =
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/web/dist/", $file));
        Asset {
            bytes: BYTES,
            content_type: $content_type,
            policy: $policy,
            prepared: OnceLock::new(),
        }
    }};
}

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8", Some(PAGE_POLICY));
static SCRIPT: Asset = asset!("app.js", "text/javascript; charset=utf-8", None);
static STYLE: Asset = asset!("app.css", "text/css; charset=utf-8", None);

/// The web app's routes, merged into the client HTTP router (any state: they use none).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|request: HeaderMap| serve(&INDEX, request)))
        .route("/assets/app.js", get(|request: HeaderMap| serve(&SCRIPT, request)))
        .route("/assets/app.css", get(|request: HeaderMap| serve(&STYLE, request)))
}

impl Prepared {
    fn of(bytes: &[u8]) -> Prepared {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(bytes).expect("writing to memory does not fail");
        let gzip = encoder.finish().expect("writing to memory does not fail");
        let digest = Sha256::digest(bytes);
        let hash: String = digest[..8].iter().map(|byte| format!("{byte:02x}")).collect();
        let tag = |tag: String| HeaderValue::from_str(&tag).expect("hex digits and quotes");
        Prepared {
            gzip: Bytes::from(gzip),
            etag: tag(format!("\"{hash}\"")),
            etag_gzip: tag(format!("\"{hash}-gzip\"")),
        }
    }
}

/// The file's prepared form, made on its first request.
async fn prepared(asset: &'static Asset) -> &'static Prepared {
    if let Some(prepared) = asset.prepared.get() {
        return prepared;
    }
    // Compressing at the best level takes milliseconds for a large bundle: on the blocking
    // pool, not on an async worker.
    tokio::task::spawn_blocking(move || asset.prepared.get_or_init(|| Prepared::of(asset.bytes)))
        .await
        .expect("preparing an embedded file does not panic")
}

async fn serve(asset: &'static Asset, request: HeaderMap) -> Response {
    let prepared = prepared(asset).await;
    let gzip = accepts_gzip(&request);
    let (body, etag) = if gzip {
        (prepared.gzip.clone(), &prepared.etag_gzip)
    } else {
        (Bytes::from_static(asset.bytes), &prepared.etag)
    };
    let changed = etag.to_str().is_ok_and(|etag| matches_none_of(&request, etag));
    let mut response = if changed {
        Response::new(Body::from(body))
    } else {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    };
    let out = response.headers_mut();
    if changed {
        out.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        if gzip {
            out.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    out.insert(header::ETAG, etag.clone());
    // Kept, but checked with the server before every use: a new build shows at once.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Some(policy) = asset.policy {
        out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    }
    response
}

/// Whether `Accept-Encoding` lets the answer be gzipped (RFC 9110 §12.5.3): `gzip` (or its
/// alias `x-gzip`) with a weight above zero, or, when it is not named, `*` with one. No header
/// means identity: a client that does not say it decodes gzip may not.
fn accepts_gzip(request: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None::<u16>, None::<u16>);
    let values = request.get_all(header::ACCEPT_ENCODING).iter();
    for item in values.filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|parameter| parameter.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            // A weight that does not parse refuses: identity is always safe.
            .map_or(Some(1000), |(_, value)| weight_thousandths(value.trim()))
            .unwrap_or(0);
        // Named twice, the lower weight holds.
        let slot = if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if coding == "*" {
            &mut any
        } else {
            continue;
        };
        *slot = Some(slot.map_or(weight, |held| held.min(weight)));
    }
    gzip.or(any).is_some_and(|weight| weight > 0)
}

/// A `qvalue` in thousandths: `0`, `0.5`, `0.125`, `1`, `1.000`; anything else is `None`.
fn weight_thousandths(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let whole: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fraction: u16 = format!("{fraction:0<3}").parse().ok()?;
    (whole + fraction <= 1000).then_some(whole + fraction)
}

/// Whether `If-None-Match` names none of the current tag (weak comparison, RFC 9110 §13.1.2)
/// nor `*`: then the file is sent; else the client's copy is current and gets a 304.
fn matches_none_of(request: &HeaderMap, etag: &str) -> bool {
    let mut tags = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    !tags.any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn accept_encoding_allows_gzip_only_with_a_weight_above_zero() {
        let check = |values: &[&str], expect: bool| {
            let pairs: Vec<_> = values.iter().map(|v| (header::ACCEPT_ENCODING, *v)).collect();
            assert_eq!(accepts_gzip(&headers(&pairs)), expect, "{values:?}");
        };
        check(&[], false);
        check(&[""], false);
        check(&["gzip"], true);
        check(&["GZip"], true);
        check(&["x-gzip"], true);
        check(&["gzip, deflate, br, zstd"], true);
        check(&["br", "gzip"], true);
        check(&["deflate, br"], false);
        check(&["identity"], false);
        check(&["gzip;q=0"], false);
        check(&["gzip; q=0.000"], false);
        check(&["gzip;Q=0"], false);
        check(&["br, gzip;q=0"], false);
        check(&["gzip;q=0.001"], true);
        check(&["gzip;q=0.5, br;q=1"], true);
        check(&["gzip;q=1.000"], true);
        check(&["gzip;level=1;q=0"], false);
        check(&["gzip, gzip;q=0"], false);
        check(&["*"], true);
        check(&["*;q=0"], false);
        check(&["*, gzip;q=0"], false);
        check(&["*;q=0, gzip"], true);
        // Weights outside the grammar refuse.
        check(&["gzip;q=2"], false);
        check(&["gzip;q=1.5"], false);
        check(&["gzip;q=0.1234"], false);
        check(&["gzip;q=-1"], false);
        check(&["gzip;q="], false);
        check(&["gzipped"], false);
    }

    #[test]
    fn weights_read_as_thousandths() {
        let check = |value: &str, expect: Option<u16>| {
            assert_eq!(weight_thousandths(value), expect, "{value:?}")
        };
        check("0", Some(0));
        check("0.", Some(0));
        check("0.5", Some(500));
        check("0.125", Some(125));
        check("1", Some(1000));
        check("1.000", Some(1000));
        check("1.001", None);
        check("0.+1", None);
        check(".5", None);
        check("01", None);
    }

    async fn get(asset: &'static Asset, pairs: &[(header::HeaderName, &str)]) -> (Response, Bytes) {
        let mut response = serve(asset, headers(pairs)).await;
        let body = std::mem::take(response.body_mut());
        (response, axum::body::to_bytes(body, usize::MAX).await.unwrap())
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut out).expect("a gzip stream");
        out
    }

    #[tokio::test]
    async fn files_are_served_gzipped_only_to_whoever_accepts_gzip() {
        for asset in [&INDEX, &SCRIPT, &STYLE] {
            let (plain, body) = get(asset, &[]).await;
            assert_eq!(plain.status(), StatusCode::OK);
            assert_eq!(body, asset.bytes);
            assert_eq!(plain.headers()[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(plain.headers().get(header::CONTENT_ENCODING), None);
            assert_eq!(plain.headers()[header::VARY], "accept-encoding");

            let (gzipped, body) = get(asset, &[(header::ACCEPT_ENCODING, "gzip, br")]).await;
            assert_eq!(gzipped.status(), StatusCode::OK);
            assert_eq!(gzipped.headers()[header::CONTENT_ENCODING], "gzip");
            assert_eq!(gzipped.headers()[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(gzipped.headers()[header::VARY], "accept-encoding");
            assert_eq!(gunzip(&body), asset.bytes);
            assert_ne!(gzipped.headers()[header::ETAG], plain.headers()[header::ETAG]);
        }
    }

    #[tokio::test]
    async fn a_current_etag_gets_304_without_a_body() {
        for (asset, encoding) in [(&INDEX, "identity"), (&SCRIPT, "gzip"), (&STYLE, "gzip")] {
            let accept = || (header::ACCEPT_ENCODING, encoding);
            let (first, _) = get(asset, &[accept()]).await;
            let etag = first.headers()[header::ETAG].to_str().unwrap().to_string();
            assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
            assert_eq!(first.headers()[header::CACHE_CONTROL], "no-cache");

            for matching in
                [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}"), "*".into()]
            {
                let condition = (header::IF_NONE_MATCH, matching.as_str());
                let (again, body) = get(asset, &[accept(), condition]).await;
                assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{matching}");
                assert!(body.is_empty());
                assert_eq!(again.headers()[header::ETAG], etag.as_str());
                assert_eq!(again.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
                assert_eq!(again.headers().get(header::CONTENT_ENCODING), None);
            }
            let (stale, body) = get(asset, &[accept(), (header::IF_NONE_MATCH, "\"0000\"")]).await;
            assert_eq!(stale.status(), StatusCode::OK);
            assert!(!body.is_empty());
        }
        // The tag of the other coding is another representation: it is sent whole.
        let (gzipped, _) = get(&INDEX, &[(header::ACCEPT_ENCODING, "gzip")]).await;
        let etag = gzipped.headers()[header::ETAG].to_str().unwrap().to_string();
        let (plain, body) = get(&INDEX, &[(header::IF_NONE_MATCH, etag.as_str())]).await;
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(body, INDEX.bytes);
    }

    #[tokio::test]
    async fn every_answer_carries_the_security_headers_and_the_page_its_policy() {
        for asset in [&INDEX, &SCRIPT, &STYLE] {
            let (response, _) = get(asset, &[]).await;
            let out = response.headers();
            assert_eq!(out[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(out[header::REFERRER_POLICY], "no-referrer");
            let policy = out.get(header::CONTENT_SECURITY_POLICY);
            assert_eq!(policy.is_some(), std::ptr::eq(asset, &INDEX));
        }
        let (page, _) = get(&INDEX, &[]).await;
        assert_eq!(
            page.headers()[header::CONTENT_SECURITY_POLICY],
            "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
             connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; \
             base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
        );
    }
}
