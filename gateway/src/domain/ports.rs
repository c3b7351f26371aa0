//! The narrow traits through which the domain reaches the outside world. Adapters implement
//! them: SQL in `adapters::store`, session stores in `adapters::sessions`, keys in
//! `adapters::keys`. Later parts plug in here: a directory (`PasswordChecker`), second factors,
//! identity mapping, the audit chain (`AuditSink`).
use crate::domain::account::Account;
use crate::domain::audit::AuditRecord;
use crate::domain::audit_chain::{AuditCount, AuditPage, AuditQuery, ChainedRecord, Checkpoint};
use crate::domain::client::Client;
use crate::domain::fido2::{Ceremony, EnrolmentCode, Fido2Error, KeyAssertion, KeyHolder, NewKey, SecurityKeyRecord};
use crate::domain::identity::{IdNat, NationalIdentity};
use crate::domain::identity_import::ReviewItem;
use crate::domain::records::{AuditAppend, AuditedWrite, RefreshConsume, RefreshTokenRecord, SigningAlg, StoredSigningKey};
use crate::protocol::ClientId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// Wall-clock time, as an input.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    fn unix(&self) -> i64 {
        self.now().timestamp()
    }
}

pub struct SystemClock;
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests move by hand (expiry of codes, sessions, tokens).
#[derive(Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);
impl ManualClock {
    pub fn starting_now() -> Self {
        Self(Arc::new(AtomicI64::new(Utc::now().timestamp_millis())))
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::SeqCst)).expect("valid time")
    }
}

/// Cryptographic randomness, as an input.
pub trait Random: Send + Sync {
    fn fill(&self, buf: &mut [u8]);
    /// A 256-bit random token, base64url.
    fn token(&self) -> String {
        let mut b = [0u8; 32];
        self.fill(&mut b);
        crate::domain::crypto::b64url(&b)
    }
    fn uuid(&self) -> Uuid {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid()
    }
}

pub struct SystemRandom;
impl Random for SystemRandom {
    fn fill(&self, buf: &mut [u8]) {
        aws_lc_rs::rand::fill(buf).expect("system randomness available");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionStoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// Key spaces of the session store. Each has its own prefix so keys never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    Sso,
    PendingLogin,
    /// An authorization code's grant, replaced by a `RedeemedCode` marker when redeemed.
    Code,
    AssertionJti,
    RevokedAccessToken,
    Counter,
    /// Logged in, waiting for the terms of use to be accepted.
    PendingTerms,
    /// A round trip to PSC to prove a national identity.
    PscProof,
    /// WebAuthn ceremony state (challenge), keyed by pending-login id, consumed once.
    Webauthn,
    /// A checked smart card waiting to be redeemed by its browser, keyed by a random token.
    CardProof,
    /// Admin UI: pending admin logins (`p:`) and admin sessions (`s:`), apart from SSO.
    Admin,
    /// Per-person index of SSO sessions (`a:<account id>`: a set of session ids) and the
    /// clients each session served (`c:<session id>`: a set of client ids). Sets, not values.
    SessionIndex,
}

impl Namespace {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Sso => "sso",
            Self::PendingLogin => "login",
            Self::Code => "code",
            Self::AssertionJti => "jti",
            Self::RevokedAccessToken => "revoked",
            Self::Counter => "count",
            Self::PendingTerms => "terms",
            Self::PscProof => "pscproof",
            Self::Webauthn => "webauthn",
            Self::CardProof => "cardproof",
            Self::Admin => "admin",
            Self::SessionIndex => "sso_index",
        }
    }
}

