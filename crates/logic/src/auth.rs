//! Accounts and device sessions: register, login, token authentication, logout, profiles.
//!
//! Passwords are hashed with Argon2id on the blocking pool, a few at a time. Session tokens
//! are 32 random bytes (base64url); only their SHA-256 is stored, so a stolen database holds
//! no usable token, and revoking a session is deleting its row's validity.

use crate::limits::{Limit, key_of};
use crate::{Logic, validate};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use missive_proto::client::*;
use missive_proto::internal::{
    AuthenticateRequest, CreateAccountRequest, CreateSessionRequest, InboxEntry,
    RevokeSessionRequest, SessionRecord, TokenHashRef, UpdateNicknameRequest, UserRef, UsernameRef,
};
use missive_rpc::{Code, Ctx, Status};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

const TOKEN_BYTES: usize = 32;
/// Sessions cached in memory at most; the cache is dropped whole when full.
const SESSION_CACHE_MAX: usize = 100_000;
/// How long a cached session is trusted without reading the store again. A sign-out clears
/// the caches at once: this node's directly, the other logic nodes' through the routing
/// engine; this bounds how long one missed (no routing engine, a lost subscription) lasts.
pub(crate) const SESSION_CACHE_TTL_MS: i64 = 30_000;

/// Argon2id cost; lower it only for tests and load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for PasswordCost {
    /// OWASP's recommendation for Argon2id: 19 MiB, 2 iterations.
    fn default() -> Self {
        PasswordCost { memory_kib: 19 * 1024, iterations: 2 }
    }
}

pub(crate) struct AuthState {
    /// Bounds the cores spent hashing passwords, so a login storm cannot starve sends.
    pub(crate) hashing: Arc<Semaphore>,
    /// Token hash -> (session, when it was read), so that authenticating a short-link
    /// request costs no read.
    sessions: Mutex<HashMap<[u8; 32], (SessionRecord, i64)>>,
    /// Counts revocations. A session read from the store is cached only if no revocation
    /// happened during the read; otherwise a logout racing the read could leave its revoked
    /// session cached.
    revocations: AtomicU64,
    /// A hash of no one's password, at the configured cost: a LOGIN for a name that does not
    /// exist verifies against it, so it takes as long as a wrong password and its answer
    /// time does not tell which names exist.
    dummy_hash: tokio::sync::OnceCell<String>,
    /// Password verifications run, for the tests that check an unknown name costs one too.
    pub(crate) verifications: AtomicU64,
}

impl AuthState {
    pub(crate) fn new(hashing_concurrency: usize) -> Self {
        AuthState {
            hashing: Arc::new(Semaphore::new(hashing_concurrency.max(1))),
            sessions: Mutex::new(HashMap::new()),
            revocations: AtomicU64::new(0),
            dummy_hash: tokio::sync::OnceCell::new(),
            verifications: AtomicU64::new(0),
        }
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn unauthenticated() -> Status {
    Status::new(Code::Unauthenticated, "invalid or revoked token")
}

fn invalid_credentials() -> Status {
    Status::new(Code::InvalidCredentials, "wrong username or password")
}

/// A user's own profile (what they set; others see [`public_profile`]).
pub(crate) fn profile_of(account: &missive_proto::internal::AccountRecord) -> Profile {
    Profile {
        user_id: account.user_id,
        username: account.username.clone(),
        nickname: account.nickname.clone(),
        presence_visibility: account.presence_visibility,
    }
}

/// What other users see of a profile: no settings.
fn public_profile(account: &missive_proto::internal::AccountRecord) -> Profile {
    Profile { presence_visibility: 0, ..profile_of(account) }
}

impl Logic {
    /// The hash an unknown name's LOGIN verifies against, made once at the configured cost.
    async fn dummy_hash(&self) -> Result<String, Status> {
        let hash = self.auth.dummy_hash.get_or_try_init(|| async {
            let mut password = [0u8; 32];
            rand::rng().fill_bytes(&mut password);
            self.blocking_hash(move |argon| argon.hash_password(&password).map(|h| h.to_string()))
                .await?
                .map_err(|e| Status::internal(format!("password hashing failed: {e}")))
        });
        Ok(hash.await?.clone())
    }

    async fn blocking_hash<T: Send + 'static>(
        &self,
        work: impl FnOnce(Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, Status> {
        // The permit goes with the work: a cancelled request does not free it while the hash
        // still runs.
        let permit =
            self.auth.hashing.clone().acquire_owned().await.expect("semaphore never closes");
        let cost = self.config.password_cost;
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|e| Status::internal(format!("bad password cost: {e}")))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(argon)
        })
        .await
        .map_err(|e| Status::internal(format!("hashing task failed: {e}")))
    }

