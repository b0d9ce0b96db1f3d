//! The OpenAPI 3 document, generated from the handlers' annotations (utoipa).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::commands::{Accepted, QueueTask, Reason, RegisterAgent};
use crate::handlers::FixSummary;
use crate::reviews::{Review, ReviewAnswer};
use crate::{commands, handlers, reviews};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sentinel API",
        description = "Reads Sentinel's projections and appends commands to its fact log. \
                       Reads are eventually consistent; pass a command's `after` as \
                       `?after=` to read your own write."
    ),
    paths(
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        serve,
        handlers::list_fixes,
        handlers::get_fix,
        handlers::list_failures,
        handlers::list_decisions,
        handlers::list_agents,
        handlers::get_agent,
        handlers::get_task,
        commands::register_agent,
        commands::queue_task,
        commands::pause_agent,
        commands::resume_agent,
        commands::cancel_task,
        reviews::list,
        reviews::approve,
        reviews::reject,
    ),
    components(schemas(
        FixSummary,
        sentinel_projections::Fix,
        sentinel_projections::Failure,
        sentinel_projections::Decision,
        sentinel_projections::Agent,
        sentinel_projections::Task,
        RegisterAgent,
        QueueTask,
        Reason,
        Accepted,
        Review,
        ReviewAnswer,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "This document")))]
pub(crate) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
