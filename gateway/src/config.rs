//! The one typed configuration: a TOML file, then `RELAIS_*` environment overrides
//! (`RELAIS_SESSIONS__BACKEND=redis` sets `[sessions] backend`). Unknown keys are errors that
//! name the key. Secrets are wrapped so they never print.
use crate::domain::account::PasswordPolicy;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// A secret value: deserialises from a string, prints as `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Public base URL of Relais as browsers and clients see it; the `iss` of every token.
    pub issuer: String,
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Development mode: cookies without `Secure` so plain-HTTP localhost works. Never in production.
    #[serde(default)]
    pub dev_mode: bool,
    /// Reverse proxies whose `X-Forwarded-For` is believed (addresses or CIDR ranges). The
    /// audit trail then records the client's address instead of the proxy's.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::protocol::IpRange>,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub sessions: SessionsConfig,
    #[serde(default)]
    pub tokens: TokensConfig,
    pub keys: KeysConfig,
    #[serde(default)]
    pub passwords: PasswordPolicy,
    #[serde(default)]
    pub assurance: AssuranceConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub psc: PscConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Relais as a client of PSC, to verify national identities (off when absent).
    pub psc_client: Option<PscClientConfig>,
    #[serde(default)]
    pub audit: AuditConfig,
    /// The login form: local-account fallback and brute-force throttling.
    #[serde(default)]
    pub login: LoginConfig,
    /// Directories (LDAP, Active Directory) checked for passwords, in order. None: local accounts.
    #[serde(default)]
    pub directories: Vec<DirectoryConfig>,
    #[serde(default)]
    pub fido2: Fido2Config,
    /// CPS/CPx smart cards through a TLS client certificate (off when absent; docs/factors.md).
    pub cards: Option<CardsConfig>,
    /// Prometheus `/metrics` on a listener of its own (off by default; docs/operations.md).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// SIGTERM: readiness goes false, then in-flight requests drain.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// The admin web UI under `/admin`.
    #[serde(default)]
    pub admin: AdminConfig,
}

/// `[cards]`: where card logins are received and which IGC-Santé chain is trusted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardsConfig {
    /// Relais' own TLS listener for card logins, which asks for an optional client certificate.
    /// Absent when a reverse proxy terminates TLS and passes the certificate in `proxy_header`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Server certificate chain and private key (PEM) of the card listener.
    #[serde(default)]
    pub server_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub server_key: Option<std::path::PathBuf>,
    /// Base URL browsers use for card logins (e.g. `https://carte.sso.chu.example`). Default:
    /// the issuer's host on the port of `listen`, or the issuer itself behind a proxy.
    #[serde(default)]
    pub public_url: Option<String>,
    /// PEM files of the trusted roots (`AC RACINE IGC-SANTE ELEMENTAIRE`, or the TEST root in
    /// the test chain: production and test chains are different files).
    pub trust_roots: Vec<std::path::PathBuf>,
    /// PEM files of the intermediate CAs (`AC IGC-SANTE ELEMENTAIRE PERSONNES`…): browsers
    /// send the card certificate alone.
    #[serde(default)]
    pub intermediates: Vec<std::path::PathBuf>,
    /// CRL files (DER or PEM), copies of the CRLs named in the certificates' CDP, re-read
    /// every `crl_refresh_secs`.
    #[serde(default)]
    pub crl_files: Vec<std::path::PathBuf>,
    #[serde(default = "defaults::crl_refresh")]
    pub crl_refresh_secs: u64,
    /// A card whose issuer has no CRL loaded is refused (revocation status unknown).
    #[serde(default = "defaults::yes")]
    pub require_crl: bool,
    /// Accept cards while their issuer's CRL is past its nextUpdate (default: refuse, fail
    /// closed).
    #[serde(default)]
    pub accept_stale_crl: bool,
    /// The card alone logs in (it is two factors: the card and its PIN). Otherwise the card
    /// only follows a password.
    #[serde(default)]
    pub card_alone: bool,
    /// A card used by a person without a national identity links the card's idNat to that
    /// person (the card is proof of the RPPS).
    #[serde(default)]
    pub establish_mapping: bool,
    /// Reverse proxies (addresses or CIDR ranges) allowed to pass the client certificate in
    /// `proxy_header`; from anyone else the header is ignored and audited.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::protocol::IpRange>,
    /// The header holding the URL-encoded PEM certificate (nginx `$ssl_client_escaped_cert`).
    #[serde(default = "defaults::card_header")]
    pub proxy_header: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the metrics listener, which serves `/metrics` only (Prometheus text format).
    /// Keep it off the public network: bind it to loopback or an admin interface. Off when absent.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// After SIGTERM, `/readyz` answers 503 this long while requests are still served, so load
    /// balancers stop sending new ones before the listener closes. Set it above the balancer's
    /// health-check interval times its fall count.
    pub readiness_grace_ms: u64,
    /// Then, in-flight requests get this long to finish.
    pub drain_timeout_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            readiness_grace_ms: 5000,
            drain_timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// An admin session ends after this long without a request.
    pub session_idle_secs: i64,
    /// ...and at the latest this long after the admin logged in.
    pub session_max_secs: i64,
    /// A Relais role of `[directories.roles]` whose holders get the admin UI's `admin` role
    /// at admin login (besides `relais user role`). The security key is still required.
    pub directory_admin_role: Option<String>,
    /// Likewise for the read-only `auditor` role.
    pub directory_auditor_role: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            session_idle_secs: 900,
            session_max_secs: 4 * 3600,
            directory_admin_role: None,
            directory_auditor_role: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PscClientConfig {
    /// PSC's issuer (sandbox: `https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet`).
    pub issuer: String,
    /// PSC publishes its discovery document at a non-standard path (psc.md §3).
    #[serde(default = "defaults::psc_discovery")]
    pub discovery_path: String,
    pub client_id: String,
    pub client_secret: Secret,
    #[serde(default = "defaults::psc_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "defaults::psc_acr")]
    pub acr_values: Option<String>,
    /// PEM bundle of the CAs to verify PSC's servers with (default: the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// TLS client certificate (PEM chain) and key for PSC's back channel, when PSC requires
    /// mTLS ("Espace de Confiance", EXI PSC 24). Both or neither.
    pub client_cert_file: Option<std::path::PathBuf>,
    pub client_key_file: Option<std::path::PathBuf>,
}

