//! The `relais` binary: a thin command line over the library.
use clap::{Args, Parser, Subcommand};
use relais::adapters::keys::Kek;
use relais::config::Config;
use relais::domain::client::{ClientKind, TokenAuthMethod};
use relais::domain::management::{NewAccount, NewClient, PscEnvironment};
use relais::domain::records::SigningAlg;
use relais::protocol::{ClientId, RedirectUri};
use relais::server::{self, Components};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "relais", version, about = "Relais: the hospital's identity gateway for Pro Santé Connect")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConfigArg {
    /// The TOML configuration file (RELAIS_* variables override it).
    #[arg(long, short, env = "RELAIS_CONFIG", default_value = "relais.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Listen address (overrides `listen` in the config).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Try Relais with nothing to set up: SQLite, in-process sessions, a demo client and accounts.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the demo keeps its database and key-encryption key.
        #[arg(long, default_value = "relais-demo")]
        data_dir: PathBuf,
    },
    /// Create or upgrade the database schema.
    Migrate {
        #[command(flatten)]
        cfg: ConfigArg,
    },
    /// Local accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Registered clients (relying parties).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// National identities (RPPS, ADELI, ...) of people.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The audit trail: verify the hash chain, export, purge.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Directories (LDAP, Active Directory).
    Ldap {
        #[command(subcommand)]
        command: LdapCommand,
    },
    /// FIDO2 security keys of people: enrolment codes, listing, revocation.
    Fido2 {
        #[command(subcommand)]
        command: Fido2Command,
    },
    /// The admin UI (benchmark only).
    #[command(hide = true)]
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Fill an EMPTY database with people and audit records, then time every admin page
    /// through the server's handlers (scripts/bench-admin.sh, docs/performance.md).
    Bench {
        #[command(flatten)]
        cfg: ConfigArg,
        #[arg(long, default_value_t = 10_000)]
        people: u64,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Days the records are spread over, ending now.
        #[arg(long, default_value_t = 90)]
        days: u64,
        /// Timed runs per page (after one warm-up run).
        #[arg(long, default_value_t = 30)]
        runs: u64,
        #[arg(long, default_value_t = 20)]
        clients: u64,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and the signed checkpoints. Exits with status 1 at the first
    /// altered, inserted or deleted record or bad checkpoint.
    Verify {
        #[command(flatten)]
        cfg: ConfigArg,
        /// First seq to check (default: the oldest record kept).
        #[arg(long)]
        from: Option<i64>,
        /// Last seq to check (default: the chain head).
        #[arg(long)]
        to: Option<i64>,
    },
    /// Check an export file offline (no database, no key): every record's hash, the links
    /// between consecutive records, that each shows the event it hashes, and the signature of
    /// the checkpoint the export ends with. A filtered export of the admin UI ends with a
    /// selection seal instead: its records need not be consecutive, the seal must match them.
    /// Exits with status 1 at the first problem. Prints the hashes before the first and of the
    /// last record and the signing key's thumbprint.
    VerifyExport {
        /// The JSON-lines file written by `relais audit export` or the admin UI (`-`: standard input).
        file: PathBuf,
        /// Relais' JWK Set (`/jwks`, saved while the signing key was current): the export must
        /// end with a checkpoint or seal signed by one of its keys, else exit status 1.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
    /// Print records as JSON lines, oldest first. The export is itself audited.
    Export {
        #[command(flatten)]
        cfg: ConfigArg,
        /// RFC 3339 timestamp or a date (UTC midnight).
        #[arg(long, value_parser = timestamp)]
        since: chrono::DateTime<chrono::Utc>,
        /// Exclusive upper bound (default: now).
        #[arg(long, value_parser = timestamp)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
    },
    /// Delete records older than --before (default: `[audit] retention_days` ago). The chain is
    /// verified first; a signed checkpoint keeps what remains verifiable; the purge is audited.
    Purge {
        #[command(flatten)]
        cfg: ConfigArg,
        #[arg(long, value_parser = timestamp)]
        before: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// SIEM forwarding: each destination's last forwarded seq, lag behind the chain head and
    /// which replica holds its lease.
    ForwardStatus {
        #[command(flatten)]
        cfg: ConfigArg,
    },
    /// Benchmark appends and verify on an EMPTY database (scripts/bench.sh, docs/performance.md).
    #[command(hide = true)]
    Bench {
        #[command(flatten)]
        cfg: ConfigArg,
        #[arg(long, default_value_t = 50_000)]
        appends: u64,
        #[arg(long, default_value_t = 64)]
        writers: u64,
        #[arg(long, default_value_t = 1_000_000)]
        fill: u64,
        #[arg(long, default_value_t = 2000)]
        fill_batch: u64,
    },
}

/// RFC 3339, or a plain date taken as midnight UTC.
fn timestamp(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .or_else(|_| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc()))
        .map_err(|_| format!("{s}: expected an RFC 3339 timestamp or YYYY-MM-DD"))
}

#[derive(Subcommand)]
enum LdapCommand {
    /// Check the `[[directories]]` configuration against the live directory for one user and
    /// explain each step (connection, TLS, service bind, search, attributes, groups, state).
    Test {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The username as typed on the login form.
        #[arg(long)]
        user: String,
        /// Also bind as the user with a password read from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum Fido2Command {
    /// Issue a one-time code that lets a person enrol a first security key (printed once).
    EnrolmentCode {
        #[command(flatten)]
        cfg: ConfigArg,
        #[arg(long)]
        user: String,
    },
    /// List a person's security keys.
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        #[arg(long)]
        user: String,
    },
    /// Revoke a security key; it is refused from the next login.
    Revoke {
        #[command(flatten)]
        cfg: ConfigArg,
        #[arg(long)]
        user: String,
        /// The key id shown by `relais fido2 list`.
        #[arg(long)]
        key: uuid::Uuid,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a local account. The password is read from standard input (one line).
    Add {
        #[command(flatten)]
        cfg: ConfigArg,
        #[arg(long)]
        username: String,
        #[arg(long)]
        given_name: String,
        #[arg(long)]
        family_name: String,
        /// Shown name (default: given name and family name).
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// Set a local account's password (read from standard input, one line).
    Passwd {
        #[command(flatten)]
        cfg: ConfigArg,
        username: String,
    },
    /// Disable a local account: no more logins, no more token refreshes.
    Disable {
        #[command(flatten)]
        cfg: ConfigArg,
        username: String,
    },
    Enable {
        #[command(flatten)]
        cfg: ConfigArg,
        username: String,
    },
    /// Grant an admin UI role (`admin`, read-only `auditor`) or withdraw it (`none`).
    Role {
        #[command(flatten)]
        cfg: ConfigArg,
        username: String,
        role: String,
    },
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client. A generated secret is printed once.
    Add {
        #[command(flatten)]
        cfg: ConfigArg,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// client_secret_basic, client_secret_post, private_key_jwt or none (public client).
        #[arg(long, default_value = "client_secret_basic")]
        auth_method: String,
        /// A JWK Set file with the client's public keys (private_key_jwt).
        #[arg(long)]
        jwks_file: Option<PathBuf>,
        /// ES256 (default) or RS256.
        #[arg(long, default_value = "ES256")]
        id_token_alg: String,
        /// Answer userinfo as a JWT signed with this algorithm.
        #[arg(long)]
        userinfo_signed_alg: Option<String>,
        #[arg(long)]
        min_acr: Option<String>,
        #[arg(long)]
        max_auth_age: Option<i64>,
        /// Reserve the application to people holding this role (from `[directories.roles]`);
        /// repeat for "any of these". Others get `access_denied`.
        #[arg(long = "required-role")]
        required_roles: Vec<String>,
    },
    List {
        #[command(flatten)]
        cfg: ConfigArg,
    },
    /// Register Pro Santé Connect as a client (the PSC profile: phishing-resistant factors,
    /// re-authentication every 4 hours, verified national identity, terms of use).
    AddPsc {
        #[command(flatten)]
        cfg: ConfigArg,
        /// sandbox or production.
        #[arg(long)]
        environment: String,
        /// The kc_idp_hint ANS assigned to the establishment.
        #[arg(long)]
        hint: String,
        #[arg(long, default_value = "psc")]
        id: String,
        /// client_secret_basic (default) or private_key_jwt (with --jwks-file).
        #[arg(long, default_value = "client_secret_basic")]
        auth_method: String,
        #[arg(long)]
        jwks_file: Option<PathBuf>,
        #[arg(long, default_value = "ES256")]
        id_token_alg: String,
        /// Lowest acr accepted (default: the strongest configured level).
        #[arg(long)]
        min_acr: Option<String>,
    },
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Match the Annuaire Santé extraction (PS_LibreAcces_Personne_activite_*.txt) against local people.
    ImportAnnuaire {
        #[command(flatten)]
        cfg: ConfigArg,
        file: PathBuf,
        /// Show the changes without applying them.
        #[arg(long)]
        dry_run: bool,
        /// FINESS numbers of the establishment (default: `[identity] finess`).
        #[arg(long)]
        finess: Vec<String>,
    },
    /// Import a `login;idnat` mapping file.
    ImportMapping {
        #[command(flatten)]
        cfg: ConfigArg,
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
    },
    /// Show a person's national identities.
    Show {
        #[command(flatten)]
        cfg: ConfigArg,
        username: String,
    },
    /// Link a national identifier (idNat) to a person.
    Link {
        #[command(flatten)]
        cfg: ConfigArg,
        username: String,
        idnat: String,
        /// The admin checked a proof (card, Annuaire): mark verified.
        #[arg(long)]
        verified: bool,
    },
    Unlink {
        #[command(flatten)]
        cfg: ConfigArg,
        username: String,
        idnat: String,
    },
    /// List the matches waiting for a decision, or decide one (`--resolve ID` with `--link
    /// IDNAT` or `--dismiss`).
    Review {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The item to decide (first column of the list).
        #[arg(long, requires = "decision")]
        resolve: Option<i64>,
        /// Link this national identifier (one of the item's candidates) to the person.
        #[arg(long, group = "decision", requires = "resolve")]
        link: Option<String>,
        /// With --link: the admin checked a proof of identity (card, ID document).
        #[arg(long, requires = "link")]
        verified: bool,
        /// Close the item without linking anything.
        #[arg(long, group = "decision", requires = "resolve")]
        dismiss: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new signing key active; the previous one stays published for the overlap window.
    Rotate {
        #[command(flatten)]
        cfg: ConfigArg,
        #[arg(long, default_value = "ES256")]
        alg: String,
    },
    List {
        #[command(flatten)]
        cfg: ConfigArg,
    },
    /// Print a new random key-encryption key for `[keys] encryption_key`.
    GenerateKek,
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn load(cfg: &ConfigArg) -> Result<Config, Box<dyn std::error::Error>> {
    Ok(Config::load(Some(&cfg.config), std::env::vars())?)
}

fn alg(s: &str) -> Result<SigningAlg, String> {
    SigningAlg::parse(s).ok_or_else(|| format!("unknown algorithm {s} (ES256 or RS256)"))
}

fn uris(v: &[String]) -> Result<Vec<RedirectUri>, String> {
    v.iter().map(|u| RedirectUri::parse(u).map_err(|e| e.to_string())).collect()
}

#[tokio::main]
async fn main() {
    relais::memory::return_large_allocations();
    relais::install_crypto_provider();
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("relais: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Res {
    match cli.command {
        Command::Serve { cfg, listen } => {
            let mut config = load(&cfg)?;
            if let Some(l) = listen {
                config.listen = l;
            }
            let _telemetry = relais::telemetry::init(&config);
            let running = server::start(config).await?;
            tracing::info!(addr = %running.addr, "relais is listening");
            wait_for_shutdown(running).await
        }
        Command::Demo { listen, data_dir } => demo(listen, data_dir).await,
        Command::Migrate { cfg } => {
            let config = load(&cfg)?;
            server::open_store(&config).await?;
            println!("database schema is up to date");
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    cfg,
                    username,
                    given_name,
                    family_name,
                    display_name,
                    email,
                },
        } => {
            let config = load(&cfg)?;
            let new = NewAccount {
                display_name: display_name.unwrap_or_else(|| format!("{given_name} {family_name}")),
                email,
                ..NewAccount::new(&username, &given_name, &family_name)
            };
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.lines().next().unwrap_or("").to_owned();
            let c = Components::build(config, Arc::new(relais::domain::ports::SystemClock)).await?;
            let a = c.management("cli").create_account(&c.config.passwords, new, &password).await?;
            println!("created local account {} (id {})", a.username, a.id);
            Ok(())
        }
        Command::User {
            command: UserCommand::Passwd { cfg, username },
        } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let c = components(&cfg).await?;
            c.management("cli")
                .set_password(&c.config.passwords, &username, password.lines().next().unwrap_or(""))
                .await?;
            println!("password set for {username}");
            Ok(())
        }
        Command::User {
            command: UserCommand::Disable { cfg, username },
        } => {
            let c = components(&cfg).await?;
            c.management("cli").set_disabled(&username, true).await?;
            println!("{username} is disabled");
            Ok(())
        }
        Command::User {
            command: UserCommand::Enable { cfg, username },
        } => {
            let c = components(&cfg).await?;
            c.management("cli").set_disabled(&username, false).await?;
            println!("{username} is enabled");
            Ok(())
        }
        Command::User {
            command: UserCommand::Role { cfg, username, role },
        } => {
            let role = match role.as_str() {
                "none" => None,
                r => Some(relais::domain::admin::AdminRole::parse(r).ok_or("the role is admin, auditor or none")?),
            };
            let c = components(&cfg).await?;
            c.management("cli").set_admin_role(c.store.as_ref(), &username, role).await?;
            println!("{username}: admin UI role {}", role.map(|r| r.as_str()).unwrap_or("none"));
            Ok(())
        }
        Command::Client { command } => client_command(command).await,
        Command::Keys { command } => keys_command(command).await,
        Command::Identity { command } => identity_command(command).await,
        Command::Audit { command } => audit_command(command).await,
        Command::Admin {
            command:
                AdminCommand::Bench {
                    cfg,
                    people,
                    records,
                    days,
                    runs,
                    clients,
                },
        } => {
            let c = Components::build(load(&cfg)?, Arc::new(relais::domain::ports::SystemClock)).await?;
            let o = relais::admin_bench::BenchOptions {
                people,
                records,
                days,
                runs,
                clients,
            };
            relais::admin_bench::run(&c, &o).await
        }
        Command::Ldap {
            command: LdapCommand::Test { cfg, user, password_stdin },
        } => ldap_test(load(&cfg)?, &user, password_stdin).await,
        Command::Fido2 { command } => fido2_command(command).await,
    }
}

/// "seq 1..=42", or "no records", for the verify reports.
fn seq_range(first: Option<i64>, last: Option<i64>) -> String {
    match (first, last) {
        (Some(a), Some(b)) => format!("seq {a}..={b}"),
        _ => "no records".into(),
    }
}

async fn audit_command(command: AuditCommand) -> Res {
    use relais::domain::audit_verify;
    match command {
        AuditCommand::Verify { cfg, from, to } => {
            let c = Components::build(load(&cfg)?, Arc::new(relais::domain::ports::SystemClock)).await?;
            let report = audit_verify::verify(c.store.as_ref(), c.keys.as_ref(), from, to).await?;
            let range = seq_range(report.first_seq, report.last_seq);
            match report.problem {
                None => {
                    println!(
                        "audit chain OK: {} records ({range}), {} signed checkpoints",
                        report.records, report.checkpoints
                    );
                    Ok(())
                }
                Some(p) => {
                    println!("audit chain BROKEN at seq {}: {p}", p.seq());
                    println!("(checked {} records before it, {range})", report.records);
                    std::process::exit(1);
                }
            }
        }
        AuditCommand::VerifyExport { file, jwks } => {
            let trusted: Option<serde_json::Value> = match &jwks {
                Some(p) => Some(
                    std::fs::read(p)
                        .map_err(|e| format!("{}: {e}", p.display()))
                        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("{}: not a JWK Set: {e}", p.display())))?,
                ),
                None => None,
            };
            use std::io::BufRead;
            let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?,
                ))
            };
            let mut read_error = None;
            let lines = reader.lines().map_while(|l| l.map_err(|e| read_error = Some(e)).ok());
            let report = relais::domain::audit_export_check::check_export(lines, &relais::adapters::keys::verify_es256_with_jwk);
            if let Some(e) = read_error {
                return Err(format!("{}: cannot read: {e}", file.display()).into());
            }
            let range = seq_range(report.first_seq, report.last_seq);
            match report.problem {
                None => {
                    match &report.selection {
                        Some(sel) => {
                            println!(
                                "export OK: {} records ({range}), each matching its hash; a filtered export (records between them are not in the file)",
                                report.records
                            );
                            println!("  filter: {}", sel.filter);
                            if let (Some(first), Some(last)) = (&report.anchor, &report.last_hash) {
                                println!("  prev_hash of the first record: {first}");
                                println!("  hash of the last record:       {last}");
                            }
                            println!(
                                "  sealed at {} by key {} (JWK thumbprint {}): exactly these records, in this order",
                                sel.at.to_rfc3339(),
                                sel.kid,
                                sel.thumbprint
                            );
                        }
                        None => {
                            println!(
                                "export OK: {} records ({range}), each hashed and linked to the one before",
                                report.records
                            );
                            if let (Some(anchor), Some(last)) = (&report.anchor, &report.last_hash) {
                                println!("  hash of the record before the first: {anchor}");
                                println!("  hash of the last record:             {last}");
                            }
                            match report.final_checkpoint() {
                                Some(c) => println!(
                                    "  signed at {} by key {} (JWK thumbprint {}), over the last record",
                                    c.at.to_rfc3339(),
                                    c.kid,
                                    c.thumbprint
                                ),
                                None => println!("  no signed checkpoint over the last record"),
                            }
                        }
                    }
                    match trusted.map(|t| report.signed_by(&t)) {
                        None => {
                            if report.whole_file_signer().is_some() {
                                println!("  (whether that key is Relais' is not checked: pass --jwks with Relais' /jwks)");
                            }
                            Ok(())
                        }
                        Some(Ok(())) => {
                            println!("  the signing key is in the given JWKS");
                            Ok(())
                        }
                        Some(Err(p)) => {
                            println!("export NOT SIGNED by a trusted key: {p}");
                            std::process::exit(1);
                        }
                    }
                }
                Some(p) => {
                    println!("export BROKEN: {p}");
                    println!("(checked {} records before it, {range})", report.records);
                    std::process::exit(1);
                }
            }
        }
        AuditCommand::Export {
            cfg,
            since,
            until,
            format: _,
        } => {
            let c = Components::build(load(&cfg)?, Arc::new(relais::domain::ports::SystemClock)).await?;
            let until = until.unwrap_or_else(|| c.clock.now());
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = audit_verify::export_jsonl(
                c.store.as_ref(),
                c.audit.as_ref(),
                c.keys.as_ref(),
                since,
                Some(until),
                c.clock.now(),
                &mut out,
            )
            .await?;
            eprintln!("exported {n} audit records");
            Ok(())
        }
        AuditCommand::Purge { cfg, before } => {
            let c = Components::build(load(&cfg)?, Arc::new(relais::domain::ports::SystemClock)).await?;
            let now = c.clock.now();
            let before = before.unwrap_or(now - chrono::Duration::days(i64::from(c.config.audit.retention_days)));
            // Never purge what a SIEM destination has not received (a destination without a
            // cursor yet has received nothing).
            let names: Vec<&str> = c.config.audit.forward.iter().map(|d| d.name.as_str()).collect();
            let forwarded_through = c.store.forwarded_through(&names).await?;
            if let Some(through) = forwarded_through {
                let (head, _) = relais::domain::ports::Storage::audit_head(c.store.as_ref()).await?;
                if through < head {
                    println!("SIEM forwarding has sent records through seq {through} (head {head}): the rest is kept");
                }
            }
            let outcome = audit_verify::purge(c.store.as_ref(), c.keys.as_ref(), c.audit.as_ref(), before, forwarded_through, now).await?;
            match outcome.through_seq {
                Some(seq) => println!(
                    "purged {} audit records (through seq {seq}); a signed checkpoint anchors the rest",
                    outcome.deleted
                ),
                None => println!("no audit record is older than {before}"),
            }
            Ok(())
        }
        AuditCommand::ForwardStatus { cfg } => {
            use relais::domain::ports::Storage;
            let config = load(&cfg)?;
            let store = server::open_store(&config).await?;
            let (head, _) = store.audit_head().await?;
            let cursors = store.forward_cursors().await?;
            println!("audit chain head: seq {head}");
            for f in &config.audit.forward {
                match cursors.iter().find(|c| c.destination == f.name) {
                    Some(c) => println!(
                        "{} ({}): forwarded through seq {}, lag {}, updated {}, lease {}",
                        f.name,
                        f.address,
                        c.seq,
                        (head - c.seq).max(0),
                        c.updated_at.to_rfc3339(),
                        match (&c.holder, c.lease_until) {
                            (Some(h), Some(u)) => format!("held by {h} until {}", u.to_rfc3339()),
                            _ => "free".into(),
                        }
                    ),
                    None => println!("{} ({}): not started yet, lag {head}", f.name, f.address),
                }
            }
            for c in cursors
                .iter()
                .filter(|c| !config.audit.forward.iter().any(|f| f.name == c.destination))
            {
                println!("{} (no longer configured): forwarded through seq {}", c.destination, c.seq);
            }
            Ok(())
        }
        AuditCommand::Bench {
            cfg,
            appends,
            writers,
            fill,
            fill_batch,
        } => {
            let c = Components::build(load(&cfg)?, Arc::new(relais::domain::ports::SystemClock)).await?;
            let o = relais::audit_bench::BenchOptions {
                appends,
                writers,
                fill,
                fill_batch,
            };
            relais::audit_bench::run(&c, &o).await
        }
    }
}

