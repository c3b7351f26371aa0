//! A person's SSO sessions: the per-person index in the session store, the list shown to
//! admins and to the person, and ending one or all of them. Ending a session is what a logout
//! does: the session is gone (the next `/authorize` asks to log in) and the refresh tokens
//! issued in it are revoked.
//!
//! The index lives in namespace `sso_index`: `a:<account id>` is the set of the person's
//! session ids, `c:<session id>` the set of clients the session got codes for. Both expire
//! with the newest session they describe; ids whose session is gone are pruned when read.
use super::Provider;
use crate::domain::DomainError;
use crate::domain::audit::{AuditEvent, RequestContext};
use crate::domain::ports::Namespace;
use crate::domain::records::SsoSession;
use crate::protocol::ClientId;
use std::time::Duration;
use uuid::Uuid;

/// One live SSO session, as listed to admins and to the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session id (`sid` claim, SHA-256 digest of the cookie secret): not a secret.
    pub id: String,
    /// Unix seconds; the login time for sessions stored before this was recorded.
    pub created_at: i64,
    /// Time of the last factor (`auth_time`).
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub expires_at: i64,
    /// Clients that received a code in this session, sorted.
    pub clients: Vec<String>,
    pub source_ip: Option<String>,
}

/// Who ends a session: an admin (`admin:<username>`) or the person themselves (`self`).
pub const SELF_ACTOR: &str = "self";

fn account_key(account_id: Uuid) -> String {
    format!("a:{account_id}")
}

fn clients_key(session_id: &str) -> String {
    format!("c:{session_id}")
}

impl Provider {
    fn left(&self, expires_at: i64) -> Duration {
        Duration::from_secs((expires_at - self.clock.unix()).max(1) as u64)
    }

    /// Adds a new session to its person's index.
    pub(super) async fn index_sso_session(&self, s: &SsoSession) -> Result<(), DomainError> {
        self.sessions
            .set_add(Namespace::SessionIndex, &account_key(s.account_id), &s.id, self.left(s.expires_at))
            .await?;
        Ok(())
    }

    /// Records that `client` got a code in session `s`. A set, not a rewrite of the session:
    /// a session ended meanwhile cannot come back by it.
    pub(super) async fn note_session_client(&self, s: &SsoSession, client: &ClientId) -> Result<(), DomainError> {
        self.sessions
            .set_add(
                Namespace::SessionIndex,
                &clients_key(&s.id),
                client.as_str(),
                self.left(s.expires_at),
            )
            .await?;
        Ok(())
    }

    /// Drops an ended session from the index.
    pub(super) async fn unindex_sso_session(&self, account_id: Uuid, session_id: &str) -> Result<(), DomainError> {
        self.sessions
            .set_remove(Namespace::SessionIndex, &account_key(account_id), &[session_id.to_owned()])
            .await?;
        self.sessions.delete(Namespace::SessionIndex, &clients_key(session_id)).await?;
        Ok(())
    }

    /// Ends a session replaced by a new login in the same browser (no audit event: the login
    /// that replaces it is recorded).
    pub(super) async fn forget_sso_session(&self, session_id: &str) -> Result<(), DomainError> {
        if let Some(bytes) = self.sessions.take(Namespace::Sso, session_id).await?
            && let Ok(s) = serde_json::from_slice::<SsoSession>(&bytes)
        {
            self.unindex_sso_session(s.account_id, session_id).await?;
        }
        Ok(())
    }

    async fn live_session(&self, account_id: Uuid, session_id: &str) -> Result<Option<SsoSession>, DomainError> {
        if session_id.len() > 64 {
            return Ok(None);
        }
        let Some(bytes) = self.sessions.get(Namespace::Sso, session_id).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice::<SsoSession>(&bytes)
            .ok()
            .filter(|s| s.account_id == account_id && s.expires_at > self.clock.unix()))
    }

    /// The person's live SSO sessions, newest first. Ids whose session ended are pruned.
    #[tracing::instrument(skip_all)]
    pub async fn sso_sessions_of(&self, account_id: Uuid) -> Result<Vec<SessionInfo>, DomainError> {
        let key = account_key(account_id);
        let ids = self.sessions.set_members(Namespace::SessionIndex, &key).await?;
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for id in ids {
            match self.live_session(account_id, &id).await? {
                Some(s) => live.push(s),
                None => stale.push(id),
            }
        }
        if !stale.is_empty() {
            self.sessions.set_remove(Namespace::SessionIndex, &key, &stale).await?;
        }
        let mut out = Vec::with_capacity(live.len());
        for s in live {
            let mut clients = self.sessions.set_members(Namespace::SessionIndex, &clients_key(&s.id)).await?;
            clients.sort();
            out.push(SessionInfo {
                created_at: if s.created_at > 0 { s.created_at } else { s.auth_time },
                id: s.id,
                auth_time: s.auth_time,
                amr: s.amr,
                acr: s.acr,
                expires_at: s.expires_at,
                clients,
                source_ip: s.source_ip,
            });
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The session id behind an SSO cookie value, if that session is live.
    pub async fn sso_session_id(&self, cookie: &str) -> Result<Option<(Uuid, String)>, DomainError> {
        Ok(self.load_sso(cookie, self.clock.unix()).await?.map(|s| (s.account_id, s.id)))
    }

    /// Ends one of the person's sessions, like a logout: the session is gone, its refresh
    /// tokens are revoked, and `session_revoked` names `actor`. `false` when the person has no
    /// such live session.
    #[tracing::instrument(skip_all, fields(actor = %actor))]
    pub async fn revoke_sso_session(
        &self,
        account_id: Uuid,
        session_id: &str,
        actor: &str,
        ctx: &RequestContext,
    ) -> Result<bool, DomainError> {
        // Checked before taking: an id of someone else's session is left alone.
        if self.live_session(account_id, session_id).await?.is_none() {
            return Ok(false);
        }
        if self.sessions.take(Namespace::Sso, session_id).await?.is_none() {
            return Ok(false);
        }
        self.storage.revoke_refresh_for_session(session_id, self.clock.now()).await?;
        self.unindex_sso_session(account_id, session_id).await?;
        self.audit(
            ctx,
            AuditEvent::SessionRevoked {
                account_id: account_id.to_string(),
                session_id: session_id.to_owned(),
                actor: actor.chars().take(160).collect(),
            },
        )
        .await?;
        Ok(true)
    }

    /// Ends every live session of the person; returns how many were ended.
    pub async fn revoke_all_sso_sessions(&self, account_id: Uuid, actor: &str, ctx: &RequestContext) -> Result<usize, DomainError> {
        let mut n = 0;
        for s in self.sso_sessions_of(account_id).await? {
            if self.revoke_sso_session(account_id, &s.id, actor, ctx).await? {
                n += 1;
            }
        }
        Ok(n)
    }
}
