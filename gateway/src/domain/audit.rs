//! Typed audit events. Call sites build an [`AuditEvent`]; nothing free-form. The tamper-evident
//! chain, retention and SIEM export (issue #6) build on these records.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who/where a request came from, for the audit trail.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RequestContext {
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

/// Every auditable thing Relais does. Values never include secrets, codes or tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEvent {
    AuthorizeRefused {
        client_id: Option<String>,
        reason: String,
    },
    LoginPassword {
        username: String,
        account_id: Option<String>,
        success: bool,
        reason: Option<String>,
    },
    /// A login attempt refused before the password was checked: too many recent failures.
    LoginThrottled {
        username: String,
        scope: String,
    },
    /// The password was right but the account may not log in (disabled, expired, must change
    /// its password, not in a required group).
    LoginAccountRefused {
        username: String,
        reason: String,
    },
    SsoReused {
        account_id: String,
        client_id: String,
        session_id: String,
    },
    CodeIssued {
        account_id: String,
        client_id: String,
        session_id: String,
    },
    TokenIssued {
        account_id: String,
        client_id: String,
        grant_type: String,
        acr: String,
        amr: Vec<String>,
        auth_time: i64,
        session_id: String,
        /// The national identifier the id_token relayed (`idnat` claim), if any. Absent from
        /// records written before it existed, so their hashes still verify.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idnat: Option<String>,
    },
    TokenRefused {
        client_id: Option<String>,
        grant_type: Option<String>,
        error: String,
        reason: String,
    },
    CodeReplayed {
        client_id: String,
    },
    RefreshReuseDetected {
        client_id: String,
        account_id: String,
        family_id: String,
    },
    ClientAuthFailed {
        client_id: Option<String>,
        method: String,
        reason: String,
    },
    TokenRevoked {
        client_id: String,
        token_type: String,
    },
    Logout {
        account_id: String,
        session_id: String,
        client_id: Option<String>,
    },
    ClientRegistered {
        client_id: String,
        kind: String,
    },
    AccountCreated {
        account_id: String,
        username: String,
    },
    SigningKeyRotated {
        alg: String,
        new_kid: String,
    },
    /// An admin changed a local account (password set, disabled, enabled).
    AccountChanged {
        account_id: String,
        change: String,
        actor: String,
    },
    TermsAccepted {
        account_id: String,
        version: String,
    },
    /// A national identifier linked to a person, or its verification state changed.
    IdentityLinked {
        account_id: String,
        idnat: String,
        provenance: String,
        verified: bool,
        actor: String,
    },
    /// A review-queue item decided by an admin: `resolution` is `linked` (then `idnat` is the
    /// identifier linked, its own `identity_linked` record follows) or `dismissed`.
    IdentityReviewResolved {
        account_id: String,
        review_id: i64,
        resolution: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idnat: Option<String>,
        actor: String,
    },
    IdentityUnlinked {
        account_id: String,
        idnat: String,
        actor: String,
    },
    /// An import (Annuaire extraction or mapping file) was run, dry or not.
    IdentityImport {
        source: String,
        lines: usize,
        changes: usize,
        review: usize,
        errors: usize,
        applied: bool,
        actor: String,
    },
    /// Records were exported (`relais audit export`). The bounds are RFC 3339 timestamps.
    AuditExported {
        since: Option<String>,
        until: Option<String>,
        records: u64,
    },
    /// Records up to `through_seq` were purged; a signed checkpoint at that seq anchors the rest.
    AuditPurged {
        before: String,
        through_seq: i64,
        deleted: u64,
    },
    /// Trust material re-read while running (`what`: `card_crls`), recorded when its content
    /// changed or when the reload failed (the previous set then stays in force); or read at
    /// start (`fido_mds`: a new FIDO MDS3 blob taken into use, or an older one refused).
    ConfigurationReloaded {
        what: String,
        success: bool,
        detail: String,
    },
    /// An admin issued a one-time code for enrolling a first security key.
    Fido2EnrolmentCodeIssued {
        account_id: String,
        expires_at: i64,
        actor: String,
    },
    /// A security key registration, accepted or refused (`reason` says why).
    Fido2KeyRegistered {
        account_id: String,
        key_id: Option<String>,
        aaguid: Option<String>,
        success: bool,
        reason: Option<String>,
    },
    /// A login step with a security key, accepted or refused.
    Fido2Authentication {
        account_id: String,
        key_id: Option<String>,
        success: bool,
        reason: Option<String>,
    },
    /// A key's signature counter went backwards: possibly a cloned key. The login is refused.
    Fido2CounterRegression {
        account_id: String,
    },
    Fido2KeyRevoked {
        account_id: String,
        key_id: String,
        actor: String,
    },
    /// A CPS/CPx card login step, accepted or refused (`reason`: `CardRefusal::as_str`). The
    /// certificate's subject, issuer and serial are recorded when it could be read.
    CardLogin {
        account_id: Option<String>,
        idnat: Option<String>,
        subject: Option<String>,
        issuer: Option<String>,
        serial: Option<String>,
        /// `tls` (Relais' card listener), `proxy` (trusted proxy header) or `none`.
        source: String,
        success: bool,
        reason: Option<String>,
    },
    /// A card linked its idNat to a person who had no national identity (policy
    /// `establish_mapping`); `identity_linked` records the mapping itself.
    CardMappingEstablished {
        account_id: String,
        idnat: String,
        serial: String,
    },
    /// A client-certificate header arrived from an address that is not a trusted proxy: ignored.
    CardHeaderIgnored {
        header: String,
    },
    /// An admin UI login (password, then a security key), accepted or refused.
    AdminLogin {
        username: String,
        account_id: Option<String>,
        success: bool,
        reason: Option<String>,
    },
    /// An admin UI request refused: read-only role, missing or wrong CSRF token.
    AdminRefused {
        actor: String,
        action: String,
        reason: String,
    },
    /// An admin UI role granted (`role`) or withdrawn (`None`).
    AdminRoleChanged {
        account_id: String,
        role: Option<String>,
        actor: String,
    },
    ClientSecretRotated {
        client_id: String,
        actor: String,
    },
    /// An SSO session ended from the admin UI (`admin:<username>`) or by the person on their
    /// account page (`self`); its refresh tokens are revoked with it.
    SessionRevoked {
        account_id: String,
        session_id: String,
        actor: String,
    },
}

