//! The first factor on a directory (OpenLDAP, Active Directory): find the person with the
//! service account, then bind as them with the typed password. The password is never stored.
//!
//! - Searches use a pool of connections bound as the service account; the people's binds use
//!   a separate pool (or, with `bind_pool_size = 0`, a fresh connection each), never the
//!   service account's connections (pool.rs).
//! - Groups (direct, nested within bounds) become Relais roles (groups.rs).
//! - The directory entry's stable id (entryUUID, objectGUID) names the Relais account, so `sub`
//!   survives renames.
mod conn;
mod entry;
mod groups;
mod login;
mod pool;

pub use entry::{Attributes, EntryError, Profile};
pub use groups::{Direct as GroupDirect, GroupSettings, Nested as GroupNesting};
pub use login::DirectoryLogin;

use crate::domain::account::{Account, normalise_username};
use crate::domain::ports::{AccountRefusal, Clock, PasswordVerdict, Standing, Storage, StoreError};
use ldap3::{Ldap, Scope, SearchEntry, dn_escape, ldap_escape};
use pool::{Pool, PoolKind};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
    /// Holds the RPPS number or idNat, if the directory has one (no preset sets it).
    pub national_id: Option<String>,
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
            national_id: None,
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
    /// Role → groups granting it (DNs, or CNs when without `=`).
    pub roles: BTreeMap<String, Vec<String>>,
    /// If not empty, the person must hold one of these roles.
    pub required_roles: Vec<String>,
    pub groups: GroupSettings,
    pub search_pool_size: usize,
    /// 0: a fresh connection for each user bind.
    pub bind_pool_size: usize,
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
        v.extend(m.national_id.clone());
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

/// One directory: its connection pools and the checks.
pub struct Directory {
    pub settings: DirectorySettings,
    /// Service-account connections (searches); `None` with a bind-DN template.
    search_pool: Option<Pool>,
    /// Connections for the people's own binds.
    bind_pool: Pool,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
}

/// Connections each pool of a directory opened since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub search_connections_opened: u64,
    pub bind_connections_opened: u64,
}

/// A person's national-id attribute, read for the Annuaire matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryNationalId {
    pub account: Account,
    /// The raw attribute value (RPPS number or idNat); parsed by the caller.
    pub value: String,
    pub attribute: String,
}

/// What was found for a login, before the password is checked.
struct Found {
    dn: String,
    attrs: Attributes,
}

