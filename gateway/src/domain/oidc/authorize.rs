//! The authorization endpoint (OIDC Core §3.1.2): validate, decide between SSO reuse, a login
//! page and an error, and issue codes.
use super::psc::Gate;
use super::{Params, Provider, SUPPORTED_SCOPES};
use crate::domain::DomainError;
use crate::domain::audit::{AuditEvent, RequestContext};
use crate::domain::client::Client;
use crate::domain::crypto::secret_digest;
use crate::domain::ports::Namespace;
use crate::domain::records::{AuthorizationRequest, CodeGrant, PendingLogin, SecondFactorStage, SsoSession};
use crate::protocol::{Acr, ClientId, CodeChallenge, OAuthError, OAuthErrorCode, Prompt, RedirectUri, Scopes};
use std::time::Duration;

#[derive(Debug)]
pub enum AuthorizeOutcome {
    /// The client or redirect URI cannot be trusted: show an error page, never redirect.
    ErrorPage(OAuthError),
    /// Back to the client, with a code or an error.
    Redirect(String),
    /// The user must log in: the HTTP layer sets the browser-binding cookie and shows the form.
    Login { pending_id: String, browser_binding: String },
    /// The person may not be relayed to this client (PSC without a verified national identity).
    NotEligible,
    /// The person must accept the terms of use first (same cookie handling as `Login`).
    Terms { pending_id: String, browser_binding: String },
    /// The session is recent enough but too weak for this request: step-up with a security key
    /// only, no password again (same cookie handling as `Login`).
    SecondFactor { pending_id: String, browser_binding: String },
}

