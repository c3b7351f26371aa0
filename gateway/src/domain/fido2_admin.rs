//! Admin operations on security keys (CLI now, admin UI later), each audited: enrolment codes,
//! listing and revoking keys.
use crate::domain::audit::AuditEvent;
use crate::domain::crypto::secret_digest;
use crate::domain::fido2::{EnrolmentCode, SecurityKeyRecord, format_code, normalise_code};
use crate::domain::management::{Management, ManagementError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

impl Management<'_> {
    async fn account_id(&self, username: &str) -> Result<Uuid, ManagementError> {
        let name = crate::domain::account::normalise_username(username)
            .ok_or_else(|| ManagementError::Invalid(format!("invalid username {username:?}")))?;
        self.storage
            .account_by_username(&name)
            .await?
            .map(|a| a.id)
            .ok_or_else(|| ManagementError::Invalid(format!("no account {name:?}")))
    }

    /// Issues a one-time code for enrolling a first security key. The code is returned once
    /// (to hand to the person over a trusted channel); only its digest is stored.
    pub async fn issue_enrolment_code(&self, username: &str, ttl_secs: i64) -> Result<(String, DateTime<Utc>), ManagementError> {
        let account_id = self.account_id(username).await?;
        let mut bytes = [0u8; 16];
        self.random.fill(&mut bytes);
        let code = format_code(&bytes);
        let now = self.clock.now();
        let expires_at = now + chrono::Duration::seconds(ttl_secs.max(60));
        self.security_keys
            .insert_enrolment_code(&EnrolmentCode {
                digest: secret_digest(&normalise_code(&code)),
                account_id,
                created_at: now,
                expires_at,
                used_at: None,
            })
            .await?;
        self.record(AuditEvent::Fido2EnrolmentCodeIssued {
            account_id: account_id.to_string(),
            expires_at: expires_at.timestamp(),
            actor: self.actor.to_owned(),
        })
        .await?;
        Ok((code, expires_at))
    }

    pub async fn security_keys_of(&self, username: &str) -> Result<Vec<SecurityKeyRecord>, ManagementError> {
        let account_id = self.account_id(username).await?;
        Ok(self.security_keys.security_keys(account_id).await?)
    }

    /// Revokes a key; the next login with it is refused.
    pub async fn revoke_security_key(&self, username: &str, key_id: Uuid) -> Result<(), ManagementError> {
        let account_id = self.account_id(username).await?;
        if !self.security_keys.revoke_security_key(account_id, key_id, self.clock.now()).await? {
            return Err(ManagementError::Invalid(format!("{username} has no active key {key_id}")));
        }
        self.record(AuditEvent::Fido2KeyRevoked {
            account_id: account_id.to_string(),
            key_id: key_id.to_string(),
            actor: self.actor.to_owned(),
        })
        .await
    }
}
