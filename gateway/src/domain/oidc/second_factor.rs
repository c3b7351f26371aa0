//! The second factor: a FIDO2 security key after the password (or alone, to step up a live
//! session). The ceremonies run in the `SecurityKeys` adapter; this module decides who may run
//! which ceremony, keeps the challenge in the session store (consumed once) and turns a
//! verified key into a session that says so.
use super::Provider;
use super::login::{LoginOutcome, MAX_ATTEMPTS_PER_PENDING_LOGIN};
use crate::domain::DomainError;
use crate::domain::audit::{AuditEvent, AuditRecord, RequestContext};
use crate::domain::crypto::{ct_eq, secret_digest};
use crate::domain::fido2::{Ceremony, Fido2Error, KeyHolder, PendingCeremony, SecurityKeyRecord, normalise_code};
use crate::domain::ports::{Namespace, SecurityKeys};
use crate::domain::records::{AuditedWrite, PendingLogin, SecondFactorStage};
use crate::protocol::{OAuthError, OAuthErrorCode};
use std::sync::Arc;
use std::time::Duration;

/// How long a ceremony's challenge stays valid (the person has to find and touch the key).
pub(super) const CEREMONY_TTL: Duration = Duration::from_secs(300);

/// What the security key page shows.
#[derive(Debug, Clone)]
pub struct SecondFactorPage {
    pub pending_id: String,
    pub csrf: String,
    pub client_name: String,
    pub username: String,
    pub ui_locales: Option<String>,
    pub has_keys: bool,
    /// When the person has keys: the options of an authentication ceremony already started,
    /// so the page's script asks the key at once instead of fetching them first (one request
    /// less per login). Loading the page again starts a new ceremony; the previous challenge
    /// is then refused.
    pub authentication_options: Option<serde_json::Value>,
}

/// Which ceremony the browser asks for.
#[derive(Debug, Clone)]
pub enum KeyCeremony {
    /// Register a key: the first needs the admin's enrolment code, another needs a key verified
    /// in this login.
    Register {
        enrolment_code: Option<String>,
    },
    Authenticate,
}

/// What a finished ceremony leads to.
#[derive(Debug)]
// One value per login, returned once and matched right away: boxing the outcome buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum KeyFinish {
    /// A key was registered; the person now signs in with it.
    Registered,
    /// A key was verified and the person asked to enrol another one next.
    MayEnrol,
    /// The login is complete (or refused by the client's policy).
    Login(LoginOutcome),
}

/// Why the key step refused, in the words the key page shows. The English text is the error's
/// description (and what the audit trail records); the HTTP layer shows it in the page's
/// language (`KeyStepError::Refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyStepRefusal {
    #[error("security keys are not enabled")]
    NotEnabled,
    #[error("enter your username and password first")]
    PasswordFirst,
    #[error("the form is stale or forged (CSRF check failed)")]
    StaleForm,
    #[error("no security key is registered for you: register one with the enrolment code from your administrator")]
    NoKey,
    #[error("an enrolment code from your administrator is required to register a first security key")]
    CodeRequired,
    #[error("the enrolment code is wrong, expired or already used")]
    CodeRejected,
    #[error("to add another security key, first sign in with one you already have")]
    KeyFirst,
    #[error("this security key step has expired or was already used; try again")]
    StepExpired,
    #[error(
        "this security key model is not allowed by the establishment's policy (its attestation is not trusted): use a key supplied by your establishment"
    )]
    ModelNotAllowed,
    #[error("the security key registration failed; try again")]
    RegistrationFailed,
    #[error("this security key is already registered")]
    AlreadyRegistered,
    #[error("the security key was refused: use one of your registered, non-revoked keys, with its PIN or fingerprint")]
    KeyRefused,
    #[error("your session has ended; start again from the application")]
    SessionEnded,
    #[error("this login was already completed")]
    AlreadyCompleted,
}

impl KeyStepRefusal {
    pub fn oauth(self) -> OAuthError {
        let code = match self {
            Self::NotEnabled | Self::PasswordFirst | Self::StepExpired | Self::SessionEnded | Self::AlreadyCompleted => {
                OAuthErrorCode::InvalidRequest
            }
            _ => OAuthErrorCode::AccessDenied,
        };
        OAuthError::new(code, self.to_string())
    }
}

/// Why the key step did not go on: a refusal the page explains (in its language, chosen by
/// the HTTP layer), or an error of the login itself (expired, another browser's).
#[derive(Debug, Clone)]
pub enum KeyStepError {
    Refused(KeyStepRefusal),
    Login(OAuthError),
}

