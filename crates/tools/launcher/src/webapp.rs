//! Serves the built browser app (`clients/web/dist`) for development, the
//! way a CDN or static host would in production, plus `/config.json`
//! telling the app where the web BFF listens.
//!
//! The app and the BFF run on different ports of the same host, so calls
//! are cross-origin (CORS) but same-site (the session cookie is sent). The
//! BFF address in `/config.json` uses the host name the page was loaded
//! from, so `localhost` pages call `localhost` and `127.0.0.1` pages call
//! `127.0.0.1`: mixing them would make the cookie cross-site.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the app server needs to know.
#[derive(Debug)]
struct Site {
    root: PathBuf,
    web_bff_port: u16,
}

/// Serves `root` on `listener` until the process ends.
pub fn serve(listener: TcpListener, root: PathBuf, web_bff_port: u16) {
    let site = Arc::new(Site { root, web_bff_port });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let site = site.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let site = site.clone();
                    async move { Ok::<_, Infallible>(answer(&site, &request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// Whether the app has been built into `root`.
pub fn is_built(root: &Path) -> bool {
    root.join("index.html").is_file()
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Full::new(body.into()))
        .expect("static headers are valid")
}

/// The host name the page was loaded from, if it is a plain one.
fn page_host(request: &Request<Incoming>) -> String {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    if plain {
        name.to_owned()
    } else {
        "localhost".to_owned()
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

async fn answer(site: &Site, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path == "/config.json" {
        let config = format!(
            "{{\"webBffUrl\": \"http://{}:{}\"}}",
            page_host(request),
            site.web_bff_port
        );
        return respond(StatusCode::OK, "application/json", config);
    }
    if !is_built(&site.root) {
        let page = format!(
            "<!doctype html><title>Tailor</title><h1>The web app is not built</h1>\
             <p>Build it with <code>npm ci --prefix clients/web && npm run build --prefix clients/web</code> \
             and reload. Looked in <code>{}</code>.</p>",
            site.root.display()
        );
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/html; charset=utf-8",
            page,
        );
    }
    let relative = Path::new(path.trim_start_matches('/'));
    let safe = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if !safe {
        return respond(StatusCode::NOT_FOUND, "text/plain", "not found");
    }
    let mut file = site.root.join(relative);
    // A single-page app: every route without a file is the app itself.
    if path == "/" || (relative.extension().is_none() && !file.is_file()) {
        file = site.root.join("index.html");
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => respond(StatusCode::OK, content_type(&file), bytes),
        Err(_) => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}

/// Binds the app's port (0 for any).
pub async fn bind(port: u16) -> Result<(TcpListener, SocketAddr), String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("binding the web app on 127.0.0.1:{port}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, address))
}