    pub(crate) async fn authenticate(
        &self,
        ctx: &Ctx,
        req: AuthenticateRequest,
    ) -> Result<SessionRecord, Status> {
        let token = req.token.as_str();
        if token.is_empty() || token.len() > 128 {
            return Err(unauthenticated());
        }
        let hash = token_hash(token);
        let now = self.now_ms();
        let cached = self.auth.sessions.lock().expect("session cache").get(&hash).cloned();
        if let Some((session, read_at)) = cached
            && (0..SESSION_CACHE_TTL_MS).contains(&(now - read_at))
        {
            return Ok(session);
        }
        let revocations = self.auth.revocations.load(Ordering::SeqCst);
        let session = self
            .deps
            .accounts
            .get_session(ctx, TokenHashRef { token_hash: hash.to_vec() })
            .await
            .map_err(|status| status.translate(Code::NotFound, unauthenticated))?;
        let mut cache = self.auth.sessions.lock().expect("session cache");
        if self.auth.revocations.load(Ordering::SeqCst) == revocations {
            if cache.len() >= SESSION_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (session.clone(), now));
        }
        Ok(session)
    }

    pub(crate) async fn register(
        &self,
        ctx: &Ctx,
        req: RegisterRequest,
    ) -> Result<RegisterResponse, Status> {
        validate::username(&req.username)?;
        validate::password(&req.password)?;
        validate::display_name("nickname", &req.nickname, validate::NICKNAME_CHARS_MAX)?;
        if req.username == validate::NOTICE_SENDER {
            return Err(Status::new(Code::AlreadyExists, "username is taken"));
        }
        self.limit(Limit::Registrations, Self::address_key(ctx), 1).await?;
        let password = req.password;
        let password_hash = self
            .blocking_hash(move |argon| {
                argon.hash_password(password.as_bytes()).map(|hash| hash.to_string())
            })
            .await?
            .map_err(|e| Status::internal(format!("password hashing failed: {e}")))?;
        let nickname = if req.nickname.is_empty() { req.username.clone() } else { req.nickname };
        let account = self
            .deps
            .accounts
            .create(
                ctx,
                CreateAccountRequest {
                    username: req.username,
                    nickname: nickname.clone(),
                    password_hash,
                    created_at_ms: self.now_ms(),
                },
            )
            .await
            .map_err(|status| {
                status.translate(Code::AlreadyExists, || {
                    Status::new(Code::AlreadyExists, "username is taken")
                })
            })?;
        // The account enters the user's sync stream at its first version, so every device's
        // first sync delivers the profile.
        self.set_nickname(ctx, account.user_id, nickname).await?;
        metrics::counter!("missive_registrations_total").increment(1);
        Ok(RegisterResponse { user_id: account.user_id })
    }

    /// Writes a nickname under the user's next version; returns the profile and version.
    async fn set_nickname(
        &self,
        ctx: &Ctx,
        user_id: u64,
        nickname: String,
    ) -> Result<(Profile, u64), Status> {
        let (account, entries) = self
            .write_versioned(ctx, &[user_id], |entries| {
                let nickname = nickname.clone();
                let update =
                    UpdateNicknameRequest { user_id, nickname, version: entries[0].version };
                self.deps.accounts.update_nickname(ctx, update)
            })
            .await?;
        Ok((profile_of(&account), entries[0].version))
    }

    pub(crate) async fn login(
        &self,
        ctx: &Ctx,
        req: LoginRequest,
    ) -> Result<LoginResponse, Status> {
        validate::display_name("device_name", &req.device_name, validate::DEVICE_NAME_CHARS_MAX)?;
        if req.password.len() > validate::PASSWORD_BYTES_MAX {
            return Err(invalid_credentials());
        }
        // Per address, every attempt counts; per account and per address, failures do, with a
        // back-off that grows. Each attempt is counted as a failure before any hashing, and
        // given back unless its password turns out wrong: a guesser past the limit costs
        // nothing, and guesses made at once cannot all pass before the first is counted. An
        // owner locked out this way still gets in from a device that holds a token (AUTH
        // needs no LOGIN).
        let address = Self::address_key(ctx);
        self.limit(Limit::LoginsPerAddress, address, 1).await?;
        let failure = self.limit_ahead(Limit::LoginFailures, key_of(&req.username)).await?;
        let address_failure = self.limit_ahead(Limit::LoginFailuresPerAddress, address).await?;
        let found = self.deps.accounts.get_by_name(ctx, UsernameRef { username: req.username });
        let account = match found.await {
            Ok(account) => Some(account),
            Err(status) if status.code == Code::NotFound => None,
            Err(status) => return Err(status),
        };
        // An unknown name costs a verification too (against no one's hash), so that the
        // answer's time does not tell which names exist.
        let stored = match &account {
            Some(account) => account.password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let password = req.password;
        self.auth.verifications.fetch_add(1, Ordering::Relaxed);
        let matches = self
            .blocking_hash(move |argon| {
                PasswordHash::new(&stored)
                    .map(|hash| argon.verify_password(password.as_bytes(), &hash).is_ok())
                    .unwrap_or(false)
            })
            .await?;
        let Some(account) = account.filter(|_| matches) else {
            // Counted whether or not the name exists, so the limit tells nothing either.
            failure.keep();
            address_failure.keep();
            return Err(invalid_credentials());
        };
        drop((failure, address_failure));
        if account.disabled {
            return Err(Status::new(Code::AccountDisabled, "the account is disabled"));
        }
        let mut raw = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let device_name =
            if req.device_name.is_empty() { "unnamed".to_string() } else { req.device_name };
        let session = self
            .deps
            .accounts
            .create_session(
                ctx,
                CreateSessionRequest {
                    user_id: account.user_id,
                    device_name,
                    token_hash: token_hash(&token).to_vec(),
                    created_at_ms: self.now_ms(),
                },
            )
            .await?;
        metrics::counter!("missive_logins_total").increment(1);
        Ok(LoginResponse { user_id: account.user_id, device_id: session.device_id, token })
    }

    pub(crate) async fn logout(
        &self,
        ctx: &Ctx,
        _: LogoutRequest,
    ) -> Result<LogoutResponse, Status> {
        let caller = ctx.caller()?;
        self.deps
            .accounts
            .revoke_session(
                ctx,
                RevokeSessionRequest {
                    user_id: caller.user_id,
                    device_id: caller.device_id,
                    at_ms: self.now_ms(),
                },
            )
            .await?;
        // The token may hold other long links (a device that connected twice, or a LOGOUT
        // over the short link): they are signed out wherever they are. The link that asked,
        // if any, answers first and then closes by itself.
        let (user, device) = (caller.user_id, caller.device_id);
        let signed_out = self.sign_out(ctx, user, device, Code::Unauthenticated, "logged out");
        if let Err(status) = signed_out.await {
            // The token is revoked either way; only its open links stay until they close.
            tracing::warn!(request_id = ctx.request_id, %status, "signing out a token's links failed");
        }
        Ok(LogoutResponse {})
    }

    /// Drops revoked sessions from the cache: one device's, or every device's of the user.
    /// Another logic node's sign-outs arrive here through the routing engine.
    pub fn forget_sessions(&self, user_id: u64, device_id: Option<u64>) {
        let mut cache = self.auth.sessions.lock().expect("session cache");
        self.auth.revocations.fetch_add(1, Ordering::SeqCst);
        cache.retain(|_, (s, _)| {
            !(s.user_id == user_id && device_id.is_none_or(|device| s.device_id == device))
        });
    }

    /// Drops every cached session: sign-outs made elsewhere may have been missed.
    pub fn forget_all_sessions(&self) {
        let mut cache = self.auth.sessions.lock().expect("session cache");
        self.auth.revocations.fetch_add(1, Ordering::SeqCst);
        cache.clear();
    }

    pub(crate) async fn get_profile(
        &self,
        ctx: &Ctx,
        req: GetProfileRequest,
    ) -> Result<GetProfileResponse, Status> {
        let caller = ctx.caller()?;
        let account = if req.username.is_empty() {
            self.deps.accounts.get_by_id(ctx, UserRef { user_id: caller.user_id }).await?
        } else {
            self.deps
                .accounts
                .get_by_name(ctx, UsernameRef { username: req.username })
                .await
                .map_err(|s| s.translate(Code::NotFound, || Status::not_found("no such user")))?
        };
        let profile = if account.user_id == caller.user_id {
            profile_of(&account)
        } else {
            public_profile(&account)
        };
        Ok(GetProfileResponse { profile: Some(profile) })
    }

    pub(crate) async fn update_profile(
        &self,
        ctx: &Ctx,
        req: UpdateProfileRequest,
    ) -> Result<UpdateProfileResponse, Status> {
        let caller = ctx.caller()?;
        validate::display_name("nickname", &req.nickname, validate::NICKNAME_CHARS_MAX)?;
        if req.nickname.is_empty() {
            return Err(Status::invalid_argument("nickname must not be empty"));
        }
        let (profile, version) = self.set_nickname(ctx, caller.user_id, req.nickname).await?;
        let written = [InboxEntry { user_id: caller.user_id, version }];
        self.notify_written(ctx, &written, DataType::Account).await;
        Ok(UpdateProfileResponse { profile: Some(profile), version })
    }
}
