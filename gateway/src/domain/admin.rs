//! Access to the admin web UI: who is an admin or an auditor, and the admin login (password,
//! then always a FIDO2 security key) that opens a short admin session, separate from the SSO
//! session. The HTTP side is `adapters::http::admin`; this module has the rules.
use crate::domain::DomainError;
use crate::domain::audit::{AuditEvent, RequestContext};
use crate::domain::crypto::{ct_eq, secret_digest};
use crate::domain::management::{Management, ManagementError};
use crate::domain::oidc::Provider;
use crate::domain::ports::{Namespace, PasswordVerdict, StoreError};
use crate::protocol::ClientId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// What an admin account may do in the admin UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Reads and changes everything the UI offers.
    Admin,
    /// Reads the audit trail and the identity mappings; changes nothing.
    Auditor,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Auditor => "auditor",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "auditor" => Some(Self::Auditor),
            _ => None,
        }
    }
}

/// Durable storage of admin roles (SQL table `admin_roles`, one row per account).
#[async_trait]
pub trait AdminRoleStore: Send + Sync {
    async fn admin_role(&self, account_id: Uuid) -> Result<Option<AdminRole>, StoreError>;
    /// `None` removes the role.
    async fn set_admin_role(&self, account_id: Uuid, role: Option<AdminRole>, at: DateTime<Utc>) -> Result<(), StoreError>;
}

impl Management<'_> {
    /// Grants (or with `None` withdraws) an admin UI role.
    pub async fn set_admin_role(&self, roles: &dyn AdminRoleStore, username: &str, role: Option<AdminRole>) -> Result<(), ManagementError> {
        let (account, _) = self.show(username).await?;
        roles.set_admin_role(account.id, role, self.clock.now()).await?;
        self.record(AuditEvent::AdminRoleChanged {
            account_id: account.id.to_string(),
            role: role.map(|r| r.as_str().to_owned()),
            actor: self.actor.to_owned(),
        })
        .await
    }

    /// Gives a confidential client a new secret, returned once; the old one stops working.
    pub async fn rotate_client_secret(&self, id: &ClientId) -> Result<String, ManagementError> {
        let mut client = self
            .storage
            .client(id)
            .await?
            .ok_or_else(|| ManagementError::Invalid(format!("no client {id}")))?;
        if client.secret_digest.is_none() {
            return Err(ManagementError::Invalid(format!("client {id} does not authenticate with a secret")));
        }
        let secret = self.random.token();
        client.secret_digest = Some(secret_digest(&secret));
        self.storage.update_client(&client).await?;
        self.record(AuditEvent::ClientSecretRotated {
            client_id: id.to_string(),
            actor: self.actor.to_owned(),
        })
        .await?;
        Ok(secret)
    }
}

/// Relais roles from the directory (`[directories.roles]`) that grant an admin UI role at
/// admin login (config `[admin] directory_admin_role`, `directory_auditor_role`).
#[derive(Debug, Clone, Default)]
pub struct DirectoryAdminRoles {
    pub admin: Option<String>,
    pub auditor: Option<String>,
}

impl DirectoryAdminRoles {
    /// The strongest admin UI role the person's directory roles grant.
    pub fn grant(&self, roles: &[String]) -> Option<AdminRole> {
        let holds = |r: &Option<String>| r.as_ref().is_some_and(|r| roles.iter().any(|x| x == r));
        if holds(&self.admin) {
            Some(AdminRole::Admin)
        } else if holds(&self.auditor) {
            Some(AdminRole::Auditor)
        } else {
            None
        }
    }
}

fn stronger(a: Option<AdminRole>, b: Option<AdminRole>) -> Option<AdminRole> {
    match (a, b) {
        (Some(AdminRole::Admin), _) | (_, Some(AdminRole::Admin)) => Some(AdminRole::Admin),
        (Some(r), _) | (_, Some(r)) => Some(r),
        (None, None) => None,
    }
}

/// Lifetimes of the admin session (config `[admin]`).
#[derive(Debug, Clone, Copy)]
pub struct AdminSessionPolicy {
    /// Idle timeout: every request renews it up to `max_secs` after the login.
    pub idle_secs: i64,
    pub max_secs: i64,
}

