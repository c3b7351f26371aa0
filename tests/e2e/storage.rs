//! The storage suite, run against both SQLite and PostgreSQL (each test in its own database
//! file or schema).
use crate::harness::{self, Db};
use chrono::{Duration, Utc};
use relais::adapters::store::SqlStore;
use relais::domain::account::Account;
use relais::domain::client::TokenAuthMethod;
use relais::domain::management::NewClient;
use relais::domain::ports::{Storage, StoreError};
use relais::domain::records::{AuditAppend, AuditedWrite, RefreshConsume, RefreshTokenRecord, SigningAlg, StoredSigningKey};
use relais::protocol::{ClientId, RedirectUri, Scopes};
use std::sync::Arc;
use uuid::Uuid;

async fn store(db: Db) -> Arc<SqlStore> {
    store_with(db, "").await
}

/// A store whose `[database]` table has these lines too.
async fn store_with(db: Db, database_lines: &str) -> Arc<SqlStore> {
    let toml = format!(
        "issuer = \"https://x.example\"\n{}{database_lines}[keys]\nencryption_key = \"k\"\n",
        harness::database_toml(db).await
    );
    let cfg = relais::config::Config::from_toml_str(&toml).unwrap();
    Arc::new(relais::server::open_store(&cfg).await.unwrap())
}

fn refresh(digest: &str, family: Uuid, session: &str) -> RefreshTokenRecord {
    let now = Utc::now();
    RefreshTokenRecord {
        token_digest: digest.into(),
        family_id: family,
        client_id: ClientId::parse("web").unwrap(),
        account_id: Uuid::new_v4(),
        session_id: session.into(),
        scopes: Scopes::parse("openid profile").unwrap(),
        auth_time: now.timestamp(),
        amr: vec!["pwd".into()],
        acr: "loa1".into(),
        created_at: now,
        expires_at: now + Duration::hours(1),
        used_at: None,
        revoked_at: None,
    }
}

async fn clients_round_trip(s: Arc<SqlStore>) {
    let mut c = relais::domain::client::Client {
        id: ClientId::parse("psc").unwrap(),
        name: "Pro Santé Connect".into(),
        kind: relais::domain::client::ClientKind::Psc,
        auth_method: TokenAuthMethod::PrivateKeyJwt,
        secret_digest: None,
        jwks: Some(serde_json::json!({"keys": []})),
        redirect_uris: vec![RedirectUri::parse("https://auth.bas.psc.esante.gouv.fr/cb").unwrap()],
        post_logout_redirect_uris: vec![],
        id_token_alg: SigningAlg::RS256,
        userinfo_signed_alg: Some(SigningAlg::ES256),
        min_acr: Some("loa3".into()),
        max_auth_age: Some(14_400),
        allow_refresh: false,
        may_introspect: false,
        enabled: true,
        required_roles: vec!["doctor".into(), "nurse".into()],
    };
    s.insert_client(&c).await.unwrap();
    assert_eq!(s.client(&c.id).await.unwrap().unwrap(), c);
    assert!(matches!(s.insert_client(&c).await, Err(StoreError::Conflict(_))));
    c.enabled = false;
    c.name = "PSC".into();
    c.required_roles.clear();
    s.update_client(&c).await.unwrap();
    assert_eq!(s.client(&c.id).await.unwrap().unwrap(), c);
    assert_eq!(s.list_clients().await.unwrap().len(), 1);
    assert!(s.client(&ClientId::parse("none").unwrap()).await.unwrap().is_none());
    let _ = NewClient::confidential(c.id.clone(), "x", vec![]);
}