impl Directory {
    pub fn new(settings: DirectorySettings, storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Self {
        let search_pool = match &settings.lookup {
            Lookup::Search { bind_dn, bind_password } => Some(Pool::new(
                PoolKind::Search {
                    bind_dn: bind_dn.clone(),
                    bind_password: bind_password.clone(),
                },
                settings.search_pool_size.max(1),
            )),
            Lookup::Template(_) => None,
        };
        let bind_pool = Pool::new(PoolKind::Bind, settings.bind_pool_size);
        Self {
            settings,
            search_pool,
            bind_pool,
            storage,
            clock,
        }
    }

    /// Health check for `/readyz` and the `relais_dependency_up` metric: a pooled connection
    /// (opened with failover if none is idle) reads the root DSE within the operation timeout.
    pub async fn ping(&self) -> Result<(), DirectoryError> {
        let pool = self.search_pool.as_ref().unwrap_or(&self.bind_pool);
        let mut lease = pool.get(&self.settings).await?;
        let read = lease
            .ldap
            .with_timeout(self.settings.operation_timeout)
            .search("", Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .and_then(|r| r.success());
        match read {
            Ok(_) => Ok(()),
            Err(e) => {
                lease.discard();
                Err(DirectoryError::Unavailable(format!("root DSE: {e}")))
            }
        }
    }

    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            search_connections_opened: self.search_pool.as_ref().map_or(0, Pool::opened),
            bind_connections_opened: self.bind_pool.opened(),
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

    /// A pooled connection bound as the service account.
    async fn search_connection(&self) -> Result<pool::Lease<'_>, DirectoryError> {
        match &self.search_pool {
            Some(p) => p.get(&self.settings).await,
            None => Err(DirectoryError::Config("no service account configured".into())),
        }
    }

    async fn search(&self, ldap: &mut Ldap, base: &str, scope: Scope, filter: &str) -> Result<Vec<Found>, DirectoryError> {
        let attrs = self.settings.requested_attributes();
        let (entries, res) = conn::timed(self.settings.operation_timeout, "search", async {
            // At most two entries: more than one match is an ambiguity, not a login.
            ldap.with_search_options(ldap3::SearchOptions::new().sizelimit(2));
            let r = ldap.search(base, scope, filter, attrs).await?;
            Ok::<_, ldap3::LdapError>((r.0, r.1))
        })
        .await?;
        // 4 = sizeLimitExceeded: more than two matches, an ambiguity like two.
        if res.rc != 0 && res.rc != 4 && res.rc != 10 {
            return Err(DirectoryError::Unavailable(format!("search answered {}: {}", res.rc, res.text)));
        }
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
            let mut lease = self.search_connection().await?;
            let r = self.search(&mut lease.ldap, &self.settings.base_dn, Scope::Subtree, &filter).await;
            match r {
                Ok(mut v) if v.len() == 1 => return Ok(v.pop()),
                Ok(v) => {
                    if v.len() > 1 {
                        tracing::warn!(directory = %self.settings.name, "several entries match one login; refusing it");
                    }
                    return Ok(None);
                }
                Err(e) => {
                    // The connection (and probably its idle siblings) is dead: reconnect, with
                    // failover, on the retry.
                    lease.discard();
                    if let Some(p) = &self.search_pool {
                        p.clear();
                    }
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
                    // Nobody by that name: a bind all the same, as a DN no entry has, so that
                    // the answer takes as long as a wrong password's and its timing does not
                    // tell who has an account. Its outcome changes nothing.
                    self.decoy_bind(password).await;
                    return Ok(PasswordVerdict::Rejected);
                };
                // The user's bind: a bind-pool connection, never a service-account one.
                if !self.user_bind(&found.dn, password).await? {
                    return Ok(PasswordVerdict::Rejected);
                }
                found
            }
            Lookup::Template(t) => {
                let dn = t.replace("{login}", &dn_escape(login));
                let mut lease = self.bind_pool.get(&self.settings).await?;
                let r = conn::bind(&mut lease.ldap, timeout, &dn, password).await;
                match r {
                    Ok(true) => {}
                    Ok(false) => return Ok(PasswordVerdict::Rejected),
                    Err(e) => {
                        lease.discard();
                        return Err(e);
                    }
                }
                let r = self.search(&mut lease.ldap, &dn, Scope::Base, "(objectClass=*)").await;
                let found = match r {
                    Ok(f) => f,
                    Err(e) => {
                        lease.discard();
                        return Err(e);
                    }
                };
                match found.into_iter().next() {
                    Some(f) => f,
                    None => return Ok(PasswordVerdict::Rejected),
                }
            }
        };
        // Only now, with the password proven, may the account's state be told.
        if let Some(r) = entry::refusal(&found.attrs, self.clock.now()) {
            return Ok(PasswordVerdict::Refused(r));
        }
        let mut profile = entry::profile(&found.attrs, &self.settings.attributes, login)?;
        profile.groups = self.groups_of(&found.dn, &profile).await?;
        let roles = groups::roles_for(&profile.groups, &self.settings.roles);
        if !self.allowed(&profile, &roles) {
            return Ok(PasswordVerdict::Refused(AccountRefusal::NotAllowed));
        }
        let account = self.account_for(&profile).await.map_err(|e| match e {
            StoreError::Unavailable(m) => DirectoryError::Unavailable(m),
            other => DirectoryError::Config(other.to_string()),
        })?;
        Ok(PasswordVerdict::Accepted(account, roles))
    }

    /// A person's standing now, read with the service account (no password): `None` when this
    /// directory no longer holds the entry `stable_id` under `login` (gone, or the name now
    /// belongs to someone else). With a bind-DN template there is no service account to read
    /// with: `NotManaged`.
    pub async fn standing(&self, login: &str, stable_id: &str) -> Result<Option<Standing>, DirectoryError> {
        if !matches!(self.settings.lookup, Lookup::Search { .. }) {
            return Ok(Some(Standing::NotManaged));
        }
        let Some(found) = self.find(login).await? else {
            return Ok(None);
        };
        let mut profile = entry::profile(&found.attrs, &self.settings.attributes, login)?;
        if profile.stable_id != stable_id {
            return Ok(None);
        }
        if let Some(r) = entry::refusal(&found.attrs, self.clock.now()) {
            return Ok(Some(Standing::Refused(r)));
        }
        profile.groups = self.groups_of(&found.dn, &profile).await?;
        let roles = groups::roles_for(&profile.groups, &self.settings.roles);
        if !self.allowed(&profile, &roles) {
            return Ok(Some(Standing::Refused(AccountRefusal::NotAllowed)));
        }
        Ok(Some(Standing::Active(roles)))
    }

    /// A bind as a DN no entry has, for someone the search did not find. Whatever the server
    /// answers (invalid credentials, no such object, a referral...), only this connection is
    /// dropped on an error: an unknown name must not empty the pool of everyone's binds.
    async fn decoy_bind(&self, password: &str) {
        let decoy = format!("cn=relais-no-such-person,{}", self.settings.base_dn);
        let Ok(mut lease) = self.bind_pool.get(&self.settings).await else {
            return;
        };
        if conn::bind(&mut lease.ldap, self.settings.operation_timeout, &decoy, password)
            .await
            .is_err()
        {
            lease.discard();
        }
    }