/// Short-lived, expiring state shared by every replica: in-process for one node, Redis for
/// several. Every operation is atomic on its key.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn put(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<(), SessionStoreError>;
    /// Stores only if absent; `false` when the key already exists (replay detection).
    async fn put_if_absent(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<bool, SessionStoreError>;
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, SessionStoreError>;
    /// Reads and deletes in one atomic step: of many concurrent callers, one gets the value.
    async fn take(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, SessionStoreError>;
    /// Replaces the value of a live key, with a new expiry, and returns the value it had, in
    /// one atomic step (of many concurrent callers, each gets the value the one before left).
    /// `None`, and nothing stored, when the key does not exist.
    async fn replace(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<Option<Vec<u8>>, SessionStoreError>;
    async fn delete(&self, ns: Namespace, key: &str) -> Result<(), SessionStoreError>;
    /// Increments a counter, (re)setting its expiry; returns the new value.
    async fn increment(&self, ns: Namespace, key: &str, ttl: Duration) -> Result<i64, SessionStoreError>;
    /// Adds `member` to the set at `key` and makes the set live at least `ttl` from now (an
    /// expiry already further away is kept). Atomic on the key.
    async fn set_add(&self, ns: Namespace, key: &str, member: &str, ttl: Duration) -> Result<(), SessionStoreError>;
    /// The members of the set at `key`; empty when it does not exist or has expired.
    async fn set_members(&self, ns: Namespace, key: &str) -> Result<Vec<String>, SessionStoreError>;
    /// Removes members from the set at `key` (absent ones are ignored).
    async fn set_remove(&self, ns: Namespace, key: &str, members: &[String]) -> Result<(), SessionStoreError>;
    async fn ping(&self) -> Result<(), SessionStoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// Durable storage (SQL). One trait so the same test suite runs on SQLite and PostgreSQL.
#[async_trait]
pub trait Storage: Send + Sync {
    async fn ping(&self) -> Result<(), StoreError>;

    async fn client(&self, id: &ClientId) -> Result<Option<Client>, StoreError>;
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;
    async fn insert_client(&self, client: &Client) -> Result<(), StoreError>;
    async fn update_client(&self, client: &Client) -> Result<(), StoreError>;

    async fn account(&self, id: Uuid) -> Result<Option<Account>, StoreError>;
    async fn account_by_username(&self, username: &str) -> Result<Option<Account>, StoreError>;
    async fn insert_account(&self, account: &Account) -> Result<(), StoreError>;
    async fn set_account_password(&self, id: Uuid, password_hash: &str) -> Result<(), StoreError>;
    async fn set_account_disabled(&self, id: Uuid, disabled: bool) -> Result<(), StoreError>;
    /// Finds the account of a directory entry by `directory_id` (`<directory>:<stable id>`) and
    /// refreshes its names, or creates it with `account.id`. Returns the stored account, whose
    /// id never changes for that `directory_id`. `Conflict` if the username belongs to
    /// another account (e.g. a local one).
    async fn upsert_directory_account(&self, directory_id: &str, account: &Account) -> Result<Account, StoreError>;

    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> Result<(), StoreError>;
    async fn refresh_token(&self, digest: &str) -> Result<Option<RefreshTokenRecord>, StoreError>;
    /// Marks the token used if it is live, atomically (one winner across replicas).
    async fn consume_refresh_token(&self, digest: &str, now: DateTime<Utc>) -> Result<RefreshConsume, StoreError>;
    async fn revoke_refresh_family(&self, family_id: Uuid, now: DateTime<Utc>) -> Result<u64, StoreError>;
    async fn revoke_refresh_for_session(&self, session_id: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError>;
    /// Stops every other key of `alg` from signing and schedules it to leave the JWKS.
    async fn rotate_out_signing_keys(
        &self,
        alg: SigningAlg,
        keep_kid: &str,
        now: DateTime<Utc>,
        retire_at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    async fn delete_retired_signing_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Appends to the hash chain: takes the next seq and the head hash and writes the record in
    /// one transaction that serialises appends in the database (across replicas).
    async fn append_audit(&self, record: &AuditRecord) -> Result<ChainedRecord, StoreError>;
    /// Appends several records, in order, in one transaction (group commit): one head-row
    /// lock and one commit for all of them. All or none.
    async fn append_audit_batch(&self, records: &[AuditRecord]) -> Result<Vec<ChainedRecord>, StoreError> {
        self.append_audit_batch_with(records, &[]).await
    }
    /// As `append_audit_batch`, and makes `writes` in the same transaction (`AuditedWrite`).
    async fn append_audit_batch_with(&self, records: &[AuditRecord], writes: &[AuditedWrite]) -> Result<Vec<ChainedRecord>, StoreError> {
        let mut appends: Vec<AuditAppend> = records
            .iter()
            .map(|r| AuditAppend {
                record: r.clone(),
                writes: Vec::new(),
                only_if_active: None,
            })
            .collect();
        if let Some(first) = appends.first_mut() {
            first.writes = writes.to_vec();
        }
        let appended = self.append_audit_batch_checked(&appends).await?;
        Ok(appended.into_iter().flatten().collect())
    }
    /// Appends several records, in order, in one transaction, each with its writes, and each
    /// only if its `only_if_active` account is active then (checked in that transaction). An
    /// append whose account is not is left out entirely (`None`: no record, no write, no seq);
    /// the others are chained without a gap.
    async fn append_audit_batch_checked(&self, appends: &[AuditAppend]) -> Result<Vec<Option<ChainedRecord>>, StoreError>;
    /// The newest records, newest first.
    async fn audit_records(&self, limit: u64) -> Result<Vec<AuditRecord>, StoreError>;
    async fn audit_query(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;
    /// Records at or after `since`, counted by event type and outcome (one aggregate query).
    async fn audit_counts(&self, since: DateTime<Utc>) -> Result<Vec<AuditCount>, StoreError>;
    /// The chain head as the append transaction last left it: (seq, hash); (0, GENESIS) when
    /// nothing was ever written.
    async fn audit_head(&self) -> Result<(i64, String), StoreError>;
    /// Every checkpoint, oldest first.
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    async fn insert_audit_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// Deletes records up to `through_seq` and the checkpoints before it (the checkpoint at
    /// `through_seq` stays as the anchor), in one transaction. Returns the records deleted.
    async fn purge_audit(&self, through_seq: i64) -> Result<u64, StoreError>;
}

/// National identities, the identity review queue and terms-of-use acceptances.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    async fn accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// The people search: accounts whose username, display name or email contains `q`
    /// (lower-cased, not empty), by username, at most `limit`. Stores may search faster.
    async fn search_accounts(&self, q: &str, limit: u64) -> Result<Vec<Account>, StoreError> {
        Ok(self
            .accounts()
            .await?
            .into_iter()
            .filter(|a| crate::domain::account::matches(a, q))
            .take(limit as usize)
            .collect())
    }
    async fn national_ids(&self, account_id: Uuid) -> Result<Vec<NationalIdentity>, StoreError>;
    async fn all_national_ids(&self) -> Result<Vec<NationalIdentity>, StoreError>;
    /// The mapping of one idNat (an idNat belongs to one person at most).
    async fn national_id(&self, idnat: &IdNat) -> Result<Option<NationalIdentity>, StoreError>;
    /// Inserts or updates mappings, all or none (one transaction). An idNat belongs to one
    /// person at most: a mapping that would move it to another person is a conflict.
    async fn put_national_ids(&self, ids: &[NationalIdentity]) -> Result<(), StoreError>;
    async fn remove_national_id(&self, account_id: Uuid, idnat: &IdNat) -> Result<bool, StoreError>;
    async fn add_review_items(&self, items: &[ReviewItem]) -> Result<(), StoreError>;
    async fn review_items(&self) -> Result<Vec<ReviewItem>, StoreError>;
    /// Takes an item off the queue. `false`: it was not there (already decided).
    async fn remove_review_item(&self, id: i64) -> Result<bool, StoreError>;
    async fn terms_accepted(&self, account_id: Uuid, version: &str) -> Result<bool, StoreError>;
    async fn accept_terms(&self, account_id: Uuid, version: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no active {0:?} signing key")]
    NoKey(SigningAlg),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("token rejected: {0}")]
    Rejected(String),
}

/// Signs and verifies Relais' own JWTs (id_tokens, access tokens, signed userinfo).
pub trait Signer: Send + Sync {
    /// Signs `claims` with the active key of `alg`; `typ` goes in the JOSE header.
    fn sign(&self, alg: SigningAlg, typ: &str, claims: &serde_json::Value) -> Result<String, KeyError>;
    /// Verifies a JWT signed by any currently published key; returns its header `typ` and claims.
    /// Does not check `exp`: callers decide.
    fn verify(&self, jwt: &str) -> Result<(Option<String>, serde_json::Value), KeyError>;
    /// The public JWK Set.
    fn jwks(&self) -> serde_json::Value;
    /// Verifies a JWS with the given public JWK, which Relais may no longer hold (audit
    /// checkpoints outlive key rotation). Returns the header `typ` and the claims.
    fn verify_with_jwk(&self, jwk: &serde_json::Value, jws: &str) -> Result<(Option<String>, serde_json::Value), KeyError>;
}

/// Why an account whose password was right may still not log in. Only ever reported after
/// the password was verified, so it tells nothing to someone guessing passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountRefusal {
    Disabled,
    Locked,
    Expired,
    MustChangePassword,
    /// Not in a group the directory configuration requires.
    NotAllowed,
}

impl AccountRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Locked => "locked",
            Self::Expired => "expired",
            Self::MustChangePassword => "must_change_password",
            Self::NotAllowed => "not_allowed",
        }
    }
}

/// The answer of a first-factor check.
#[derive(Debug, Clone, PartialEq, Eq)]
// One value per login, matched right away: boxing the account buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum PasswordVerdict {
    /// The account, and the Relais roles its directory groups grant (sorted, none for local
    /// accounts).
    Accepted(Account, Vec<String>),
    /// Unknown user, wrong password, or an account the directory refuses before even looking
    /// at the password: all look the same.
    Rejected,
    /// The password was right but the account cannot be used now.
    Refused(AccountRefusal),
}

