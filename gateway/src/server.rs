//! Wiring: builds the adapters from the config, hands them to the domain, serves HTTP.
use crate::adapters::audit::SqlAuditSink;
use crate::adapters::cards::{CardTrustSettings, CardVerifier};
use crate::adapters::directory::{Directory, DirectoryLogin, DirectorySettings, GroupDirect, GroupNesting, GroupSettings, Lookup, Preset};
use crate::adapters::http::{self, AppState, CookieSettings};
use crate::adapters::keys::{Kek, KeyRing, KeyStoreError};
use crate::adapters::local_accounts::LocalAccounts;
use crate::adapters::sessions::{MemorySessionStore, RedisSessionStore, RedisSettings};
use crate::adapters::store::fido_mds_blobs::MdsBlobAdmission;
use crate::adapters::store::{DbSettings, SqlStore};
use crate::adapters::webauthn::{MdsBlobInUse, WebauthnKeys};
use crate::config::{Config, DirectoryConfig, DirectoryPreset, GroupLookup, NestedGroups, SessionBackend};
use crate::domain::audit::{AuditEvent, AuditRecord};
use crate::domain::oidc::{AssurancePolicy, MethodAssurance, Provider, ProviderSettings, ThrottleSettings};
use crate::domain::ports::{
    AuditSink, Clock, PasswordChecker, Random, SecurityKeys, SessionStore, SessionStoreError, Storage, StoreError, SystemClock,
    SystemRandom,
};
use actix_web::{App, HttpServer, dev::ServerHandle, middleware, web};
use chrono::{DateTime, Utc};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] StoreError),
    #[error("session store: {0}")]
    Sessions(#[from] SessionStoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] KeyStoreError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("listener: {0}")]
    Listen(#[from] std::io::Error),
}

/// Everything a running Relais is made of. Tests reach the parts directly.
pub struct Components {
    pub config: Config,
    pub store: Arc<SqlStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub keys: Arc<KeyRing>,
    pub audit: Arc<dyn AuditSink>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub provider: Arc<Provider>,
    /// The card certificate checker (trust anchors, CRLs), when `[cards]` is configured.
    pub cards: Option<Arc<CardVerifier>>,
    /// The `[[directories]]`, shared by the login and the health checks (same pools).
    pub directories: Vec<Arc<Directory>>,
    /// The FIDO MDS3 blob the attestation trust file admits models from, if any.
    pub mds_blob: Option<MdsBlobInUse>,
}

pub fn db_settings(cfg: &Config) -> DbSettings {
    DbSettings {
        url: cfg.database.url.expose().to_owned(),
        max_connections: cfg.database.max_connections,
        connect_timeout: Duration::from_millis(cfg.database.connect_timeout_ms),
        schema: cfg.database.schema.clone(),
        sqlite_wal_restart_bytes: u64::from(cfg.database.sqlite_wal_restart_mib.max(1)) << 20,
    }
}

/// Opens the database (running migrations) and nothing else: for CLI commands.
pub async fn open_store(cfg: &Config) -> Result<SqlStore, StoreError> {
    let store = SqlStore::connect(&db_settings(cfg)).await?;
    store.migrate().await?;
    Ok(store)
}

impl Components {
    /// Builds every part from the config. `clock` is an input so tests can move time.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let store = Arc::new(open_store(&config).await?);
        let storage: Arc<dyn Storage> = store.clone();
        let sessions: Arc<dyn SessionStore> = match config.sessions.backend {
            SessionBackend::Memory => Arc::new(MemorySessionStore::new(clock.clone())),
            SessionBackend::Redis => Arc::new(
                RedisSessionStore::connect(&RedisSettings {
                    url: config.sessions.redis_url.expose().to_owned(),
                    key_prefix: config.sessions.key_prefix.clone(),
                    timeout: Duration::from_millis(config.sessions.timeout_ms),
                })
                .await?,
            ),
        };
        let kek = Kek::from_base64(config.keys.encryption_key.expose())?;
        let keys = Arc::new(KeyRing::load(storage.as_ref(), kek, clock.now()).await?);
        let audit: Arc<dyn AuditSink> = Arc::new(crate::telemetry::metrics::MeteredAuditSink(Arc::new(SqlAuditSink::new(
            storage.clone(),
            keys.clone(),
            clock.clone(),
            config.audit.checkpoint_every,
        ))));
        let random: Arc<dyn Random> = Arc::new(SystemRandom);
        let settings = ProviderSettings {
            issuer: config.issuer.clone(),
            code_ttl_secs: config.sessions.code_ttl_secs,
            pending_login_ttl_secs: config.sessions.pending_login_ttl_secs,
            sso_session_ttl_secs: config.sessions.sso_ttl_secs,
            access_token_ttl_secs: config.tokens.access_token_ttl_secs,
            id_token_ttl_secs: config.tokens.id_token_ttl_secs,
            refresh_token_ttl_secs: config.tokens.refresh_token_ttl_secs,
            acr_levels: config.assurance.acr_levels.clone(),
            assurance: AssurancePolicy {
                password: MethodAssurance {
                    amr: config.assurance.password_amr.clone(),
                    acr: config.assurance.password_acr.clone(),
                },
                password_and_key: MethodAssurance {
                    amr: config.assurance.security_key_amr.clone(),
                    acr: config.assurance.security_key_acr.clone(),
                },
                card: MethodAssurance {
                    amr: config.assurance.card_amr.clone(),
                    acr: config.assurance.card_acr.clone(),
                },
                password_and_card: MethodAssurance {
                    amr: config.assurance.password_card_amr.clone(),
                    acr: config.assurance.card_acr.clone(),
                },
            },
            max_param_len: config.tokens.max_param_len,
            max_assertion_lifetime_secs: config.tokens.max_assertion_lifetime_secs,
            psc: crate::domain::oidc::PscSettings {
                tenant_id: config.psc.tenant_id.clone(),
                terms_version: config.psc.terms_version.clone(),
                terms_url: config.psc.terms_url.clone(),
                release_roles: config.psc.release_roles,
            },
            throttle: ThrottleSettings {
                max_failures_per_account: config.login.max_failures_per_account,
                max_failures_per_ip: config.login.max_failures_per_ip,
                failure_window_secs: config.login.failure_window_secs,
                lockout_secs: config.login.lockout_secs,
                max_lockout_secs: config.login.max_lockout_secs,
            },
            cards: crate::domain::card::CardPolicy {
                card_alone: config.cards.as_ref().is_some_and(|c| c.card_alone),
                establish_mapping: config.cards.as_ref().is_some_and(|c| c.establish_mapping),
            },
            role_names: {
                let mut r: Vec<String> = config.directories.iter().flat_map(|d| d.roles.keys().cloned()).collect();
                r.sort();
                r.dedup();
                r
            },
        };
        let directories = directories(&config, storage.clone(), clock.clone())?;
        let passwords = password_checker(&config, storage.clone(), &directories)?;
        let mut mds_blob = None;
        let security_keys: Option<Arc<dyn SecurityKeys>> = match &config.fido2.attestation_policy {
            Some(path) => {
                let keys = WebauthnKeys::new(&config.issuer, &config.fido2.rp_name, path)
                    .map_err(|e| StartError::Config(format!("fido2: {e}")))?;
                if let Some(blob) = keys.mds_blob() {
                    admit_mds_blob(&store, audit.as_ref(), blob, clock.now()).await?;
                    mds_blob = Some(blob.clone());
                }
                Some(Arc::new(keys))
            }
            None => None,
        };
        let cards = match &config.cards {
            Some(c) => Some(Arc::new(
                CardVerifier::load(CardTrustSettings {
                    trust_roots: c.trust_roots.clone(),
                    intermediates: c.intermediates.clone(),
                    crl_files: c.crl_files.clone(),
                    require_crl: c.require_crl,
                    accept_stale_crl: c.accept_stale_crl,
                })
                .map_err(|e| StartError::Config(format!("cards: {e}")))?,
            )),
            None => None,
        };
        let provider = Arc::new(Provider {
            settings,
            storage: storage.clone(),
            identities: store.clone(),
            sessions: sessions.clone(),
            signer: keys.clone(),
            clock: clock.clone(),
            random: random.clone(),
            passwords,
            audit: audit.clone(),
            security_keys,
            key_store: store.clone(),
            cards: cards.clone().map(|c| c as Arc<dyn crate::domain::card::CardChecker>),
        });
        Ok(Self {
            config,
            store,
            sessions,
            keys,
            audit,
            clock,
            random,
            provider,
            cards,
            directories,
            mds_blob,
        })
    }

    pub fn management<'a>(&'a self, actor: &'a str) -> crate::domain::management::Management<'a> {
        self.provider.management(actor)
    }
}

