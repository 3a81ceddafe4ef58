//! The redirect benchmark's baseline: the same HTTP stack (tokio, hyper, axum)
//! answering `GET /r/{code}` with a 302, with no lookup and no recording.
//! Usage: bare_redirect ADDR

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// The same allocator as the `vouch` binary, so the baseline differs only in work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn redirect(Path(code): Path<String>) -> impl IntoResponse {
    (StatusCode::FOUND, [(header::LOCATION, format!("https://example.com/landing?ref={code}"))])
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare redirect listening on http://{}", listener.local_addr()?);
    axum::serve(listener, axum::Router::new().route("/r/{code}", get(redirect))).await
}
