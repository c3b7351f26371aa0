//! The admin UI benchmark behind docs/performance.md (`relais admin bench`, hidden; run by
//! scripts/bench-admin.sh): fills an EMPTY database with `people` local accounts (inserted in
//! bulk, one shared password hash; some with national identities, security keys and admin
//! roles) and `records` audit records spread over those people and over `days` days (the audit
//! chain's batched append, checkpointed as the sink does), then times each admin page through
//! the server's own handlers: the same actix routes, application state and admin session
//! cookie as `relais serve`, called in-process (no socket), body included. Issue #7's target is
//! 50 ms per page, server-side.
use crate::adapters::http::admin::ADMIN_COOKIE;
use crate::domain::account::Account;
use crate::domain::admin::{AdminRole, AdminSession};
use crate::domain::audit::{AuditEvent, AuditRecord, RequestContextRecord};
use crate::domain::audit_chain::Checkpoint;
use crate::domain::fido2::SecurityKeyRecord;
use crate::domain::identity::{IdNat, NationalIdentity, Provenance};
use crate::domain::management::NewClient;
use crate::domain::ports::{IdentityStore, Namespace, SecurityKeyStore, Storage};
use crate::protocol::{ClientId, RedirectUri};
use crate::server::Components;
use actix_web::cookie::Cookie;
use actix_web::{App, test};
use chrono::{Duration as Days, Utc};
use sea_orm::ConnectionTrait;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub struct BenchOptions {
    pub people: u64,
    pub records: u64,
    /// The records are spread evenly over this many days, the last one ending now.
    pub days: u64,
    pub runs: u64,
    pub clients: u64,
}

const GIVEN: &[&str] = &[
    "marie",
    "jean",
    "martine",
    "pierre",
    "nathalie",
    "michel",
    "isabelle",
    "philippe",
    "sylvie",
    "alain",
    "catherine",
    "nicolas",
    "christine",
    "patrick",
    "sophie",
    "laurent",
    "valerie",
    "christophe",
    "sandrine",
    "stephane",
    "camille",
    "thomas",
    "julie",
    "antoine",
    "claire",
    "olivier",
    "emilie",
    "marc",
    "celine",
    "francois",
    "aurelie",
    "mathieu",
];
const FAMILY: &[&str] = &[
    "martin", "bernard", "dubois", "thomas", "robert", "richard", "petit", "durand", "leroy", "moreau", "simon", "laurent", "lefebvre",
    "michel", "garcia", "david", "bertrand", "roux", "vincent", "fournier", "morel", "girard", "andre", "lefevre", "mercier", "dupont",
    "lambert", "bonnet", "francois", "martinez", "legrand", "garnier",
];
/// One person whose name nobody else shares (the "rare name" search, and the search with
/// accents by the given name).
const RARE: (&str, &str) = ("zéphyrin", "quatrebarbes");

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn person(i: u64, hash: &str) -> Account {
    let (given, family) = if i == 4242 {
        RARE
    } else {
        (
            GIVEN[(i % GIVEN.len() as u64) as usize],
            FAMILY[((i / GIVEN.len() as u64) % FAMILY.len() as u64) as usize],
        )
    };
    let username = format!("{given}.{family}{i}");
    Account {
        id: Uuid::new_v4(),
        email: Some(format!("{username}@chu-exemple.fr")),
        display_name: format!("{} {}", capital(given), family.to_uppercase()),
        given_name: Some(capital(given)),
        family_name: Some(family.to_uppercase()),
        password_hash: Some(hash.to_owned()),
        disabled: i % 50 == 7,
        directory_id: None,
        username,
    }
}