impl KeyStepError {
    pub fn oauth(&self) -> OAuthError {
        match self {
            Self::Refused(r) => r.oauth(),
            Self::Login(e) => e.clone(),
        }
    }
}

impl From<KeyStepRefusal> for KeyStepError {
    fn from(r: KeyStepRefusal) -> Self {
        Self::Refused(r)
    }
}

impl From<OAuthError> for KeyStepError {
    fn from(e: OAuthError) -> Self {
        Self::Login(e)
    }
}

fn denied(r: KeyStepRefusal) -> KeyStepError {
    KeyStepError::Refused(r)
}

impl Provider {
    fn keys_port(&self) -> Result<&Arc<dyn SecurityKeys>, KeyStepError> {
        self.security_keys.as_ref().ok_or(KeyStepError::Refused(KeyStepRefusal::NotEnabled))
    }

    /// The pending login of this browser, past its password (or a step-up).
    async fn key_step(
        &self,
        id: &str,
        binding: Option<&str>,
    ) -> Result<Result<(PendingLogin, SecondFactorStage), KeyStepError>, DomainError> {
        if let Err(e) = self.keys_port() {
            return Ok(Err(e));
        }
        let p = match self.pending_for_browser(id, binding).await? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.into())),
        };
        let Some(stage) = p.second_factor.clone() else {
            return Ok(Err(denied(KeyStepRefusal::PasswordFirst)));
        };
        Ok(Ok((p, stage)))
    }

    async fn active_keys(&self, stage: &SecondFactorStage) -> Result<(Vec<SecurityKeyRecord>, Vec<SecurityKeyRecord>), DomainError> {
        let all = self.key_store.security_keys(stage.account_id).await?;
        let active = all.iter().filter(|k| k.active()).cloned().collect();
        Ok((all, active))
    }

    /// Counts a failed attempt; too many drop the pending login.
    async fn key_attempt_failed(&self, mut p: PendingLogin) -> Result<(), DomainError> {
        p.failed_attempts += 1;
        if p.failed_attempts >= MAX_ATTEMPTS_PER_PENDING_LOGIN {
            self.sessions.delete(Namespace::PendingLogin, &p.id).await?;
        } else {
            self.save_pending(&p).await?;
        }
        Ok(())
    }

    pub async fn second_factor_page(&self, id: &str, binding: Option<&str>) -> Result<Result<SecondFactorPage, OAuthError>, DomainError> {
        let (p, stage) = match self.key_step(id, binding).await? {
            Ok(x) => x,
            Err(e) => return Ok(Err(e.oauth())),
        };
        let (_, active) = self.active_keys(&stage).await?;
        let client_name = self.storage.client(&p.request.client_id).await?.map(|c| c.name).unwrap_or_default();
        let authentication_options = if active.is_empty() {
            None
        } else {
            let port = self.keys_port().map_err(|e| DomainError::Internal(e.oauth().description))?;
            Some(self.keep_ceremony(&p.id, port.start_authentication(&active), false, None).await?)
        };
        Ok(Ok(SecondFactorPage {
            pending_id: p.id,
            csrf: p.csrf,
            client_name,
            username: stage.claims.username,
            ui_locales: p.request.ui_locales,
            has_keys: !active.is_empty(),
            authentication_options,
        }))
    }

    /// Keeps a started ceremony's state in the session store (one per pending login: a new
    /// ceremony replaces the previous one) and returns its options for the browser.
    async fn keep_ceremony(
        &self,
        pending_id: &str,
        started: Result<Ceremony, Fido2Error>,
        register: bool,
        enrolment_code_digest: Option<String>,
    ) -> Result<serde_json::Value, DomainError> {
        let started = started.map_err(|e| DomainError::Internal(e.to_string()))?;
        let pending = PendingCeremony {
            register,
            state: started.state,
            enrolment_code_digest,
        };
        let bytes = serde_json::to_vec(&pending).map_err(|e| DomainError::Internal(e.to_string()))?;
        self.sessions.put(Namespace::Webauthn, pending_id, &bytes, CEREMONY_TTL).await?;
        Ok(started.options)
    }

    /// Starts a ceremony; returns the options for `navigator.credentials`.
    #[tracing::instrument(skip_all)]
    pub async fn key_options(
        &self,
        id: &str,
        csrf: &str,
        binding: Option<&str>,
        ceremony: KeyCeremony,
        ctx: &RequestContext,
    ) -> Result<Result<serde_json::Value, KeyStepError>, DomainError> {
        let (p, stage) = match self.key_step(id, binding).await? {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        if !ct_eq(csrf.as_bytes(), p.csrf.as_bytes()) {
            return Ok(Err(denied(KeyStepRefusal::StaleForm)));
        }
        let port = self.keys_port().map_err(|e| DomainError::Internal(e.oauth().description))?;
        let (all, active) = self.active_keys(&stage).await?;
        let account_id = stage.account_id.to_string();
        let (started, register, code_digest) = match ceremony {
            KeyCeremony::Authenticate => {
                if active.is_empty() {
                    return Ok(Err(denied(KeyStepRefusal::NoKey)));
                }
                (port.start_authentication(&active), false, None)
            }
            KeyCeremony::Register { enrolment_code } => {
                let mut code_digest = None;
                if active.is_empty() {
                    // The first key: the password is not enough, the admin's one-time code is.
                    let code = enrolment_code.as_deref().map(normalise_code).unwrap_or_default();
                    let refusal = if code.is_empty() {
                        Some(KeyStepRefusal::CodeRequired)
                    } else if !self
                        .key_store
                        .live_enrolment_code(&secret_digest(&code), stage.account_id, self.clock.now())
                        .await?
                    {
                        Some(KeyStepRefusal::CodeRejected)
                    } else {
                        None
                    };
                    if let Some(reason) = refusal {
                        self.registration_refused(ctx, account_id, reason.to_string()).await;
                        self.key_attempt_failed(p).await?;
                        return Ok(Err(denied(reason)));
                    }
                    code_digest = Some(secret_digest(&code));
                } else if !stage.key_verified {
                    // Another key: only someone holding a registered key may add one.
                    let reason = KeyStepRefusal::KeyFirst;
                    self.registration_refused(ctx, account_id, reason.to_string()).await;
                    return Ok(Err(denied(reason)));
                }
                let holder = KeyHolder {
                    account_id: stage.account_id,
                    username: stage.claims.username.clone(),
                    display_name: stage.claims.display_name.clone(),
                };
                match port.start_registration(&holder, &all) {
                    // No key model is admitted at all (e.g. the MDS blob withdrew every one).
                    Err(Fido2Error::NotAllowed(reason)) => {
                        self.registration_refused(ctx, account_id, reason).await;
                        return Ok(Err(denied(KeyStepRefusal::ModelNotAllowed)));
                    }
                    started => (started, true, code_digest),
                }
            }
        };
        Ok(Ok(self.keep_ceremony(&p.id, started, register, code_digest).await?))
    }

    /// Checks the key's answer. A registration stores the key; an assertion completes the
    /// login (or allows enrolling another key when `then_enrol`).
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all)]
    pub async fn key_finish(
        &self,
        id: &str,
        csrf: &str,
        binding: Option<&str>,
        response: &serde_json::Value,
        key_name: Option<&str>,
        then_enrol: bool,
        previous_sso: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Result<KeyFinish, KeyStepError>, DomainError> {
        let (mut p, mut stage) = match self.key_step(id, binding).await? {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        if !ct_eq(csrf.as_bytes(), p.csrf.as_bytes()) {
            return Ok(Err(denied(KeyStepRefusal::StaleForm)));
        }
        let port = self.keys_port().map_err(|e| DomainError::Internal(e.oauth().description))?.clone();
        // The challenge is used once: a replayed answer finds nothing.
        let Some(bytes) = self.sessions.take(Namespace::Webauthn, &p.id).await? else {
            return Ok(Err(denied(KeyStepRefusal::StepExpired)));
        };
        let ceremony: PendingCeremony = serde_json::from_slice(&bytes).map_err(|e| DomainError::Internal(format!("ceremony: {e}")))?;
        let account_id = stage.account_id.to_string();
        let now = self.clock.now();

        if ceremony.register {
            let new = match port.finish_registration(response, &ceremony.state) {
                Ok(k) => k,
                Err(e) => {
                    let message = match &e {
                        Fido2Error::NotAllowed(_) => KeyStepRefusal::ModelNotAllowed,
                        _ => KeyStepRefusal::RegistrationFailed,
                    };
                    self.registration_refused(ctx, account_id, e.to_string()).await;
                    return Ok(Err(denied(message)));
                }
            };
            if let Some(digest) = &ceremony.enrolment_code_digest
                && !self.key_store.consume_enrolment_code(digest, stage.account_id, now).await?
            {
                return Ok(Err(denied(KeyStepRefusal::CodeRejected)));
            }
            if !self.store_registered_key(stage.account_id, new, key_name, ctx).await? {
                return Ok(Err(denied(KeyStepRefusal::AlreadyRegistered)));
            }
            // The new key is not a login by itself: the person now signs in with it.
            return Ok(Ok(KeyFinish::Registered));
        }

        // Keys revoked since the options were sent are refused here too.
        let (_, active) = self.active_keys(&stage).await?;
        let assertion = match port.finish_authentication(response, &ceremony.state, &active) {
            Ok(a) if a.user_verified => a,
            result => {
                let reason = match result {
                    Err(Fido2Error::CounterRegression) => {
                        self.audit_refusal(
                            ctx,
                            AuditEvent::Fido2CounterRegression {
                                account_id: account_id.clone(),
                            },
                        )
                        .await;
                        "counter regression".to_string()
                    }
                    Err(e) => e.to_string(),
                    Ok(_) => "user verification was not performed".to_string(),
                };
                self.audit_refusal(
                    ctx,
                    AuditEvent::Fido2Authentication {
                        account_id,
                        key_id: None,
                        success: false,
                        reason: Some(reason),
                    },
                )
                .await;
                self.key_attempt_failed(p).await?;
                return Ok(Err(denied(KeyStepRefusal::KeyRefused)));
            }
        };
        // The new sign counter is stored in the same commit as the record of this login.
        let record = AuditRecord {
            at: now,
            context: ctx.into(),
            event: AuditEvent::Fido2Authentication {
                account_id,
                key_id: Some(assertion.key_id.to_string()),
                success: true,
                reason: None,
            },
        };
        let key_use = AuditedWrite::SecurityKeyUse {
            key_id: assertion.key_id,
            credential: assertion.credential,
            at: now,
        };
        // The record (with the key's counter) is committed while the login goes on: the code's
        // own record is then often in the same group commit, one durable wait instead of two.
        // Nothing is handed out before both are committed: the outcome is returned only once
        // this record is, and an error here drops the code and session made meanwhile (the
        // browser never learns them).
        let recorded = self.audit.record_with(record, Some(key_use));
        let proceed = async {
            if then_enrol {
                stage.key_verified = true;
                p.second_factor = Some(stage);
                self.save_pending(&p).await?;
                return Ok(Ok(KeyFinish::MayEnrol));
            }
            // A step-up belongs to a live session: after a logout it cannot complete.
            if let Some(sid) = &stage.step_up_of
                && self.sessions.get(Namespace::Sso, sid).await?.is_none()
            {
                return Ok(Err(denied(KeyStepRefusal::SessionEnded)));
            }
            // One login, one pending request.
            if self.sessions.take(Namespace::PendingLogin, &p.id).await?.is_none() {
                return Ok(Err(denied(KeyStepRefusal::AlreadyCompleted)));
            }
            let earned = self.settings.assurance.password_and_key.clone();
            Ok(self
                .complete_login(&p, stage.account_id, stage.claims.clone(), &earned, previous_sso, ctx)
                .await?
                .map(KeyFinish::Login)
                .map_err(KeyStepError::from))
        };
        let (recorded, outcome) = futures_util::future::join(recorded, proceed).await;
        recorded?;
        outcome
    }
}

impl Provider {
    /// Stores a key whose registration checked out and audits it, for the login's key page and
    /// the `/account` page alike. `false`: that credential is already registered.
    pub(super) async fn store_registered_key(
        &self,
        account_id: uuid::Uuid,
        new: crate::domain::fido2::NewKey,
        key_name: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<bool, DomainError> {
        let record = SecurityKeyRecord {
            id: self.random.uuid(),
            account_id,
            credential_id: new.credential_id,
            credential: new.credential,
            aaguid: new.aaguid,
            name: key_name
                .map(|n| n.trim().chars().take(64).collect::<String>())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "security key".into()),
            created_at: self.clock.now(),
            last_used_at: None,
            revoked_at: None,
        };
        match self.key_store.insert_security_key(&record).await {
            Ok(()) => {}
            Err(crate::domain::ports::StoreError::Conflict(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.audit(
            ctx,
            AuditEvent::Fido2KeyRegistered {
                account_id: account_id.to_string(),
                key_id: Some(record.id.to_string()),
                aaguid: Some(record.aaguid.to_string()),
                success: true,
                reason: None,
            },
        )
        .await?;
        Ok(true)
    }

    /// Records a refused key registration (the refusal stands even if recording fails).
    pub(super) async fn registration_refused(&self, ctx: &RequestContext, account_id: String, reason: impl Into<String>) {
        let event = AuditEvent::Fido2KeyRegistered {
            account_id,
            key_id: None,
            aaguid: None,
            success: false,
            reason: Some(reason.into()),
        };
        self.audit_refusal(ctx, event).await;
    }
}
