//! Staff self-service (`/account`): the person signed in by their SSO session sees their
//! recent logins, their sessions and their security keys, ends a session and removes a key.
//! Only the SSO session opens it (never the admin session); every change is audited with the
//! actor `self`.
use super::Provider;
use super::sessions::SELF_ACTOR;
use crate::domain::DomainError;
use crate::domain::account::Account;
use crate::domain::audit::{AuditEvent, RequestContext};
use crate::domain::audit_chain::{AuditQuery, ChainedRecord};
use crate::domain::crypto::{b64url, ct_eq, sha256};
use uuid::Uuid;

/// The person behind an SSO cookie.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub account: Account,
    /// The id of the session the cookie names.
    pub session_id: String,
    /// The CSRF token of the account page, bound to the cookie.
    pub csrf: String,
}

impl SignedIn {
    pub fn csrf_ok(&self, sent: Option<&str>) -> bool {
        sent.is_some_and(|s| ct_eq(s.as_bytes(), self.csrf.as_bytes()))
    }
}

/// Why a key was not removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRemovalError {
    #[error("no such active key")]
    NoSuchKey,
    /// The last active key, and the policy requires a phishing-resistant factor.
    #[error("this is your last phishing-resistant factor, which the policy requires")]
    LastFactor,
}

/// Audit events shown as "recent logins".
const LOGIN_EVENTS: &[&str] = &["login_password", "fido2_authentication", "card_login", "admin_login"];

impl Provider {
    /// The person signed in with this SSO cookie value, if the session is live and the account
    /// active.
    pub async fn signed_in(&self, cookie: &str) -> Result<Option<SignedIn>, DomainError> {
        let Some(s) = self.load_sso(cookie, self.clock.unix()).await? else {
            return Ok(None);
        };
        let Some(account) = self.storage.account(s.account_id).await?.filter(|a| !a.disabled) else {
            return Ok(None);
        };
        Ok(Some(SignedIn {
            account,
            session_id: s.id,
            // Derived from the cookie's secret: another site can neither read nor compute it.
            csrf: b64url(&sha256(format!("relais-account:{cookie}").as_bytes())),
        }))
    }

    /// The person's latest login steps (password, key, card, admin), newest first.
    pub async fn recent_logins(&self, account_id: Uuid, limit: usize) -> Result<Vec<ChainedRecord>, DomainError> {
        let page = self
            .storage
            .audit_query(&AuditQuery {
                account_id: Some(account_id.to_string()),
                limit: 200,
                ..Default::default()
            })
            .await?;
        Ok(page
            .records
            .into_iter()
            .filter(|r| LOGIN_EVENTS.contains(&r.event_type.as_str()))
            .take(limit)
            .collect())
    }

    /// Whether some enabled client refuses a password-only login: then a person must keep a
    /// phishing-resistant factor.
    pub async fn phishing_resistant_required(&self) -> Result<bool, DomainError> {
        let password_acr = &self.settings.assurance.password.acr;
        Ok(self
            .storage
            .list_clients()
            .await?
            .iter()
            .any(|c| c.enabled && !self.meets_client_minimum(c, password_acr)))
    }

    /// The person removes one of their own keys (`fido2_key_revoked`, actor `self`). With
    /// `must_keep_one` the last active key stays.
    #[tracing::instrument(skip_all)]
    pub async fn remove_own_security_key(
        &self,
        account_id: Uuid,
        key_id: Uuid,
        must_keep_one: bool,
        ctx: &RequestContext,
    ) -> Result<Result<(), KeyRemovalError>, DomainError> {
        let active: Vec<_> = self
            .key_store
            .security_keys(account_id)
            .await?
            .into_iter()
            .filter(|k| k.active())
            .collect();
        if !active.iter().any(|k| k.id == key_id) {
            return Ok(Err(KeyRemovalError::NoSuchKey));
        }
        if must_keep_one && active.len() == 1 {
            return Ok(Err(KeyRemovalError::LastFactor));
        }
        if !self.key_store.revoke_security_key(account_id, key_id, self.clock.now()).await? {
            return Ok(Err(KeyRemovalError::NoSuchKey));
        }
        self.audit(
            ctx,
            AuditEvent::Fido2KeyRevoked {
                account_id: account_id.to_string(),
                key_id: key_id.to_string(),
                actor: SELF_ACTOR.to_owned(),
            },
        )
        .await?;
        Ok(Ok(()))
    }
}
