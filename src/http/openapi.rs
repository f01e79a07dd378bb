//! The OpenAPI 3 document, collected from the handlers' `#[utoipa::path]` annotations by
//! `utoipa_axum`: a route and its documentation are registered by the same line, so the
//! document cannot list a route that does not exist or miss one that does.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{public, staff, statements, AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Donation ledger",
        description = "An event-sourced, verifiable donation ledger. Staff API behind bearer \
            tokens with roles; public read-only transparency API. Money is in integer minor \
            units (fen). Errors answer {\"error\": {\"code\", \"message\", \"items\"?}}. \
            See docs/HTTP.md."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, public::PublicDonationData)),
    tags(
        (name = "staff", description = "Bearer token required; roles recorder, approver, admin, auditor"),
        (name = "public", description = "No authentication; never any donor personal data"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ldg_ followed by 64 hex digits")
                    .build(),
            ),
        );
    }
}

/// Every documented route, with its document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(staff::command))
        .routes(routes!(staff::open_project))
        .routes(routes!(staff::close_project))
        .routes(routes!(staff::record_donation))
        .routes(routes!(staff::record_batch))
        .routes(routes!(staff::refund_donation))
        .routes(routes!(staff::record_refund_fee_returned))
        .routes(routes!(staff::get_donation))
        .routes(routes!(staff::freeze_match))
        .routes(routes!(staff::unfreeze_match))
        .routes(routes!(staff::release_match))
        .routes(routes!(staff::make_pledge))
        .routes(routes!(staff::cancel_pledge))
        .routes(routes!(staff::commit_pool))
        .routes(routes!(staff::close_pool))
        .routes(routes!(staff::request_payout, staff::list_payouts))
        .routes(routes!(staff::approve_payout))
        .routes(routes!(staff::reject_payout))
        .routes(routes!(staff::disburse_payout))
        .routes(routes!(staff::request_move, staff::list_moves))
        .routes(routes!(staff::approve_move))
        .routes(routes!(staff::reject_move))
        .routes(routes!(staff::create_token, staff::list_tokens))
        .routes(routes!(staff::revoke_token))
        .routes(routes!(staff::whoami))
        .routes(routes!(staff::staff_events))
        .routes(routes!(statements::import_statement))
        .routes(routes!(statements::reconciliation))
        .routes(routes!(statements::resolve_exception))
        .routes(routes!(public::projects))
        .routes(routes!(public::project))
        .routes(routes!(public::receipt))
        .routes(routes!(public::events))
        .routes(routes!(public::head))
        .routes(routes!(public::stream))
        .routes(routes!(public::healthz))
        .routes(routes!(public::metrics))
}

/// The OpenAPI document alone.
pub fn document() -> utoipa::openapi::OpenApi {
    router().into_openapi()
}
