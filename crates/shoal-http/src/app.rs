//! The axum [`Router`] of the API over a [`Backend`], and serving it until asked to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tokio::sync::watch;

use axum::Extension;
use shoal_frontdoor::{Acl, UserSlot, metrics};

use crate::auth::{authenticate, authorize};
use crate::inflight::BodyBudget;
use crate::request::{
    OCTET_STREAM, accepts_octet_stream, is_octet_stream, key_from_path, parse_json_write_bytes,
    query_ttl, read_body,
};
use crate::{ApiError, HttpSettings, HttpStats, dashboard, guard};

/// The keyspace behind the API, and the settings it is served with: a node's own store (or
/// the key's owner in its cluster), or the proxy's upstream client.
///
/// Keys reach it decoded and checked ([`max_key_size`](Self::max_key_size)); values and TTLs
/// parsed from the body and the query. Its errors are answered as they are (see [`ApiError`]
/// for the status of each).
pub trait Backend: Send + Sync + 'static {
    /// The value of `key`, or `None` if there is no such key.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Bytes>, ApiError>> + Send;

    /// Stores `value` under `key`, expiring in `ttl_ms` milliseconds from now, or never (a
    /// write without a TTL clears any TTL the key had, as `SET` does).
    fn set(
        &self,
        key: &[u8],
        value: Bytes,
        ttl_ms: Option<u64>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Deletes `key`: whether it existed.
    fn delete(&self, key: &[u8]) -> impl Future<Output = Result<bool, ApiError>> + Send;

    /// The `/metrics` page, OpenMetrics text ([`metrics::CONTENT_TYPE`]), which should show
    /// the router's request counts `http` too ([`HttpStats::encode`]).
    fn metrics_text(&self, http: &Arc<HttpStats>) -> String;

    /// The users and permissions requests are checked against (the front door's: a changed
    /// password or user applies at once). Every request but `GET /health` must authenticate
    /// when the `default` user has a password.
    fn acl(&self) -> &Acl;

    /// The longest key, in bytes (`max-key-size`): a longer one is a `400`.
    fn max_key_size(&self) -> usize;

    /// The longest body, in bytes (`proto-max-bulk-len`): a longer one is a `413`.
    fn max_body(&self) -> usize;

    /// The largest `ttl_ms` (body or query) that is a TTL at all: a larger one is refused as
    /// one that is not a positive integer is ([`ApiError::BadTtl`]), as soon as it is read.
    /// All of `u64` by default, for a backend that checks the expiry time itself (and answers
    /// [`ApiError::TtlTooLarge`]).
    fn max_ttl_ms(&self) -> u64 {
        u64::MAX
    }

    /// Whether the backend serves now, for `GET /health` (see [`Health`]). Always
    /// [`Health::Ok`] by default.
    fn health(&self) -> Health {
        Health::Ok
    }

    /// The cluster as this server sees it, for `GET /cluster` and the page that draws it,
    /// `GET /dashboard` (see `dashboard.rs`): a JSON document whose shape is the backend's
    /// (a node's is `shoal_cluster::view::ClusterView`). Its errors are answered as they are.
    /// `None` (the default): the server has no such view, and both paths are `404`s. The
    /// future is only awaited for `GET /cluster`.
    fn cluster_view(
        &self,
    ) -> Option<impl Future<Output = Result<serde_json::Value, ApiError>> + Send> {
        None::<std::future::Ready<Result<serde_json::Value, ApiError>>>
    }
}

/// What `GET /health` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Health {
    /// `200 {"status": "ok"}`.
    #[default]
    Ok,
    /// `200 {"status": "degraded", "reason": ...}`: it serves, but something a client or an
    /// operator should know is wrong (a cluster whose controller lost its majority, say).
    Degraded(String),
    /// `503 {"status": "unavailable", "reason": ...}`: it cannot serve (a node still joining
    /// its cluster, or a primary without its lease).
    Unavailable(String),
}

/// The API over a backend, with its guards ([`HttpSettings`]) and request statistics, ready to
/// [`serve`](HttpApi::serve).
#[derive(Debug)]
pub struct HttpApi {
    router: Router,
    stats: Arc<HttpStats>,
    settings: HttpSettings,
}

