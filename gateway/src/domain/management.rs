//! Administrative operations shared by the CLI, the demo and (later) the admin UI:
//! registering clients and creating local accounts, each audited.
use crate::domain::DomainError;
use crate::domain::account::{Account, PasswordPolicy, normalise_username};
use crate::domain::annuaire::{self, Selection};
use crate::domain::audit::{AuditEvent, AuditRecord, RequestContext};
use crate::domain::client::{Client, ClientKind, TokenAuthMethod};
use crate::domain::crypto::secret_digest;
use crate::domain::identity::{IdNat, NationalIdentity, Provenance};
use crate::domain::identity_import::{self, Plan, ReviewItem};
use crate::domain::ports::{AuditSink, Clock, IdentityStore, Random, SecurityKeyStore, Storage};
use crate::domain::records::SigningAlg;
use crate::protocol::{ClientId, RedirectUri};
use std::collections::HashSet;

/// An admin's decision on a review-queue item.
#[derive(Debug, Clone, Copy)]
pub enum ReviewDecision<'a> {
    Link { idnat: &'a str, verified: bool },
    Dismiss,
}

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
    /// Reserve the application to people holding one of these roles (empty: anyone).
    pub required_roles: Vec<String>,
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
            required_roles: Vec::new(),
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

/// PSC's environments (psc.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PscEnvironment {
    Sandbox,
    Production,
}

impl PscEnvironment {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sandbox" => Some(Self::Sandbox),
            "production" => Some(Self::Production),
            _ => None,
        }
    }

    /// PSC's Keycloak host in this environment.
    fn auth_host(self) -> &'static str {
        match self {
            Self::Sandbox => "https://auth.bas.psc.esante.gouv.fr",
            Self::Production => "https://auth.esw.esante.gouv.fr",
        }
    }

    /// PSC's redirect URI toward an FI. psc.md §1 marks this as an inference [I]: Keycloak's
    /// broker endpoint for the `kc_idp_hint` ANS assigns. Check it against the Datapass file.
    pub fn broker_redirect_uri(self, hint: &str) -> Result<RedirectUri, ManagementError> {
        if hint.is_empty()
            || !hint
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(ManagementError::Invalid(
                "the kc_idp_hint may hold letters, digits, '-', '_' and '.' only".into(),
            ));
        }
        RedirectUri::parse(&format!("{}/auth/realms/esante-wallet/broker/{hint}/endpoint", self.auth_host()))
            .map_err(|e| ManagementError::Invalid(e.to_string()))
    }
}