impl Provider {
    #[tracing::instrument(skip_all, fields(client_id = params.get("client_id").unwrap_or("-")))]
    pub async fn authorize(
        &self,
        params: &Params,
        sso_cookie: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<AuthorizeOutcome, DomainError> {
        // 1. Client and redirect URI: until both are known good, errors go to a page.
        let (client, redirect_uri) = match self.trusted_redirect(params).await? {
            Ok(pair) => pair,
            Err(e) => {
                let client_id = params.get("client_id").map(|c| c.chars().take(64).collect());
                self.audit_refusal(
                    ctx,
                    AuditEvent::AuthorizeRefused {
                        client_id,
                        reason: e.description.clone(),
                    },
                )
                .await;
                return Ok(AuthorizeOutcome::ErrorPage(e));
            }
        };
        let state = params.single("state").ok().flatten().map(str::to_owned);
        let fail = |e: OAuthError| redirect_error(&redirect_uri, &e, state.as_deref(), &self.settings.issuer);

        // 2. The rest of the request: errors go back to the client.
        let request = match self.parse_request(params, &client, redirect_uri.clone()) {
            Ok(r) => r,
            Err(e) => {
                self.audit_refusal(
                    ctx,
                    AuditEvent::AuthorizeRefused {
                        client_id: Some(client.id.to_string()),
                        reason: e.description.clone(),
                    },
                )
                .await;
                return Ok(AuthorizeOutcome::Redirect(fail(e)));
            }
        };

        // 3. Single sign-on: reuse the browser's session unless the request demands a login.
        let now = self.clock.unix();
        let session = match sso_cookie {
            Some(sid) => self.load_sso(sid, now).await?,
            None => None,
        };
        if let Some(session) = session.clone().filter(|s| self.session_satisfies(s, &request, &client, now)) {
            self.audit(
                ctx,
                AuditEvent::SsoReused {
                    account_id: session.account_id.to_string(),
                    client_id: client.id.to_string(),
                    session_id: session.id.clone(),
                },
            )
            .await?;
            return Ok(match self.gate(&client, &request, &session, ctx).await? {
                Gate::Proceed => AuthorizeOutcome::Redirect(self.issue_code(&request, &session, ctx).await?),
                Gate::RoleMissing => AuthorizeOutcome::Redirect(fail(super::psc::role_missing())),
                Gate::NotEligible => AuthorizeOutcome::NotEligible,
                Gate::Terms {
                    pending_id,
                    browser_binding,
                } => AuthorizeOutcome::Terms {
                    pending_id,
                    browser_binding,
                },
            });
        }
        if request.prompt.none {
            let e = OAuthError::new(OAuthErrorCode::LoginRequired, "the user must log in");
            return Ok(AuthorizeOutcome::Redirect(fail(e)));
        }

        // 4. Step-up: a fresh session that only lacks assurance gets the key step, not the
        // password again.
        let carried_roles = session.as_ref().map(|s| s.roles.clone()).unwrap_or_default();
        let step_up = match session {
            Some(s) if self.step_up_would_satisfy(&s, &request, &client, now) => self.step_up_stage(&s).await?,
            _ => None,
        };
        let is_step_up = step_up.is_some();

        // 5. Park the request and send the browser to the login form (or the key step).
        let browser_binding = self.random.token();
        let pending = PendingLogin {
            id: self.random.token(),
            request,
            csrf: self.random.token(),
            browser_binding_digest: secret_digest(&browser_binding),
            failed_attempts: 0,
            expires_at: now + self.settings.pending_login_ttl_secs,
            second_factor: step_up,
            // A step-up keeps the first factor's roles; a full login earns its own.
            roles: if is_step_up { carried_roles } else { Vec::new() },
        };
        self.save_pending(&pending).await?;
        Ok(if is_step_up {
            AuthorizeOutcome::SecondFactor {
                pending_id: pending.id,
                browser_binding,
            }
        } else {
            AuthorizeOutcome::Login {
                pending_id: pending.id,
                browser_binding,
            }
        })
    }

    /// Whether the session, were it completed with a security key now, would answer the
    /// request. Only then is a step-up offered; otherwise a full login.
    fn step_up_would_satisfy(&self, s: &SsoSession, r: &AuthorizationRequest, client: &Client, now: i64) -> bool {
        if self.security_keys.is_none() || s.amr.iter().any(|m| m == "hwk") {
            return false;
        }
        let stepped = SsoSession {
            auth_time: now,
            acr: self.settings.assurance.password_and_key.acr.clone(),
            ..s.clone()
        };
        // prompt=login and max_age are about the password's age too: those need a full login.
        let age_ok = r.max_age.is_none_or(|m| now - s.auth_time <= m) && client.max_auth_age.is_none_or(|m| now - s.auth_time <= m);
        age_ok && self.session_satisfies(&stepped, r, client, now)
    }

    async fn step_up_stage(&self, s: &SsoSession) -> Result<Option<SecondFactorStage>, DomainError> {
        let account = self.storage.account(s.account_id).await?.filter(|a| !a.disabled);
        Ok(account.map(|a| SecondFactorStage {
            account_id: a.id,
            claims: (&a).into(),
            step_up_of: Some(s.id.clone()),
            key_verified: false,
        }))
    }

    async fn trusted_redirect(&self, params: &Params) -> Result<Result<(Client, RedirectUri), OAuthError>, DomainError> {
        let raw_client = match params
            .single("client_id")
            .and_then(|c| c.ok_or_else(|| OAuthError::invalid_request("client_id is missing")))
        {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let Ok(client_id) = ClientId::parse(raw_client) else {
            return Ok(Err(OAuthError::invalid_request("client_id is malformed")));
        };
        let client = match self.storage.client(&client_id).await? {
            Some(c) if c.enabled => c,
            _ => return Ok(Err(OAuthError::new(OAuthErrorCode::UnauthorizedClient, "unknown client"))),
        };
        let raw_uri = match params
            .single("redirect_uri")
            .and_then(|c| c.ok_or_else(|| OAuthError::invalid_request("redirect_uri is missing")))
        {
            Ok(u) => u,
            Err(e) => return Ok(Err(e)),
        };
        match RedirectUri::parse(raw_uri) {
            Ok(uri) if client.redirect_uri_registered(&uri) => Ok(Ok((client, uri))),
            _ => Ok(Err(OAuthError::invalid_request("redirect_uri is not registered for this client"))),
        }
    }

    fn parse_request(&self, params: &Params, client: &Client, redirect_uri: RedirectUri) -> Result<AuthorizationRequest, OAuthError> {
        params.check_well_formed()?;
        if params.get("request").is_some() {
            return Err(OAuthError::new(
                OAuthErrorCode::RequestNotSupported,
                "request objects are not supported",
            ));
        }
        if params.get("request_uri").is_some() {
            return Err(OAuthError::new(
                OAuthErrorCode::RequestUriNotSupported,
                "request_uri is not supported",
            ));
        }
        match params.get("response_type") {
            Some("code") => {}
            None => return Err(OAuthError::invalid_request("response_type is missing")),
            Some(_) => {
                return Err(OAuthError::new(
                    OAuthErrorCode::UnsupportedResponseType,
                    "only response_type=code is supported",
                ));
            }
        }
        if let Some(mode) = params.get("response_mode")
            && mode != "query"
        {
            return Err(OAuthError::invalid_request("only response_mode=query is supported"));
        }
        let mut scopes =
            Scopes::parse(params.get("scope").unwrap_or("")).map_err(|e| OAuthError::new(OAuthErrorCode::InvalidScope, e.to_string()))?;
        if !scopes.contains("openid") {
            return Err(OAuthError::new(OAuthErrorCode::InvalidScope, "the openid scope is required"));
        }
        scopes.retain(|s| SUPPORTED_SCOPES.contains(&s));

        let code_challenge = match params.get("code_challenge") {
            Some(c) => {
                Some(CodeChallenge::parse(c, params.get("code_challenge_method")).map_err(|e| OAuthError::invalid_request(e.to_string()))?)
            }
            None if client.is_public() => return Err(OAuthError::invalid_request("PKCE (S256) is required for public clients")),
            None => None,
        };
        let prompt = Prompt::parse(params.get("prompt").unwrap_or("")).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
        let max_age = match params.get("max_age") {
            Some(m) => Some(
                m.parse::<u32>()
                    .map_err(|_| OAuthError::invalid_request("max_age must be a non-negative integer"))? as i64,
            ),
            None => None,
        };
        let acr_values = params
            .get("acr_values")
            .unwrap_or("")
            .split(' ')
            .filter(|a| !a.is_empty())
            .map(|a| {
                Acr::parse(a)
                    .map(|a| a.to_string())
                    .map_err(|e| OAuthError::invalid_request(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AuthorizationRequest {
            client_id: client.id.clone(),
            redirect_uri,
            scopes,
            state: params.get("state").map(str::to_owned),
            nonce: params.get("nonce").map(str::to_owned),
            code_challenge,
            prompt,
            max_age,
            login_hint: params.get("login_hint").map(str::to_owned),
            acr_values,
            ui_locales: params.get("ui_locales").map(str::to_owned),
        })
    }

    /// Whether an existing session may answer this request without a new login.
    fn session_satisfies(&self, s: &SsoSession, r: &AuthorizationRequest, client: &Client, now: i64) -> bool {
        if r.prompt.login {
            return false;
        }
        let age = now - s.auth_time;
        if r.max_age.is_some_and(|m| age > m) || client.max_auth_age.is_some_and(|m| age > m) {
            return false;
        }
        let have = self.settings.acr_rank(&s.acr);
        // acr_values is a preference list: the weakest value asked for is the bar to clear.
        let wanted = r.acr_values.iter().filter_map(|a| self.settings.acr_rank(a)).min();
        if wanted.is_some_and(|w| have.is_none_or(|h| h < w)) {
            return false;
        }
        client.min_acr.is_none() || client.min_acr.as_deref().is_some_and(|m| self.meets_acr(m, &s.acr))
    }

    /// Whether `have` ranks at least as high as `min`. An acr outside the configured levels
    /// meets nothing: a typo in a client's policy must refuse logins, not waive the policy.
    fn meets_acr(&self, min: &str, have: &str) -> bool {
        match (self.settings.acr_rank(min), self.settings.acr_rank(have)) {
            (Some(m), Some(h)) => h >= m,
            _ => false,
        }
    }

    /// Whether `acr` meets the client's minimum.
    pub(super) fn meets_client_minimum(&self, client: &Client, acr: &str) -> bool {
        client.min_acr.as_deref().is_none_or(|m| self.meets_acr(m, acr))
    }

    /// The person logged in in this browser, if any.
    pub async fn sso_account(&self, cookie: Option<&str>) -> Result<Option<uuid::Uuid>, DomainError> {
        match cookie {
            Some(c) => Ok(self.load_sso(c, self.clock.unix()).await?.map(|s| s.account_id)),
            None => Ok(None),
        }
    }

    /// The person logged in in this browser and their roles (e.g. `admin`), if any.
    pub async fn sso_roles(&self, cookie: Option<&str>) -> Result<Option<(uuid::Uuid, Vec<String>)>, DomainError> {
        match cookie {
            Some(c) => Ok(self.load_sso(c, self.clock.unix()).await?.map(|s| (s.account_id, s.roles))),
            None => Ok(None),
        }
    }

    /// Loads the session named by the cookie's secret value.
    pub(super) async fn load_sso(&self, sid: &str, now: i64) -> Result<Option<SsoSession>, DomainError> {
        if sid.len() > 64 {
            return Ok(None);
        }
        let Some(bytes) = self.sessions.get(Namespace::Sso, &secret_digest(sid)).await? else {
            return Ok(None);
        };
        let s: SsoSession = serde_json::from_slice(&bytes).map_err(|e| DomainError::Internal(format!("sso session: {e}")))?;
        Ok((s.expires_at > now).then_some(s))
    }

    pub(super) async fn save_pending(&self, p: &PendingLogin) -> Result<(), DomainError> {
        let ttl = Duration::from_secs(self.settings.pending_login_ttl_secs.max(1) as u64);
        let bytes = serde_json::to_vec(p).map_err(|e| DomainError::Internal(e.to_string()))?;
        self.sessions.put(Namespace::PendingLogin, &p.id, &bytes, ttl).await?;
        Ok(())
    }

    /// Stores a one-time code for this request and session; returns the client redirect.
    #[tracing::instrument(skip_all)]
    pub(super) async fn issue_code(&self, r: &AuthorizationRequest, s: &SsoSession, ctx: &RequestContext) -> Result<String, DomainError> {
        let code = self.random.token();
        let grant = CodeGrant {
            client_id: r.client_id.clone(),
            redirect_uri: r.redirect_uri.clone(),
            scopes: r.scopes.clone(),
            nonce: r.nonce.clone(),
            code_challenge: r.code_challenge.clone(),
            account_id: s.account_id,
            session_id: s.id.clone(),
            auth_time: s.auth_time,
            amr: s.amr.clone(),
            acr: s.acr.clone(),
            expires_at: self.clock.unix() + self.settings.code_ttl_secs,
            roles: s.roles.clone(),
            claims: s.claims.clone(),
        };
        let bytes = serde_json::to_vec(&grant).map_err(|e| DomainError::Internal(e.to_string()))?;
        let ttl = Duration::from_secs(self.settings.code_ttl_secs.max(1) as u64);
        self.sessions.put(Namespace::Code, &secret_digest(&code), &bytes, ttl).await?;
        self.note_session_client(s, &r.client_id).await?;
        self.audit(
            ctx,
            AuditEvent::CodeIssued {
                account_id: s.account_id.to_string(),
                client_id: r.client_id.to_string(),
                session_id: s.id.clone(),
            },
        )
        .await?;
        let mut p: Vec<(&str, &str)> = vec![("code", &code)];
        if let Some(st) = &r.state {
            p.push(("state", st));
        }
        // RFC 9207: the issuer identifies us to clients that talk to several providers.
        p.push(("iss", &self.settings.issuer));
        Ok(r.redirect_uri.with_params(&p))
    }
}

/// An error back to the client, with `state` and (RFC 9207) our issuer.
pub(super) fn redirect_error(uri: &RedirectUri, e: &OAuthError, state: Option<&str>, issuer: &str) -> String {
    let mut p: Vec<(&str, &str)> = vec![("error", e.code.as_str()), ("error_description", &e.description)];
    if let Some(s) = state {
        p.push(("state", s));
    }
    p.push(("iss", issuer));
    uri.with_params(&p)
}