/// A logged-in admin (session store, namespace `admin`, key `s:<digest of the cookie>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminSession {
    pub account_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: AdminRole,
    /// Sent back by every form (hidden field) and every htmx request (header).
    pub csrf: String,
    pub logged_in_at: i64,
    /// The role came from the person's directory groups at login, not from `admin_roles`:
    /// it lasts for this session (a group withdrawn takes effect at the next admin login).
    #[serde(default)]
    pub via_directory: bool,
}

impl AdminSession {
    /// How the audit trail names this admin.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.username)
    }
    pub fn may_change(&self) -> bool {
        self.role == AdminRole::Admin
    }
    pub fn csrf_ok(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|s| ct_eq(s.as_bytes(), self.csrf.as_bytes()))
    }
}

/// Password accepted, key not yet verified (namespace `admin`, key `p:<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingAdminLogin {
    account_id: Uuid,
    username: String,
    display_name: String,
    role: AdminRole,
    csrf: String,
    /// The WebAuthn state once options were sent; taken once by `finish`.
    ceremony: Option<String>,
    #[serde(default)]
    via_directory: bool,
}

/// Why an admin login stops. Shown to the person as is: none says whether the account exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminLoginError {
    #[error("wrong username or password, or not an administrator")]
    Refused,
    #[error("no security key is registered for this account: an administrator must always use one")]
    NoKey,
    #[error("security keys are not configured ([fido2] attestation_policy): the admin UI needs them")]
    KeysNotConfigured,
    #[error("this login step has expired; start again")]
    Expired,
    #[error("the security key was refused")]
    KeyRefused,
    #[error("too many failed attempts: wait a few minutes before trying again")]
    Throttled,
}

const PENDING_TTL: Duration = Duration::from_secs(300);

fn internal(e: impl std::fmt::Display) -> DomainError {
    DomainError::Internal(e.to_string())
}

/// The admin login and sessions.
pub struct AdminAccess<'a> {
    pub provider: &'a Provider,
    pub roles: &'a dyn AdminRoleStore,
    pub policy: AdminSessionPolicy,
    pub directory_roles: &'a DirectoryAdminRoles,
}