    /// A person's own bind on a bind-pool connection. A connection whose bind failed for
    /// another reason than the credentials is not reused.
    async fn user_bind(&self, dn: &str, password: &str) -> Result<bool, DirectoryError> {
        let mut first = true;
        loop {
            let mut lease = self.bind_pool.get(&self.settings).await?;
            let r = conn::bind(&mut lease.ldap, self.settings.operation_timeout, dn, password).await;
            match r {
                Ok(ok) => return Ok(ok),
                Err(e) => {
                    // A connection the server had already closed (idle timeout, restart) never
                    // carried the bind: retry once on a fresh one. A timeout might have reached
                    // the server: not retried, so a password is never tried twice.
                    let closed = lease.ldap.is_closed();
                    lease.discard();
                    self.bind_pool.clear();
                    if !(closed && first) {
                        return Err(e);
                    }
                    first = false;
                }
            }
        }
    }

    /// The person's groups: the entry's own list, or searched, nested within bounds.
    async fn groups_of(&self, dn: &str, p: &Profile) -> Result<Vec<String>, DirectoryError> {
        let g = &self.settings.groups;
        if !g.searches() {
            return Ok(p.groups.clone());
        }
        let mut lease = self.search_connection().await?;
        let r = groups::resolve(g, &mut lease.ldap, self.settings.operation_timeout, dn, &p.login, &p.groups).await;
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                lease.discard();
                Err(e)
            }
        }
    }

    /// `required_groups` and `required_roles` (either list, when set, must be met).
    fn allowed(&self, p: &Profile, roles: &[String]) -> bool {
        let req = &self.settings.required_groups;
        let in_group = req.is_empty() || p.groups.iter().any(|g| req.iter().any(|r| groups::dn_key(r) == groups::dn_key(g)));
        let req_roles = &self.settings.required_roles;
        let has_role = req_roles.is_empty() || roles.iter().any(|r| req_roles.contains(r));
        in_group && has_role
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
            directory_id: None,
        };
        let directory_id = format!("{}:{}", self.settings.name, p.stable_id);
        self.storage.upsert_directory_account(&directory_id, &candidate).await
    }

    /// Everyone under `base_dn` whose entry holds the national-id attribute (paged search as the
    /// service account), with their Relais account (created as a first login would). Empty
    /// when no `attributes.national_id` is configured.
    pub async fn national_ids(&self) -> Result<Vec<DirectoryNationalId>, DirectoryError> {
        use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
        let s = &self.settings;
        let Some(attr) = s.attributes.national_id.clone() else {
            return Ok(Vec::new());
        };
        let filter = format!("(&{}({attr}=*))", s.attributes.user_filter);
        let mut lease = self.search_connection().await?;
        let mut found = Vec::new();
        let res = conn::timed(s.operation_timeout * 20, "national-id search", async {
            let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(500))];
            let mut search = lease
                .ldap
                .streaming_search_with(adapters, &s.base_dn, Scope::Subtree, &filter, s.requested_attributes())
                .await?;
            while let Some(e) = search.next().await? {
                let e = SearchEntry::construct(e);
                found.push(Attributes::new(e.attrs, e.bin_attrs));
            }
            search.finish().await.success()
        })
        .await;
        if let Err(e) = res {
            lease.discard();
            return Err(e);
        }
        drop(lease);
        let mut out = Vec::with_capacity(found.len());
        for a in found {
            let Some(value) = a.first(&attr).map(str::to_owned) else { continue };
            let login = a.first(&s.attributes.login).unwrap_or_default().to_owned();
            let profile = match entry::profile(&a, &s.attributes, &login) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(directory = %s.name, login = %login, error = %e, "entry skipped");
                    continue;
                }
            };
            let account = self
                .account_for(&profile)
                .await
                .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
            out.push(DirectoryNationalId {
                account,
                value,
                attribute: attr.clone(),
            });
        }
        Ok(out)
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
                    Ok(_lease) => out.push(format!("  service bind as {bind_dn}: ok")),
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
                            Ok(mut p) => {
                                match self.groups_of(&f.dn, &p).await {
                                    Ok(g) => p.groups = g,
                                    Err(e) => out.push(format!("  group lookup: FAILED: {e}")),
                                }
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
                                let roles = groups::roles_for(&p.groups, &s.roles);
                                out.push(format!(
                                    "  roles: {}",
                                    if roles.is_empty() { "none".into() } else { roles.join(", ") }
                                ));
                                if !self.allowed(&p, &roles) {
                                    out.push("  NOT in required_groups / required_roles: would be refused".into());
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
                Ok(PasswordVerdict::Accepted(a, _)) => out.push(format!("  password bind: ok; Relais account {} (sub)", a.id)),
                Ok(PasswordVerdict::Rejected) => out.push("  password bind: refused (wrong password, unknown or locked user)".into()),
                Ok(PasswordVerdict::Refused(r)) => out.push(format!("  password bind: ok, but the login is refused: {}", r.as_str())),
                Err(e) => out.push(format!("  password bind: FAILED: {e}")),
            }
        }
        out
    }
}