/// Refuses a FIDO MDS3 blob older than one used before (`fido_mds_blobs.rs`); a newer blob is
/// put on record.
async fn admit_mds_blob(store: &SqlStore, audit: &dyn AuditSink, blob: &MdsBlobInUse, now: DateTime<Utc>) -> Result<(), StartError> {
    let admission = store.admit_mds_blob(blob.number, &blob.next_update, now).await?;
    let (success, detail) = match admission {
        MdsBlobAdmission::Same => return Ok(()),
        MdsBlobAdmission::First => (
            true,
            format!("FIDO MDS3 blob number {} in use (next update {})", blob.number, blob.next_update),
        ),
        MdsBlobAdmission::Newer { previous } => (
            true,
            format!(
                "FIDO MDS3 blob number {} in use, replacing number {previous} (next update {})",
                blob.number, blob.next_update
            ),
        ),
        MdsBlobAdmission::Older { newest, newest_since } => (
            false,
            format!(
                "the FIDO MDS3 blob is number {}, older than number {newest} in use since {}: an older blob may predate a model's compromise; put the current blob from https://mds3.fidoalliance.org/ in place",
                blob.number,
                newest_since.format("%Y-%m-%d %H:%M UTC")
            ),
        ),
    };
    let record = AuditRecord {
        at: now,
        context: Default::default(),
        event: AuditEvent::ConfigurationReloaded {
            what: "fido_mds".into(),
            success,
            detail: detail.clone(),
        },
    };
    // Refused or not, the start is on record; a trail that cannot be written stops the start.
    audit.record(record).await?;
    if success {
        tracing::info!(number = blob.number, "{detail}");
        Ok(())
    } else {
        Err(StartError::Config(format!("fido2: {detail}")))
    }
}