impl AdminAccess<'_> {
    async fn refuse(&self, ctx: &RequestContext, username: &str, account_id: Option<Uuid>, reason: &str) {
        self.provider
            .audit_refusal(
                ctx,
                AuditEvent::AdminLogin {
                    username: username.chars().take(128).collect(),
                    account_id: account_id.map(|a| a.to_string()),
                    success: false,
                    reason: Some(reason.to_owned()),
                },
            )
            .await;
    }

    /// First step: the password, then the role. Returns the pending id and its CSRF token.
    #[tracing::instrument(skip_all)]
    pub async fn password(
        &self,
        username: &str,
        password: &str,
        ctx: &RequestContext,
    ) -> Result<Result<(String, String), AdminLoginError>, DomainError> {
        // The same per-account and per-address counters as the login page: guessing an
        // admin's password at /admin is no cheaper than anywhere else, and locks out the same.
        let ip = ctx.source_ip.as_deref();
        if let Some(what) = self.provider.throttled(username, ip).await? {
            self.refuse(ctx, username, None, &format!("throttled_{}", what.as_str())).await;
            return Ok(Err(AdminLoginError::Throttled));
        }
        let (account, directory_roles) = match self.provider.passwords.verify(username, password).await? {
            PasswordVerdict::Accepted(a, roles) => {
                self.provider.record_success(username).await?;
                (a, roles)
            }
            PasswordVerdict::Rejected => {
                self.provider.record_failure(username, ip).await?;
                self.refuse(ctx, username, None, "bad_credentials").await;
                return Ok(Err(AdminLoginError::Refused));
            }
            PasswordVerdict::Refused(r) => {
                self.refuse(ctx, username, None, r.as_str()).await;
                return Ok(Err(AdminLoginError::Refused));
            }
        };
        // `admin_roles` or the directory's groups, whichever grants more.
        let granted = self.roles.admin_role(account.id).await?;
        let from_directory = self.directory_roles.grant(&directory_roles);
        let Some(role) = stronger(granted, from_directory) else {
            self.refuse(ctx, username, Some(account.id), "not_admin").await;
            return Ok(Err(AdminLoginError::Refused));
        };
        let via_directory = granted != Some(role);
        if self.provider.security_keys.is_none() {
            self.refuse(ctx, username, Some(account.id), "fido2_not_configured").await;
            return Ok(Err(AdminLoginError::KeysNotConfigured));
        }
        let keys = self.provider.key_store.security_keys(account.id).await?;
        if !keys.iter().any(|k| k.active()) {
            self.refuse(ctx, username, Some(account.id), "no_security_key").await;
            return Ok(Err(AdminLoginError::NoKey));
        }
        let id = self.provider.random.token();
        let pending = PendingAdminLogin {
            account_id: account.id,
            username: account.username,
            display_name: account.display_name,
            role,
            csrf: self.provider.random.token(),
            ceremony: None,
            via_directory,
        };
        self.put_pending(&id, &pending).await?;
        Ok(Ok((id, pending.csrf)))
    }

    async fn put_pending(&self, id: &str, p: &PendingAdminLogin) -> Result<(), DomainError> {
        let bytes = serde_json::to_vec(p).map_err(internal)?;
        self.provider
            .sessions
            .put(Namespace::Admin, &format!("p:{id}"), &bytes, PENDING_TTL)
            .await?;
        Ok(())
    }

    async fn pending(&self, id: &str, csrf: &str) -> Result<Option<PendingAdminLogin>, DomainError> {
        let Some(bytes) = self.provider.sessions.get(Namespace::Admin, &format!("p:{id}")).await? else {
            return Ok(None);
        };
        let p: PendingAdminLogin = serde_json::from_slice(&bytes).map_err(internal)?;
        Ok(ct_eq(csrf.as_bytes(), p.csrf.as_bytes()).then_some(p))
    }

    /// The CSRF token of a pending login, for the key page.
    pub async fn pending_csrf(&self, id: &str) -> Result<Option<String>, DomainError> {
        let Some(bytes) = self.provider.sessions.get(Namespace::Admin, &format!("p:{id}")).await? else {
            return Ok(None);
        };
        let p: PendingAdminLogin = serde_json::from_slice(&bytes).map_err(internal)?;
        Ok(Some(p.csrf))
    }

    /// Second step, part one: WebAuthn options for the person's active keys.
    pub async fn key_options(&self, id: &str, csrf: &str) -> Result<Result<serde_json::Value, AdminLoginError>, DomainError> {
        let Some(mut p) = self.pending(id, csrf).await? else {
            return Ok(Err(AdminLoginError::Expired));
        };
        let Some(port) = &self.provider.security_keys else {
            return Ok(Err(AdminLoginError::KeysNotConfigured));
        };
        let active: Vec<_> = self
            .provider
            .key_store
            .security_keys(p.account_id)
            .await?
            .into_iter()
            .filter(|k| k.active())
            .collect();
        if active.is_empty() {
            return Ok(Err(AdminLoginError::NoKey));
        }
        let started = port.start_authentication(&active).map_err(internal)?;
        p.ceremony = Some(started.state);
        self.put_pending(id, &p).await?;
        Ok(Ok(started.options))
    }

    /// Second step, part two: the key's answer. Opens the admin session: returns the cookie
    /// value (only its digest is stored) and the session.
    #[tracing::instrument(skip_all)]
    pub async fn key_finish(
        &self,
        id: &str,
        csrf: &str,
        response: &serde_json::Value,
        ctx: &RequestContext,
    ) -> Result<Result<(String, AdminSession), AdminLoginError>, DomainError> {
        if self.pending(id, csrf).await?.is_none() {
            return Ok(Err(AdminLoginError::Expired));
        }
        // One answer per login: a replay finds nothing.
        let Some(bytes) = self.provider.sessions.take(Namespace::Admin, &format!("p:{id}")).await? else {
            return Ok(Err(AdminLoginError::Expired));
        };
        let p: PendingAdminLogin = serde_json::from_slice(&bytes).map_err(internal)?;
        let (Some(port), Some(state)) = (&self.provider.security_keys, p.ceremony.as_deref()) else {
            return Ok(Err(AdminLoginError::Expired));
        };
        let active: Vec<_> = self
            .provider
            .key_store
            .security_keys(p.account_id)
            .await?
            .into_iter()
            .filter(|k| k.active())
            .collect();
        let assertion = match port.finish_authentication(response, state, &active) {
            Ok(a) if a.user_verified => a,
            Ok(_) => {
                self.refuse(ctx, &p.username, Some(p.account_id), "user verification was not performed")
                    .await;
                return Ok(Err(AdminLoginError::KeyRefused));
            }
            Err(e) => {
                self.refuse(ctx, &p.username, Some(p.account_id), &e.to_string()).await;
                return Ok(Err(AdminLoginError::KeyRefused));
            }
        };
        let now = self.provider.clock.now();
        self.provider
            .key_store
            .record_security_key_use(assertion.key_id, &assertion.credential, now)
            .await?;
        let session = AdminSession {
            account_id: p.account_id,
            username: p.username,
            display_name: p.display_name,
            role: p.role,
            csrf: self.provider.random.token(),
            logged_in_at: now.timestamp(),
            via_directory: p.via_directory,
        };
        self.provider
            .audit(
                ctx,
                AuditEvent::AdminLogin {
                    username: session.username.clone(),
                    account_id: Some(session.account_id.to_string()),
                    success: true,
                    reason: Some(format!(
                        "role={} key={} source={}",
                        session.role.as_str(),
                        assertion.key_id,
                        if session.via_directory { "directory" } else { "admin_roles" }
                    )),
                },
            )
            .await?;
        let secret = self.provider.random.token();
        self.save(&secret, &session).await?;
        Ok(Ok((secret, session)))
    }

    async fn save(&self, secret: &str, s: &AdminSession) -> Result<(), DomainError> {
        let bytes = serde_json::to_vec(s).map_err(internal)?;
        let left = s.logged_in_at + self.policy.max_secs - self.provider.clock.unix();
        let ttl = self.policy.idle_secs.min(left).max(1) as u64;
        self.provider
            .sessions
            .put(
                Namespace::Admin,
                &format!("s:{}", secret_digest(secret)),
                &bytes,
                Duration::from_secs(ttl),
            )
            .await?;
        Ok(())
    }

    /// The session behind a cookie, renewed (idle timeout) unless past its maximum age.
    pub async fn session(&self, secret: &str) -> Result<Option<AdminSession>, DomainError> {
        let key = format!("s:{}", secret_digest(secret));
        let Some(bytes) = self.provider.sessions.get(Namespace::Admin, &key).await? else {
            return Ok(None);
        };
        let s: AdminSession = serde_json::from_slice(&bytes).map_err(internal)?;
        if self.provider.clock.unix() >= s.logged_in_at + self.policy.max_secs {
            self.provider.sessions.delete(Namespace::Admin, &key).await?;
            return Ok(None);
        }
        // A role withdrawn takes effect at the next request (a directory-granted role holds
        // for the session: the directory is asked again at the next admin login).
        match self.roles.admin_role(s.account_id).await? {
            _ if s.via_directory => {}
            Some(r) if r == s.role => {}
            _ => {
                self.provider.sessions.delete(Namespace::Admin, &key).await?;
                return Ok(None);
            }
        }
        self.save(secret, &s).await?;
        Ok(Some(s))
    }

    pub async fn logout(&self, secret: &str) -> Result<(), DomainError> {
        self.provider
            .sessions
            .delete(Namespace::Admin, &format!("s:{}", secret_digest(secret)))
            .await?;
        Ok(())
    }

    /// Records a refused admin action (read-only role, CSRF failure).
    pub async fn refused(&self, ctx: &RequestContext, actor: &str, action: &str, reason: &str) {
        self.provider
            .audit_refusal(
                ctx,
                AuditEvent::AdminRefused {
                    actor: actor.chars().take(160).collect(),
                    action: action.chars().take(160).collect(),
                    reason: reason.to_owned(),
                },
            )
            .await;
    }
}