impl AuditEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AuthorizeRefused { .. } => "authorize_refused",
            Self::LoginPassword { .. } => "login_password",
            Self::LoginThrottled { .. } => "login_throttled",
            Self::LoginAccountRefused { .. } => "login_account_refused",
            Self::SsoReused { .. } => "sso_reused",
            Self::CodeIssued { .. } => "code_issued",
            Self::TokenIssued { .. } => "token_issued",
            Self::TokenRefused { .. } => "token_refused",
            Self::CodeReplayed { .. } => "code_replayed",
            Self::RefreshReuseDetected { .. } => "refresh_reuse_detected",
            Self::ClientAuthFailed { .. } => "client_auth_failed",
            Self::TokenRevoked { .. } => "token_revoked",
            Self::Logout { .. } => "logout",
            Self::ClientRegistered { .. } => "client_registered",
            Self::AccountCreated { .. } => "account_created",
            Self::SigningKeyRotated { .. } => "signing_key_rotated",
            Self::TermsAccepted { .. } => "terms_accepted",
            Self::AccountChanged { .. } => "account_changed",
            Self::IdentityLinked { .. } => "identity_linked",
            Self::IdentityUnlinked { .. } => "identity_unlinked",
            Self::IdentityReviewResolved { .. } => "identity_review_resolved",
            Self::IdentityImport { .. } => "identity_import",
            Self::AuditExported { .. } => "audit_exported",
            Self::AuditPurged { .. } => "audit_purged",
            Self::ConfigurationReloaded { .. } => "configuration_reloaded",
            Self::Fido2EnrolmentCodeIssued { .. } => "fido2_enrolment_code_issued",
            Self::Fido2KeyRegistered { .. } => "fido2_key_registered",
            Self::Fido2Authentication { .. } => "fido2_authentication",
            Self::Fido2CounterRegression { .. } => "fido2_counter_regression",
            Self::Fido2KeyRevoked { .. } => "fido2_key_revoked",
            Self::CardLogin { .. } => "card_login",
            Self::CardMappingEstablished { .. } => "card_mapping_established",
            Self::CardHeaderIgnored { .. } => "card_header_ignored",
            Self::AdminLogin { .. } => "admin_login",
            Self::AdminRefused { .. } => "admin_refused",
            Self::AdminRoleChanged { .. } => "admin_role_changed",
            Self::ClientSecretRotated { .. } => "client_secret_rotated",
            Self::SessionRevoked { .. } => "session_revoked",
        }
    }

    pub fn outcome(&self) -> Outcome {
        match self {
            Self::LoginPassword { success: true, .. }
            | Self::Fido2KeyRegistered { success: true, .. }
            | Self::Fido2Authentication { success: true, .. }
            | Self::CardLogin { success: true, .. } => Outcome::Success,
            Self::AdminLogin { success: true, .. } => Outcome::Success,
            Self::ConfigurationReloaded { success, .. } => {
                if *success {
                    Outcome::Success
                } else {
                    Outcome::Failure
                }
            }
            Self::AuthorizeRefused { .. }
            | Self::LoginPassword { .. }
            | Self::LoginThrottled { .. }
            | Self::LoginAccountRefused { .. }
            | Self::Fido2KeyRegistered { .. }
            | Self::Fido2Authentication { .. }
            | Self::Fido2CounterRegression { .. }
            | Self::CardLogin { .. }
            | Self::CardHeaderIgnored { .. }
            | Self::AdminLogin { .. }
            | Self::AdminRefused { .. }
            | Self::TokenRefused { .. }
            | Self::CodeReplayed { .. }
            | Self::RefreshReuseDetected { .. }
            | Self::ClientAuthFailed { .. } => Outcome::Failure,
            _ => Outcome::Success,
        }
    }

    /// The local account concerned, if any: a column of its own so the trail can be searched
    /// by person.
    pub fn account_id(&self) -> Option<&str> {
        match self {
            Self::LoginPassword { account_id, .. } | Self::CardLogin { account_id, .. } => account_id.as_deref(),
            Self::SsoReused { account_id, .. }
            | Self::CodeIssued { account_id, .. }
            | Self::TokenIssued { account_id, .. }
            | Self::RefreshReuseDetected { account_id, .. }
            | Self::Logout { account_id, .. }
            | Self::AccountCreated { account_id, .. }
            | Self::AccountChanged { account_id, .. }
            | Self::TermsAccepted { account_id, .. }
            | Self::IdentityLinked { account_id, .. }
            | Self::IdentityUnlinked { account_id, .. }
            | Self::IdentityReviewResolved { account_id, .. }
            | Self::Fido2EnrolmentCodeIssued { account_id, .. }
            | Self::Fido2KeyRegistered { account_id, .. }
            | Self::Fido2Authentication { account_id, .. }
            | Self::Fido2CounterRegression { account_id }
            | Self::Fido2KeyRevoked { account_id, .. }
            | Self::CardMappingEstablished { account_id, .. }
            | Self::AdminRoleChanged { account_id, .. }
            | Self::SessionRevoked { account_id, .. } => Some(account_id),
            Self::AdminLogin { account_id, .. } => account_id.as_deref(),
            Self::AuthorizeRefused { .. }
            | Self::TokenRefused { .. }
            | Self::CodeReplayed { .. }
            | Self::ClientAuthFailed { .. }
            | Self::TokenRevoked { .. }
            | Self::ClientRegistered { .. }
            | Self::SigningKeyRotated { .. }
            | Self::IdentityImport { .. }
            | Self::LoginThrottled { .. }
            | Self::LoginAccountRefused { .. }
            | Self::AuditExported { .. }
            | Self::CardHeaderIgnored { .. }
            | Self::AdminRefused { .. }
            | Self::ClientSecretRotated { .. }
            | Self::AuditPurged { .. }
            | Self::ConfigurationReloaded { .. } => None,
        }
    }

    /// The relying party concerned, if any (searchable column, like `account_id`).
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::AuthorizeRefused { client_id, .. }
            | Self::TokenRefused { client_id, .. }
            | Self::ClientAuthFailed { client_id, .. }
            | Self::Logout { client_id, .. } => client_id.as_deref(),
            Self::SsoReused { client_id, .. }
            | Self::CodeIssued { client_id, .. }
            | Self::TokenIssued { client_id, .. }
            | Self::CodeReplayed { client_id }
            | Self::RefreshReuseDetected { client_id, .. }
            | Self::TokenRevoked { client_id, .. }
            | Self::ClientRegistered { client_id, .. }
            | Self::ClientSecretRotated { client_id, .. } => Some(client_id),
            Self::LoginPassword { .. }
            | Self::AccountCreated { .. }
            | Self::AccountChanged { .. }
            | Self::TermsAccepted { .. }
            | Self::IdentityLinked { .. }
            | Self::IdentityUnlinked { .. }
            | Self::IdentityReviewResolved { .. }
            | Self::IdentityImport { .. }
            | Self::LoginThrottled { .. }
            | Self::LoginAccountRefused { .. }
            | Self::Fido2EnrolmentCodeIssued { .. }
            | Self::Fido2KeyRegistered { .. }
            | Self::Fido2Authentication { .. }
            | Self::Fido2CounterRegression { .. }
            | Self::Fido2KeyRevoked { .. }
            | Self::SigningKeyRotated { .. }
            | Self::AuditExported { .. }
            | Self::CardLogin { .. }
            | Self::CardMappingEstablished { .. }
            | Self::CardHeaderIgnored { .. }
            | Self::AdminLogin { .. }
            | Self::AdminRefused { .. }
            | Self::AdminRoleChanged { .. }
            | Self::SessionRevoked { .. }
            | Self::AuditPurged { .. }
            | Self::ConfigurationReloaded { .. } => None,
        }
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: DateTime<Utc>,
    pub event: AuditEvent,
    pub context: RequestContextRecord,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContextRecord {
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: Option<String>,
}

impl From<&RequestContext> for RequestContextRecord {
    fn from(c: &RequestContext) -> Self {
        Self {
            source_ip: c.source_ip.clone(),
            // Bounded: a hostile client can send a megabyte of User-Agent.
            user_agent: c.user_agent.as_ref().map(|u| u.chars().take(256).collect()),
            correlation_id: c.correlation_id.clone(),
        }
    }
}