async fn ldap_test(config: Config, user: &str, password_stdin: bool) -> Res {
    if config.directories.is_empty() {
        return Err("no [[directories]] in the configuration: logins use local accounts".into());
    }
    let password = if password_stdin {
        let mut p = String::new();
        std::io::stdin().read_to_string(&mut p)?;
        Some(p.lines().next().unwrap_or("").to_owned())
    } else {
        None
    };
    let store: Arc<dyn relais::domain::ports::Storage> = Arc::new(server::open_store(&config).await?);
    let dirs = server::directories(&config, store, Arc::new(relais::domain::ports::SystemClock))?;
    let mut handled = false;
    for d in dirs {
        let Some(login) = d.route(user) else {
            println!("directory {:?}: does not handle this username (username_suffixes)", d.settings.name);
            continue;
        };
        handled = true;
        for line in d.explain(&login, password.as_deref()).await {
            println!("{line}");
        }
    }
    if !handled {
        println!("no directory handles {user:?}");
    }
    Ok(())
}

async fn fido2_command(command: Fido2Command) -> Res {
    match command {
        Fido2Command::EnrolmentCode { cfg, user } => {
            let c = components(&cfg).await?;
            let ttl = c.config.fido2.enrolment_code_ttl_secs;
            let (code, expires) = c.management("cli").issue_enrolment_code(&user, ttl).await?;
            println!("enrolment code for {user}: {code}");
            println!("valid once, until {expires}; hand it over in person or by a trusted channel");
        }
        Fido2Command::List { cfg, user } => {
            let c = components(&cfg).await?;
            for k in c.management("cli").security_keys_of(&user).await? {
                let state = match k.revoked_at {
                    Some(t) => format!("revoked {t}"),
                    None => "active".into(),
                };
                let used = k.last_used_at.map(|t| t.to_string()).unwrap_or_else(|| "never".into());
                println!(
                    "{}  {}  aaguid {}  created {}  last used {}  {}",
                    k.id, k.name, k.aaguid, k.created_at, used, state
                );
            }
        }
        Fido2Command::Revoke { cfg, user, key } => {
            let c = components(&cfg).await?;
            c.management("cli").revoke_security_key(&user, key).await?;
            println!("key {key} of {user} revoked");
        }
    }
    Ok(())
}