/// The adapter settings of one `[[directories]]` entry: the preset resolved, overrides applied.
pub fn directory_settings(d: &DirectoryConfig) -> Result<DirectorySettings, StartError> {
    let preset = match d.preset {
        DirectoryPreset::Openldap => Preset::OpenLdap,
        DirectoryPreset::ActiveDirectory => Preset::ActiveDirectory,
    };
    let mut attributes = preset.attributes();
    let o = &d.attributes;
    let set = |slot: &mut String, v: &Option<String>| {
        if let Some(v) = v {
            *slot = v.clone();
        }
    };
    set(&mut attributes.login, &o.login);
    set(&mut attributes.id, &o.id);
    set(&mut attributes.display_name, &o.display_name);
    set(&mut attributes.given_name, &o.given_name);
    set(&mut attributes.family_name, &o.family_name);
    set(&mut attributes.email, &o.email);
    set(&mut attributes.employee_number, &o.employee_number);
    set(&mut attributes.groups, &o.groups);
    attributes.national_id = o.national_id.clone();
    set(&mut attributes.user_filter, &d.user_filter);
    let lookup = match (&d.bind_dn, &d.bind_password, &d.bind_dn_template) {
        (Some(dn), Some(pw), _) => Lookup::Search {
            bind_dn: dn.clone(),
            bind_password: pw.expose().to_owned(),
        },
        (_, _, Some(t)) => Lookup::Template(t.clone()),
        _ => return Err(StartError::Config(format!("directory {}: no way to find users", d.name))),
    };
    Ok(DirectorySettings {
        name: d.name.clone(),
        urls: d.urls.clone(),
        starttls: d.starttls,
        tls: DirectorySettings::tls_config(d.ca_file.as_deref()).map_err(|e| StartError::Config(format!("directory {}: {e}", d.name)))?,
        lookup,
        base_dn: d.base_dn.clone(),
        attributes,
        username_suffixes: d.username_suffixes.clone(),
        strip_suffix: d.strip_suffix,
        required_groups: d.required_groups.clone(),
        roles: d.roles.clone(),
        required_roles: d.required_roles.clone(),
        groups: GroupSettings {
            direct: match d.groups.lookup {
                GroupLookup::MemberOf => GroupDirect::MemberOf,
                GroupLookup::Search => GroupDirect::Search,
            },
            base_dn: d.groups.base_dn.clone().unwrap_or_else(|| d.base_dn.clone()),
            filter: d.groups.filter.clone(),
            nested: match d.groups.nested {
                NestedGroups::None => GroupNesting::None,
                NestedGroups::InChain => GroupNesting::InChain,
                NestedGroups::Iterative => GroupNesting::Iterative,
            },
            max_depth: d.groups.max_depth,
            max_groups: d.groups.max_groups as usize,
        },
        search_pool_size: d.search_pool_size,
        bind_pool_size: d.bind_pool_size,
        connect_timeout: Duration::from_millis(d.connect_timeout_ms),
        operation_timeout: Duration::from_millis(d.operation_timeout_ms),
    })
}

