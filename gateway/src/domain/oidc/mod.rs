//! The OpenID Provider: authorization, login, token, userinfo, logout, revocation and
//! introspection rules. HTTP handlers parse requests into the inputs here and render the
//! outputs; nothing in this module knows about HTTP.
mod authorize;
mod card;
mod client_auth;
mod login;
mod logout;
mod params;
mod psc;
mod second_factor;
mod self_service;
mod sessions;
mod throttle;
mod token;
mod token_info;

pub use authorize::AuthorizeOutcome;
pub use card::{CardError, Presented};
pub use client_auth::ClientCredentials;
pub use login::{LoginForm, LoginOutcome, LoginPage};
pub use logout::{LogoutOutcome, LogoutRequest};
pub use params::Params;
pub use psc::{PscSettings, TermsPage, preferred_national_id};
pub use second_factor::{KeyCeremony, KeyFinish, KeyStepError, KeyStepRefusal, SecondFactorPage};
pub use self_service::{KeyAddError, KeyRemovalError, SignedIn};
pub use sessions::{SELF_ACTOR, SessionInfo};
pub use throttle::{ThrottleSettings, Throttled};
pub use token::TokenResponse;
pub use token_info::{Introspection, UserinfoResponse};

use crate::domain::DomainError;
use crate::domain::audit::{AuditEvent, AuditRecord, RequestContext};
use crate::domain::ports::{
    AuditSink, Clock, IdentityStore, PasswordChecker, Random, SecurityKeyStore, SecurityKeys, SessionStore, Signer, Storage,
};
use std::sync::Arc;

/// Tunables of the provider (from config `[oidc]`).
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Public base URL, without trailing slash: `iss` of every token.
    pub issuer: String,
    pub code_ttl_secs: i64,
    pub pending_login_ttl_secs: i64,
    pub sso_session_ttl_secs: i64,
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    /// acr values Relais can assert, weakest first. Policy compares by this order.
    pub acr_levels: Vec<String>,
    /// What each combination of methods earns (amr, acr).
    pub assurance: AssurancePolicy,
    /// Longest accepted value of any request parameter.
    pub max_param_len: usize,
    /// Longest accepted lifetime of a client assertion (exp - iat), seconds.
    pub max_assertion_lifetime_secs: i64,
    pub psc: PscSettings,
    /// Brute-force throttling of the login form.
    pub throttle: ThrottleSettings,
    /// CPS/CPx card policy (card alone, mapping on first use).
    pub cards: crate::domain::card::CardPolicy,
    /// Every role `[directories.roles]` defines: what a client may be reserved to.
    pub role_names: Vec<String>,
}

impl ProviderSettings {
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }
    pub fn token_endpoint(&self) -> String {
        self.endpoint("/token")
    }
    /// Rank of an acr value in the configured order; unknown values rank nowhere.
    pub fn acr_rank(&self, acr: &str) -> Option<usize> {
        self.acr_levels.iter().position(|a| a == acr)
    }
}

/// The amr and acr one combination of authentication methods earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodAssurance {
    pub amr: Vec<String>,
    pub acr: String,
}

/// The method → amr/acr table (config `[assurance]`). The id_token states exactly the row of
/// what was done in the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssurancePolicy {
    pub password: MethodAssurance,
    /// Password, then a FIDO2 security key with user verification.
    pub password_and_key: MethodAssurance,
    /// A CPS/CPx card alone (certificate + PIN).
    pub card: MethodAssurance,
    /// Password, then a CPS/CPx card.
    pub password_and_card: MethodAssurance,
}

/// Scopes Relais knows; others are dropped from requests (RFC 6749 §3.3 allows it).
pub const SUPPORTED_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access", "national_id", "roles"];

pub struct Provider {
    pub settings: ProviderSettings,
    pub storage: Arc<dyn Storage>,
    pub identities: Arc<dyn IdentityStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub signer: Arc<dyn Signer>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub passwords: Arc<dyn PasswordChecker>,
    pub audit: Arc<dyn AuditSink>,
    /// FIDO2 ceremonies; `None` when no attestation policy is configured (no second factor).
    pub security_keys: Option<Arc<dyn SecurityKeys>>,
    pub key_store: Arc<dyn SecurityKeyStore>,
    /// Checks CPS/CPx card certificates; `None` when `[cards]` is not configured.
    pub cards: Option<Arc<dyn crate::domain::card::CardChecker>>,
}

impl Provider {
    /// The admin operations, acting as `actor`, on the same parts the provider uses.
    pub fn management<'a>(&'a self, actor: &'a str) -> crate::domain::management::Management<'a> {
        crate::domain::management::Management {
            storage: self.storage.as_ref(),
            identities: self.identities.as_ref(),
            audit: self.audit.as_ref(),
            random: self.random.as_ref(),
            clock: self.clock.as_ref(),
            security_keys: self.key_store.as_ref(),
            role_names: &self.settings.role_names,
            actor,
        }
    }

    /// Records an audit event; a failure to record fails the operation (fail closed).
    pub async fn audit(&self, ctx: &RequestContext, event: AuditEvent) -> Result<(), DomainError> {
        let record = AuditRecord {
            at: self.clock.now(),
            event,
            context: ctx.into(),
        };
        self.audit.record(record).await.map_err(DomainError::from)
    }

    /// Records an event about a refusal. The refusal stands even if recording fails; the
    /// failure is logged.
    pub async fn audit_refusal(&self, ctx: &RequestContext, event: AuditEvent) {
        let kind = event.kind();
        if let Err(e) = self.audit(ctx, event).await {
            tracing::error!(event = kind, error = %e, "could not record a refusal in the audit trail");
        }
    }
}