async fn client_command(command: ClientCommand) -> Res {
    match command {
        ClientCommand::Add {
            cfg,
            id,
            name,
            redirect_uris,
            post_logout_redirect_uris,
            auth_method,
            jwks_file,
            id_token_alg,
            userinfo_signed_alg,
            min_acr,
            max_auth_age,
            required_roles,
        } => {
            let config = load(&cfg)?;
            let auth_method = TokenAuthMethod::parse(&auth_method).ok_or("unknown --auth-method")?;
            let jwks = match jwks_file {
                Some(f) => Some(serde_json::from_str(&std::fs::read_to_string(f)?)?),
                None => None,
            };
            let new = NewClient {
                id: ClientId::parse(&id)?,
                name,
                kind: ClientKind::Local,
                auth_method,
                redirect_uris: uris(&redirect_uris)?,
                post_logout_redirect_uris: uris(&post_logout_redirect_uris)?,
                jwks,
                id_token_alg: alg(&id_token_alg)?,
                userinfo_signed_alg: userinfo_signed_alg.as_deref().map(alg).transpose()?,
                min_acr,
                max_auth_age,
                allow_refresh: true,
                may_introspect: false,
                required_roles,
            };
            let c = Components::build(config, Arc::new(relais::domain::ports::SystemClock)).await?;
            let (client, secret) = c.management("cli").register_client(new).await?;
            println!("registered client {}", client.id);
            if let Some(s) = secret {
                println!("client secret (shown once, store it now): {s}");
            }
            Ok(())
        }
        ClientCommand::AddPsc {
            cfg,
            environment,
            hint,
            id,
            auth_method,
            jwks_file,
            id_token_alg,
            min_acr,
        } => {
            let c = components(&cfg).await?;
            let env = PscEnvironment::parse(&environment).ok_or("--environment must be sandbox or production")?;
            let strongest = c.config.assurance.acr_levels.last().cloned().unwrap_or_default();
            let mut new = NewClient::psc(
                ClientId::parse(&id)?,
                env.broker_redirect_uri(&hint)?,
                &min_acr.unwrap_or(strongest),
            );
            new.auth_method = TokenAuthMethod::parse(&auth_method).ok_or("unknown --auth-method")?;
            new.id_token_alg = alg(&id_token_alg)?;
            if let Some(f) = jwks_file {
                new.jwks = Some(serde_json::from_str(&std::fs::read_to_string(f)?)?);
            }
            let (client, secret) = c.management("cli").register_client(new).await?;
            println!("registered Pro Santé Connect ({environment}) as client {}", client.id);
            println!("redirect URI: {}", client.redirect_uris[0]);
            println!("tid declared to ANS: {}", c.config.psc.tenant_id);
            if let Some(s) = secret {
                println!("client secret (shown once, give it to ANS through Datapass): {s}");
            }
            Ok(())
        }
        ClientCommand::List { cfg } => {
            let config = load(&cfg)?;
            let store = server::open_store(&config).await?;
            use relais::domain::ports::Storage;
            for c in store.list_clients().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    c.id,
                    c.auth_method.as_str(),
                    c.name,
                    c.redirect_uris.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(" ")
                );
            }
            Ok(())
        }
    }
}