/// What the place passwords live says of a person now, asked without their password (a card
/// login that does not follow a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not kept there (a local account), or not checkable without a password: nothing to add.
    NotManaged,
    /// In good standing, with the Relais roles its groups grant.
    Active(Vec<String>),
    /// Locked, disabled, expired or no longer allowed.
    Refused(AccountRefusal),
    /// No longer in the directory.
    Gone,
}

/// The first factor: a username and password checked somewhere (local accounts, a directory).
#[async_trait]
pub trait PasswordChecker: Send + Sync {
    /// `Ok(None)` for an unknown user, a wrong password or a disabled account alike.
    async fn check(&self, username: &str, password: &str) -> Result<Option<Account>, StoreError>;

    /// Like `check`, but says why a correct password still cannot log in. `Unavailable` when
    /// the place the passwords live (database, directory) cannot answer.
    async fn verify(&self, username: &str, password: &str) -> Result<PasswordVerdict, StoreError> {
        Ok(match self.check(username, password).await? {
            Some(a) => PasswordVerdict::Accepted(a, Vec::new()),
            None => PasswordVerdict::Rejected,
        })
    }

    /// The person's standing now, without a password. `Unavailable` when it cannot be told.
    async fn standing(&self, _account: &Account) -> Result<Standing, StoreError> {
        Ok(Standing::NotManaged)
    }
}

