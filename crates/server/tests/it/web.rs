//! The web app on the client HTTP listener, beside the short link: its three files with their
//! types, gzipped to whoever accepts gzip, revalidated by `ETag`; every other path answered
//! as before.

use crate::harness::Server;
use flate2::read::GzDecoder;
use reqwest::StatusCode;
use std::io::Read;
use std::path::Path;

/// The built file as it is on disk, which the binary embeds.
fn dist(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/web/dist").join(file);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// A client that hands over the bytes as sent, whatever their coding.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder().no_gzip().build().unwrap()
}

#[tokio::test]
async fn the_web_app_is_served_at_the_root_of_the_http_listener() {
    let server = Server::start();
    let http = raw_client();

    let page = http.get(format!("{}/", server.http)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers().get("content-encoding"), None);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("'self'"));
    let text = page.text().await.unwrap();
    assert!(text.contains("/assets/app.js"), "{text}");

    for (path, file, content_type) in [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/assets/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "app.css", "text/css; charset=utf-8"),
    ] {
        let url = format!("{}{path}", server.http);
        let plain = http.get(&url).send().await.unwrap();
        assert_eq!(plain.status(), StatusCode::OK, "{path}");
        assert_eq!(plain.headers()["content-type"], content_type, "{path}");
        assert_eq!(plain.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(plain.headers()["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(plain.headers()["cache-control"], "no-cache", "{path}");
        assert_eq!(plain.bytes().await.unwrap(), dist(file), "{path}");

        let gzipped = http.get(&url).header("accept-encoding", "gzip").send().await.unwrap();
        assert_eq!(gzipped.status(), StatusCode::OK, "{path}");
        assert_eq!(gzipped.headers()["content-type"], content_type, "{path}");
        assert_eq!(gzipped.headers()["content-encoding"], "gzip", "{path}");
        assert_eq!(gzipped.headers()["vary"], "accept-encoding", "{path}");
        let etag = gzipped.headers()["etag"].clone();
        let mut body = Vec::new();
        GzDecoder::new(&gzipped.bytes().await.unwrap()[..]).read_to_end(&mut body).unwrap();
        assert_eq!(body, dist(file), "{path}");

        let again = http
            .get(&url)
            .header("accept-encoding", "gzip")
            .header("if-none-match", etag.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()["etag"], etag, "{path}");
        assert!(again.bytes().await.unwrap().is_empty(), "{path}");

        let head = http.head(&url).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK, "{path}");
        assert_eq!(head.headers()["content-type"], content_type, "{path}");
    }
}

#[tokio::test]
async fn paths_beside_the_web_app_answer_as_before() {
    let server = Server::start();
    let http = raw_client();
    for path in ["/nope", "/assets/", "/assets/other.js", "/index.html"] {
        let nowhere = http.get(format!("{}{path}", server.http)).send().await.unwrap();
        assert_eq!(nowhere.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(nowhere.headers()["x-missive-code"], "unknown_command", "{path}");
    }
    let ping = http
        .post(format!("{}/v1/ping", server.http))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), StatusCode::OK);
    assert_eq!(ping.headers()["content-type"], "application/json");
}

/// The aim the web app is held to: the first page, as sent compressed, under 150 KB in all.
const FIRST_PAGE_BYTES_MAX: usize = 150 * 1000;

#[tokio::test]
async fn the_first_page_is_under_150_kb_as_sent() {
    let server = Server::start();
    let http = raw_client();
    let mut sent = 0;
    for path in ["/", "/assets/app.js", "/assets/app.css"] {
        let answer = http
            .get(format!("{}{path}", server.http))
            .header("accept-encoding", "gzip, deflate, br")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.headers()["content-encoding"], "gzip", "{path}");
        sent += answer.bytes().await.unwrap().len();
    }
    assert!(sent < FIRST_PAGE_BYTES_MAX, "the first page is {sent} bytes compressed");
}