async fn components(cfg: &ConfigArg) -> Result<Components, Box<dyn std::error::Error>> {
    let config = load(cfg)?;
    Ok(Components::build(config, Arc::new(relais::domain::ports::SystemClock)).await?)
}

async fn identity_command(command: IdentityCommand) -> Res {
    match command {
        IdentityCommand::ImportAnnuaire {
            cfg,
            file,
            dry_run,
            finess,
        } => {
            let c = components(&cfg).await?;
            let finess = if finess.is_empty() {
                c.config.identity.finess.clone()
            } else {
                finess
            };
            if finess.is_empty() {
                return Err("no FINESS number: pass --finess or set [identity] finess".into());
            }
            let reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?);
            let claims = server::directory_claims(&c).await?;
            let plan = c.management("cli").import_annuaire_with(reader, &finess, &claims, dry_run).await?;
            report_plan(&plan, dry_run)
        }
        IdentityCommand::ImportMapping { cfg, file, dry_run } => {
            let c = components(&cfg).await?;
            let text = std::fs::read_to_string(&file)?;
            let plan = c.management("cli").import_mapping_file(&text, dry_run).await?;
            report_plan(&plan, dry_run)
        }
        IdentityCommand::Show { cfg, username } => {
            let c = components(&cfg).await?;
            let (a, ids) = c.management("cli").show(&username).await?;
            println!("{} ({}), id {}", a.username, a.display_name, a.id);
            for n in ids {
                println!(
                    "  {}\t{}\t{}\t{}",
                    n.idnat,
                    n.idnat.kind().as_str(),
                    n.provenance.as_str(),
                    if n.verified { "verified" } else { "unverified" }
                );
            }
            Ok(())
        }
        IdentityCommand::Link {
            cfg,
            username,
            idnat,
            verified,
        } => {
            let c = components(&cfg).await?;
            let n = c.management("cli").link(&username, &idnat, verified).await?;
            println!("linked {username} to {}", n.idnat);
            Ok(())
        }
        IdentityCommand::Unlink { cfg, username, idnat } => {
            let c = components(&cfg).await?;
            let removed = c.management("cli").unlink(&username, &idnat).await?;
            println!("{}", if removed { "unlinked" } else { "no such mapping" });
            Ok(())
        }
        IdentityCommand::Review {
            cfg,
            resolve,
            link,
            verified,
            dismiss: _,
        } => {
            let c = components(&cfg).await?;
            if let Some(id) = resolve {
                use relais::domain::management::ReviewDecision;
                let decision = match &link {
                    Some(idnat) => ReviewDecision::Link { idnat, verified },
                    None => ReviewDecision::Dismiss,
                };
                let item = c.management("cli").resolve_review(id, decision).await?;
                match link {
                    Some(idnat) => println!("review item {id}: {idnat} linked to {}", item.username),
                    None => println!("review item {id} ({}) dismissed", item.username),
                }
                return Ok(());
            }
            use relais::domain::ports::IdentityStore;
            let items = c.store.review_items().await?;
            if items.is_empty() {
                println!("the review queue is empty");
            }
            for r in items {
                let ids: Vec<String> = r.candidates.iter().map(ToString::to_string).collect();
                println!("{}\t{}\t{}\t{}", r.id.unwrap_or_default(), r.username, r.reason, ids.join(","));
            }
            Ok(())
        }
    }
}