/// FIDO2 security keys (docs/factors.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fido2Config {
    /// The attestation trust file (allowed attestation CAs and AAGUIDs). Without it, security
    /// keys are off and logins are password only.
    pub attestation_policy: Option<std::path::PathBuf>,
    /// Lifetime of an enrolment code issued by `relais fido2 enrolment-code`.
    pub enrolment_code_ttl_secs: i64,
    /// The name browsers show when registering a key.
    pub rp_name: String,
}

impl Default for Fido2Config {
    fn default() -> Self {
        Self {
            attestation_policy: None,
            enrolment_code_ttl_secs: 7 * 24 * 3600,
            rp_name: "Relais".into(),
        }
    }
}

/// The Pro Santé Connect profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PscConfig {
    /// The establishment's tenant id (`tid` claim), as declared to ANS.
    pub tenant_id: String,
    /// Version of the terms of use (CGU) people accept before being relayed to PSC. Raising it
    /// asks everyone again.
    pub terms_version: String,
    /// Link to the full text of the terms.
    pub terms_url: Option<String>,
    /// Also release the `roles` claim (directory groups) to PSC clients. Off: roles are for
    /// local applications.
    pub release_roles: bool,
}

impl Default for PscConfig {
    fn default() -> Self {
        Self {
            tenant_id: "unset".into(),
            terms_version: "1".into(),
            terms_url: None,
            release_roles: false,
        }
    }
}

/// National identity mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The establishment's FINESS numbers (site or legal entity): Annuaire imports keep the
    /// professionals active there.
    pub finess: Vec<String>,
    /// Annuaire imports first match people by the identifier their directory entry holds
    /// (`[directories] attributes.national_id`), before matching by name.
    pub directory_match: bool,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            finess: Vec::new(),
            directory_match: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Sign the chain head every this many records. Records after the newest checkpoint are
    /// protected by the hash chain only.
    pub checkpoint_every: u64,
    /// How long records stay online: the default cut-off of `relais audit purge`.
    pub retention_days: u32,
    /// SIEM destinations (`[[audit.forward]]`): RFC 5424 syslog over TCP or TLS (docs/audit.md).
    pub forward: Vec<AuditForwardConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            retention_days: 365,
            forward: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ForwardTransport {
    /// Plain TCP: records travel in clear. Only on a network that protects them otherwise.
    Tcp,
    Tls,
}