async fn accounts_are_unique_by_username(s: Arc<SqlStore>) {
    let a = Account {
        id: Uuid::new_v4(),
        username: "alice".into(),
        display_name: "Alice".into(),
        given_name: None,
        family_name: None,
        email: None,
        password_hash: Some("h".into()),
        disabled: false,
        directory_id: None,
    };
    s.insert_account(&a).await.unwrap();
    assert_eq!(s.account_by_username("alice").await.unwrap().unwrap(), a);
    assert_eq!(s.account(a.id).await.unwrap().unwrap(), a);
    let dup = Account {
        id: Uuid::new_v4(),
        ..a.clone()
    };
    assert!(matches!(s.insert_account(&dup).await, Err(StoreError::Conflict(_))));
    s.set_account_password(a.id, "h2").await.unwrap();
    assert_eq!(s.account(a.id).await.unwrap().unwrap().password_hash.as_deref(), Some("h2"));
}

async fn refresh_consumption_has_one_winner(s: Arc<SqlStore>) {
    let family = Uuid::new_v4();
    s.insert_refresh_token(&refresh("d1", family, "sid1")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(
            async move { s.consume_refresh_token("d1", Utc::now()).await.unwrap() },
        ));
    }
    let mut consumed = 0;
    for t in tasks {
        match t.await.unwrap() {
            RefreshConsume::Consumed(_) => consumed += 1,
            RefreshConsume::Reused(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(consumed, 1, "exactly one concurrent consumer wins");
    assert_eq!(s.consume_refresh_token("nope", Utc::now()).await.unwrap(), RefreshConsume::NotFound);

    s.insert_refresh_token(&refresh("d2", family, "sid1")).await.unwrap();
    assert_eq!(s.revoke_refresh_family(family, Utc::now()).await.unwrap(), 2);
    assert_eq!(s.consume_refresh_token("d2", Utc::now()).await.unwrap(), RefreshConsume::Invalid);

    s.insert_refresh_token(&refresh("d3", Uuid::new_v4(), "sid2")).await.unwrap();
    assert_eq!(s.revoke_refresh_for_session("sid2", Utc::now()).await.unwrap(), 1);
    // Expired tokens are not consumable.
    s.insert_refresh_token(&refresh("d4", Uuid::new_v4(), "sid3")).await.unwrap();
    assert_eq!(
        s.consume_refresh_token("d4", Utc::now() + Duration::hours(2)).await.unwrap(),
        RefreshConsume::Invalid
    );
}

async fn signing_keys_rotate_out(s: Arc<SqlStore>) {
    let now = Utc::now();
    let key = |kid: &str| StoredSigningKey {
        kid: kid.into(),
        alg: SigningAlg::ES256,
        sealed_private_key: vec![1, 2, 3],
        created_at: now,
        rotated_at: None,
        retire_at: None,
    };
    s.insert_signing_key(&key("k1")).await.unwrap();
    s.insert_signing_key(&key("k2")).await.unwrap();
    assert_eq!(
        s.rotate_out_signing_keys(SigningAlg::ES256, "k2", now, now + Duration::hours(1))
            .await
            .unwrap(),
        1
    );
    let keys = s.signing_keys().await.unwrap();
    assert!(keys.iter().find(|k| k.kid == "k1").unwrap().rotated_at.is_some());
    assert!(keys.iter().find(|k| k.kid == "k2").unwrap().rotated_at.is_none());
    assert_eq!(s.delete_retired_signing_keys(now).await.unwrap(), 0);
    assert_eq!(s.delete_retired_signing_keys(now + Duration::hours(2)).await.unwrap(), 1);
    assert_eq!(s.signing_keys().await.unwrap().len(), 1);
}

/// An audit record to append: an authorization refused for `client`.
fn refused(client: &str) -> relais::domain::audit::AuditRecord {
    relais::domain::audit::AuditRecord {
        at: Utc::now(),
        event: relais::domain::audit::AuditEvent::AuthorizeRefused {
            client_id: Some(client.into()),
            reason: "r".into(),
        },
        context: Default::default(),
    }
}

async fn audit_records_keep_order(s: Arc<SqlStore>) {
    use relais::domain::audit::AuditEvent;
    for i in 0..3 {
        s.append_audit(&refused(&format!("c{i}"))).await.unwrap();
    }
    let r = s.audit_records(10).await.unwrap();
    assert_eq!(r.len(), 3);
    assert!(
        matches!(&r[0].event, AuditEvent::AuthorizeRefused { client_id: Some(c), .. } if c == "c2"),
        "newest first"
    );
}

/// Paging a seq range with a cursor, both ways: every record of the range once, in order, and
/// nothing outside it (the store folds the range and the cursor into one bound per side).
async fn audit_pages_walk_a_range(s: Arc<SqlStore>) {
    use relais::domain::audit_chain::{AuditQuery, Order};
    let records: Vec<_> = (0..25).map(|i| refused(&format!("c{i}"))).collect();
    s.append_audit_batch(&records).await.unwrap();
    for order in [Order::Ascending, Order::Descending] {
        let (mut seen, mut cursor) = (Vec::new(), None);
        loop {
            let page = s
                .audit_query(&AuditQuery {
                    min_seq: Some(3),
                    max_seq: Some(20),
                    cursor,
                    order,
                    limit: 4,
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(page.records.iter().map(|r| r.seq));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut want: Vec<i64> = (3..=20).collect();
        if order == Order::Descending {
            want.reverse();
        }
        assert_eq!(seen, want, "{order:?}");
    }
}

/// A group commit: the records, the chain head and the writes they carry land together, or,
/// when one write fails, none of them does (on SQLite they go to the database in one call).
async fn audit_batch_commits_its_writes_or_nothing(s: Arc<SqlStore>) {
    let record = |i: usize| refused(&format!("c{i}"));
    let family = Uuid::new_v4();
    let writes = [
        AuditedWrite::RefreshToken(refresh("b1", family, "sid")),
        AuditedWrite::RefreshToken(refresh("b2", family, "sid")),
    ];
    let chained = s.append_audit_batch_with(&[record(0), record(1)], &writes).await.unwrap();
    assert_eq!(chained.len(), 2);
    let last = chained.last().unwrap();
    assert_eq!(
        s.audit_head().await.unwrap(),
        (last.seq, last.hash.clone()),
        "the head names the newest record"
    );
    for d in ["b1", "b2"] {
        assert!(matches!(
            s.consume_refresh_token(d, Utc::now()).await.unwrap(),
            RefreshConsume::Consumed(_)
        ));
    }

    // A refresh token whose digest exists already: the whole batch is refused.
    let clash = [AuditedWrite::RefreshToken(refresh("b1", Uuid::new_v4(), "sid"))];
    assert!(s.append_audit_batch_with(&[record(2)], &clash).await.is_err());
    assert_eq!(
        s.audit_head().await.unwrap(),
        (last.seq, last.hash.clone()),
        "the head did not move"
    );
    assert_eq!(s.audit_records(10).await.unwrap().len(), 2, "no record of the failed batch");
    // The chain goes on from where it was.
    let next = s.append_audit_batch_with(&[record(3)], &[]).await.unwrap();
    assert_eq!(next[0].seq, last.seq + 1);
}

/// An append that must find its account active is left out of the group commit when the
/// account is disabled or unknown: no record, no write, no seq; the others are chained without
/// a gap, their writes made.
async fn audit_batch_leaves_out_appends_for_inactive_accounts(s: Arc<SqlStore>) {
    let account = |name: &str, disabled: bool| Account {
        id: Uuid::new_v4(),
        username: name.into(),
        display_name: name.into(),
        given_name: None,
        family_name: None,
        email: None,
        password_hash: None,
        disabled,
        directory_id: None,
    };
    let (active, disabled) = (account("active", false), account("disabled", true));
    for a in [&active, &disabled] {
        s.insert_account(a).await.unwrap();
    }
    let before = s.append_audit(&refused("before")).await.unwrap();
    let family = Uuid::new_v4();
    let append = |client: &str, digest: &str, only_if_active: Option<Uuid>| AuditAppend {
        record: refused(client),
        writes: vec![AuditedWrite::RefreshToken(refresh(digest, family, "sid"))],
        only_if_active,
    };
    let appended = s
        .append_audit_batch_checked(&[
            append("a", "for-active", Some(active.id)),
            append("d", "for-disabled", Some(disabled.id)),
            append("u", "for-unknown", Some(Uuid::new_v4())),
            append("n", "unconditional", None),
        ])
        .await
        .unwrap();
    let seqs: Vec<Option<i64>> = appended.iter().map(|r| r.as_ref().map(|r| r.seq)).collect();
    assert_eq!(seqs, [Some(before.seq + 1), None, None, Some(before.seq + 2)]);
    let (first, last) = (appended[0].as_ref().unwrap(), appended[3].as_ref().unwrap());
    assert_eq!(first.prev_hash, before.hash, "chained on the head");
    assert_eq!(last.prev_hash, first.hash, "no gap where the left-out appends were");
    assert_eq!(s.audit_head().await.unwrap(), (last.seq, last.hash.clone()));
    let clients: Vec<Option<String>> = s
        .audit_records(10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.event.client_id().map(str::to_owned))
        .collect();
    assert_eq!(clients, [Some("n".into()), Some("a".into()), Some("before".into())], "newest first");
    for (digest, kept) in [
        ("for-active", true),
        ("for-disabled", false),
        ("for-unknown", false),
        ("unconditional", true),
    ] {
        let found = s.consume_refresh_token(digest, Utc::now()).await.unwrap();
        assert_eq!(matches!(found, RefreshConsume::Consumed(_)), kept, "{digest}: {found:?}");
    }
    // A batch left out entirely moves nothing.
    let none = s
        .append_audit_batch_checked(&[append("d2", "again", Some(disabled.id))])
        .await
        .unwrap();
    assert!(none[0].is_none());
    assert_eq!(s.audit_head().await.unwrap(), (last.seq, last.hash.clone()));
    let next = s.append_audit(&refused("after")).await.unwrap();
    assert_eq!((next.seq, next.prev_hash.as_str()), (last.seq + 1, last.hash.as_str()));
}

/// A transaction dropped without commit or rollback (a request cancelled mid-way) is rolled
/// back before its connection's next use (on SQLite, the one writing connection is the one
/// reused here).
async fn a_dropped_transaction_is_rolled_back_before_the_next_use(s: Arc<SqlStore>) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let record = refused("c");
    let family = Uuid::new_v4();
    s.append_audit_batch_with(
        std::slice::from_ref(&record),
        &[AuditedWrite::RefreshToken(refresh("kept", family, "sid"))],
    )
    .await
    .unwrap();
    {
        let txn = s.connection().begin().await.unwrap();
        txn.execute_unprepared("DELETE FROM refresh_tokens").await.unwrap();
        // Dropped here, neither committed nor rolled back.
    }
    // The next write on that connection opens its own transaction and commits it: had the
    // dropped one not been rolled back first, this would fail or commit the deletion too.
    s.append_audit_batch_with(&[record], &[AuditedWrite::RefreshToken(refresh("next", family, "sid"))])
        .await
        .unwrap();
    for d in ["kept", "next"] {
        assert!(
            matches!(s.consume_refresh_token(d, Utc::now()).await.unwrap(), RefreshConsume::Consumed(_)),
            "refresh token {d} is there"
        );
    }
}

macro_rules! on_both_databases {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(super::store(super::Db::Sqlite).await).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(super::store(super::Db::Postgres).await).await } )* }
    };
}