/// Where audit records go. `record` failing makes the operation fail closed.
#[async_trait]
pub trait AuditSink: Send + Sync {
    async fn record(&self, record: AuditRecord) -> Result<(), StoreError> {
        self.record_with(record, None).await
    }
    /// Records an event and makes the write it is about in the same commit (`AuditedWrite`):
    /// one durable write instead of two, and never one without the other.
    async fn record_with(&self, record: AuditRecord, write: Option<AuditedWrite>) -> Result<(), StoreError>;
    /// As `record_with`, only if `account_id` is still active at the commit (checked in its
    /// transaction). `Ok(false)`: it is not, and nothing was recorded or written.
    async fn record_if_active(&self, account_id: Uuid, record: AuditRecord, write: Option<AuditedWrite>) -> Result<bool, StoreError>;
}

/// FIDO2 ceremonies (WebAuthn). Implemented with webauthn-rs in `adapters::webauthn`, which
/// also holds the attestation trust policy. The domain decides who may run which ceremony.
pub trait SecurityKeys: Send + Sync {
    /// Starts registering a new key for `holder`; `existing` keys are excluded.
    fn start_registration(&self, holder: &KeyHolder, existing: &[SecurityKeyRecord]) -> Result<Ceremony, Fido2Error>;
    /// Checks the browser's answer: attestation against the trust policy, user verification.
    fn finish_registration(&self, response: &serde_json::Value, state: &str) -> Result<NewKey, Fido2Error>;
    /// Starts an assertion by any of `keys` (the active ones only are passed).
    fn start_authentication(&self, keys: &[SecurityKeyRecord]) -> Result<Ceremony, Fido2Error>;
    /// Checks the answer: signature, user verification, sign counter.
    fn finish_authentication(
        &self,
        response: &serde_json::Value,
        state: &str,
        keys: &[SecurityKeyRecord],
    ) -> Result<KeyAssertion, Fido2Error>;
}

/// Durable storage of security keys and enrolment codes (SQL).
#[async_trait]
pub trait SecurityKeyStore: Send + Sync {
    async fn security_keys(&self, account_id: Uuid) -> Result<Vec<SecurityKeyRecord>, StoreError>;
    /// A credential id already registered (to anyone) is a conflict.
    async fn insert_security_key(&self, key: &SecurityKeyRecord) -> Result<(), StoreError>;
    async fn record_security_key_use(&self, id: Uuid, credential: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// `false` when no such active key of this person exists.
    async fn revoke_security_key(&self, account_id: Uuid, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn insert_enrolment_code(&self, code: &EnrolmentCode) -> Result<(), StoreError>;
    /// A live (unused, unexpired) code of this person, by digest.
    async fn live_enrolment_code(&self, digest: &str, account_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Marks the code used if it is still live, atomically: one winner.
    async fn consume_enrolment_code(&self, digest: &str, account_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError>;
}