impl HttpApi {
    /// The API's routes over `backend`, guarded by `settings`, counting every request
    /// (method, status code, latency) in statistics of their own, which the backend's
    /// [`metrics_text`](Backend::metrics_text) is given to show.
    pub fn new<B: Backend>(backend: B, settings: HttpSettings) -> HttpApi {
        let stats = Arc::new(HttpStats::default());
        let state = AppState {
            backend: Arc::new(backend),
            stats: stats.clone(),
            budget: Arc::new(BodyBudget::new(
                settings.max_inflight_bytes,
                settings.timeout,
            )),
            settings: Arc::new(settings.clone()),
        };
        let router = Router::new()
            .route("/health", get(health::<B>).fallback(method_not_allowed))
            .route(
                "/metrics",
                get(metrics_page::<B>).fallback(method_not_allowed),
            )
            .route(
                "/dashboard",
                get(dashboard_page::<B>).fallback(method_not_allowed),
            )
            .route(
                "/cluster",
                get(cluster_view::<B>).fallback(method_not_allowed),
            )
            .route("/", any(empty_key))
            .route(
                "/{*key}",
                get(get_key::<B>)
                    .post(post_key::<B>)
                    .delete(delete_key::<B>)
                    .fallback(method_not_allowed),
            )
            .fallback(no_route)
            .layer(middleware::from_fn_with_state(
                state.clone(),
                require_user::<B>,
            ))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                refuse_browser_tricks::<B>,
            ))
            .with_state(state)
            .layer(middleware::from_fn_with_state(stats.clone(), count_request));
        HttpApi {
            router,
            stats,
            settings,
        }
    }

    /// The routes, to serve or to call directly (tests).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves the API on `listener` until `stop` turns true ([`crate::serve`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        crate::serve(
            listener,
            self.router,
            &self.settings,
            self.stats,
            None,
            stop,
        )
        .await
    }

    /// Serves the API over HTTPS with `tls` (a node's or a proxy's acceptor: its certificate,
    /// reloaded with it, and its client-certificate rule) until `stop` turns true.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: Arc<shoal_frontdoor::tls::TlsAcceptor>,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let tls = Some(tls);
        crate::serve(listener, self.router, &self.settings, self.stats, tls, stop).await
    }
}

/// The API's routes over `backend` with the default [`HttpSettings`].
pub fn router<B: Backend>(backend: B) -> Router {
    HttpApi::new(backend, HttpSettings::default()).router()
}

/// What every handler of a router shares.
struct AppState<B> {
    backend: Arc<B>,
    stats: Arc<HttpStats>,
    budget: Arc<BodyBudget>,
    settings: Arc<HttpSettings>,
}

impl<B> Clone for AppState<B> {
    fn clone(&self) -> Self {
        AppState {
            backend: self.backend.clone(),
            stats: self.stats.clone(),
            budget: self.budget.clone(),
            settings: self.settings.clone(),
        }
    }
}

/// Refuses what a browser was tricked into sending ([`guard::check`]), before credentials
/// are looked at.
async fn refuse_browser_tricks<B: Backend>(
    State(state): State<AppState<B>>,
    req: Request,
    next: Next,
) -> Response {
    match guard::check(req.headers(), &state.settings) {
        Ok(()) => next.run(req).await,
        Err(refused) => {
            tracing::debug!("HTTP request refused: {refused}");
            refused.into_response()
        }
    }
}

/// Counts every request with its method, status code and latency.
async fn count_request(State(stats): State<Arc<HttpStats>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let response = next.run(req).await;
    stats.record(&method, response.status(), started.elapsed());
    response
}

/// Authenticates every request but `GET /health` (see [`authenticate`]) and hands the user
/// to the handlers, which check its permissions.
async fn require_user<B: Backend>(
    State(AppState { backend, .. }): State<AppState<B>>,
    mut req: Request,
    next: Next,
) -> Response {
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    match authenticate(backend.acl(), header, peer) {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(refused) => {
            if header.is_some() {
                // Wrong credentials: the answer waits, so that one connection cannot try
                // passwords quickly (a request without any is answered at once), and
                // longer while its address keeps failing over all its connections.
                let wait = refused
                    .wait
                    .map_or(FAILED_AUTH_DELAY, |w| w.max(FAILED_AUTH_DELAY));
                tokio::time::sleep(wait).await;
            }
            refused.error.into_response()
        }
    }
}