/// Record `i` of the fill: logins of the people in groups of three records (the login, the
/// code, the token), a few refusals, throttles and logouts.
fn record(i: u64, o: &BenchOptions, ids: &[String], start: chrono::DateTime<Utc>) -> AuditRecord {
    let g = i / 3;
    let who = &ids[((g * 7919) % ids.len() as u64) as usize];
    let client_id = format!("app-{}", g % o.clients.max(1));
    let session_id = format!("{:064x}", g);
    let step = (o.days * 86_400_000_000) / o.records.max(1);
    let at = start + Days::microseconds((i * step) as i64);
    let event = match (i % 3, g % 10) {
        (0, 0) => AuditEvent::SsoReused {
            account_id: who.clone(),
            client_id: client_id.clone(),
            session_id,
        },
        (0, 1..=3) => AuditEvent::Fido2Authentication {
            account_id: who.clone(),
            key_id: Some(format!("{:032x}", g % 1000)),
            success: !g.is_multiple_of(97),
            reason: g.is_multiple_of(97).then(|| "signature".into()),
        },
        (0, _) if g.is_multiple_of(1009) => AuditEvent::LoginThrottled {
            username: format!("user{}", g % 10_000),
            scope: "username".into(),
        },
        (0, _) => AuditEvent::LoginPassword {
            username: format!("user{}", g % 10_000),
            account_id: Some(who.clone()),
            success: !g.is_multiple_of(31),
            reason: g.is_multiple_of(31).then(|| "wrong_password".into()),
        },
        (1, _) => AuditEvent::CodeIssued {
            account_id: who.clone(),
            client_id,
            session_id,
        },
        (_, _) if g.is_multiple_of(13) => AuditEvent::Logout {
            account_id: who.clone(),
            session_id,
            client_id: Some(client_id),
        },
        (_, _) => AuditEvent::TokenIssued {
            account_id: who.clone(),
            client_id,
            grant_type: "authorization_code".into(),
            acr: "loa1".into(),
            amr: vec!["pwd".into()],
            auth_time: at.timestamp(),
            session_id,
            idnat: None,
        },
    };
    AuditRecord {
        at,
        event,
        context: RequestContextRecord {
            source_ip: Some(format!("10.{}.{}.{}", (g >> 16) & 255, (g >> 8) & 255, g & 255)),
            user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0".into()),
            correlation_id: Some(format!("00-{:032x}-{:016x}-01", i, i)),
        },
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Fills the database; returns the account ids (people order) and the username of the bench's
/// admin.
async fn fill(c: &Components, o: &BenchOptions) -> Res<(Vec<Account>, String)> {
    let store = c.store.clone();
    let start = Instant::now();
    // One argon2 hash shared by everyone: hashing 10,000 passwords is not what is measured.
    let hash = c.config.passwords.hash("bench-password-1", b"relais-adminbnch")?;
    let people: Vec<Account> = (0..o.people).map(|i| person(i, &hash)).collect();
    store.insert_accounts(&people).await?;
    // National identities for two people in three (ADELI form), a security key for one in
    // four, an admin role for one in a thousand (plus the bench's own admin, person 0).
    let ids: Vec<NationalIdentity> = people
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 2)
        .map(|(i, p)| {
            Ok(NationalIdentity {
                account_id: p.id,
                idnat: IdNat::parse(&format!("0{:09}", 100_000_000 + i))?,
                provenance: if i % 2 == 0 {
                    Provenance::AnnuaireImport
                } else {
                    Provenance::FileImport
                },
                verified: i % 2 == 0,
                profession: (i % 2 == 0).then(|| "10".into()),
            })
        })
        .collect::<Result<_, crate::protocol::ParseError>>()?;
    store.put_national_ids(&ids).await?;
    let mut keys = 0;
    for (i, p) in people.iter().enumerate().filter(|(i, _)| i % 4 == 0) {
        store
            .insert_security_key(&SecurityKeyRecord {
                id: Uuid::new_v4(),
                account_id: p.id,
                credential_id: format!("bench-credential-{i}"),
                credential: "{}".into(),
                aaguid: Uuid::nil(),
                name: format!("clé {i}"),
                created_at: Utc::now(),
                last_used_at: None,
                revoked_at: None,
            })
            .await?;
        keys += 1;
    }
    let m = c.management("bench");
    let mut roles = 0;
    for (i, p) in people.iter().enumerate().filter(|(i, _)| i % 1000 == 0) {
        let role = if i % 2000 == 0 { AdminRole::Admin } else { AdminRole::Auditor };
        m.set_admin_role(store.as_ref(), &p.username, Some(role)).await?;
        roles += 1;
    }
    for i in 0..o.clients {
        m.register_client(NewClient::confidential(
            ClientId::parse(&format!("app-{i}"))?,
            &format!("Application {i}"),
            vec![RedirectUri::parse(&format!("https://app-{i}.chu-exemple.fr/callback"))?],
        ))
        .await?;
    }
    println!(
        "people: {} accounts ({} national identities, {keys} security keys, {roles} admin roles), {} clients in {:.1} s",
        people.len(),
        ids.len(),
        o.clients,
        start.elapsed().as_secs_f64()
    );
    // The audit chain, oldest first, through the batched append the sink uses.
    let start = Instant::now();
    let account_ids: Vec<String> = people.iter().map(|p| p.id.to_string()).collect();
    let first = Utc::now() - Days::days(o.days as i64);
    let every = c.config.audit.checkpoint_every.max(1) as i64;
    let mut done = 0u64;
    while done < o.records {
        let n = 2000.min(o.records - done);
        let batch: Vec<AuditRecord> = (done..done + n).map(|i| record(i, o, &account_ids, first)).collect();
        let chained = store.append_audit_batch(&batch).await?;
        for r in chained.iter().filter(|r| r.seq % every == 0) {
            store
                .insert_audit_checkpoint(&Checkpoint::sign(c.keys.as_ref(), r, Utc::now())?)
                .await?;
        }
        done += n;
    }
    let (head, _) = store.audit_head().await?;
    println!(
        "audit: {} records over {} days in {:.1} s ({:.0} records/s); chain head {head}",
        o.records,
        o.days,
        start.elapsed().as_secs_f64(),
        o.records as f64 / start.elapsed().as_secs_f64()
    );
    let admin = people[0].username.clone();
    Ok((people, admin))
}

/// Runs the benchmark and prints one line per page.
pub async fn run(c: &Components, o: &BenchOptions) -> Res<()> {
    let store = c.store.clone();
    if store.audit_head().await?.0 != 0 || !store.accounts().await?.is_empty() {
        return Err("the admin bench needs an empty database (use a fresh schema or file)".into());
    }
    if o.people < 5000 {
        return Err("the admin bench needs at least 5,000 people".into());
    }
    let (people, admin) = fill(c, o).await?;
    // The admin session, as `AdminAccess::key_finish` stores it after a password and a key.
    let secret = c.random.token();
    let admin_account = &people[0];
    let session = AdminSession {
        account_id: admin_account.id,
        username: admin.clone(),
        display_name: admin_account.display_name.clone(),
        role: AdminRole::Admin,
        csrf: c.random.token(),
        logged_in_at: c.clock.unix(),
        via_directory: false,
    };
    c.sessions
        .put(
            Namespace::Admin,
            &format!("s:{}", crate::domain::crypto::secret_digest(&secret)),
            &serde_json::to_vec(&session)?,
            Duration::from_secs(c.config.admin.session_idle_secs.max(60) as u64),
        )
        .await?;
    let (state, admin_state) = crate::server::app_data(c, Arc::new(Default::default()), None)?;
    let app = test::init_service(
        App::new()
            .app_data(state)
            .app_data(admin_state)
            .configure(crate::adapters::http::routes),
    )
    .await;

    let person = &people[42];
    let head = store.audit_head().await?.0;
    let day = |d: i64| (Utc::now() - Days::days(d)).format("%Y-%m-%d").to_string();
    let pages: Vec<(&str, String)> = vec![
        ("dashboard", "/admin".into()),
        ("people search, common prefix \"mar\"", "/admin/people?q=mar".into()),
        ("people search, rare name", format!("/admin/people?q={}", RARE.1)),
        ("people search, with accents \"zéphyrin\"", "/admin/people?q=z%C3%A9phyrin".into()),
        ("people live search (htmx), \"mar\"", "/admin/people/results?q=mar".into()),
        ("person page", format!("/admin/people/{}", person.username)),
        ("clients", "/admin/clients".into()),
        ("audit, unfiltered (newest 50)", "/admin/audit".into()),
        ("audit, by person", format!("/admin/audit?account_id={}", person.id)),
        ("audit, by event type (common)", "/admin/audit?event_type=token_issued".into()),
        ("audit, by event type (rare)", "/admin/audit?event_type=login_throttled".into()),
        (
            "audit, one day 30 days ago",
            format!("/admin/audit?since={}&until={}", day(30), day(30)),
        ),
        (
            "audit, one week 60 days ago",
            format!("/admin/audit?since={}&until={}", day(66), day(60)),
        ),
        (
            "audit, person + type + 60 days",
            format!("/admin/audit?account_id={}&event_type=code_issued&since={}", person.id, day(60)),
        ),
        ("audit, page 200 (cursor)", format!("/admin/audit?cursor={}", head - 200 * 50)),
        ("audit, middle of the chain (cursor)", format!("/admin/audit?cursor={}", head / 2)),
        ("settings", "/admin/settings".into()),
        ("mappings import", "/admin/mappings/import".into()),
    ];
    // The request as a logged-in admin's browser sends it (the session cookie).
    let call = |uri: &str| {
        let req = test::TestRequest::get()
            .uri(uri)
            .cookie(Cookie::new(ADMIN_COOKIE, secret.clone()))
            .to_request();
        test::call_service(&app, req)
    };
    let mut worst = measure(call, &pages, o.runs, "just after the bulk load").await?;
    if store.connection().get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // Statistics and the visibility map, as autovacuum keeps them on a table that grew over
        // months; right after a bulk load the planner has neither.
        let t = Instant::now();
        store
            .connection()
            .execute_unprepared("VACUUM ANALYZE audit_events, accounts, national_identities, security_keys")
            .await?;
        println!("VACUUM ANALYZE in {:.1} s", t.elapsed().as_secs_f64());
        worst = measure(call, &pages, o.runs, "after VACUUM ANALYZE").await?;
    }
    // The dashboard counts since midnight: how many records that is depends on the hour of
    // the run. The same count over a full day (24 h of records) is its end-of-day cost.
    let mut times = Vec::with_capacity(o.runs as usize);
    let mut n = 0;
    for _ in 0..=o.runs {
        let t = Instant::now();
        let counts = store.audit_counts(Utc::now() - Days::hours(24)).await?;
        times.push(t.elapsed());
        n = counts.iter().map(|c| c.count).sum::<u64>();
    }
    times.remove(0);
    times.sort();
    println!(
        "{:<40} p50 {:>7.2} ms  p95 {:>7.2} ms  max {:>7.2} ms  ({n} records; the dashboard's query alone)",
        "dashboard counts over the last 24 h",
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        times.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
    );
    println!(
        "worst p95 {worst:.2} ms: {}",
        if worst < 50.0 {
            "every page under 50 ms"
        } else {
            "some page over 50 ms"
        }
    );
    Ok(())
}

