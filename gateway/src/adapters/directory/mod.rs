//! The first factor on a directory (OpenLDAP, Active Directory): find the person with the
//! service account, then bind as them with the typed password. The password is never stored.
//!
//! - Searches share one long-lived connection per directory (reopened with failover when it
//!   breaks); user binds use their own short-lived connection, never the service account's.
//! - The directory entry's stable id (entryUUID, objectGUID) names the Relais account, so `sub`
//!   survives renames.
mod conn;
mod entry;
mod login;

pub use entry::{Attributes, EntryError, Profile};
pub use login::DirectoryLogin;

use crate::domain::account::{Account, normalise_username};
use crate::domain::ports::{AccountRefusal, Clock, PasswordVerdict, Storage, StoreError};
use ldap3::{Ldap, Scope, SearchEntry, dn_escape, ldap_escape};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// No server answered, or answered in a way that is not about the user's credentials.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    #[error("directory configuration: {0}")]
    Config(String),
    #[error("directory entry: {0}")]
    Entry(#[from] entry::EntryError),
}

impl From<DirectoryError> for StoreError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Unavailable(m) => StoreError::Unavailable(m),
            other => StoreError::Corrupt(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    OpenLdap,
    ActiveDirectory,
}

/// How the stable id attribute is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StableId {
    /// A UUID string (OpenLDAP entryUUID).
    Text,
    /// 16 bytes in AD's byte order (objectGUID).
    AdGuid,
}

/// Which attribute holds what. Presets fill it; each field can be overridden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMap {
    pub login: String,
    pub id: String,
    pub id_kind: StableId,
    pub display_name: String,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub employee_number: String,
    pub groups: String,
    /// Ands with the login match, e.g. `(objectClass=inetOrgPerson)`.
    pub user_filter: String,
}

impl Preset {
    pub fn attributes(self) -> AttributeMap {
        let common = |login: &str, id: &str, id_kind, filter: &str| AttributeMap {
            login: login.into(),
            id: id.into(),
            id_kind,
            display_name: "displayName".into(),
            given_name: "givenName".into(),
            family_name: "sn".into(),
            email: "mail".into(),
            employee_number: "employeeNumber".into(),
            groups: "memberOf".into(),
            user_filter: filter.into(),
        };
        match self {
            Self::OpenLdap => common("uid", "entryUUID", StableId::Text, "(objectClass=inetOrgPerson)"),
            Self::ActiveDirectory => common("sAMAccountName", "objectGUID", StableId::AdGuid, "(objectClass=user)"),
        }
    }
}

/// How to find the person's entry.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Search under `base_dn` as the service account, then bind as the entry found.
    Search { bind_dn: String, bind_password: String },
    /// Bind directly as `template` with `{login}` replaced (DN-escaped), then read the entry.
    Template(String),
}

/// One directory, resolved from the configuration by `server.rs`.
#[derive(Debug, Clone)]
pub struct DirectorySettings {
    pub name: String,
    pub urls: Vec<String>,
    pub starttls: bool,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub lookup: Lookup,
    pub base_dn: String,
    pub attributes: AttributeMap,
    /// Usernames ending with one of these go to this directory (case-insensitive).
    pub username_suffixes: Vec<String>,
    /// Remove the matched suffix before looking the person up.
    pub strip_suffix: bool,
    /// If not empty, the person must be in one of these groups (DNs, case-insensitive).
    pub required_groups: Vec<String>,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
}

impl DirectorySettings {
    pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Option<Arc<rustls::ClientConfig>>, DirectoryError> {
        conn::tls_config(ca_file)
    }

    fn requested_attributes(&self) -> Vec<String> {
        let m = &self.attributes;
        let mut v: Vec<String> = [
            &m.login,
            &m.id,
            &m.display_name,
            &m.given_name,
            &m.family_name,
            &m.email,
            &m.employee_number,
            &m.groups,
        ]
        .into_iter()
        .cloned()
        .collect();
        v.push("cn".into());
        v.extend(entry::STATE_ATTRIBUTES.iter().map(|s| s.to_string()));
        v
    }

    fn filter(&self, login: &str) -> String {
        // The typed value is escaped: `*`, `(`, `)`, `\` and NUL cannot change the filter.
        format!(
            "(&{}({}={}))",
            self.attributes.user_filter,
            self.attributes.login,
            ldap_escape(login)
        )
    }
}

/// One directory: the shared search connection and the checks.
pub struct Directory {
    pub settings: DirectorySettings,
    search_conn: Mutex<Option<Ldap>>,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
}

/// What was found for a login, before the password is checked.
struct Found {
    dn: String,
    attrs: Attributes,
}

