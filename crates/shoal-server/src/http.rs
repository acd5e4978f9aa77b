//! The HTTP API (being written).

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::shared::Shared;

/// The HTTP API's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .with_state(shared)
}