/// One `[[audit.forward]]` SIEM destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditForwardConfig {
    /// Names the destination's durable cursor: never change it, or forwarding starts over.
    pub name: String,
    /// `host:port` of the syslog collector.
    pub address: String,
    pub transport: ForwardTransport,
    /// TLS: PEM bundle of the CA(s) that sign the collector's certificate (default: system roots).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// TLS: name checked in the collector's certificate (default: the host of `address`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// TLS client certificate chain and key (PEM), when the collector asks for one.
    #[serde(default)]
    pub client_cert_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<std::path::PathBuf>,
    /// Syslog facility number (10 = authpriv, 13 = log audit).
    #[serde(default = "defaults::forward_facility")]
    pub facility: u8,
    /// HOSTNAME field of each message (default: the machine's host name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Records per write, and per cursor advance.
    #[serde(default = "defaults::forward_batch")]
    pub batch_size: u64,
    /// How often new records are looked for when the forwarder has caught up.
    #[serde(default = "defaults::forward_poll")]
    pub poll_interval_ms: u64,
    #[serde(default = "defaults::forward_connect")]
    pub connect_timeout_ms: u64,
    /// How long the collector's TCP may take to acknowledge a batch before it is resent on a
    /// new connection.
    #[serde(default = "defaults::forward_ack")]
    pub ack_timeout_ms: u64,
    /// Longest wait between reconnection attempts (the wait doubles from 250 ms).
    #[serde(default = "defaults::forward_retry")]
    pub retry_max_ms: u64,
    /// Lease that lets one replica forward to this destination; another takes over when it
    /// lapses.
    #[serde(default = "defaults::forward_lease")]
    pub lease_secs: u64,
}

