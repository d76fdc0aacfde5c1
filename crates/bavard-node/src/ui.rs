//! The web console, served by every node at `GET /ui`: one HTML page, one hand-written script
//! and one stylesheet (under `src/ui/`), embedded in the binary with `include_str!`; no build
//! step, no external resources. The page is a client of the public HTTP API and nothing else:
//! it polls `/v1/status`, `/v1/members` and `/v1/routing` every second while the tab is
//! visible (`/metrics` and `/v1/topics` less often), reads a topic's Server-Sent Events with
//! `fetch` (an `EventSource` cannot send the bearer token) and has forms for KV writes and
//! reads at a consistency level, publishing, DHT records and providers. API errors are shown as
//! the API states them.
//!
//! **Access.** The assets carry no data, so [`is_asset`] paths need no token even where the API
//! needs one everywhere (see [`crate::http::Access`]); the `Host` check still applies. When an
//! API call answers 401 the page asks for the token, keeps it in the tab's `sessionStorage` and
//! sends it as `Authorization: Bearer TOKEN`. Every answer carries a Content-Security-Policy
//! that allows only the node itself (no inline script or style, no framing), and
//! `Cache-Control: no-cache`, so a node upgrade is picked up on the next load.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The page (also served at `/ui/`).
const INDEX_HTML: &str = include_str!("ui/index.html");
/// The console's script.
const APP_JS: &str = include_str!("ui/app.js");
/// The console's stylesheet.
const STYLE_CSS: &str = include_str!("ui/style.css");

/// The policy of every console asset: the node's own origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// The paths of the console's static assets.
const ASSETS: [&str; 4] = ["/ui", "/ui/", "/ui/app.js", "/ui/style.css"];

/// Whether `path` names one of the console's static assets, which carry no data and need no
/// token.
pub(crate) fn is_asset(path: &str) -> bool {
    ASSETS.contains(&path)
}

/// The console's routes, each registered with its OpenAPI description.
pub(crate) fn documented_routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(page_slash))
        .routes(routes!(script))
        .routes(routes!(stylesheet))
}

/// The console's routes, to merge into the API router (inside its access guard).
pub fn router() -> Router {
    documented_routes().split_for_parts().0
}

#[utoipa::path(get, path = "/ui", tag = "console", summary = "The web console (no token needed; it asks for one when the API does)",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

#[utoipa::path(get, path = "/ui/", tag = "console", summary = "The web console",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
async fn page_slash() -> Response {
    page().await
}

#[utoipa::path(get, path = "/ui/app.js", tag = "console", summary = "The console's script",
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String)))]
async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

#[utoipa::path(get, path = "/ui/style.css", tag = "console", summary = "The console's stylesheet",
    responses((status = 200, description = "The stylesheet", content_type = "text/css", body = String)))]
async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    async fn get(path: &str) -> Response {
        router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_and_a_self_only_policy() {
        for (path, ty) in [
            ("/ui", "text/html"),
            ("/ui/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ] {
            let resp = get(path).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let h = resp.headers();
            assert!(h[header::CONTENT_TYPE].to_str().unwrap().starts_with(ty));
            assert_eq!(h[header::CACHE_CONTROL], "no-cache");
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"));
            assert!(is_asset(path));
        }
    }

    #[test]
    fn only_the_assets_are_exempt_from_the_token() {
        for path in ["/ui/x", "/ui/../v1/status", "/v1/status", "/uix", "/"] {
            assert!(!is_asset(path), "{path}");
        }
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX_HTML.contains(r#"src="/ui/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/ui/style.css""#));
        // CSP forbids inline script and style; an attribute would be silently ignored.
        assert!(!INDEX_HTML.contains("<script>") && !INDEX_HTML.contains("style="));
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
    }
}
