//! Administrative operations shared by the CLI, the demo and (later) the admin UI:
//! registering clients and creating local accounts, each audited.
use crate::domain::DomainError;
use crate::domain::account::{Account, PasswordPolicy, normalise_username};
use crate::domain::audit::{AuditEvent, AuditRecord, RequestContext};
use crate::domain::client::{Client, ClientKind, TokenAuthMethod};
use crate::domain::crypto::secret_digest;
use crate::domain::ports::{AuditSink, Clock, Random, Storage};
use crate::domain::records::SigningAlg;
use crate::protocol::{ClientId, RedirectUri};

/// What an admin gives to register a client.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub id: ClientId,
    pub name: String,
    pub kind: ClientKind,
    pub auth_method: TokenAuthMethod,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub jwks: Option<serde_json::Value>,
    pub id_token_alg: SigningAlg,
    pub userinfo_signed_alg: Option<SigningAlg>,
    pub min_acr: Option<String>,
    pub max_auth_age: Option<i64>,
    pub allow_refresh: bool,
    pub may_introspect: bool,
}

impl NewClient {
    /// A confidential web application with `client_secret_basic` and ES256.
    pub fn confidential(id: ClientId, name: &str, redirect_uris: Vec<RedirectUri>) -> Self {
        Self {
            id,
            name: name.to_owned(),
            kind: ClientKind::Local,
            auth_method: TokenAuthMethod::ClientSecretBasic,
            redirect_uris,
            post_logout_redirect_uris: Vec::new(),
            jwks: None,
            id_token_alg: SigningAlg::ES256,
            userinfo_signed_alg: None,
            min_acr: None,
            max_auth_age: None,
            allow_refresh: true,
            may_introspect: false,
        }
    }
}

/// What an admin gives to create a local account.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    pub username: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
}

impl NewAccount {
    pub fn new(username: &str, given_name: &str, family_name: &str) -> Self {
        Self {
            username: username.to_owned(),
            display_name: format!("{given_name} {family_name}"),
            given_name: Some(given_name.to_owned()),
            family_name: Some(family_name.to_owned()),
            email: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Domain(#[from] DomainError),
}

impl From<crate::domain::ports::StoreError> for ManagementError {
    fn from(e: crate::domain::ports::StoreError) -> Self {
        match e {
            crate::domain::ports::StoreError::Conflict(m) => ManagementError::Invalid(format!("already exists ({m})")),
            other => ManagementError::Domain(other.into()),
        }
    }
}

pub struct Management<'a> {
    pub storage: &'a dyn Storage,
    pub audit: &'a dyn AuditSink,
    pub random: &'a dyn Random,
    pub clock: &'a dyn Clock,
    /// Who acts (`cli`, `demo`, an admin's id).
    pub actor: &'a str,
}

impl Management<'_> {
    async fn record(&self, event: AuditEvent) -> Result<(), ManagementError> {
        let ctx = RequestContext {
            correlation_id: Some(format!("actor:{}", self.actor)),
            ..Default::default()
        };
        self.audit
            .record(AuditRecord {
                at: self.clock.now(),
                event,
                context: (&ctx).into(),
            })
            .await?;
        Ok(())
    }

    /// Registers a client. Returns the generated secret for secret-based methods: it is shown
    /// once and only its digest is stored.
    pub async fn register_client(&self, c: NewClient) -> Result<(Client, Option<String>), ManagementError> {
        if c.redirect_uris.is_empty() {
            return Err(ManagementError::Invalid("at least one redirect URI is required".into()));
        }
        if c.auth_method == TokenAuthMethod::PrivateKeyJwt
            && c.jwks
                .as_ref()
                .and_then(|j| j.get("keys"))
                .and_then(|k| k.as_array())
                .is_none_or(|k| k.is_empty())
        {
            return Err(ManagementError::Invalid(
                "private_key_jwt needs a JWK Set with at least one key".into(),
            ));
        }
        let secret = matches!(
            c.auth_method,
            TokenAuthMethod::ClientSecretBasic | TokenAuthMethod::ClientSecretPost
        )
        .then(|| self.random.token());
        let client = Client {
            id: c.id,
            name: c.name,
            kind: c.kind,
            auth_method: c.auth_method,
            secret_digest: secret.as_deref().map(secret_digest),
            jwks: c.jwks,
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            id_token_alg: c.id_token_alg,
            userinfo_signed_alg: c.userinfo_signed_alg,
            min_acr: c.min_acr,
            max_auth_age: c.max_auth_age,
            allow_refresh: c.allow_refresh,
            may_introspect: c.may_introspect,
            enabled: true,
        };
        self.storage.insert_client(&client).await?;
        self.record(AuditEvent::ClientRegistered {
            client_id: client.id.to_string(),
            kind: format!("{:?}", client.kind).to_lowercase(),
        })
        .await?;
        Ok((client, secret))
    }

    /// Creates a local account with an argon2id password hash.
    pub async fn create_account(&self, policy: &PasswordPolicy, new: NewAccount, password: &str) -> Result<Account, ManagementError> {
        let username = normalise_username(&new.username).ok_or_else(|| ManagementError::Invalid("invalid username".into()))?;
        let mut salt = [0u8; 16];
        self.random.fill(&mut salt);
        let hash = policy.hash(password, &salt).map_err(|e| ManagementError::Invalid(e.to_string()))?;
        let account = Account {
            id: self.random.uuid(),
            username,
            display_name: new.display_name,
            given_name: new.given_name,
            family_name: new.family_name,
            email: new.email,
            password_hash: Some(hash),
            disabled: false,
        };
        self.storage.insert_account(&account).await?;
        self.record(AuditEvent::AccountCreated {
            account_id: account.id.to_string(),
            username: account.username.clone(),
        })
        .await?;
        Ok(account)
    }
}