impl Directory {
    pub fn new(settings: DirectorySettings, storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            search_conn: Mutex::new(None),
            storage,
            clock,
        }
    }

    /// The login this directory would look up for a typed username, if it handles it at all.
    pub fn route(&self, username: &str) -> Option<String> {
        let s = &self.settings;
        if s.username_suffixes.is_empty() {
            return Some(username.to_owned());
        }
        let low = username.to_lowercase();
        let suffix = s.username_suffixes.iter().find(|x| low.ends_with(&x.to_lowercase()))?;
        Some(if s.strip_suffix {
            username[..username.len() - suffix.len()].to_owned()
        } else {
            username.to_owned()
        })
    }

    /// The pooled, service-bound search connection (opened on first use or after a failure).
    async fn search_connection(&self) -> Result<Ldap, DirectoryError> {
        let Lookup::Search { bind_dn, bind_password } = &self.settings.lookup else {
            return Err(DirectoryError::Config("no service account configured".into()));
        };
        let mut slot = self.search_conn.lock().await;
        if let Some(l) = slot.as_mut()
            && !l.is_closed()
        {
            return Ok(l.clone());
        }
        let (mut ldap, _) = conn::open_any(&self.settings).await?;
        if !conn::bind(&mut ldap, self.settings.operation_timeout, bind_dn, bind_password).await? {
            return Err(DirectoryError::Unavailable("the service account's bind was refused".into()));
        }
        *slot = Some(ldap.clone());
        Ok(ldap)
    }

    async fn drop_search_connection(&self) {
        self.search_conn.lock().await.take();
    }

    async fn search(&self, ldap: &mut Ldap, base: &str, scope: Scope, filter: &str) -> Result<Vec<Found>, DirectoryError> {
        let attrs = self.settings.requested_attributes();
        let (entries, _) = conn::timed(self.settings.operation_timeout, "search", async {
            // At most two entries: more than one match is an ambiguity, not a login.
            ldap.with_search_options(ldap3::SearchOptions::new().sizelimit(2));
            ldap.search(base, scope, filter, attrs).await?.non_error()
        })
        .await?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let e = SearchEntry::construct(e);
                Found {
                    dn: e.dn,
                    attrs: Attributes::new(e.attrs, e.bin_attrs),
                }
            })
            .collect())
    }

    /// Finds the entry of `login` with the service account; retries once on a fresh
    /// connection (next URL) if the pooled one broke.
    async fn find(&self, login: &str) -> Result<Option<Found>, DirectoryError> {
        let filter = self.settings.filter(login);
        let mut last = None;
        for _ in 0..2 {
            let mut ldap = self.search_connection().await?;
            match self.search(&mut ldap, &self.settings.base_dn, Scope::Subtree, &filter).await {
                Ok(mut v) if v.len() == 1 => return Ok(v.pop()),
                Ok(v) => {
                    if v.len() > 1 {
                        tracing::warn!(directory = %self.settings.name, "several entries match one login; refusing it");
                    }
                    return Ok(None);
                }
                Err(e) => {
                    self.drop_search_connection().await;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| DirectoryError::Unavailable("search failed".into())))
    }

    /// Checks `login`/`password` against this directory.
    #[tracing::instrument(name = "directory.authenticate", skip_all, fields(directory = %self.settings.name))]
    pub async fn authenticate(&self, login: &str, password: &str) -> Result<PasswordVerdict, DirectoryError> {
        if password.is_empty() || normalise_username(login).is_none() {
            return Ok(PasswordVerdict::Rejected);
        }
        let timeout = self.settings.operation_timeout;
        let found = match &self.settings.lookup {
            Lookup::Search { .. } => {
                let Some(found) = self.find(login).await? else {
                    return Ok(PasswordVerdict::Rejected);
                };
                // The user's bind: its own connection, closed right after.
                let (mut user, _) = conn::open_any(&self.settings).await?;
                let ok = conn::bind(&mut user, timeout, &found.dn, password).await;
                let _ = user.unbind().await;
                if !ok? {
                    return Ok(PasswordVerdict::Rejected);
                }
                found
            }
            Lookup::Template(t) => {
                let dn = t.replace("{login}", &dn_escape(login));
                let (mut user, _) = conn::open_any(&self.settings).await?;
                if !conn::bind(&mut user, timeout, &dn, password).await? {
                    let _ = user.unbind().await;
                    return Ok(PasswordVerdict::Rejected);
                }
                let found = self.search(&mut user, &dn, Scope::Base, "(objectClass=*)").await;
                let _ = user.unbind().await;
                match found?.pop() {
                    Some(f) => f,
                    None => return Ok(PasswordVerdict::Rejected),
                }
            }
        };
        // Only now, with the password proven, may the account's state be told.
        if let Some(r) = entry::refusal(&found.attrs, self.clock.now()) {
            return Ok(PasswordVerdict::Refused(r));
        }
        let profile = entry::profile(&found.attrs, &self.settings.attributes, login)?;
        if !self.in_required_group(&profile) {
            return Ok(PasswordVerdict::Refused(AccountRefusal::NotAllowed));
        }
        let account = self.account_for(&profile).await.map_err(|e| match e {
            StoreError::Unavailable(m) => DirectoryError::Unavailable(m),
            other => DirectoryError::Config(other.to_string()),
        })?;
        Ok(PasswordVerdict::Accepted(account))
    }

    fn in_required_group(&self, p: &Profile) -> bool {
        let req = &self.settings.required_groups;
        req.is_empty() || p.groups.iter().any(|g| req.iter().any(|r| r.eq_ignore_ascii_case(g)))
    }

    async fn account_for(&self, p: &Profile) -> Result<Account, StoreError> {
        let username = normalise_username(&p.login).unwrap_or_else(|| p.login.to_lowercase());
        let candidate = Account {
            id: uuid::Uuid::new_v4(),
            username,
            display_name: p.display_name.clone(),
            given_name: p.given_name.clone(),
            family_name: p.family_name.clone(),
            email: p.email.clone(),
            password_hash: None,
            disabled: false,
        };
        let directory_id = format!("{}:{}", self.settings.name, p.stable_id);
        self.storage.upsert_directory_account(&directory_id, &candidate).await
    }

    /// For `relais ldap test`: every step, explained, for the administrator.
    pub async fn explain(&self, login: &str, password: Option<&str>) -> Vec<String> {
        let s = &self.settings;
        let mut out = vec![format!("directory {:?}: {} server(s)", s.name, s.urls.len())];
        for url in &s.urls {
            let tls = if url.starts_with("ldaps://") {
                "TLS (ldaps)"
            } else if s.starttls {
                "StartTLS"
            } else {
                "NO TLS: passwords would travel in clear"
            };
            match conn::open(s, url).await {
                Ok(mut l) => {
                    out.push(format!(
                        "  connect {url}: ok, {tls}, certificate verified against {}",
                        if s.tls.is_some() { "ca_file" } else { "the system roots" }
                    ));
                    let _ = l.unbind().await;
                }
                Err(e) => out.push(format!("  connect {url}: FAILED: {e}")),
            }
        }
        match &s.lookup {
            Lookup::Template(t) => out.push(format!("  lookup: bind-DN template {t} (no service account)")),
            Lookup::Search { bind_dn, .. } => {
                match self.search_connection().await {
                    Ok(_) => out.push(format!("  service bind as {bind_dn}: ok")),
                    Err(e) => {
                        out.push(format!("  service bind as {bind_dn}: FAILED: {e}"));
                        return out;
                    }
                }
                out.push(format!("  search base {} filter {}", s.base_dn, s.filter(login)));
                match self.find(login).await {
                    Ok(Some(f)) => {
                        out.push(format!("  found: {}", f.dn));
                        match entry::profile(&f.attrs, &s.attributes, login) {
                            Ok(p) => {
                                out.push(format!("  stable id ({}): {}", s.attributes.id, p.stable_id));
                                out.push(format!("  login ({}): {}", s.attributes.login, p.login));
                                out.push(format!("  display name: {}", p.display_name));
                                out.push(format!("  given / family name: {:?} / {:?}", p.given_name, p.family_name));
                                out.push(format!("  email: {:?}, employee number: {:?}", p.email, p.employee_number));
                                out.push(format!(
                                    "  groups ({}): {}",
                                    s.attributes.groups,
                                    if p.groups.is_empty() { "none".into() } else { p.groups.join("; ") }
                                ));
                                if !self.in_required_group(&p) {
                                    out.push("  NOT in any of required_groups: would be refused".into());
                                }
                            }
                            Err(e) => out.push(format!("  attributes: PROBLEM: {e}")),
                        }
                        match entry::refusal(&f.attrs, self.clock.now()) {
                            Some(r) => out.push(format!("  account state: would be refused ({})", r.as_str())),
                            None => out.push("  account state: usable".into()),
                        }
                    }
                    Ok(None) => {
                        out.push("  found: nothing (or more than one entry): check base_dn, user_filter and attributes.login".into())
                    }
                    Err(e) => out.push(format!("  search: FAILED: {e}")),
                }
            }
        }
        if let Some(pw) = password {
            match self.authenticate(login, pw).await {
                Ok(PasswordVerdict::Accepted(a)) => out.push(format!("  password bind: ok; Relais account {} (sub)", a.id)),
                Ok(PasswordVerdict::Rejected) => out.push("  password bind: refused (wrong password, unknown or locked user)".into()),
                Ok(PasswordVerdict::Refused(r)) => out.push(format!("  password bind: ok, but the login is refused: {}", r.as_str())),
                Err(e) => out.push(format!("  password bind: FAILED: {e}")),
            }
        }
        out
    }
}
