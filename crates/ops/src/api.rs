//! The admin API at `/v1/admin/`: JSON over HTTP, allowed only with the admin credential
//! (`Authorization: Bearer <admin token>`), never with a user's token. Every call that looks
//! at or changes a user or a group is written to the audit log, refused or not.

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

/// One call that presented the admin credential: the service, where the call came from, and
/// the context of everything done for it (the audit record included).
struct Call {
    admin: Arc<dyn Admin>,
    address: SocketAddr,
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
            Some(token) if api.token.matches(token) => Ok(Call {
                admin: api.admin.clone(),
                address,
                ctx: Ctx::new(missive_rpc::random_request_id()).with_timeout(CALL_TIMEOUT),
            }),
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

impl Call {
    /// Runs `work`, then writes what was done to the audit log (and the server log).
    async fn audited<T>(
        &self,
        action: &str,
        target: String,
        detail: String,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Answer<T> {
        let result = work.await;
        let code = result.as_ref().err().map_or(Code::Ok, |s| s.code);
        tracing::info!(address = %self.address, action, target, code = %code, "admin action");
        let entry = AuditEntry {
            actor: "admin".into(),
            address: self.address.to_string(),
            action: action.into(),
            target,
            detail,
            code: code as u32,
            ..AuditEntry::default()
        };
        // An action that cannot be recorded is reported as failed, though it was done: the
        // operator must know the log misses it.
        self.admin.record(&self.ctx, entry).await?;
        Ok(Json(result?))
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
    let detail = format!("query={:?} after={} limit={}", req.query, req.after, req.limit);
    call.audited("list_users", String::new(), detail, call.admin.list_users(&call.ctx, req)).await
}

async fn get_user(call: Call, Path(user): Path<String>) -> Answer<GetUserResponse> {
    let (user_id, username) = user_named(&user);
    let work = call.admin.get_user(&call.ctx, GetUserRequest { user_id, username });
    call.audited("get_user", user, String::new(), work).await
}

async fn kick(call: Call, Path((user, device_id)): Path<(String, u64)>) -> Answer<KickResponse> {
    let (user_id, username) = user_named(&user);
    let work = call.admin.kick(&call.ctx, KickRequest { user_id, device_id, username });
    call.audited("kick", user, format!("device {device_id}"), work).await
}

async fn set_disabled(call: Call, user: String, disabled: bool) -> Answer<SetDisabledResponse> {
    let (user_id, username) = user_named(&user);
    let request = SetDisabledRequest { user_id, disabled, username };
    let action = if disabled { "disable" } else { "enable" };
    call.audited(action, user, String::new(), call.admin.set_disabled(&call.ctx, request)).await
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
    let detail = request.text.clone();
    let request = NoticeRequest { user_id, username, ..request };
    call.audited("notice", user, detail, call.admin.notice(&call.ctx, request)).await
}

async fn get_group(call: Call, Path(group): Path<String>) -> Answer<GetGroupResponse> {
    let group_id = ids::parse_group(&group);
    let work = async {
        let group_id = group_id.ok_or_else(|| Status::not_found("no such group"))?;
        call.admin.get_group(&call.ctx, GetGroupRequest { group_id }).await
    };
    call.audited("get_group", group.clone(), String::new(), work).await
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