impl NewClient {
    /// The PSC profile: phishing-resistant logins only (`min_acr`, the top configured level),
    /// re-authentication at most every 4 hours, no refresh tokens (PSC keeps its own session).
    pub fn psc(id: ClientId, redirect_uri: RedirectUri, strongest_acr: &str) -> Self {
        Self {
            kind: ClientKind::Psc,
            min_acr: Some(strongest_acr.to_owned()),
            max_auth_age: Some(4 * 3600),
            allow_refresh: false,
            ..Self::confidential(id, "Pro Santé Connect", vec![redirect_uri])
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
    pub identities: &'a dyn IdentityStore,
    pub audit: &'a dyn AuditSink,
    pub random: &'a dyn Random,
    pub clock: &'a dyn Clock,
    pub security_keys: &'a dyn SecurityKeyStore,
    /// The roles `[directories.roles]` defines (a client may only be reserved to those).
    pub role_names: &'a [String],
    /// Who acts (`cli`, `demo`, an admin's id).
    pub actor: &'a str,
}

impl Management<'_> {
    pub(crate) async fn record(&self, event: AuditEvent) -> Result<(), ManagementError> {
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
        let mut required_roles: Vec<String> = c
            .required_roles
            .iter()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        required_roles.sort();
        required_roles.dedup();
        // A role no directory grants would admit nobody: a typo, refused here rather than
        // found by the first doctor turned away.
        if let Some(unknown) = required_roles.iter().find(|r| !self.role_names.contains(r)) {
            return Err(ManagementError::Invalid(format!(
                "role {unknown:?} is not defined in any [directories.roles] (defined: {})",
                if self.role_names.is_empty() {
                    "none".to_owned()
                } else {
                    self.role_names.join(", ")
                }
            )));
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
            required_roles,
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
            directory_id: None,
        };
        self.storage.insert_account(&account).await?;
        self.record(AuditEvent::AccountCreated {
            account_id: account.id.to_string(),
            username: account.username.clone(),
        })
        .await?;
        Ok(account)
    }

    /// Reads an Annuaire Santé extraction and plans (and, unless `dry_run`, applies) the
    /// mapping changes for people active at the establishment's `finess` numbers.
    pub async fn import_annuaire(&self, input: impl std::io::BufRead, finess: &[String], dry_run: bool) -> Result<Plan, ManagementError> {
        self.import_annuaire_with(input, finess, &[], dry_run).await
    }

    /// `import_annuaire` with the identifiers the directories hold (the "directory" rule).
    pub async fn import_annuaire_with(
        &self,
        input: impl std::io::BufRead,
        finess: &[String],
        claims: &[identity_import::DirectoryClaim],
        dry_run: bool,
    ) -> Result<Plan, ManagementError> {
        let existing = self.identities.all_national_ids().await?;
        let mut wanted: HashSet<String> = existing.iter().map(|n| n.idnat.to_string()).collect();
        // Kept even when active elsewhere, so the plan can say so rather than "absent".
        wanted.extend(claims.iter().filter_map(|c| c.idnat().ok()).map(|i| i.to_string()));
        let extraction =
            annuaire::read(input, &Selection { finess, wanted: &wanted }).map_err(|e| ManagementError::Invalid(e.to_string()))?;
        let accounts = self.identities.accounts().await?;
        let plan = identity_import::plan_annuaire_with(extraction, &accounts, &existing, claims);
        self.apply(plan, "annuaire", dry_run).await
    }

    /// Plans (and, unless `dry_run`, applies) a `login;idnat` mapping file.
    pub async fn import_mapping_file(&self, text: &str, dry_run: bool) -> Result<Plan, ManagementError> {
        let existing = self.identities.all_national_ids().await?;
        let accounts = self.identities.accounts().await?;
        let plan = identity_import::plan_mapping_file(text, &accounts, &existing);
        self.apply(plan, "mapping_file", dry_run).await
    }

    async fn apply(&self, plan: Plan, source: &str, dry_run: bool) -> Result<Plan, ManagementError> {
        let applied = !dry_run && plan.applicable();
        if applied {
            let ids: Vec<NationalIdentity> = plan.changes.iter().map(|c| c.identity()).collect();
            self.identities.put_national_ids(&ids).await?;
            self.identities.add_review_items(&plan.review).await?;
            for n in &ids {
                self.record_link(n).await?;
            }
        }
        self.record(AuditEvent::IdentityImport {
            source: source.into(),
            lines: plan.lines,
            changes: plan.changes.len(),
            review: plan.review.len(),
            errors: plan.errors.len(),
            applied,
            actor: self.actor.into(),
        })
        .await?;
        Ok(plan)
    }

    async fn record_link(&self, n: &NationalIdentity) -> Result<(), ManagementError> {
        self.record(AuditEvent::IdentityLinked {
            account_id: n.account_id.to_string(),
            idnat: n.idnat.to_string(),
            provenance: n.provenance.as_str().into(),
            verified: n.verified,
            actor: self.actor.into(),
        })
        .await
    }

    async fn account_named(&self, username: &str) -> Result<Account, ManagementError> {
        let u = normalise_username(username).ok_or_else(|| ManagementError::Invalid("invalid username".into()))?;
        self.storage
            .account_by_username(&u)
            .await?
            .ok_or_else(|| ManagementError::Invalid(format!("no local account {u}")))
    }

    /// Decides a review-queue item: link one identifier to the person, or dismiss the item.
    /// A link must name one of the item's candidates when it has any (the admin chooses
    /// between the homonyms' identifiers, not something else); the item leaves the queue
    /// only once the decision is applied, and both are audited.
    pub async fn resolve_review(&self, review_id: i64, decision: ReviewDecision<'_>) -> Result<ReviewItem, ManagementError> {
        let item = self
            .identities
            .review_items()
            .await?
            .into_iter()
            .find(|r| r.id == Some(review_id))
            .ok_or_else(|| ManagementError::Invalid(format!("no review item {review_id} (already decided?)")))?;
        let linked = match decision {
            ReviewDecision::Dismiss => None,
            ReviewDecision::Link { idnat, verified } => {
                let idnat = IdNat::parse(idnat).map_err(|e| ManagementError::Invalid(e.to_string()))?;
                if !item.candidates.is_empty() && !item.candidates.contains(&idnat) {
                    let c: Vec<String> = item.candidates.iter().map(ToString::to_string).collect();
                    return Err(ManagementError::Invalid(format!(
                        "{idnat} is not a candidate of review item {review_id} ({})",
                        c.join(", ")
                    )));
                }
                let n = NationalIdentity {
                    account_id: item.account_id,
                    idnat,
                    provenance: Provenance::Admin,
                    verified,
                    profession: None,
                };
                self.identities.put_national_ids(std::slice::from_ref(&n)).await?;
                self.record_link(&n).await?;
                Some(n.idnat)
            }
        };
        self.identities.remove_review_item(review_id).await?;
        self.record(AuditEvent::IdentityReviewResolved {
            account_id: item.account_id.to_string(),
            review_id,
            resolution: if linked.is_some() { "linked" } else { "dismissed" }.into(),
            idnat: linked.map(|i| i.to_string()),
            actor: self.actor.into(),
        })
        .await?;
        Ok(item)
    }

    /// Links an idNat to a person by hand. `verified` only when the admin checked a proof.
    pub async fn link(&self, username: &str, idnat: &str, verified: bool) -> Result<NationalIdentity, ManagementError> {
        let account = self.account_named(username).await?;
        let idnat = IdNat::parse(idnat).map_err(|e| ManagementError::Invalid(e.to_string()))?;
        let n = NationalIdentity {
            account_id: account.id,
            idnat,
            provenance: Provenance::Admin,
            verified,
            profession: None,
        };
        self.identities.put_national_ids(std::slice::from_ref(&n)).await?;
        self.record_link(&n).await?;
        Ok(n)
    }

    pub async fn unlink(&self, username: &str, idnat: &str) -> Result<bool, ManagementError> {
        let account = self.account_named(username).await?;
        let idnat = IdNat::parse(idnat).map_err(|e| ManagementError::Invalid(e.to_string()))?;
        let removed = self.identities.remove_national_id(account.id, &idnat).await?;
        if removed {
            self.record(AuditEvent::IdentityUnlinked {
                account_id: account.id.to_string(),
                idnat: idnat.to_string(),
                actor: self.actor.into(),
            })
            .await?;
        }
        Ok(removed)
    }

    pub async fn show(&self, username: &str) -> Result<(Account, Vec<NationalIdentity>), ManagementError> {
        let account = self.account_named(username).await?;
        let ids = self.identities.national_ids(account.id).await?;
        Ok((account, ids))
    }

    /// Records an idNat proven by an authoritative source (PSC, a card): verified. Never moves
    /// an idNat that belongs to someone else.
    pub async fn link_proven(
        &self,
        account_id: uuid::Uuid,
        idnat: IdNat,
        provenance: Provenance,
    ) -> Result<NationalIdentity, ManagementError> {
        let existing = self.identities.national_ids(account_id).await?;
        let profession = existing.iter().find(|n| n.idnat == idnat).and_then(|n| n.profession.clone());
        let n = NationalIdentity {
            account_id,
            idnat,
            provenance,
            verified: true,
            profession,
        };
        self.identities.put_national_ids(std::slice::from_ref(&n)).await?;
        self.record_link(&n).await?;
        Ok(n)
    }

    /// Sets a local account's password (argon2id).
    pub async fn set_password(&self, policy: &PasswordPolicy, username: &str, password: &str) -> Result<(), ManagementError> {
        let account = self.account_named(username).await?;
        // A local password on a directory account would outlive the person's removal from the
        // directory (the break-glass fallback would accept it): refused.
        if let Some(dir) = &account.directory_id {
            let name = dir.split_once(':').map_or(dir.as_str(), |(name, _)| name);
            return Err(ManagementError::Invalid(format!(
                "{} is an account of the directory {name}: its password is changed there",
                account.username
            )));
        }
        let mut salt = [0u8; 16];
        self.random.fill(&mut salt);
        let hash = policy.hash(password, &salt).map_err(|e| ManagementError::Invalid(e.to_string()))?;
        self.storage.set_account_password(account.id, &hash).await?;
        self.record(AuditEvent::AccountChanged {
            account_id: account.id.to_string(),
            change: "password_set".into(),
            actor: self.actor.into(),
        })
        .await
    }

    /// Disables (or enables again) a local account. A disabled account cannot log in, and its
    /// refresh tokens and pending codes stop working at their next use.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<(), ManagementError> {
        let account = self.account_named(username).await?;
        self.storage.set_account_disabled(account.id, disabled).await?;
        let change = if disabled { "disabled" } else { "enabled" };
        self.record(AuditEvent::AccountChanged {
            account_id: account.id.to_string(),
            change: change.into(),
            actor: self.actor.into(),
        })
        .await
    }
}