on_both_databases!(
    clients_round_trip,
    accounts_are_unique_by_username,
    refresh_consumption_has_one_winner,
    signing_keys_rotate_out,
    audit_records_keep_order,
    audit_pages_walk_a_range,
    audit_batch_commits_its_writes_or_nothing,
    audit_batch_leaves_out_appends_for_inactive_accounts,
    a_dropped_transaction_is_rolled_back_before_the_next_use
);

/// SQLite connections plan a statement once, whatever values are bound to it (the query planner
/// stability guarantee): without it every `LIMIT ?` query was parsed and planned again at each
/// run (docs/performance.md).
#[tokio::test]
async fn sqlite_connections_keep_their_query_plans() {
    let s = store(Db::Sqlite).await;
    let pool = s.connection().get_sqlite_connection_pool();
    let mut conn = pool.acquire().await.unwrap();
    let mut handle = conn.lock_handle().await.unwrap();
    let mut on: i32 = -1;
    // SAFETY: the connection's open handle, locked for this thread; -1 reads the setting into `on`.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            handle.as_raw_handle().as_ptr(),
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            -1,
            &mut on as *mut i32,
        )
    };
    assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
    assert_eq!(on, 1, "SQLITE_DBCONFIG_ENABLE_QPSG is set on the store's connections");
}