/// How long the `401` to a request with wrong credentials waits.
const FAILED_AUTH_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

async fn health<B: Backend>(State(state): State<AppState<B>>) -> Response {
    match state.backend.health() {
        Health::Ok => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Health::Degraded(reason) => {
            Json(serde_json::json!({ "status": "degraded", "reason": reason })).into_response()
        }
        Health::Unavailable(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "reason": reason })),
        )
            .into_response(),
    }
}

/// `GET /metrics`: OpenMetrics, or Prometheus's text format 0.0.4 for a scraper whose
/// `Accept` prefers it ([`metrics::Format::negotiate`]).
async fn metrics_page<B: Backend>(
    State(state): State<AppState<B>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = metrics::Format::negotiate(accept);
    let content_type = HeaderValue::from_static(format.content_type());
    let text = format.render(state.backend.metrics_text(&state.stats));
    ([(CONTENT_TYPE, content_type)], text).into_response()
}

/// `GET /dashboard`: the page ([`dashboard::PAGE`]), for a backend with a cluster view.
async fn dashboard_page<B: Backend>(
    State(state): State<AppState<B>>,
) -> Result<Response, ApiError> {
    if state.backend.cluster_view().is_none() {
        return Err(ApiError::NoRoute);
    }
    Ok(dashboard::page())
}

/// `GET /cluster`: the backend's cluster view, as JSON.
async fn cluster_view<B: Backend>(State(state): State<AppState<B>>) -> Result<Response, ApiError> {
    let view = state
        .backend
        .cluster_view()
        .ok_or(ApiError::NoRoute)?
        .await?;
    Ok((
        [(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(view),
    )
        .into_response())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn no_route() -> ApiError {
    ApiError::NoRoute
}

async fn empty_key() -> ApiError {
    ApiError::EmptyKey
}

/// `GET /{key}`.
async fn get_key<B: Backend>(
    State(AppState { backend, .. }): State<AppState<B>>,
    Extension(user): Extension<Arc<UserSlot>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = key_from_path(&uri, backend.max_key_size())?;
    authorize(backend.acl(), &user, "get", &key)?;
    let value = backend.get(&key).await?.ok_or(ApiError::NotFound)?;
    if accepts_octet_stream(&headers) {
        let content_type = HeaderValue::from_static(OCTET_STREAM);
        return Ok(([(CONTENT_TYPE, content_type)], value).into_response());
    }
    let text = std::str::from_utf8(&value).map_err(|_| ApiError::NotUtf8)?;
    Ok(Json(serde_json::json!({ "value": text })).into_response())
}

/// `POST /{key}`.
async fn post_key<B: Backend>(
    State(AppState {
        backend,
        budget,
        settings,
        ..
    }): State<AppState<B>>,
    Extension(user): Extension<Arc<UserSlot>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let key = key_from_path(&uri, backend.max_key_size())?;
    authorize(backend.acl(), &user, "set", &key)?;
    let max_ttl_ms = backend.max_ttl_ms();
    let query_ttl = query_ttl(&uri, max_ttl_ms)?;
    let timeout = settings.timeout;
    let (body, _held) = read_body(body, &headers, backend.max_body(), &budget, timeout).await?;
    let (value, ttl_ms) = if is_octet_stream(&headers) {
        (body, query_ttl)
    } else {
        let (value, ttl_ms) = parse_json_write_bytes(&body, max_ttl_ms)?;
        drop(body);
        (value, ttl_ms.or(query_ttl))
    };
    backend.set(&key, value, ttl_ms).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /{key}`.
async fn delete_key<B: Backend>(
    State(AppState { backend, .. }): State<AppState<B>>,
    Extension(user): Extension<Arc<UserSlot>>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let key = key_from_path(&uri, backend.max_key_size())?;
    authorize(backend.acl(), &user, "del", &key)?;
    if backend.delete(&key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