fn report_plan(plan: &relais::domain::identity_import::Plan, dry_run: bool) -> Res {
    print!("{plan}");
    if !plan.applicable() {
        return Err("the file has errors: nothing was imported".into());
    }
    println!("{}", if dry_run { "dry run: nothing changed" } else { "applied" });
    Ok(())
}

async fn keys_command(command: KeysCommand) -> Res {
    match command {
        KeysCommand::GenerateKek => {
            println!("{}", Kek::generate().to_base64());
            Ok(())
        }
        KeysCommand::Rotate { cfg, alg: a } => {
            let config = load(&cfg)?;
            let overlap = chrono::Duration::seconds(config.keys.rotation_overlap_secs);
            let c = Components::build(config, Arc::new(relais::domain::ports::SystemClock)).await?;
            let alg = alg(&a)?;
            let kid = c.keys.rotate(c.store.as_ref(), alg, overlap, c.clock.now()).await?;
            use relais::domain::audit::{AuditEvent, AuditRecord};
            c.audit
                .record(AuditRecord {
                    at: c.clock.now(),
                    event: AuditEvent::SigningKeyRotated {
                        alg: a,
                        new_kid: kid.clone(),
                    },
                    context: Default::default(),
                })
                .await?;
            println!(
                "new signing key {kid} is active; the previous key stays published for {}s",
                overlap.num_seconds()
            );
            Ok(())
        }
        KeysCommand::List { cfg } => {
            let config = load(&cfg)?;
            let c = Components::build(config, Arc::new(relais::domain::ports::SystemClock)).await?;
            for (kid, alg, signs) in c.keys.describe() {
                println!(
                    "{kid}\t{}\t{}",
                    alg.as_str(),
                    if signs { "signing" } else { "published (rotated out)" }
                );
            }
            Ok(())
        }
    }
}

