//! The login step: the form's data checked against the pending request, the password checked
//! by the first-factor adapter, then a fresh SSO session and a code.
use super::MethodAssurance;
use super::Provider;
use super::authorize::redirect_error;
use super::psc::Gate;
use crate::domain::DomainError;
use crate::domain::account::AccountClaims;
use crate::domain::audit::{AuditEvent, RequestContext};
use crate::domain::crypto::{ct_eq, secret_digest};
use crate::domain::ports::{AccountRefusal, Namespace, PasswordVerdict};
use crate::domain::records::{AuthorizationRequest, PendingLogin, SecondFactorStage, SsoSession};
use crate::protocol::{OAuthError, OAuthErrorCode};
use std::time::Duration;
use uuid::Uuid;

pub struct LoginForm {
    pub pending_id: String,
    pub csrf: String,
    pub username: String,
    pub password: String,
}

/// What the login page shows.
#[derive(Debug, Clone)]
pub struct LoginPage {
    pub pending_id: String,
    pub csrf: String,
    pub client_name: String,
    pub login_hint: Option<String>,
    pub ui_locales: Option<String>,
}

#[derive(Debug)]
pub enum LoginOutcome {
    /// Show the form again with a generic "wrong username or password" message.
    Rejected(LoginPage),
    /// Logged in: set the session cookie, go back to the client.
    Done {
        redirect: String,
        /// Boxed: with the person's claims it is the largest variant by far.
        session: Box<SsoSession>,
        cookie_secret: String,
    },
    /// Logged in, but not eligible for this client (PSC without a verified national identity).
    NotEligible { cookie_secret: String },
    /// Logged in; the terms of use must be accepted before the code.
    Terms {
        pending_id: String,
        browser_binding: String,
        cookie_secret: String,
    },
    /// Password right; a security key must follow (the browser goes to the key page).
    SecondFactor { pending_id: String },
    /// Logged in, but the client's policy cannot be met: back to the client with an error.
    /// The session is real (other clients may accept it), so its cookie is still set.
    Refused { redirect: String, cookie_secret: String },
}

/// What the person is told when a correct password cannot log in. Generic enough for a
/// shared screen, specific enough to know whom to call.
fn refusal_message(r: AccountRefusal) -> &'static str {
    match r {
        AccountRefusal::Disabled | AccountRefusal::Expired | AccountRefusal::Locked => {
            "this account cannot be used at the moment; contact the IT help desk"
        }
        AccountRefusal::MustChangePassword => {
            "your password must be changed before you can log in; change it on a hospital workstation, then try again"
        }
        AccountRefusal::NotAllowed => "this account is not allowed to use this service; contact the IT help desk",
    }
}

/// After this many failed attempts on one pending login, it is dropped and must be restarted.
pub(super) const MAX_ATTEMPTS_PER_PENDING_LOGIN: u32 = 5;