/// The store's SQLite file.
async fn sqlite_file(s: &SqlStore) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let db = s.connection();
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), "PRAGMA database_list"))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "file").unwrap()
}

/// How many times the WAL has started over: its header's checkpoint sequence number.
fn wal_restarts(file: &str) -> u32 {
    let header = std::fs::read(format!("{file}-wal")).unwrap();
    u32::from_be_bytes(header[12..16].try_into().unwrap())
}

/// The SQLite WAL is checkpointed in the background, not only when a commit crosses SQLite's
/// 1,000-page threshold (which made that commit, and every request waiting on it, slow): after
/// each pause, the next write starts the WAL over from its beginning.
#[tokio::test]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    // 20 appends stay well under 1,000 pages: SQLite's own threshold never fires here.
    async fn burst(s: &SqlStore) {
        let record = refused("c");
        for _ in 0..20 {
            s.append_audit_batch_with(std::slice::from_ref(&record), &[]).await.unwrap();
        }
    }
    let s = store(Db::Sqlite).await;
    let file = sqlite_file(&s).await;
    burst(&s).await;
    let first = wal_restarts(&file);
    for _ in 0..3 {
        // Longer than three checkpoint periods.
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        burst(&s).await;
    }
    let last = wal_restarts(&file);
    assert!(
        last >= first + 3,
        "the WAL restarted {} times over three pauses between writes: it is not checkpointed in the background",
        last - first
    );
}

