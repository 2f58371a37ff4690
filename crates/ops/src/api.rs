//! The admin API at `/v1/admin/`: JSON over HTTP, allowed only with the admin credential
//! (`Authorization: Bearer <admin token>`), never with a user's token. Every call that looks
//! at or changes a user or a group is written to the audit log, refused or not, by the logic
//! layer, which refuses an operators' call that names no operator.

use crate::AdminToken;
use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use missive_proto::admin::*;
use missive_proto::{CODE_HEADER, client, ids};
use missive_rpc::{Code, Ctx, Status};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long an admin call may take before it is answered DEADLINE_EXCEEDED.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) struct Api {
    admin: Arc<dyn Admin>,
    token: Arc<AdminToken>,
}

pub(crate) fn router(admin: Arc<dyn Admin>, token: Arc<AdminToken>) -> axum::Router {
    axum::Router::new()
        .route("/v1/admin/users", get(list_users))
        .route("/v1/admin/users/{user}", get(get_user))
        .route("/v1/admin/users/{user}/devices/{device}/kick", post(kick))
        .route("/v1/admin/users/{user}/disable", post(disable))
        .route("/v1/admin/users/{user}/enable", post(enable))
        .route("/v1/admin/users/{user}/notice", post(notice))
        .route("/v1/admin/groups/{group}", get(get_group))
        .route("/v1/admin/users/{user}/messages/{message}", get(get_message))
        .route("/v1/admin/stats", get(stats))
        .route("/v1/admin/totals", get(totals))
        .route("/v1/admin/audit", get(audit))
        .with_state(Api { admin, token })
}

/// An error answer, as the short link gives it: the code's HTTP status, its name in the
/// code header, and `missive.v1.Error` as JSON.
pub(crate) struct ApiError(Status);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code;
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        (status, [(CODE_HEADER, code.as_str())], Json(client::Error::from(&self.0))).into_response()
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError(status)
    }
}

type Answer<T> = Result<Json<T>, ApiError>;

/// One call that presented the admin credential: the service, and the context of everything
/// done for it, which names the operator by the address the call came from.
struct Call {
    admin: Arc<dyn Admin>,
    ctx: Ctx,
}

impl FromRequestParts<Api> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Call, ApiError> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0);
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token) if api.token.matches(token) => {
                let mut ctx = crate::operator_ctx(CALL_TIMEOUT);
                // The logic layer audits what the operator does, by this address.
                ctx.operator = Some(address);
                Ok(Call { admin: api.admin.clone(), ctx })
            }
            Some(_) => {
                tracing::warn!(%address, "admin call with a wrong credential");
                Err(ApiError(Status::new(Code::Unauthenticated, "not the admin credential")))
            }
            None => Err(ApiError(Status::new(
                Code::Unauthenticated,
                "the admin API needs `Authorization: Bearer <admin token>`",
            ))),
        }
    }
}

/// A user as a path names it: (id, or 0 and the username).
fn user_named(user: &str) -> (u64, String) {
    match user.parse() {
        Ok(user_id) => (user_id, String::new()),
        Err(_) => (0, user.to_string()),
    }
}

async fn list_users(call: Call, Query(req): Query<ListUsersRequest>) -> Answer<ListUsersResponse> {
    Ok(Json(call.admin.list_users(&call.ctx, req).await?))
}

async fn get_user(call: Call, Path(user): Path<String>) -> Answer<GetUserResponse> {
    let (user_id, username) = user_named(&user);
    Ok(Json(call.admin.get_user(&call.ctx, GetUserRequest { user_id, username }).await?))
}

async fn kick(call: Call, Path((user, device_id)): Path<(String, u64)>) -> Answer<KickResponse> {
    let (user_id, username) = user_named(&user);
    Ok(Json(call.admin.kick(&call.ctx, KickRequest { user_id, device_id, username }).await?))
}

async fn set_disabled(call: Call, user: String, disabled: bool) -> Answer<SetDisabledResponse> {
    let (user_id, username) = user_named(&user);
    let request = SetDisabledRequest { user_id, disabled, username };
    Ok(Json(call.admin.set_disabled(&call.ctx, request).await?))
}

async fn disable(call: Call, Path(user): Path<String>) -> Answer<SetDisabledResponse> {
    set_disabled(call, user, true).await
}

async fn enable(call: Call, Path(user): Path<String>) -> Answer<SetDisabledResponse> {
    set_disabled(call, user, false).await
}

async fn notice(
    call: Call,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Answer<NoticeResponse> {
    let request: NoticeRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Status::new(Code::BadRequest, format!("the body is not a notice: {e}")))
    })?;
    let (user_id, username) = user_named(&user);
    let request = NoticeRequest { user_id, username, ..request };
    Ok(Json(call.admin.notice(&call.ctx, request).await?))
}

async fn get_group(call: Call, Path(group): Path<String>) -> Answer<GetGroupResponse> {
    // A name that is no group's is looked up as group 0, which is no group either: the look
    // is audited as every other.
    let group_id = ids::parse_group(&group).unwrap_or(0);
    Ok(Json(call.admin.get_group(&call.ctx, GetGroupRequest { group_id }).await?))
}

async fn get_message(
    call: Call,
    Path((user, message_id)): Path<(String, u64)>,
) -> Answer<GetMessageResponse> {
    let (user_id, username) = user_named(&user);
    let request = GetMessageRequest { user_id, username, message_id };
    Ok(Json(call.admin.get_message(&call.ctx, request).await?))
}

async fn stats(call: Call, Query(req): Query<StatsRequest>) -> Answer<StatsResponse> {
    Ok(Json(call.admin.stats(&call.ctx, req).await?))
}

async fn totals(call: Call) -> Answer<TotalsResponse> {
    Ok(Json(call.admin.totals(&call.ctx, TotalsRequest {}).await?))
}

async fn audit(call: Call, Query(req): Query<AuditRequest>) -> Answer<AuditResponse> {
    Ok(Json(call.admin.audit(&call.ctx, req).await?))
}
