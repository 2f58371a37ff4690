//! The admin API at `/v1/admin/`: JSON over HTTP, allowed only with the admin credential
//! (`Authorization: Bearer <admin token>`), never with a user's token. Every call that looks
//! at or changes a user or a group is written to the audit log, refused or not.

use crate::AdminToken;
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use missive_proto::admin::*;
use missive_proto::ids;
use missive_rpc::{Code, Ctx, Status};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long an admin call may take before it is answered DEADLINE_EXCEEDED.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Api {
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

/// An error answer: the status code of the short link and its JSON body.
pub(crate) struct ApiError(pub Status);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            code: u16,
            name: &'a str,
            message: &'a str,
        }
        let code = self.0.code;
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let body = Body { code: code as u16, name: code.as_str(), message: &self.0.message };
        (status, [("x-missive-code", code.as_str())], Json(body)).into_response()
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError(status)
    }
}

type Answer<T> = Result<Json<T>, ApiError>;

/// One authorized call: who made it, from where.
struct Call {
    api: Api,
    address: SocketAddr,
}

impl Call {
    fn authorize(api: Api, headers: &HeaderMap, address: SocketAddr) -> Result<Call, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token) if api.token.matches(token) => Ok(Call { api, address }),
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

    fn ctx(&self) -> Ctx {
        Ctx::new(rand::random()).with_timeout(CALL_TIMEOUT)
    }

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
        tracing::info!(
            address = %self.address,
            action,
            target,
            code = %code,
            "admin action"
        );
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
        self.api.admin.record(&self.ctx(), entry).await?;
        Ok(Json(result?))
    }

    /// A user named by id or username.
    async fn user_id(&self, user: &str) -> Result<u64, Status> {
        if let Ok(id) = user.parse() {
            return Ok(id);
        }
        let request = GetUserRequest { user_id: 0, username: user.to_string() };
        let found = self.api.admin.get_user(&self.ctx(), request).await?;
        Ok(found.user.map_or(0, |u| u.user_id))
    }
}

macro_rules! authorized {
    ($api:expr, $headers:expr, $address:expr) => {
        Call::authorize($api, &$headers, $address)?
    };
}

type Peer = ConnectInfo<SocketAddr>;

async fn list_users(
    State(api): State<Api>,
    ConnectInfo(address): Peer,
    headers: HeaderMap,
    Query(req): Query<ListUsersRequest>,
) -> Answer<ListUsersResponse> {
    let call = authorized!(api, headers, address);
    let detail = format!("query={:?} after={} limit={}", req.query, req.after, req.limit);
    call.audited("list_users", String::new(), detail, call.api.admin.list_users(&call.ctx(), req))
        .await
}

async fn get_user(
    State(api): State<Api>,
    ConnectInfo(address): Peer,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Answer<GetUserResponse> {
    let call = authorized!(api, headers, address);
    let request = match user.parse() {
        Ok(user_id) => GetUserRequest { user_id, username: String::new() },
        Err(_) => GetUserRequest { user_id: 0, username: user.clone() },
    };
    call.audited("get_user", user, String::new(), call.api.admin.get_user(&call.ctx(), request))
        .await
}

async fn kick(
    State(api): State<Api>,
    ConnectInfo(address): Peer,
    headers: HeaderMap,
    Path((user, device_id)): Path<(String, u64)>,
) -> Answer<KickResponse> {
    let call = authorized!(api, headers, address);
    let work = async {
        let user_id = call.user_id(&user).await?;
        call.api.admin.kick(&call.ctx(), KickRequest { user_id, device_id }).await
    };
    call.audited("kick", user.clone(), format!("device {device_id}"), work).await
}

async fn set_disabled(
    api: Api,
    address: SocketAddr,
    headers: HeaderMap,
    user: String,
    disabled: bool,
) -> Answer<SetDisabledResponse> {
    let call = authorized!(api, headers, address);
    let work = async {
        let user_id = call.user_id(&user).await?;
        call.api.admin.set_disabled(&call.ctx(), SetDisabledRequest { user_id, disabled }).await
    };
    let action = if disabled { "disable" } else { "enable" };
    call.audited(action, user.clone(), String::new(), work).await
}

async fn disable(
    State(api): State<Api>,
    ConnectInfo(address): Peer,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Answer<SetDisabledResponse> {
    set_disabled(api, address, headers, user, true).await
}

async fn enable(
    State(api): State<Api>,
    ConnectInfo(address): Peer,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Answer<SetDisabledResponse> {
    set_disabled(api, address, headers, user, false).await
}

async fn notice(
    State(api): State<Api>,
    ConnectInfo(address): Peer,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Answer<NoticeResponse> {
    let call = authorized!(api, headers, address);
    let request: NoticeRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Status::new(Code::BadRequest, format!("the body is not a notice: {e}")))
    })?;
    let detail = request.text.clone();
    let work = async {
        let user_id = call.user_id(&user).await?;
        let request = NoticeRequest { user_id, ..request };
        call.api.admin.notice(&call.ctx(), request).await
    };
    call.audited("notice", user.clone(), detail, work).await
}

async fn get_group(
    State(api): State<Api>,
    ConnectInfo(address): Peer,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> Answer<GetGroupResponse> {
    let call = authorized!(api, headers, address);
    let work = async {
        let group_id = ids::parse_group_handle(&group)
            .or_else(|| group.parse().ok())
            .ok_or_else(|| Status::not_found("no such group"))?;
        call.api.admin.get_group(&call.ctx(), GetGroupRequest { group_id }).await
    };
    call.audited("get_group", group.clone(), String::new(), work).await
}

async fn stats(
    State(api): State<Api>,
    ConnectInfo(address): Peer,
    headers: HeaderMap,
    Query(req): Query<StatsRequest>,
) -> Answer<StatsResponse> {
    let call = authorized!(api, headers, address);
    Ok(Json(call.api.admin.stats(&call.ctx(), req).await?))
}

async fn totals(
    State(api): State<Api>,
    ConnectInfo(address): Peer,
    headers: HeaderMap,
) -> Answer<TotalsResponse> {
    let call = authorized!(api, headers, address);
    Ok(Json(call.api.admin.totals(&call.ctx(), TotalsRequest {}).await?))
}

async fn audit(
    State(api): State<Api>,
    ConnectInfo(address): Peer,
    headers: HeaderMap,
    Query(req): Query<AuditRequest>,
) -> Answer<AuditResponse> {
    let call = authorized!(api, headers, address);
    Ok(Json(call.api.admin.audit(&call.ctx(), req).await?))
}