impl Provider {
    /// The pending login for the page, if it exists and belongs to this browser.
    pub async fn login_page(&self, pending_id: &str, browser_binding: Option<&str>) -> Result<Result<LoginPage, OAuthError>, DomainError> {
        let pending = match self.pending_for_browser(pending_id, browser_binding).await? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.page_for(&pending).await?))
    }

    async fn page_for(&self, p: &PendingLogin) -> Result<LoginPage, DomainError> {
        let client_name = self.storage.client(&p.request.client_id).await?.map(|c| c.name).unwrap_or_default();
        Ok(LoginPage {
            pending_id: p.id.clone(),
            csrf: p.csrf.clone(),
            client_name,
            login_hint: p.request.login_hint.clone(),
            ui_locales: p.request.ui_locales.clone(),
        })
    }

    pub(super) async fn pending_for_browser(
        &self,
        pending_id: &str,
        browser_binding: Option<&str>,
    ) -> Result<Result<PendingLogin, OAuthError>, DomainError> {
        let expired = || OAuthError::invalid_request("this login has expired or was already used; start again from the application");
        if pending_id.len() > 64 {
            return Ok(Err(expired()));
        }
        let Some(bytes) = self.sessions.get(Namespace::PendingLogin, pending_id).await? else {
            return Ok(Err(expired()));
        };
        let p: PendingLogin = serde_json::from_slice(&bytes).map_err(|e| DomainError::Internal(format!("pending login: {e}")))?;
        if p.expires_at <= self.clock.unix() {
            return Ok(Err(expired()));
        }
        let bound = browser_binding.is_some_and(|b| ct_eq(secret_digest(b).as_bytes(), p.browser_binding_digest.as_bytes()));
        if !bound {
            return Ok(Err(OAuthError::new(
                OAuthErrorCode::AccessDenied,
                "this login was started in another browser",
            )));
        }
        Ok(Ok(p))
    }

    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        form: LoginForm,
        browser_binding: Option<&str>,
        previous_sso: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Result<LoginOutcome, OAuthError>, DomainError> {
        let mut pending = match self.pending_for_browser(&form.pending_id, browser_binding).await? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        if !ct_eq(form.csrf.as_bytes(), pending.csrf.as_bytes()) {
            return Ok(Err(OAuthError::new(
                OAuthErrorCode::AccessDenied,
                "the form is stale or forged (CSRF check failed)",
            )));
        }
        if pending.second_factor.is_some() {
            return Ok(Err(OAuthError::invalid_request(
                "the password was already checked; continue with your security key",
            )));
        }
        let username = form.username.chars().take(256).collect::<String>();
        let ip = ctx.source_ip.as_deref();
        // Before the password checker: a locked-out guesser never reaches the directory.
        if let Some(what) = self.throttled(&username, ip).await? {
            self.audit_refusal(
                ctx,
                AuditEvent::LoginThrottled {
                    username,
                    scope: what.as_str().into(),
                },
            )
            .await;
            return Ok(Err(OAuthError::new(
                OAuthErrorCode::AccessDenied,
                "too many failed login attempts; wait a few minutes, then start again from the application",
            )));
        }
        let verdict = match self.passwords.verify(&username, &form.password).await {
            Ok(v) => v,
            Err(e) => {
                // The directory (or the account database) did not answer: not the person's
                // failure (no throttle count), but a refused login all the same, on record.
                self.audit_refusal(
                    ctx,
                    AuditEvent::LoginPassword {
                        username,
                        account_id: None,
                        success: false,
                        reason: Some(format!("password check unavailable: {e}")),
                    },
                )
                .await;
                return Err(e.into());
            }
        };
        let account = match verdict {
            PasswordVerdict::Accepted(a, roles) => {
                pending.roles = roles;
                Some(a)
            }
            PasswordVerdict::Rejected => None,
            PasswordVerdict::Refused(reason) => {
                // The password was right: saying why is safe and saves a help-desk call.
                self.record_success(&username).await?;
                self.audit_refusal(
                    ctx,
                    AuditEvent::LoginAccountRefused {
                        username,
                        reason: reason.as_str().into(),
                    },
                )
                .await;
                return Ok(Err(OAuthError::new(OAuthErrorCode::AccessDenied, refusal_message(reason))));
            }
        };
        let Some(account) = account else {
            self.record_failure(&username, ip).await?;
            self.audit(
                ctx,
                AuditEvent::LoginPassword {
                    username,
                    account_id: None,
                    success: false,
                    reason: Some("bad credentials".into()),
                },
            )
            .await?;
            pending.failed_attempts += 1;
            if pending.failed_attempts >= MAX_ATTEMPTS_PER_PENDING_LOGIN {
                self.sessions.delete(Namespace::PendingLogin, &pending.id).await?;
                return Ok(Err(OAuthError::new(
                    OAuthErrorCode::AccessDenied,
                    "too many failed attempts; start again from the application",
                )));
            }
            self.save_pending(&pending).await?;
            return Ok(Ok(LoginOutcome::Rejected(self.page_for(&pending).await?)));
        };
        self.record_success(&username).await?;
        if self.key_step_needed(account.id, &pending.request).await? {
            self.audit(
                ctx,
                AuditEvent::LoginPassword {
                    username,
                    account_id: Some(account.id.to_string()),
                    success: true,
                    reason: None,
                },
            )
            .await?;
            pending.second_factor = Some(SecondFactorStage {
                account_id: account.id,
                claims: (&account).into(),
                step_up_of: None,
                key_verified: false,
            });
            self.save_pending(&pending).await?;
            return Ok(Ok(LoginOutcome::SecondFactor { pending_id: pending.id }));
        }
        // One login, one pending request: a second submit of the same form finds nothing.
        if self.sessions.take(Namespace::PendingLogin, &pending.id).await?.is_none() {
            return Ok(Err(OAuthError::invalid_request("this login was already completed")));
        }
        self.audit(
            ctx,
            AuditEvent::LoginPassword {
                username,
                account_id: Some(account.id.to_string()),
                success: true,
                reason: None,
            },
        )
        .await?;
        let earned = self.settings.assurance.password.clone();
        self.complete_login(&pending, account.id, (&account).into(), &earned, previous_sso, ctx)
            .await
    }

    /// After the last factor: a fresh SSO session stating what was done, then the client's
    /// policy, the PSC gate and a code.
    pub(super) async fn complete_login(
        &self,
        pending: &PendingLogin,
        account_id: Uuid,
        claims: AccountClaims,
        earned: &MethodAssurance,
        previous_sso: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Result<LoginOutcome, OAuthError>, DomainError> {
        // A new session id at every login (no fixation); the old session ends.
        if let Some(old) = previous_sso.filter(|s| s.len() <= 64) {
            self.forget_sso_session(&secret_digest(old)).await?;
        }
        // The cookie carries a secret; the session is stored (and named in tokens and the
        // audit trail as `sid`) under its digest, so an RP that sees `sid` cannot use it.
        let cookie_secret = self.random.token();
        let now = self.clock.unix();
        let session = SsoSession {
            id: secret_digest(&cookie_secret),
            account_id,
            // The time of the last factor: after a step-up, the time of the key.
            auth_time: now,
            amr: earned.amr.clone(),
            acr: earned.acr.clone(),
            expires_at: now + self.settings.sso_session_ttl_secs,
            roles: pending.roles.clone(),
            created_at: now,
            source_ip: ctx.source_ip.clone(),
            claims: Some(claims),
        };
        let bytes = serde_json::to_vec(&session).map_err(|e| DomainError::Internal(e.to_string()))?;
        self.sessions
            .put(
                Namespace::Sso,
                &session.id,
                &bytes,
                Duration::from_secs(self.settings.sso_session_ttl_secs.max(1) as u64),
            )
            .await?;
        self.index_sso_session(&session).await?;

        let request = &pending.request;
        let client = self.storage.client(&request.client_id).await?.filter(|c| c.enabled);
        let Some(client) = client else {
            return Ok(Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "the client was disabled during the login",
            )));
        };
        if !self.meets_client_minimum(&client, &session.acr) {
            let e = OAuthError::new(
                OAuthErrorCode::AccessDenied,
                "this application requires a stronger authentication than the one performed",
            );
            self.audit_refusal(
                ctx,
                AuditEvent::AuthorizeRefused {
                    client_id: Some(client.id.to_string()),
                    reason: e.description.clone(),
                },
            )
            .await;
            return Ok(Ok(LoginOutcome::Refused {
                cookie_secret,
                redirect: redirect_error(&request.redirect_uri, &e, request.state.as_deref(), &self.settings.issuer),
            }));
        }
        match self.gate(&client, request, &session, ctx).await? {
            Gate::Proceed => {}
            Gate::RoleMissing => {
                let e = super::psc::role_missing();
                return Ok(Ok(LoginOutcome::Refused {
                    cookie_secret,
                    redirect: redirect_error(&request.redirect_uri, &e, request.state.as_deref(), &self.settings.issuer),
                }));
            }
            Gate::NotEligible => return Ok(Ok(LoginOutcome::NotEligible { cookie_secret })),
            Gate::Terms {
                pending_id,
                browser_binding,
            } => {
                return Ok(Ok(LoginOutcome::Terms {
                    pending_id,
                    browser_binding,
                    cookie_secret,
                }));
            }
        }
        let redirect = self.issue_code(request, &session, ctx).await?;
        Ok(Ok(LoginOutcome::Done {
            redirect,
            session: Box::new(session),
            cookie_secret,
        }))
    }

    /// Whether a second factor (security key or card) must follow the password: the person has
    /// a key, or the request or the client asks for more than a password earns. Never when
    /// neither FIDO2 nor cards are configured.
    async fn key_step_needed(&self, account_id: Uuid, request: &AuthorizationRequest) -> Result<bool, DomainError> {
        if self.security_keys.is_none() && self.cards.is_none() {
            return Ok(false);
        }
        if self.security_keys.is_some() && self.key_store.security_keys(account_id).await?.iter().any(|k| k.active()) {
            return Ok(true);
        }
        let client = self.storage.client(&request.client_id).await?;
        let wanted_by_request = request.acr_values.iter().filter_map(|a| self.settings.acr_rank(a)).min();
        let wanted_by_client = client.and_then(|c| c.min_acr).and_then(|m| self.settings.acr_rank(&m));
        let wanted = wanted_by_request.max(wanted_by_client);
        let have = self.settings.acr_rank(&self.settings.assurance.password.acr);
        Ok(wanted.is_some_and(|w| have.is_none_or(|h| h < w)))
    }
}
