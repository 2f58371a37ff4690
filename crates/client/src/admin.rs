//! The operators' API (`missive.admin.v1`, JSON over HTTP at the admin address), as
//! `missive-cli admin` and scripts use it. It takes the admin credential, never a user's token.

use crate::link::answer_code;
use crate::{ClientError, Trust};
use missive_proto::admin::*;
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long one call may take, connecting included.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one node's admin API.
#[derive(Clone)]
pub struct AdminClient {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// `base` is the admin address as a URL (`http://127.0.0.1:7390`, or `https://` with
    /// the node's certificate checked against `trust`).
    pub fn new(base: &str, token: &str, trust: &Trust) -> Result<AdminClient, ClientError> {
        let bad = || ClientError::BadAdminUrl(base.to_string());
        let base = Url::parse(base)
            .ok()
            .filter(|url| ["http", "https"].contains(&url.scheme()) && !url.cannot_be_a_base())
            .ok_or_else(bad)?;
        let http = trust.http_client(Some(CALL_TIMEOUT));
        Ok(AdminClient { base, token: token.to_string(), http })
    }

    /// Users whose username or nickname contains `query` (everyone when empty), by id, after
    /// the id `after`; a `limit` of 0 takes the server's default page.
    pub async fn list_users(
        &self,
        query: &str,
        after: u64,
        limit: u32,
    ) -> Result<ListUsersResponse, ClientError> {
        let query = [
            ("query", query.to_string()),
            ("after", after.to_string()),
            ("limit", limit.to_string()),
        ];
        self.call(Method::GET, &["users"], &query, None::<()>).await
    }

    /// A user (by id or username), its devices and its online state.
    pub async fn user(&self, user: &str) -> Result<GetUserResponse, ClientError> {
        self.call(Method::GET, &["users", user], &[], None::<()>).await
    }

    /// Signs one device out and closes its connection.
    pub async fn kick(&self, user: &str, device_id: u64) -> Result<KickResponse, ClientError> {
        let device = device_id.to_string();
        let path = ["users", user, "devices", &device, "kick"];
        self.call(Method::POST, &path, &[], None::<()>).await
    }

    /// Disables an account (signing every device out) or enables it again.
    pub async fn set_disabled(
        &self,
        user: &str,
        disabled: bool,
    ) -> Result<SetDisabledResponse, ClientError> {
        let action = if disabled { "disable" } else { "enable" };
        self.call(Method::POST, &["users", user, action], &[], None::<()>).await
    }

    /// Puts a SYSTEM message from the server into the user's inbox.
    pub async fn notice(&self, user: &str, text: &str) -> Result<NoticeResponse, ClientError> {
        let body = NoticeRequest { text: text.to_string(), ..NoticeRequest::default() };
        self.call(Method::POST, &["users", user, "notice"], &[], Some(body)).await
    }

    /// A group (by id or `<id>@chatroom`) and its members.
    pub async fn group(&self, group: &str) -> Result<GetGroupResponse, ClientError> {
        self.call(Method::GET, &["groups", group], &[], None::<()>).await
    }

    /// A message in `user`'s inbox as stored, with the texts its edits replaced when the
    /// server keeps them.
    pub async fn message(
        &self,
        user: &str,
        message_id: u64,
    ) -> Result<GetMessageResponse, ClientError> {
        let id = message_id.to_string();
        self.call(Method::GET, &["users", user, "messages", &id], &[], None::<()>).await
    }

    /// The newest `hours` periods of the statistics, newest first.
    pub async fn stats(&self, hours: u32) -> Result<StatsResponse, ClientError> {
        self.call(Method::GET, &["stats"], &[("hours", hours.to_string())], None::<()>).await
    }

    /// The store's current totals.
    pub async fn totals(&self) -> Result<TotalsResponse, ClientError> {
        self.call(Method::GET, &["totals"], &[], None::<()>).await
    }

    /// Audit entries older than the id `before` (the newest when 0), newest first.
    pub async fn audit(&self, before: u64, limit: u32) -> Result<AuditResponse, ClientError> {
        let query = [("before", before.to_string()), ("limit", limit.to_string())];
        self.call(Method::GET, &["audit"], &query, None::<()>).await
    }

    /// The node's `/metrics` page (Prometheus text), which needs no credential.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = self
            .base
            .join("metrics")
            .map_err(|_| ClientError::BadAdminUrl(self.base.to_string()))?;
        let response = self.http.get(url).send().await.map_err(|e| ClientError::transport(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| ClientError::transport(&e))?;
        if !status.is_success() {
            return Err(ClientError::Protocol(format!("/metrics answered HTTP {status}")));
        }
        Ok(text)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, String)],
        body: Option<impl Serialize>,
    ) -> Result<T, ClientError> {
        // A URL drops `.` and `..` segments: `users/..` would be another call.
        if let Some(name) = path.iter().find(|s| s.is_empty() || **s == "." || **s == "..") {
            return Err(ClientError::BadArgument(format!("{name:?} names no user or group")));
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("new() took only a base url")
            .pop_if_empty()
            .extend(["v1", "admin"])
            .extend(path);
        url.query_pairs_mut().extend_pairs(query);
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            let json =
                serde_json::to_vec(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
            request = request.header("content-type", "application/json").body(json);
        }
        let response = request.send().await.map_err(|e| ClientError::transport(&e))?;
        let status = response.status();
        let code = answer_code(&response);
        let body = response.bytes().await.map_err(|e| ClientError::transport(&e))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()));
        }
        let Some(code) = code else {
            // Not the admin API's answer: a node without it, or another server on the port.
            let text = String::from_utf8_lossy(&body);
            return Err(ClientError::Protocol(format!("HTTP {status} without a code: {text}")));
        };
        let message = serde_json::from_slice::<missive_proto::client::Error>(&body)
            .map(|error| error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        Err(ClientError::Server { code, message, retry_after: Duration::ZERO })
    }
}