/// The directories of the config, in order (for the login and for `relais ldap test`).
pub fn directories(config: &Config, storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<Vec<Arc<Directory>>, StartError> {
    config
        .directories
        .iter()
        .map(|d| Ok(Arc::new(Directory::new(directory_settings(d)?, storage.clone(), clock.clone()))))
        .collect()
}

/// The national identifiers the directories hold (`attributes.national_id`), for the
/// Annuaire import's directory rule; none when `[identity] directory_match` is off.
pub async fn directory_claims(c: &Components) -> Result<Vec<crate::domain::identity_import::DirectoryClaim>, StartError> {
    let mut out = Vec::new();
    if !c.config.identity.directory_match {
        return Ok(out);
    }
    let storage: Arc<dyn Storage> = c.store.clone();
    for d in directories(&c.config, storage, c.clock.clone())? {
        let found = d
            .national_ids()
            .await
            .map_err(|e| StartError::Config(format!("directory {}: {e}", d.settings.name)))?;
        out.extend(found.into_iter().map(|n| crate::domain::identity_import::DirectoryClaim {
            account_id: n.account.id,
            value: n.value,
            source: format!("{}:{}", d.settings.name, n.attribute),
        }));
    }
    Ok(out)
}

/// The first factor: local accounts, or the directories (with local accounts as a fallback
/// when `[login] local_fallback` is set).
fn password_checker(
    config: &Config,
    storage: Arc<dyn Storage>,
    directories: &[Arc<Directory>],
) -> Result<Arc<dyn PasswordChecker>, StartError> {
    let local = || LocalAccounts::new(storage.clone(), &config.passwords).map_err(|e| StartError::Config(e.to_string()));
    if config.directories.is_empty() {
        return Ok(Arc::new(local()?));
    }
    Ok(Arc::new(DirectoryLogin {
        directories: directories.to_vec(),
        local_fallback: if config.login.local_fallback { Some(local()?) } else { None },
    }))
}

/// A server that is accepting connections.
pub struct Running {
    pub addr: SocketAddr,
    /// The card listener (TLS with an optional client certificate), when configured.
    pub card_addr: Option<SocketAddr>,
    pub handle: ServerHandle,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub components: Arc<Components>,
    /// SIEM forwarding tasks (`[[audit.forward]]`).
    pub forwarders: crate::adapters::audit_forward::Forwarders,
    pub readiness: Arc<http::Readiness>,
    /// The `/metrics` listener, when `[metrics] listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    metrics_handle: Option<ServerHandle>,
}

impl Running {
    pub async fn stop(self) {
        self.forwarders.stop().await;
        if let Some(m) = &self.metrics_handle {
            m.stop(false).await;
        }
        self.handle.stop(false).await;
        let _ = self.task.await;
    }

    /// The SIGTERM sequence: `/readyz` turns 503 while requests are still served, for
    /// `[shutdown] readiness_grace_ms`; then the listener closes and in-flight requests get
    /// `drain_timeout_secs` to finish. `skip_grace` resolving (a second signal) cuts the wait.
    pub async fn shutdown(self, skip_grace: impl Future<Output = ()>) -> std::io::Result<()> {
        self.readiness.start_draining();
        let grace = Duration::from_millis(self.components.config.shutdown.readiness_grace_ms);
        tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down: readiness is now false");
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = skip_grace => {}
        }
        tracing::info!("shutting down: draining in-flight requests");
        self.handle.stop(true).await;
        if let Some(m) = &self.metrics_handle {
            m.stop(false).await;
        }
        self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// The application state of the HTTP handlers (`serve`, and the admin bench that calls the
/// same handlers in-process).
pub fn app_data(
    components: &Components,
    audit_forward: Arc<crate::adapters::audit_forward::ForwardStatus>,
    card_http: Option<http::CardHttp>,
) -> Result<(web::Data<AppState>, web::Data<http::admin::AdminState>), StartError> {
    let cfg = &components.config;
    let state = web::Data::new(AppState {
        provider: components.provider.clone(),
        cookies: CookieSettings {
            secure: !cfg.dev_mode,
            sso_max_age_secs: cfg.sessions.sso_ttl_secs,
        },
        storage: components.store.clone(),
        sessions: components.sessions.clone(),
        directories: components.directories.clone(),
        probe_timeout: Duration::from_millis(cfg.sessions.timeout_ms.max(cfg.database.connect_timeout_ms)),
        max_body_bytes: 64 * 1024,
        trusted_proxies: cfg.trusted_proxies.clone(),
        psc_verifier: match cfg.psc_client.as_ref() {
            None => None,
            Some(p) => Some(Arc::new(
                crate::adapters::psc_client::PscVerifier::new(crate::adapters::psc_client::PscClientSettings {
                    issuer: p.issuer.clone(),
                    discovery_path: p.discovery_path.clone(),
                    client_id: p.client_id.clone(),
                    client_secret: p.client_secret.clone(),
                    redirect_uri: format!("{}/verify/psc/callback", cfg.issuer),
                    scopes: p.scopes.clone(),
                    acr_values: p.acr_values.clone(),
                    ca_file: p.ca_file.clone(),
                    client_cert: match (&p.client_cert_file, &p.client_key_file) {
                        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                        (None, None) => None,
                        _ => {
                            return Err(StartError::Config(
                                "psc_client: set both client_cert_file and client_key_file, or neither".into(),
                            ));
                        }
                    },
                })
                .map_err(|e| StartError::Config(format!("psc_client: {e}")))?,
            )),
        },
        discovery: http::discovery::document(&components.provider.settings).map_err(StartError::Config)?,
        audit_forward,
        cards: card_http.or_else(|| {
            cfg.cards.as_ref().map(|c| http::CardHttp {
                base_url: c.public_url.clone().unwrap_or_else(|| cfg.issuer.clone()),
                trusted_proxies: c.trusted_proxies.clone(),
                header: c.proxy_header.clone(),
                card_alone: c.card_alone,
            })
        }),
    });
    let admin_state = web::Data::new(http::admin::AdminState {
        roles: components.store.clone(),
        policy: crate::domain::admin::AdminSessionPolicy {
            idle_secs: cfg.admin.session_idle_secs,
            max_secs: cfg.admin.session_max_secs,
        },
        directory_roles: crate::domain::admin::DirectoryAdminRoles {
            admin: cfg.admin.directory_admin_role.clone(),
            auditor: cfg.admin.directory_auditor_role.clone(),
        },
        settings_text: format!("{cfg:#?}"),
        secure_cookies: !cfg.dev_mode,
        enrolment_code_ttl_secs: cfg.fido2.enrolment_code_ttl_secs,
        mds_blob: components.mds_blob.clone(),
    });
    Ok((state, admin_state))
}

/// Serves on an already bound listener (tests bind port 0 and read the port first).
pub fn serve(components: Arc<Components>, listener: TcpListener) -> Result<Running, StartError> {
    let cfg = &components.config;
    let forwarders = crate::adapters::audit_forward::Forwarders::start(components.store.clone(), &cfg.audit.forward)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let card_listener = card_listener(&components)?;
    let (state, admin_state) = app_data(
        &components,
        forwarders.status.clone(),
        card_listener.as_ref().map(|(_, _, http)| http.clone()),
    )?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let readiness = Arc::new(http::Readiness::default());
    let ready = web::Data::from(readiness.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(ready.clone())
            .wrap(middleware::from_fn(http::metrics::observe))
            .app_data(admin_state.clone())
            .wrap(
                middleware::DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("X-Frame-Options", "DENY"))
                    .add(("Referrer-Policy", "no-referrer"))
                    .add((
                        "Content-Security-Policy",
                        "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self' http: https:",
                    )),
            )
            .configure(http::routes)
    })
    .on_connect(crate::adapters::cards::tls::on_connect)
    .listen(listener)?;
    let card_addr = card_listener.as_ref().map(|(l, _, _)| l.local_addr()).transpose()?;
    let server = match card_listener {
        Some((l, tls, _)) => server.listen_rustls_0_23(l, tls)?,
        None => server,
    };
    let server = server
        // The binary decides when to stop (SIGTERM/SIGINT both drain in-flight requests).
        .disable_signals()
        .shutdown_timeout(cfg.shutdown.drain_timeout_secs)
        .run();
    let handle = server.handle();
    // Replicas pick up keys rotated elsewhere.
    let keys = components.keys.clone();
    let store = components.store.clone();
    let clock = components.clock.clone();
    let every = Duration::from_secs(cfg.keys.reload_interval_secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = keys.reload(store.as_ref(), clock.now()).await {
                tracing::warn!(error = %e, "could not reload signing keys; keeping the current set");
            }
        }
    });
    if let (Some(cards), Some(c)) = (&components.cards, &cfg.cards) {
        let cards = cards.clone();
        let (audit, clock) = (components.audit.clone(), components.clock.clone());
        let every = Duration::from_secs(c.crl_refresh_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let c = cards.clone();
                let result = tokio::task::spawn_blocking(move || c.reload_crls()).await.unwrap_or_else(|e| {
                    Err(crate::adapters::cards::CardConfigError::File {
                        path: "(reload task)".into(),
                        why: e.to_string(),
                    })
                });
                let event = match result {
                    Ok(r) => {
                        tracing::info!(crls = r.count, changed = r.changed, "card CRLs reloaded");
                        r.changed.then(|| crate::domain::audit::AuditEvent::ConfigurationReloaded {
                            what: "card_crls".into(),
                            success: true,
                            detail: format!("{} CRLs in force", r.count),
                        })
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not reload the card CRLs; keeping the current ones");
                        Some(crate::domain::audit::AuditEvent::ConfigurationReloaded {
                            what: "card_crls".into(),
                            success: false,
                            detail: format!("{e}; the previous CRLs stay in force"),
                        })
                    }
                };
                // Who may log in by card changed (or could not be updated): on record.
                if let Some(event) = event
                    && let Err(e) = audit
                        .record(crate::domain::audit::AuditRecord {
                            at: clock.now(),
                            event,
                            context: Default::default(),
                        })
                        .await
                {
                    tracing::error!(error = %e, "could not record a CRL reload in the audit trail");
                }
            }
        });
    }
    let task = tokio::spawn(server);
    let (metrics_addr, metrics_handle) = match cfg.metrics.listen {
        Some(at) => {
            let l = TcpListener::bind(at)?;
            let bound = l.local_addr()?;
            let (h, _) = http::metrics::serve_metrics(l)?;
            tracing::info!(addr = %bound, "metrics listener (/metrics)");
            (Some(bound), Some(h))
        }
        None => (None, None),
    };
    crate::telemetry::metrics::spawn_poller(
        components.store.clone(),
        components.sessions.clone(),
        components.directories.clone(),
        Duration::from_millis(cfg.sessions.timeout_ms.max(cfg.database.connect_timeout_ms)),
        Duration::from_secs(10),
    );
    Ok(Running {
        addr,
        card_addr,
        handle,
        task,
        components,
        forwarders,
        readiness,
        metrics_addr,
        metrics_handle,
    })
}

