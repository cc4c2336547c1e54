//! rag-api: the HTTP API of rag-agent as one axum `Router` — handlers, the
//! OpenAPI document and the mapping of every error to a status and a JSON
//! body.
//!
//! It depends on rag-core's service and traits only: no concrete backend,
//! no AWS SDK and no lambda runtime (the binary decides how the router is
//! served).

pub mod auth;
pub mod error;
mod extract;
pub mod guard;
mod metering;
pub mod observe;
pub mod openapi;
pub mod prometheus;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use rag_core::RagService;
use rag_core::ratelimit::RateLimiter;

pub use auth::{AuthMode, Authenticator};
pub use error::ApiError;
pub use guard::RequestGuard;
pub use prometheus::PrometheusMetrics;

/// Default request body limit: 50 MB, as the design sets.
pub const DEFAULT_BODY_LIMIT: usize = 50 * 1024 * 1024;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// The deployment's parts; how chat turns run was decided when it was
    /// built.
    pub service: Arc<RagService>,
    /// Whether ingestion requests wait for indexing unless they say
    /// otherwise; under Lambda nothing may run after the response.
    pub wait_for_ingest_by_default: bool,
    pub body_limit: usize,
    /// Host and Origin rules applied before every route.
    pub guard: RequestGuard,
    /// How each request's principal is established, and the keys the
    /// admin routes manage.
    pub auth: Authenticator,
    /// Requests per principal per minute, when limited.
    pub rate_limiter: Option<Arc<dyn RateLimiter>>,
    /// What `/metrics` serves (METRICS=prometheus); `None` answers 404.
    pub metrics: Option<Arc<PrometheusMetrics>>,
    /// Joins each request's span to its caller's trace, when traces are
    /// exported.
    pub trace_link: Option<observe::TraceLink>,
    /// The service of each use case (`BEDROCK_ROUTES`); `None` answers
    /// every request with `service`.
    pub use_cases: Option<Arc<dyn rag_core::routing::UseCaseServices>>,
}

impl AppState {
    pub fn new(service: Arc<RagService>) -> Self {
        Self {
            service,
            wait_for_ingest_by_default: false,
            body_limit: DEFAULT_BODY_LIMIT,
            guard: RequestGuard::default(),
            auth: Authenticator::default(),
            rate_limiter: None,
            metrics: None,
            trace_link: None,
            use_cases: None,
        }
    }
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    let body_limit = state.body_limit;
    let guard = state.guard.clone();
    let cors = guard.cors_layer();
    let auth = state.auth.clone();
    let rate_limiter = state.rate_limiter.clone();
    let meter = state.service.usage().clone();
    let observer = observe::Observer {
        metrics: meter.metrics().clone(),
        trace_link: state.trace_link.clone(),
    };
    let router = Router::new()
        .route("/", get(routes::ui::index))
        .route("/ui/app.js", get(routes::ui::script))
        .route("/ui/app.css", get(routes::ui::stylesheet))
        .route("/health", get(routes::health::health))
        .route("/me", get(routes::me::me))
        .route("/metrics", get(routes::metrics::metrics))
        .route("/query", post(routes::answer::query))
        .route("/chat", post(routes::answer::chat))
        .route("/chat/stream", post(routes::answer::chat_stream))
        .route("/conversations/{id}", get(routes::answer::conversation))
        .route("/documents", get(routes::documents::list))
        .route("/documents/ingest", post(routes::documents::ingest))
        .route("/documents/upload", post(routes::documents::upload))
        .route("/documents/uploads", post(routes::uploads::declare))
        .route("/documents/uploads/{id}", put(routes::uploads::receive))
        .route(
            "/ingestion-jobs",
            post(routes::jobs::start).get(routes::jobs::list),
        )
        .route("/ingestion-jobs/{id}", get(routes::jobs::get))
        .route(
            "/documents/{id}",
            get(routes::documents::get).delete(routes::documents::delete),
        )
        .route("/tools", get(routes::tools::list))
        .route(
            "/admin/keys",
            post(routes::keys::create).get(routes::keys::list),
        )
        .route("/admin/keys/{id}", delete(routes::keys::revoke))
        .route(
            "/admin/tenants/{tenant}",
            get(routes::usage::get_settings).put(routes::usage::put_settings),
        )
        .route("/usage", get(routes::usage::usage))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            meter,
            metering::count_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            rate_limiter,
            auth::rate_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(auth, auth::resolve))
        .layer(axum::middleware::from_fn(error::log_server_errors))
        .layer(axum::middleware::from_fn_with_state(guard, guard::check))
        .with_state(state);
    // Preflights are answered and refusals carry CORS headers a listed
    // origin can read.
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // Outermost of all, so every response (a preflight, a refused Host)
    // carries the request id and is logged and counted.
    router.layer(axum::middleware::from_fn_with_state(
        observer,
        observe::observe,
    ))
}
