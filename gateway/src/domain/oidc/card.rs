//! The CPS/CPx card login. Two steps, because the card is read on another host (the card
//! listener, or a proxy) where the browser-binding cookie of the login may not be sent:
//!
//! 1. `card_presented`: the certificate chain is checked (`CardChecker`); a good card becomes a
//!    one-time proof in the session store, handed only to the browser that presented the card.
//! 2. `card_complete`: on the issuer's host, the browser holding the pending login's binding
//!    cookie redeems the proof. The card's idNat must be the person's national identity (after
//!    a password), or name the person (card alone, when the policy allows).
use super::Provider;
use super::login::LoginOutcome;
use crate::domain::DomainError;
use crate::domain::audit::{AuditEvent, RequestContext};
use crate::domain::card::{CardCertificate, CardProof, CardRefusal, CardSource};
use crate::domain::crypto::ct_eq;
use crate::domain::identity::Provenance;
use crate::domain::management::ManagementError;
use crate::domain::ports::{Namespace, Standing};
use crate::domain::records::PendingLogin;
use crate::protocol::OAuthError;
use std::time::Duration;
use uuid::Uuid;

/// A proof is redeemed right after the redirect; a minute is plenty.
const PROOF_TTL: Duration = Duration::from_secs(60);

/// Why a card step did not go on: a card refusal (its own message) or a login problem
/// (expired, another browser…).
#[derive(Debug)]
pub enum CardError {
    Refused(CardRefusal),
    Login(OAuthError),
}

/// What the browser presented on the card host.
pub enum Presented {
    Chain { chain: Vec<Vec<u8>>, source: CardSource },
    Nothing,
}

fn refused<T>(r: CardRefusal) -> Result<Result<T, CardError>, DomainError> {
    Ok(Err(CardError::Refused(r)))
}

impl Provider {
    /// Step 1, on the card host: checks the card; returns where the browser goes to redeem it.
    #[tracing::instrument(skip_all)]
    pub async fn card_presented(
        &self,
        pending_id: &str,
        presented: Presented,
        ctx: &RequestContext,
    ) -> Result<Result<String, CardError>, DomainError> {
        let Some(checker) = self.cards.as_ref() else {
            return Ok(Err(CardError::Login(OAuthError::invalid_request("card login is not enabled"))));
        };
        let expired = || {
            CardError::Login(OAuthError::invalid_request(
                "this login has expired or was already used; start again from the application",
            ))
        };
        // Only a live pending login may receive a proof (no binding cookie on this host: the
        // proof goes back to this browser, and only the login's own browser can redeem it).
        let live = if pending_id.is_empty() || pending_id.len() > 64 {
            None
        } else {
            self.sessions.get(Namespace::PendingLogin, pending_id).await?
        };
        let Some(bytes) = live else { return Ok(Err(expired())) };
        let p: PendingLogin = serde_json::from_slice(&bytes).map_err(|e| DomainError::Internal(format!("pending login: {e}")))?;
        if p.expires_at <= self.clock.unix() {
            return Ok(Err(expired()));
        }
        let (chain, source) = match presented {
            Presented::Chain { chain, source } => (chain, source),
            Presented::Nothing => {
                self.card_refused(ctx, None, None, CardRefusal::NoCertificate, None).await;
                return refused(CardRefusal::NoCertificate);
            }
        };
        let card = match checker.check(&chain, self.clock.now()) {
            Ok(c) => c,
            Err(r) => {
                self.card_refused(ctx, None, None, r, Some(source)).await;
                return refused(r);
            }
        };
        let token = self.random.token();
        let proof = CardProof {
            pending_id: p.id.clone(),
            card,
            source,
        };
        let bytes = serde_json::to_vec(&proof).map_err(|e| DomainError::Internal(e.to_string()))?;
        self.sessions.put(Namespace::CardProof, &token, &bytes, PROOF_TTL).await?;
        Ok(Ok(format!(
            "{}/login/card/complete?id={}&proof={token}",
            self.settings.issuer, p.id
        )))
    }