/// SIGTERM or Ctrl-C: readiness false, grace, drain (`Running::shutdown`); a second signal
/// skips the grace.
async fn wait_for_shutdown(mut running: server::Running) -> Res {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = &mut running.task => return Ok(r??),
    }
    let again = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    running.shutdown(again).await?;
    Ok(())
}

/// The zero-configuration demo.
async fn demo(listen: std::net::SocketAddr, data_dir: PathBuf) -> Res {
    std::fs::create_dir_all(&data_dir)?;
    let kek_path = data_dir.join("kek");
    let kek = match std::fs::read_to_string(&kek_path) {
        Ok(k) => k.trim().to_owned(),
        Err(_) => {
            let k = Kek::generate().to_base64();
            std::fs::write(&kek_path, &k)?;
            k
        }
    };
    let db = data_dir.join("relais.sqlite");
    let base = format!("http://localhost:{}", listen.port());
    let toml = format!(
        "issuer = \"{base}\"\nlisten = \"{listen}\"\ndev_mode = true\n[database]\nurl = \"sqlite://{}?mode=rwc\"\n[keys]\nencryption_key = \"{kek}\"\n[passwords]\nmin_length = 8\n[shutdown]\nreadiness_grace_ms = 0\n",
        db.display()
    );
    let config = Config::from_toml_str(&toml)?;
    let _telemetry = relais::telemetry::init(&config);
    let components = Components::build(config, Arc::new(relais::domain::ports::SystemClock)).await?;
    let m = components.management("demo");
    let redirect = format!("http://localhost:{}/callback", listen.port() + 1);
    let mut secret_note = String::from("(already registered in an earlier run; secret shown then)");
    let new = NewClient {
        post_logout_redirect_uris: uris(&[format!("http://localhost:{}/", listen.port() + 1)])?,
        ..NewClient::confidential(
            ClientId::parse("demo-app")?,
            "Application de démonstration",
            uris(std::slice::from_ref(&redirect))?,
        )
    };
    if let Ok((_, Some(s))) = m.register_client(new).await {
        std::fs::write(data_dir.join("demo-app.secret"), &s)?;
        secret_note = s;
    } else if let Ok(s) = std::fs::read_to_string(data_dir.join("demo-app.secret")) {
        secret_note = s;
    }
    for (user, given, family, pw) in [
        ("alice", "Alice", "Martin", "alice-demo-pw"),
        ("bob", "Bob", "Durand", "bob-demo-pw"),
    ] {
        let new = NewAccount {
            email: Some(format!("{user}@demo.relais.local")),
            ..NewAccount::new(user, given, family)
        };
        let _ = m.create_account(&components.config.passwords, new, pw).await;
    }
    let components = Arc::new(components);
    let listener = std::net::TcpListener::bind(listen)?;
    let running = server::serve(components, listener)?;
    println!(
        "\nRelais demo is running (SQLite in {dir}, in-process sessions, dev mode: cookies without Secure).\n\n  Discovery:   {base}/.well-known/openid-configuration\n  JWKS:        {base}/jwks\n  Try a login: {base}/authorize?response_type=code&client_id=demo-app&scope=openid%20profile%20email&redirect_uri={redir}&state=demo\n\n  Demo client: id demo-app, secret {secret_note}, redirect URI {redirect}\n  Accounts:    alice / alice-demo-pw    bob / bob-demo-pw\n\nAfter the login the browser lands on {redirect}?code=...: exchange it with\n  curl -u demo-app:SECRET -d grant_type=authorization_code -d code=CODE -d redirect_uri={redirect} {base}/token\n",
        dir = data_dir.display(),
        redir = url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>(),
    );
    wait_for_shutdown(running).await
}
