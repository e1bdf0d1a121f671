//! The web dashboard, served by the coordinator itself from files compiled into the
//! binary: it works offline (no CDN, no build step) and can never be out of step with
//! the REST API it reads, since both ship in the same binary.
//!
//! The page is static; everything it shows comes from `/api/v1` (see [`crate::rest`]),
//! which checks the cluster token. The token is typed into the page (or passed in the
//! URL fragment, `#token=…` or after a route, `#/jobs/7?token=…`, which browsers never
//! send to the server) and kept in the tab's session storage; the page then drops it
//! from the address bar.
//!
//! Routes of the page live in the fragment too: `#/` (overview), `#/jobs`, `#/jobs/7`,
//! `#/workers`, `#/streams`, `#/models` (the model registry's governance view, read
//! from `/registry/v1/governance`), `#/dead-letters`. Every text the API returns (job
//! names and standard error are user-controlled) reaches the page as text nodes, never
//! as HTML.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");
const FAVICON_SVG: &str = include_str!("../ui/favicon.svg");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Returns the dashboard's routes: `/` redirects to `/ui/`, which serves the page.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui/") }))
        .route("/ui", get(|| async { Redirect::temporary("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/ui/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { Redirect::permanent("/ui/favicon.svg") }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSETS: [(&str, &str); 4] = [
        ("index.html", INDEX_HTML),
        ("app.js", APP_JS),
        ("app.css", APP_CSS),
        ("favicon.svg", FAVICON_SVG),
    ];

    /// The page works offline: nothing it loads comes from another host.
    #[test]
    fn the_assets_load_nothing_from_another_host() {
        for (name, text) in ASSETS {
            // The SVG namespace is a name, not something fetched.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            for other_host in ["http://", "https://", "url(//", "src=\"//", "href=\"//"] {
                assert!(!text.contains(other_host), "{name} contains `{other_host}`");
            }
        }
    }

    /// Text from the API reaches the page as text nodes: the script never parses HTML.
    #[test]
    fn the_script_never_parses_html() {
        for sink in [
            ".innerHTML",
            ".outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }
}