/// Builds everything and serves on `cfg.listen`.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let listener = TcpListener::bind(config.listen)?;
    let components = Arc::new(Components::build(config, Arc::new(SystemClock)).await?);
    serve(components, listener)
}

/// The card listener, bound, with its TLS config and the URL browsers reach it at.
fn card_listener(components: &Components) -> Result<Option<(TcpListener, rustls::ServerConfig, http::CardHttp)>, StartError> {
    let cfg = &components.config;
    let (Some(c), Some(verifier)) = (&cfg.cards, &components.cards) else {
        return Ok(None);
    };
    let (Some(addr), Some(cert), Some(key)) = (c.listen, &c.server_cert, &c.server_key) else {
        return Ok(None);
    };
    let tls = crate::adapters::cards::tls::server_config(cert, key, &verifier.hint_subjects)
        .map_err(|e| StartError::Config(format!("cards: {e}")))?;
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let base_url = c.public_url.clone().unwrap_or_else(|| {
        let host = url::Url::parse(&cfg.issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "localhost".into());
        format!("https://{host}:{port}")
    });
    Ok(Some((
        listener,
        tls,
        http::CardHttp {
            base_url,
            trusted_proxies: c.trusted_proxies.clone(),
            header: c.proxy_header.clone(),
            card_alone: c.card_alone,
        },
    )))
}
