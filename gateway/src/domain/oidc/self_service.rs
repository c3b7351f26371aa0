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
use crate::domain::fido2::Fido2Error;
use uuid::Uuid;

/// The person behind an SSO cookie.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub account: Account,
    /// The id of the session the cookie names.
    pub session_id: String,
    /// How the session was authenticated (RFC 8176 values): `hwk` when a security key or a
    /// card was used.
    pub amr: Vec<String>,
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

/// Why a security key was not added from `/account`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyAddError {
    #[error("security keys are not enabled here")]
    NotEnabled,
    #[error("an enrolment code from your administrator is required to register a first security key")]
    CodeRequired,
    #[error("the enrolment code is wrong, expired or already used")]
    CodeRejected,
    /// Only a session opened with a key or a card may add another key.
    #[error("to add another security key, sign in with a key (or your card) you already have, then come back")]
    NeedsStrongSession,
    #[error("this step has expired or was already used; start again")]
    Expired,
    #[error(
        "this security key model is not allowed by the establishment's policy (its attestation is not trusted): use a key supplied by your establishment"
    )]
    ModelNotAllowed,
    #[error("the security key registration failed; try again")]
    Failed,
    #[error("this security key is already registered")]
    AlreadyRegistered,
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
            amr: s.amr,
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

    fn own_ceremony_key(me: &SignedIn) -> String {
        format!("account:{}", me.session_id)
    }

    /// Starts registering a key from `/account`. The same rule as at login: a first key needs
    /// the admin's one-time enrolment code; another key needs a session opened with a key or a
    /// card (`hwk`), so a stolen password alone can never add one.
    #[tracing::instrument(skip_all)]
    pub async fn own_key_options(
        &self,
        me: &SignedIn,
        enrolment_code: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Result<serde_json::Value, KeyAddError>, DomainError> {
        let Some(port) = self.security_keys.clone() else {
            return Ok(Err(KeyAddError::NotEnabled));
        };
        let account_id = me.account.id;
        let all = self.key_store.security_keys(account_id).await?;
        let mut code_digest = None;
        if !all.iter().any(|k| k.active()) {
            let code = enrolment_code.map(crate::domain::fido2::normalise_code).unwrap_or_default();
            let refusal = if code.is_empty() {
                Some(KeyAddError::CodeRequired)
            } else if !self
                .key_store
                .live_enrolment_code(&crate::domain::crypto::secret_digest(&code), account_id, self.clock.now())
                .await?
            {
                Some(KeyAddError::CodeRejected)
            } else {
                None
            };
            if let Some(e) = refusal {
                self.registration_refused(ctx, account_id.to_string(), format!("account page: {e}"))
                    .await;
                return Ok(Err(e));
            }
            code_digest = Some(crate::domain::crypto::secret_digest(&code));
        } else if !me.amr.iter().any(|m| m == "hwk") {
            let e = KeyAddError::NeedsStrongSession;
            self.registration_refused(ctx, account_id.to_string(), format!("account page: {e}"))
                .await;
            return Ok(Err(e));
        }
        let holder = crate::domain::fido2::KeyHolder {
            account_id,
            username: me.account.username.clone(),
            display_name: me.account.display_name.clone(),
        };
        let started = match port.start_registration(&holder, &all) {
            Ok(s) => s,
            Err(Fido2Error::NotAllowed(reason)) => {
                self.registration_refused(ctx, account_id.to_string(), format!("account page: {reason}"))
                    .await;
                return Ok(Err(KeyAddError::ModelNotAllowed));
            }
            Err(e) => return Err(DomainError::Internal(e.to_string())),
        };
        let pending = crate::domain::fido2::PendingCeremony {
            register: true,
            state: started.state,
            enrolment_code_digest: code_digest,
        };
        let bytes = serde_json::to_vec(&pending).map_err(|e| DomainError::Internal(e.to_string()))?;
        self.sessions
            .put(
                crate::domain::ports::Namespace::Webauthn,
                &Self::own_ceremony_key(me),
                &bytes,
                super::second_factor::CEREMONY_TTL,
            )
            .await?;
        Ok(Ok(started.options))
    }

    /// Checks the new key's attestation against the trust policy and stores it (audited).
    #[tracing::instrument(skip_all)]
    pub async fn own_key_finish(
        &self,
        me: &SignedIn,
        response: &serde_json::Value,
        key_name: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Result<(), KeyAddError>, DomainError> {
        let Some(port) = self.security_keys.clone() else {
            return Ok(Err(KeyAddError::NotEnabled));
        };
        // The challenge is used once: a replayed answer finds nothing.
        let Some(bytes) = self
            .sessions
            .take(crate::domain::ports::Namespace::Webauthn, &Self::own_ceremony_key(me))
            .await?
        else {
            return Ok(Err(KeyAddError::Expired));
        };
        let ceremony: crate::domain::fido2::PendingCeremony =
            serde_json::from_slice(&bytes).map_err(|e| DomainError::Internal(format!("ceremony: {e}")))?;
        let account_id = me.account.id;
        let now = self.clock.now();
        let new = match port.finish_registration(response, &ceremony.state) {
            Ok(k) => k,
            Err(e) => {
                let refusal = match e {
                    crate::domain::fido2::Fido2Error::NotAllowed(_) => KeyAddError::ModelNotAllowed,
                    _ => KeyAddError::Failed,
                };
                self.registration_refused(ctx, account_id.to_string(), format!("account page: {e}"))
                    .await;
                return Ok(Err(refusal));
            }
        };
        if let Some(digest) = &ceremony.enrolment_code_digest
            && !self.key_store.consume_enrolment_code(digest, account_id, now).await?
        {
            return Ok(Err(KeyAddError::CodeRejected));
        }
        if !self.store_registered_key(account_id, new, key_name, ctx).await? {
            return Ok(Err(KeyAddError::AlreadyRegistered));
        }
        Ok(Ok(()))
    }
}