impl AuditForwardConfig {
    fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err("name must be non-empty ASCII letters, digits, '-', '_' or '.'".into());
        }
        match self.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return Err(format!("address {:?} must be host:port", self.address)),
        }
        let tls_only =
            self.ca_file.is_some() || self.server_name.is_some() || self.client_cert_file.is_some() || self.client_key_file.is_some();
        if self.transport == ForwardTransport::Tcp && tls_only {
            return Err("ca_file, server_name and client certificates need transport = \"tls\"".into());
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err("set both client_cert_file and client_key_file, or neither".into());
        }
        if self.facility > 23 {
            return Err("facility must be 0..=23".into());
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err("batch_size must be 1..=10000".into());
        }
        if self.poll_interval_ms == 0 || self.connect_timeout_ms == 0 || self.ack_timeout_ms == 0 || self.retry_max_ms == 0 {
            return Err("intervals and timeouts must be positive".into());
        }
        if self.lease_secs < 2 {
            return Err("lease_secs must be at least 2".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// With directories configured, also try local accounts when no directory accepted the
    /// password (break-glass accounts, also during a directory outage).
    pub local_fallback: bool,
    /// Failures on one username before it is locked out (keep it below the directory's own
    /// lockout threshold).
    pub max_failures_per_account: u32,
    /// Failures from one source address before it is locked out.
    pub max_failures_per_ip: u32,
    /// A failure is remembered this long after the last one.
    pub failure_window_secs: u64,
    /// First lockout; doubled at each further failure.
    pub lockout_secs: u64,
    pub max_lockout_secs: u64,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            local_fallback: false,
            max_failures_per_account: 5,
            max_failures_per_ip: 50,
            failure_window_secs: 900,
            lockout_secs: 60,
            max_lockout_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryPreset {
    Openldap,
    ActiveDirectory,
}

/// One `[[directories]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Short name, part of each account's stable directory id: never change it once in use.
    pub name: String,
    pub preset: DirectoryPreset,
    /// `ldaps://host:636` or `ldap://host:389`, tried in order.
    pub urls: Vec<String>,
    /// Upgrade `ldap://` URLs with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// Allows `ldap://` without StartTLS (passwords in clear): laboratory use only.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// PEM bundle of the CA(s) that sign the directory's certificate (default: system roots).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Service account for searches (search-then-bind).
    #[serde(default)]
    pub bind_dn: Option<String>,
    #[serde(default)]
    pub bind_password: Option<Secret>,
    /// Instead of a service account: bind as this DN, `{login}` replaced (DN-escaped).
    #[serde(default)]
    pub bind_dn_template: Option<String>,
    pub base_dn: String,
    /// Overrides the preset's filter ANDed with the login match, e.g. `(objectClass=person)`.
    #[serde(default)]
    pub user_filter: Option<String>,
    #[serde(default)]
    pub attributes: DirectoryAttributes,
    /// Usernames ending with one of these go to this directory only.
    #[serde(default)]
    pub username_suffixes: Vec<String>,
    /// Remove the matched suffix before the lookup (`jdupont@chu.example` → `jdupont`).
    #[serde(default)]
    pub strip_suffix: bool,
    /// Group DNs; when set, only their members may log in.
    #[serde(default)]
    pub required_groups: Vec<String>,
    /// Relais roles granted by directory groups: `admin = ["cn=relais-admins,ou=groups,dc=x"]`.
    /// A value with `=` is a group DN, otherwise a group CN. Role names are free.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, Vec<String>>,
    /// When set, only people holding one of these roles may log in.
    #[serde(default)]
    pub required_roles: Vec<String>,
    /// How the person's groups are found (direct and nested).
    #[serde(default)]
    pub groups: DirectoryGroups,
    /// Connections kept open for searches, bound as the service account.
    #[serde(default = "defaults::ldap_search_pool")]
    pub search_pool_size: usize,
    /// Connections kept open for the people's own binds (never the service account's).
    #[serde(default = "defaults::ldap_bind_pool")]
    pub bind_pool_size: usize,
    #[serde(default = "defaults::ldap_connect")]
    pub connect_timeout_ms: u64,
    #[serde(default = "defaults::ldap_operation")]
    pub operation_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum GroupLookup {
    /// The person's own `memberOf` (attributes.groups): AD, OpenLDAP with the memberof overlay.
    #[default]
    MemberOf,
    /// A search for groups naming the person (`groups.filter`).
    Search,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum NestedGroups {
    /// Direct groups only.
    #[default]
    None,
    /// Active Directory's LDAP_MATCHING_RULE_IN_CHAIN (1.2.840.113556.1.4.1941): one search.
    InChain,
    /// Level by level with `groups.filter` (OpenLDAP and any server without the AD rule).
    Iterative,
}

/// `[directories.groups]`: where groups come from, and how far nesting is followed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryGroups {
    pub lookup: GroupLookup,
    /// Where groups are searched (default: the directory's base_dn).
    pub base_dn: Option<String>,
    /// Groups naming a member: `{dn}` is the member's DN, `{login}` the person's login (both
    /// escaped). `(memberUid={login})` suits posixGroup; nesting needs `{dn}`.
    pub filter: String,
    pub nested: NestedGroups,
    /// Nesting levels followed by the iterative search.
    pub max_depth: u32,
    /// At most this many groups per person; more are ignored (and logged).
    pub max_groups: u32,
}

impl Default for DirectoryGroups {
    fn default() -> Self {
        Self {
            lookup: GroupLookup::MemberOf,
            base_dn: None,
            filter: "(member={dn})".into(),
            nested: NestedGroups::None,
            max_depth: 5,
            max_groups: 500,
        }
    }
}

/// Overrides of the preset's attribute names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryAttributes {
    pub login: Option<String>,
    pub id: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub employee_number: Option<String>,
    pub groups: Option<String>,
    /// The attribute holding the person's RPPS number or idNat (none by default): used to
    /// match people with the Annuaire Santé (`[identity] match_rules`).
    pub national_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://relais.sqlite?mode=rwc` or `postgres://user@host/db`.
    pub url: Secret,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
    /// PostgreSQL schema to use (default: the server's search_path).
    pub schema: Option<String>,
    /// SQLite: the WAL size (MiB) past which it is made to start over.
    pub sqlite_wal_restart_mib: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite://relais.sqlite?mode=rwc"),
            max_connections: 16,
            connect_timeout_ms: 3000,
            schema: None,
            sqlite_wal_restart_mib: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionBackend {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    pub backend: SessionBackend,
    pub redis_url: Secret,
    pub key_prefix: String,
    pub timeout_ms: u64,
    /// Lifetime of the SSO session (a working day by default).
    pub sso_ttl_secs: i64,
    pub pending_login_ttl_secs: i64,
    pub code_ttl_secs: i64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            backend: SessionBackend::Memory,
            redis_url: Secret::new("redis://127.0.0.1:6379"),
            key_prefix: "relais".into(),
            timeout_ms: 1000,
            sso_ttl_secs: 10 * 3600,
            pending_login_ttl_secs: 600,
            code_ttl_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub max_param_len: usize,
    pub max_assertion_lifetime_secs: i64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 300,
            id_token_ttl_secs: 300,
            refresh_token_ttl_secs: 8 * 3600,
            max_param_len: 4096,
            max_assertion_lifetime_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// Base64 of 32 random bytes (`relais keys generate-kek`). Seals private keys at rest.
    pub encryption_key: Secret,
    /// How long a rotated-out key stays in the JWKS.
    #[serde(default = "defaults::overlap")]
    pub rotation_overlap_secs: i64,
    /// How often each replica re-reads keys (to pick up rotations).
    #[serde(default = "defaults::reload")]
    pub reload_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssuranceConfig {
    /// acr values, weakest first.
    pub acr_levels: Vec<String>,
    /// acr of a password-only login.
    pub password_acr: String,
    /// amr of a password-only login.
    pub password_amr: Vec<String>,
    /// acr of a password followed by a FIDO2 security key with user verification.
    pub security_key_acr: String,
    /// amr of a password followed by a FIDO2 security key with user verification. `user`, not
    /// `pin`: WebAuthn says user verification happened, not whether by PIN or fingerprint.
    pub security_key_amr: Vec<String>,
    /// acr of a CPS/CPx card login (alone or after a password).
    pub card_acr: String,
    /// amr of a card alone (certificate + PIN on the card).
    pub card_amr: Vec<String>,
    /// amr of a password followed by a card.
    pub password_card_amr: Vec<String>,
}

impl Default for AssuranceConfig {
    fn default() -> Self {
        Self {
            acr_levels: vec!["loa1".into(), "loa2".into(), "loa3".into()],
            password_acr: "loa1".into(),
            password_amr: vec!["pwd".into()],
            security_key_acr: "loa3".into(),
            security_key_amr: ["pwd", "hwk", "user", "mfa"].map(String::from).to_vec(),
            card_acr: "loa3".into(),
            card_amr: ["sc", "pin", "mfa", "hwk"].map(String::from).to_vec(),
            password_card_amr: ["pwd", "sc", "pin", "mfa", "hwk"].map(String::from).to_vec(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info,relais=debug`. `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

mod defaults {
    pub fn psc_discovery() -> String {
        "/.well-known/wallet-openid-configuration".into()
    }
    pub fn psc_scopes() -> Vec<String> {
        vec!["openid".into(), "scope_all".into()]
    }
    pub fn psc_acr() -> Option<String> {
        Some("eidas1".into())
    }
    pub fn listen() -> std::net::SocketAddr {
        "127.0.0.1:8080".parse().expect("valid")
    }
    pub fn overlap() -> i64 {
        24 * 3600
    }
    pub fn reload() -> u64 {
        30
    }
    pub fn ldap_connect() -> u64 {
        3000
    }
    pub fn ldap_operation() -> u64 {
        5000
    }
    pub fn ldap_search_pool() -> usize {
        4
    }
    pub fn ldap_bind_pool() -> usize {
        8
    }
    pub fn forward_facility() -> u8 {
        10
    }
    pub fn forward_batch() -> u64 {
        500
    }
    pub fn forward_poll() -> u64 {
        1000
    }
    pub fn forward_connect() -> u64 {
        5000
    }
    pub fn forward_ack() -> u64 {
        10_000
    }
    pub fn forward_retry() -> u64 {
        30_000
    }
    pub fn forward_lease() -> u64 {
        30
    }
    pub fn crl_refresh() -> u64 {
        3600
    }
    pub fn yes() -> bool {
        true
    }
    pub fn card_header() -> String {
        "X-SSL-Client-Cert".into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("configuration error: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads the file (if any), applies `RELAIS_*` variables from `env`, checks the result.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut table: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Invalid(format!("{}: {}", p.display(), e.message())))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        cfg.check()?;
        Ok(cfg)
    }

    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(s).map_err(|e| ConfigError::Invalid(e.message().to_owned()))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.issuer).map_err(|e| ConfigError::Invalid(format!("issuer: {e}")))?;
        if url.scheme() != "https" && !self.dev_mode {
            return Err(ConfigError::Invalid(
                "issuer must be https (set dev_mode = true only for local trials)".into(),
            ));
        }
        if self.issuer.ends_with('/') || url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::Invalid(
                "issuer must not end with '/' nor carry a query or fragment".into(),
            ));
        }
        if !self.assurance.acr_levels.contains(&self.assurance.password_acr) {
            return Err(ConfigError::Invalid(
                "assurance.password_acr must be one of assurance.acr_levels".into(),
            ));
        }
        if !self.assurance.acr_levels.contains(&self.assurance.security_key_acr) {
            return Err(ConfigError::Invalid(
                "assurance.security_key_acr must be one of assurance.acr_levels".into(),
            ));
        }
        if !self.assurance.acr_levels.contains(&self.assurance.card_acr) {
            return Err(ConfigError::Invalid(
                "assurance.card_acr must be one of assurance.acr_levels".into(),
            ));
        }
        if let Some(c) = &self.cards {
            c.check().map_err(|e| ConfigError::Invalid(format!("cards: {e}")))?;
        }
        if self.assurance.password_amr.is_empty() || self.assurance.security_key_amr.is_empty() {
            return Err(ConfigError::Invalid("assurance amr lists must not be empty".into()));
        }
        if self.fido2.attestation_policy.is_some() && url.host_str().is_some_and(|h| h.parse::<std::net::IpAddr>().is_ok()) {
            return Err(ConfigError::Invalid(
                "fido2: WebAuthn needs a host name in the issuer, not an IP address".into(),
            ));
        }
        self.passwords
            .check()
            .map_err(|e| ConfigError::Invalid(format!("passwords: {e}")))?;
        if self.audit.checkpoint_every == 0 {
            return Err(ConfigError::Invalid("audit.checkpoint_every must be at least 1".into()));
        }
        let mut forward_names = std::collections::HashSet::new();
        for f in &self.audit.forward {
            f.check()
                .map_err(|e| ConfigError::Invalid(format!("audit.forward {:?}: {e}", f.name)))?;
            if !forward_names.insert(f.name.as_str()) {
                return Err(ConfigError::Invalid(format!("audit.forward: name {:?} is used twice", f.name)));
            }
        }
        if self.sessions.code_ttl_secs <= 0 || self.sessions.code_ttl_secs > 600 {
            return Err(ConfigError::Invalid("sessions.code_ttl_secs must be between 1 and 600".into()));
        }
        let mut names = std::collections::HashSet::new();
        for d in &self.directories {
            d.check()
                .map_err(|e| ConfigError::Invalid(format!("directories {:?}: {e}", d.name)))?;
            if !names.insert(d.name.as_str()) {
                return Err(ConfigError::Invalid(format!("directories: name {:?} is used twice", d.name)));
            }
        }
        // A directory role that no directory maps would silently grant nothing: say so.
        for (key, role) in [
            ("directory_admin_role", &self.admin.directory_admin_role),
            ("directory_auditor_role", &self.admin.directory_auditor_role),
        ] {
            if let Some(r) = role
                && !self.directories.iter().any(|d| d.roles.contains_key(r))
            {
                return Err(ConfigError::Invalid(format!(
                    "admin.{key}: no [directories.roles] table defines the role {r:?}"
                )));
            }
        }
        Ok(())
    }
}

impl CardsConfig {
    fn check(&self) -> Result<(), String> {
        if self.listen.is_some() != (self.server_cert.is_some() && self.server_key.is_some()) {
            return Err("listen needs server_cert and server_key (and they need listen)".into());
        }
        if self.listen.is_none() && self.trusted_proxies.is_empty() {
            return Err("set listen (Relais terminates TLS) or trusted_proxies (a proxy passes the certificate)".into());
        }
        if self.trust_roots.is_empty() {
            return Err("trust_roots must name at least one root certificate file".into());
        }
        if self.crl_refresh_secs == 0 {
            return Err("crl_refresh_secs must be positive".into());
        }
        if self.proxy_header.is_empty() || !self.proxy_header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("proxy_header must be a header name".into());
        }
        Ok(())
    }
}

impl DirectoryConfig {
    fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(':') {
            return Err("name must be non-empty and without ':'".into());
        }
        if self.urls.is_empty() {
            return Err("urls must list at least one server".into());
        }
        for u in &self.urls {
            let tls = u.starts_with("ldaps://") || (u.starts_with("ldap://") && self.starttls);
            if !u.starts_with("ldaps://") && !u.starts_with("ldap://") {
                return Err(format!("{u}: only ldap:// and ldaps:// URLs"));
            }
            if !tls && !self.allow_plaintext {
                return Err(format!(
                    "{u}: passwords would travel in clear; use ldaps://, starttls = true, or allow_plaintext = true"
                ));
            }
        }
        match (&self.bind_dn, &self.bind_password, &self.bind_dn_template) {
            (Some(_), Some(_), None) => {}
            (None, None, Some(t)) if t.contains("{login}") => {}
            _ => return Err("set bind_dn and bind_password (search then bind), or bind_dn_template with {login}".into()),
        }
        if self.connect_timeout_ms == 0 || self.operation_timeout_ms == 0 {
            return Err("timeouts must be positive".into());
        }
        if self.search_pool_size == 0 || self.search_pool_size > 64 || self.bind_pool_size > 256 {
            return Err("search_pool_size must be 1–64 and bind_pool_size 0–256".into());
        }
        let g = &self.groups;
        if !g.filter.contains("{dn}") && !g.filter.contains("{login}") {
            return Err("groups.filter must contain {dn} or {login}".into());
        }
        if g.nested == NestedGroups::Iterative && !g.filter.contains("{dn}") {
            return Err("nested groups follow groups.filter with {dn}: put {dn} in it".into());
        }
        if g.max_groups == 0 || g.max_depth == 0 || g.max_depth > 20 {
            return Err("groups.max_groups must be positive and groups.max_depth 1–20".into());
        }
        if (g.lookup == GroupLookup::Search || g.nested != NestedGroups::None) && self.bind_dn.is_none() {
            return Err("group searches need the service account (bind_dn)".into());
        }
        for (role, groups) in &self.roles {
            if role.is_empty() || groups.is_empty() {
                return Err(format!("roles.{role}: a role name and at least one group"));
            }
        }
        for r in &self.required_roles {
            if !self.roles.contains_key(r) {
                return Err(format!("required_roles: {r:?} is not granted by any [directories.roles] entry"));
            }
        }
        Ok(())
    }
}

/// `RELAIS_A__B=value` sets key `b` of table `a`; `RELAIS_A__0__B` sets key `b` of the first
/// entry of the array of tables `a` (which the file must define: the environment adds settings
/// to entries, it does not create them). Values parse as TOML when they can (numbers,
/// booleans, arrays) and are strings otherwise.
fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(path) = name.strip_prefix("RELAIS_") else { continue };
        // Not configuration keys: the config file's path (read by the CLI) and test settings.
        if path == "CONFIG" || path.starts_with("TEST_") {
            continue;
        }
        let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError::Invalid(format!("environment variable {name}: malformed name")));
        }
        let last = &keys[keys.len() - 1];
        // Secrets are taken as typed: a password of digits or `true` stays a string.
        let secret = last.ends_with("password") || last.ends_with("secret") || last.ends_with("_key");
        let parsed = Some(format!("v = {value}"))
            .filter(|_| !secret)
            .and_then(|v| v.parse::<toml::Table>().ok())
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let mut cur = &mut *table;
        let mut i = 0;
        while i < keys.len() - 1 {
            let k = &keys[i];
            let entry = cur.entry(k.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            // An array of tables (`[[directories]]`) is entered by index: `DIRECTORIES__0__X`.
            if let toml::Value::Array(items) = entry {
                let index = keys
                    .get(i + 1)
                    .filter(|_| i + 2 < keys.len())
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| ConfigError::Invalid(format!("environment variable {name}: {k} is a list; name an entry by index")))?;
                let len = items.len();
                let item = items.get_mut(index).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "environment variable {name}: {k} has {len} entries in the file; the index must name one"
                    ))
                })?;
                cur = item
                    .as_table_mut()
                    .ok_or_else(|| ConfigError::Invalid(format!("environment variable {name}: {k} entries are not tables")))?;
                i += 2;
                continue;
            }
            cur = entry
                .as_table_mut()
                .ok_or_else(|| ConfigError::Invalid(format!("environment variable {name}: {k} is not a table")))?;
            i += 1;
        }
        cur.insert(keys[keys.len() - 1].clone(), parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "issuer = \"https://sso.example\"\n[keys]\nencryption_key = \"x\"\n";

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_str(&format!("{MIN}\n[sessions]\nbakend = \"redis\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bakend"), "{err}");
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges_and_refuse_a_bad_one_by_name() {
        let cfg = Config::from_toml_str(&format!("trusted_proxies = [\"10.0.0.7\", \"10.42.0.0/16\", \"fd00::/8\"]\n{MIN}")).unwrap();
        assert_eq!(cfg.trusted_proxies.len(), 3);
        assert!(crate::protocol::in_ranges(&cfg.trusted_proxies, "10.42.9.9".parse().unwrap()));
        let err = Config::from_toml_str(&format!("trusted_proxies = [\"10.0.0.7/8\"]\n{MIN}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("trusted_proxies") && err.contains("10.0.0.7/8"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_unknown_env_key_is_named() {
        let dir = std::env::temp_dir().join(format!("relais-cfg-{}", std::process::id()));
        std::fs::write(&dir, MIN).unwrap();
        let env = vec![
            ("RELAIS_SESSIONS__BACKEND".to_string(), "redis".to_string()),
            ("RELAIS_TOKENS__ACCESS_TOKEN_TTL_SECS".into(), "60".into()),
            ("PATH".into(), "/bin".into()),
        ];
        let cfg = Config::load(Some(&dir), env).unwrap();
        assert_eq!(cfg.sessions.backend, SessionBackend::Redis);
        assert_eq!(cfg.tokens.access_token_ttl_secs, 60);
        let err = Config::load(Some(&dir), vec![("RELAIS_SESIONS__BACKEND".to_string(), "redis".to_string())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("sesions"), "{err}");
        std::fs::remove_file(dir).ok();
    }

    #[test]
    fn env_reaches_array_entries_by_index() {
        let path = std::env::temp_dir().join(format!("relais-cfg-dirs-{}", std::process::id()));
        let d =
            "[[directories]]\nname = \"{n}\"\npreset = \"openldap\"\nurls = [\"ldaps://dc1\"]\nbase_dn = \"dc=x\"\nbind_dn = \"cn=s\"\n";
        std::fs::write(&path, format!("{MIN}{}{}", d.replace("{n}", "a"), d.replace("{n}", "b"))).unwrap();
        let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        // The secret only in the environment, as a Kubernetes secret or systemd credential gives it.
        let cfg = Config::load(
            Some(&path),
            env(&[
                ("RELAIS_DIRECTORIES__0__BIND_PASSWORD", "s3cret=;\"x"),
                ("RELAIS_DIRECTORIES__1__BIND_PASSWORD", "12345678"),
                ("RELAIS_DIRECTORIES__1__OPERATION_TIMEOUT_MS", "700"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.directories[0].bind_password.as_ref().unwrap().expose(), "s3cret=;\"x");
        assert_eq!(cfg.directories[1].bind_password.as_ref().unwrap().expose(), "12345678");
        assert_eq!(cfg.directories[1].operation_timeout_ms, 700);
        assert!(!format!("{cfg:?}").contains("s3cret"));
        for (var, needle) in [
            ("RELAIS_DIRECTORIES__2__BIND_PASSWORD", "2 entries"),
            ("RELAIS_DIRECTORIES__BIND_PASSWORD", "index"),
            ("RELAIS_DIRECTORIES__X__BIND_PASSWORD", "index"),
            ("RELAIS_DIRECTORIES__0__BIND_PASWORD", "bind_pasword"),
        ] {
            let err = Config::load(Some(&path), env(&[(var, "p")])).unwrap_err().to_string();
            assert!(err.contains(needle), "{var}: {err}");
        }
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn secrets_do_not_print() {
        let cfg = Config::from_toml_str(MIN).unwrap();
        assert!(!format!("{cfg:?}").contains("encryption_key: \"x\""));
    }

    #[test]
    fn bad_argon2_parameters_are_refused_at_load() {
        assert!(Config::from_toml_str(&format!("{MIN}[passwords]\nmemory_kib = 1\n")).is_err());
        assert!(Config::from_toml_str(&format!("{MIN}[passwords]\nmin_length = 64\n")).is_ok());
    }

    #[test]
    fn directories_are_checked() {
        let d = "[[directories]]\nname = \"ad\"\npreset = \"active_directory\"\nbase_dn = \"dc=x\"\nbind_dn = \"cn=s\"\nbind_password = \"p\"\n";
        assert!(Config::from_toml_str(&format!("{MIN}{d}urls = [\"ldaps://dc1:636\"]\n")).is_ok());
        let err = Config::from_toml_str(&format!("{MIN}{d}urls = [\"ldap://dc1\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("clear"), "{err}");
        let err = Config::from_toml_str(&format!("{MIN}{d}urls = [\"ldaps://dc1\"]\nbase = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("base"), "{err}");
    }

    #[test]
    fn http_issuer_needs_dev_mode() {
        assert!(Config::from_toml_str("issuer = \"http://localhost:8080\"\n[keys]\nencryption_key = \"x\"\n").is_err());
        assert!(Config::from_toml_str("issuer = \"http://localhost:8080\"\ndev_mode = true\n[keys]\nencryption_key = \"x\"\n").is_ok());
    }
}
