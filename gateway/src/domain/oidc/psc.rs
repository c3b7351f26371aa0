//! The Pro Santé Connect profile (psc.md §1–2): who may be relayed to PSC (people with a
//! verified national identity who accepted the current terms of use), and the claims PSC
//! reads (`oid`, `tid`, the idNat).
use super::Provider;
use super::authorize::redirect_error;
use crate::domain::DomainError;
use crate::domain::audit::{AuditEvent, RequestContext};
use crate::domain::client::{Client, ClientKind};
use crate::domain::crypto::{ct_eq, secret_digest};
use crate::domain::identity::{IdKind, NationalIdentity};
use crate::domain::ports::Namespace;
use crate::domain::records::{AuthorizationRequest, SsoSession};
use crate::protocol::{OAuthError, OAuthErrorCode, Scopes};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// PSC settings (config `[psc]`).
#[derive(Debug, Clone, Default)]
pub struct PscSettings {
    /// The establishment's tenant id, declared to ANS and checked by PSC (`tid`).
    pub tenant_id: String,
    /// Version of the terms of use a person must have accepted to be relayed to PSC.
    pub terms_version: String,
    /// Where the full text of the terms is published (linked from the page).
    pub terms_url: Option<String>,
    /// Release the `roles` claim to PSC clients too (off: roles are for local applications).
    pub release_roles: bool,
}

/// What stands between a login and a code for this client.
pub(super) enum Gate {
    Proceed,
    /// The application is reserved to roles the person does not hold (`access_denied`).
    RoleMissing,
    /// No verified national identity: PSC may not receive this person.
    NotEligible,
    /// The person must accept the terms of use first.
    Terms {
        pending_id: String,
        browser_binding: String,
    },
}

/// What the application hears when it is reserved to roles the person does not hold.
pub(super) fn role_missing() -> OAuthError {
    OAuthError::new(
        OAuthErrorCode::AccessDenied,
        "this application is reserved to people holding a role the user does not have",
    )
}

/// A login waiting for the terms of use to be accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PendingTerms {
    pub request: AuthorizationRequest,
    pub session: SsoSession,
    pub csrf: String,
    pub browser_binding_digest: String,
}

/// What the terms page shows.
#[derive(Debug, Clone)]
pub struct TermsPage {
    pub pending_id: String,
    pub csrf: String,
    pub version: String,
    pub url: Option<String>,
    pub client_name: String,
    pub ui_locales: Option<String>,
}

/// The identifier PSC pairs with: the verified RPPS idNat first, else another verified one.
pub fn preferred_national_id(ids: &[NationalIdentity]) -> Option<&NationalIdentity> {
    let rank = |n: &&NationalIdentity| match n.idnat.kind() {
        IdKind::Rpps => 0,
        IdKind::Adeli => 1,
        IdKind::Psi => 2,
        IdKind::Structure => 3,
    };
    ids.iter().filter(|n| n.verified).min_by_key(rank)
}

impl Provider {
    /// Checks the client's profile before a code is issued for `session`.
    #[tracing::instrument(name = "identity_mapping", skip_all)]
    pub(super) async fn gate(
        &self,
        client: &Client,
        request: &AuthorizationRequest,
        session: &SsoSession,
        ctx: &RequestContext,
    ) -> Result<Gate, DomainError> {
        if !client.admits(&session.roles) {
            self.audit_refusal(
                ctx,
                AuditEvent::AuthorizeRefused {
                    client_id: Some(client.id.to_string()),
                    reason: format!(
                        "reserved to the roles {}: the person holds none of them",
                        client.required_roles.join(", ")
                    ),
                },
            )
            .await;
            return Ok(Gate::RoleMissing);
        }
        if client.kind != ClientKind::Psc {
            return Ok(Gate::Proceed);
        }
        let ids = self.identities.national_ids(session.account_id).await?;
        if preferred_national_id(&ids).is_none() {
            self.audit_refusal(
                ctx,
                AuditEvent::AuthorizeRefused {
                    client_id: Some(client.id.to_string()),
                    reason: "no verified national identity: not eligible for Pro Santé Connect".into(),
                },
            )
            .await;
            return Ok(Gate::NotEligible);
        }
        let version = &self.settings.psc.terms_version;
        if self.identities.terms_accepted(session.account_id, version).await? {
            return Ok(Gate::Proceed);
        }
        let browser_binding = self.random.token();
        let pending_id = self.random.token();
        let pending = PendingTerms {
            request: request.clone(),
            session: session.clone(),
            csrf: self.random.token(),
            browser_binding_digest: secret_digest(&browser_binding),
        };
        let bytes = serde_json::to_vec(&pending).map_err(|e| DomainError::Internal(e.to_string()))?;
        let ttl = Duration::from_secs(self.settings.pending_login_ttl_secs.max(1) as u64);
        self.sessions.put(Namespace::PendingTerms, &pending_id, &bytes, ttl).await?;
        Ok(Gate::Terms {
            pending_id,
            browser_binding,
        })
    }