/// Times each page `runs` times (after one untimed run); returns the worst p95 in ms.
async fn measure<F, Fut, B>(call: F, pages: &[(&str, String)], runs: u64, when: &str) -> Res<f64>
where
    F: Fn(&str) -> Fut,
    Fut: std::future::Future<Output = actix_web::dev::ServiceResponse<B>>,
    B: actix_web::body::MessageBody,
{
    println!("pages {when}: {runs} runs each after one warm-up, in-process through the actix routes (server-side time, body included)");
    let mut worst = 0.0f64;
    for (name, uri) in pages {
        let mut times = Vec::with_capacity(runs as usize);
        let mut bytes = 0;
        for run in 0..=runs {
            let t = Instant::now();
            let resp = call(uri).await;
            let status = resp.status();
            let body = test::read_body(resp).await;
            let el = t.elapsed();
            if !status.is_success() {
                return Err(format!("{name}: {uri} answered {status}: {}", String::from_utf8_lossy(&body)).into());
            }
            bytes = body.len();
            if run > 0 {
                times.push(el);
            }
        }
        times.sort();
        let max = times.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
        worst = worst.max(percentile(&times, 0.95));
        println!(
            "{name:<40} p50 {:>7.2} ms  p95 {:>7.2} ms  max {:>7.2} ms  ({} KiB)",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            max,
            bytes / 1024
        );
    }
    Ok(worst)
}