/// Under constant load some reader always uses the WAL, and passive checkpoints alone never
/// let it start over: the file grew to 3 GB in a 15 s benchmark. Here two readers in turn
/// hold a read transaction at every moment while one writer appends without pause; the WAL
/// must still start over once past `sqlite_wal_restart_mib` (1 MiB here, to be quick), and its
/// file stay short.
#[tokio::test]
async fn sqlite_wal_starts_over_under_constant_reads_and_writes() {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};
    let s = store_with(Db::Sqlite, "sqlite_wal_restart_mib = 1\n").await;
    let file = sqlite_file(&s).await;
    s.append_audit_batch_with(&[refused("c")], &[]).await.unwrap();
    let first = wal_restarts(&file);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for offset in [0u64, 2] {
        // A reader of its own (another process would do the same: a backup, the sqlite3 shell).
        let db = Database::connect(format!("sqlite:{file}")).await.unwrap();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(offset)).await;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Each holds its snapshot for 4 ms and the two are 2 ms apart: at every moment
                // one of them reads the WAL.
                let txn = db.begin().await.unwrap();
                txn.execute_unprepared("SELECT count(*) FROM audit_events").await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(4)).await;
                txn.commit().await.unwrap();
            }
        }));
    }
    let record = refused("c");
    let batch = vec![record; 20];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut largest = 0;
    while wal_restarts(&file) < first + 2 && std::time::Instant::now() < deadline {
        s.append_audit_batch_with(&batch, &[]).await.unwrap();
        largest = largest.max(std::fs::metadata(format!("{file}-wal")).unwrap().len());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let restarts = wal_restarts(&file) - first;
    assert!(
        restarts >= 2,
        "the WAL started over {restarts} times in 60 s of constant reads and writes (it grew to {largest} bytes)"
    );
    // 1 MiB before a restart is asked for, plus what is written until it gets through (a
    // checkpoint every 250 ms).
    assert!(largest < 16 << 20, "the WAL file reached {largest} bytes");
}