    async fn pending_terms(&self, id: &str, binding: Option<&str>) -> Result<Result<PendingTerms, OAuthError>, DomainError> {
        let gone = || OAuthError::invalid_request("this step has expired or was already completed; start again from the application");
        if id.len() > 64 {
            return Ok(Err(gone()));
        }
        let Some(bytes) = self.sessions.get(Namespace::PendingTerms, id).await? else {
            return Ok(Err(gone()));
        };
        let p: PendingTerms = serde_json::from_slice(&bytes).map_err(|e| DomainError::Internal(format!("pending terms: {e}")))?;
        if !binding.is_some_and(|b| ct_eq(secret_digest(b).as_bytes(), p.browser_binding_digest.as_bytes())) {
            return Ok(Err(OAuthError::new(
                OAuthErrorCode::AccessDenied,
                "this step was started in another browser",
            )));
        }
        Ok(Ok(p))
    }

    pub async fn terms_page(&self, id: &str, binding: Option<&str>) -> Result<Result<TermsPage, OAuthError>, DomainError> {
        let p = match self.pending_terms(id, binding).await? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let client_name = self.storage.client(&p.request.client_id).await?.map(|c| c.name).unwrap_or_default();
        Ok(Ok(TermsPage {
            pending_id: id.to_owned(),
            csrf: p.csrf,
            version: self.settings.psc.terms_version.clone(),
            url: self.settings.psc.terms_url.clone(),
            client_name,
            ui_locales: p.request.ui_locales,
        }))
    }

    /// The person accepts (or declines) the terms; returns where the browser goes next.
    pub async fn answer_terms(
        &self,
        id: &str,
        csrf: &str,
        accept: bool,
        binding: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Result<String, OAuthError>, DomainError> {
        let p = match self.pending_terms(id, binding).await? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        if !ct_eq(csrf.as_bytes(), p.csrf.as_bytes()) {
            return Ok(Err(OAuthError::new(
                OAuthErrorCode::AccessDenied,
                "the form is stale or forged (CSRF check failed)",
            )));
        }
        if self.sessions.take(Namespace::PendingTerms, id).await?.is_none() {
            return Ok(Err(OAuthError::invalid_request("this step was already completed")));
        }
        let r = &p.request;
        if !accept {
            self.audit_refusal(
                ctx,
                AuditEvent::AuthorizeRefused {
                    client_id: Some(r.client_id.to_string()),
                    reason: "terms of use declined".into(),
                },
            )
            .await;
            let e = OAuthError::new(OAuthErrorCode::AccessDenied, "the terms of use were declined");
            return Ok(Ok(redirect_error(&r.redirect_uri, &e, r.state.as_deref(), &self.settings.issuer)));
        }
        let version = self.settings.psc.terms_version.clone();
        self.identities
            .accept_terms(p.session.account_id, &version, self.clock.now())
            .await?;
        self.audit(
            ctx,
            AuditEvent::TermsAccepted {
                account_id: p.session.account_id.to_string(),
                version,
            },
        )
        .await?;
        Ok(Ok(self.issue_code(r, &p.session, ctx).await?))
    }

    /// Claims that name the person nationally: for PSC clients always, for local clients with
    /// the `national_id` scope.
    pub(super) async fn national_claims(
        &self,
        client: &Client,
        account_id: uuid::Uuid,
        scopes: &Scopes,
        out: &mut Map<String, Value>,
    ) -> Result<(), DomainError> {
        let psc = client.kind == ClientKind::Psc;
        if psc {
            out.insert("oid".into(), json!(account_id.to_string()));
            out.insert("tid".into(), json!(self.settings.psc.tenant_id));
        }
        if !psc && !scopes.contains("national_id") {
            return Ok(());
        }
        let ids = self.identities.national_ids(account_id).await?;
        if let Some(n) = preferred_national_id(&ids) {
            out.insert("idnat".into(), json!(n.idnat.as_str()));
            if psc {
                // The name PSC's own tokens use for the idNat (psc.md §3).
                out.insert("SubjectNameID".into(), json!(n.idnat.as_str()));
            }
            if let Some(r) = n.idnat.rpps() {
                out.insert("rpps".into(), json!(r));
            }
            if let Some(p) = &n.profession {
                out.insert("profession".into(), json!(p));
            }
        }
        Ok(())
    }
}