    /// Step 2, on the issuer's host: the browser of the pending login redeems the proof.
    #[tracing::instrument(skip_all)]
    pub async fn card_complete(
        &self,
        pending_id: &str,
        proof_token: &str,
        binding: Option<&str>,
        previous_sso: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Result<LoginOutcome, CardError>, DomainError> {
        let used = || {
            CardError::Login(OAuthError::invalid_request(
                "this card step has expired or was already used; try again",
            ))
        };
        if proof_token.is_empty() || proof_token.len() > 64 {
            return Ok(Err(used()));
        }
        // One proof, one try: taken before anything else, so a proof that reached the wrong
        // browser (a login started by someone else) is burnt there.
        let Some(bytes) = self.sessions.take(Namespace::CardProof, proof_token).await? else {
            return Ok(Err(used()));
        };
        let p = match self.pending_for_browser(pending_id, binding).await? {
            Ok(p) => p,
            Err(e) => return Ok(Err(CardError::Login(e))),
        };
        let proof: CardProof = serde_json::from_slice(&bytes).map_err(|e| DomainError::Internal(format!("card proof: {e}")))?;
        if !ct_eq(proof.pending_id.as_bytes(), p.id.as_bytes()) {
            return Ok(Err(used()));
        }
        let card = &proof.card;
        let stage = p.second_factor.clone();
        let with_password = stage.as_ref().is_some_and(|s| s.step_up_of.is_none());
        let account_id = match &stage {
            Some(s) => s.account_id,
            None => {
                if !self.settings.cards.card_alone {
                    self.card_refused(ctx, None, Some(card), CardRefusal::PasswordFirst, Some(proof.source))
                        .await;
                    return refused(CardRefusal::PasswordFirst);
                }
                match self.identities.national_id(&card.idnat).await? {
                    Some(n) if n.verified => n.account_id,
                    _ => {
                        self.card_refused(ctx, None, Some(card), CardRefusal::NotLinked, Some(proof.source))
                            .await;
                        return refused(CardRefusal::NotLinked);
                    }
                }
            }
        };
        if let Err(r) = self.card_matches(account_id, card, ctx).await? {
            self.card_refused(ctx, Some(account_id), Some(card), r, Some(proof.source)).await;
            return refused(r);
        }
        let unusable = || {
            Ok(Err(CardError::Login(OAuthError::new(
                crate::protocol::OAuthErrorCode::AccessDenied,
                "this account cannot be used at the moment; contact the IT help desk",
            ))))
        };
        let Some(account) = self.storage.account(account_id).await?.filter(|a| !a.disabled) else {
            return unusable();
        };
        // The card alone: nobody checked the directory in this login (no password). A person
        // disabled or removed there may not come in with a still-valid card, and the roles
        // come from the directory's groups now.
        let mut p = p;
        if stage.is_none() {
            match self.passwords.standing(&account).await? {
                Standing::NotManaged => {}
                Standing::Active(roles) => p.roles = roles,
                refused @ (Standing::Refused(_) | Standing::Gone) => {
                    let reason = match refused {
                        Standing::Refused(r) => format!("directory: {r:?}"),
                        _ => "directory: no longer in the directory".to_owned(),
                    };
                    let event = card_login_event(Some(account_id), Some(card), Some(proof.source), Some(reason));
                    self.audit_refusal(ctx, event).await;
                    return unusable();
                }
            }
        }
        // A step-up belongs to a live session: after a logout it cannot complete.
        if let Some(sid) = stage.as_ref().and_then(|s| s.step_up_of.as_ref())
            && self.sessions.get(Namespace::Sso, sid).await?.is_none()
        {
            return Ok(Err(CardError::Login(OAuthError::invalid_request(
                "your session has ended; start again from the application",
            ))));
        }
        if self.sessions.take(Namespace::PendingLogin, &p.id).await?.is_none() {
            return Ok(Err(CardError::Login(OAuthError::invalid_request(
                "this login was already completed",
            ))));
        }
        self.audit(ctx, card_login_event(Some(account_id), Some(card), Some(proof.source), None))
            .await?;
        let earned = if with_password {
            self.settings.assurance.password_and_card.clone()
        } else {
            self.settings.assurance.card.clone()
        };
        self.complete_login(&p, account_id, (&account).into(), &earned, previous_sso, ctx)
            .await
            .map(|r| r.map_err(CardError::Login))
    }

    /// The card's idNat must be the person's verified national identity. A person without
    /// one gets it from the card when the policy allows (the card proves the RPPS).
    async fn card_matches(
        &self,
        account_id: Uuid,
        card: &CardCertificate,
        ctx: &RequestContext,
    ) -> Result<Result<(), CardRefusal>, DomainError> {
        let mine = self.identities.national_ids(account_id).await?;
        if mine.iter().any(|n| n.idnat == card.idnat && n.verified) {
            return Ok(Ok(()));
        }
        if mine.iter().any(|n| n.verified) {
            return Ok(Err(CardRefusal::Mismatch));
        }
        // Someone else's idNat: never moved by a card.
        if self
            .identities
            .national_id(&card.idnat)
            .await?
            .is_some_and(|n| n.account_id != account_id)
        {
            return Ok(Err(CardRefusal::Mismatch));
        }
        if !self.settings.cards.establish_mapping {
            return Ok(Err(CardRefusal::NoMapping));
        }
        match self
            .management("card")
            .link_proven(account_id, card.idnat.clone(), Provenance::CardProof)
            .await
        {
            Ok(_) => {}
            // The idNat was taken by someone else meanwhile (a conflict).
            Err(ManagementError::Invalid(_)) => return Ok(Err(CardRefusal::Mismatch)),
            Err(ManagementError::Domain(e)) => return Err(e),
        }
        self.audit(
            ctx,
            AuditEvent::CardMappingEstablished {
                account_id: account_id.to_string(),
                idnat: card.idnat.to_string(),
                serial: card.serial.clone(),
            },
        )
        .await?;
        Ok(Ok(()))
    }

    /// A client-certificate header from an address that is not a trusted proxy: ignored, and
    /// recorded (someone may be trying to pass a certificate they do not hold).
    pub async fn card_header_ignored(&self, ctx: &RequestContext, header: &str) {
        self.audit_refusal(ctx, AuditEvent::CardHeaderIgnored { header: header.into() })
            .await;
    }

    async fn card_refused(
        &self,
        ctx: &RequestContext,
        account_id: Option<Uuid>,
        card: Option<&CardCertificate>,
        r: CardRefusal,
        source: Option<CardSource>,
    ) {
        let event = card_login_event(account_id, card, source, Some(r.as_str().into()));
        self.audit_refusal(ctx, event).await;
    }
}

/// The `card_login` record: a success without `reason`, a refusal with one.
fn card_login_event(
    account_id: Option<Uuid>,
    card: Option<&CardCertificate>,
    source: Option<CardSource>,
    reason: Option<String>,
) -> AuditEvent {
    AuditEvent::CardLogin {
        account_id: account_id.map(|a| a.to_string()),
        idnat: card.map(|c| c.idnat.to_string()),
        subject: card.map(|c| c.subject.clone()),
        issuer: card.map(|c| c.issuer.clone()),
        serial: card.map(|c| c.serial.clone()),
        source: source.map(CardSource::as_str).unwrap_or("none").into(),
        success: reason.is_none(),
        reason,
    }
}
