//! The audit trail (issue #6): real flows over HTTP produce the records, then the database is
//! tampered with directly and `verify` must say where. On SQLite and PostgreSQL.
use crate::browser::{Browser, Step};
use crate::harness::{self, ALICE, CALLBACK, Db, Server, Sessions};
use relais::domain::audit::{AuditEvent, AuditRecord};
use relais::domain::audit_chain::{AuditQuery, ChainedRecord, Order};
use relais::domain::audit_verify::{self, ChainProblem, VerifyReport};
use relais::domain::ports::Signer;
use sea_orm::ConnectionTrait;
use std::collections::HashSet;
use std::time::Duration;

const WRONG_PASSWORD: &str = "Hunter2-typed-by-mistake";

fn authorize_url(base: &str) -> String {
    format!(
        "{base}/authorize?response_type=code&client_id=web&scope=openid&redirect_uri={}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        crate::flows::urlencode(CALLBACK)
    )
}

/// A failed then a successful login, the code exchanged for tokens: login_password (both
/// outcomes), code_issued, token_issued.
async fn login_flow(s: &Server, base: &str) {
    let b = Browser::new();
    let Step::LoginForm(login) = b.start(&authorize_url(base)).await else {
        panic!("expected the login form")
    };
    assert!(matches!(
        b.submit_login(base, &login, ALICE.0, WRONG_PASSWORD).await,
        Step::Page(reqwest::StatusCode::UNAUTHORIZED, _)
    ));
    let Step::Callback(cb) = b.submit_login(base, &login, ALICE.0, ALICE.1).await else {
        panic!("login did not return to the client")
    };
    let r = reqwest::Client::new()
        .post(format!("{base}/token"))
        .basic_auth("web", Some(&s.web_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", cb["code"].as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn started(db: Db) -> Server {
    let s = harness::start_with(db, Sessions::Memory, "[audit]\ncheckpoint_every = 3\n").await;
    login_flow(&s, &s.base).await;
    login_flow(&s, &s.base).await;
    s
}

async fn verify(s: &Server) -> VerifyReport {
    audit_verify::verify(s.storage(), s.components().keys.as_ref(), None, None)
        .await
        .unwrap()
}

async fn sql(s: &Server, statement: &str) {
    s.components().store.connection().execute_unprepared(statement).await.unwrap();
}

/// The seq of the first record of `kind`.
async fn seq_of(s: &Server, kind: &str) -> i64 {
    let page = s
        .storage()
        .audit_query(&AuditQuery {
            event_type: Some(kind.into()),
            order: Order::Ascending,
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    page.records[0].seq
}

async fn real_flows_make_a_valid_chain(db: Db) {
    let s = started(db).await;
    let report = verify(&s).await;
    assert_eq!(report.problem, None);
    let (head, _) = s.storage().audit_head().await.unwrap();
    assert_eq!(report.records as i64, head);
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(head)));
    assert!(report.checkpoints >= 3, "checkpoint every 3 records: {report:?}");
    // Ranges: inside the chain, and beyond its head (nothing to check).
    let keys = s.components().keys.as_ref();
    let inner = audit_verify::verify(s.storage(), keys, Some(2), Some(head - 1)).await.unwrap();
    assert_eq!((inner.problem, inner.first_seq, inner.last_seq), (None, Some(2), Some(head - 1)));
    let beyond = audit_verify::verify(s.storage(), keys, Some(head + 5), None).await.unwrap();
    assert_eq!((beyond.problem, beyond.records), (None, 0));
    let kinds: HashSet<String> = s.audit_kinds().await.into_iter().collect();
    for k in [
        "client_registered",
        "account_created",
        "login_password",
        "code_issued",
        "token_issued",
    ] {
        assert!(kinds.contains(k), "{k} missing from {kinds:?}");
    }
    s.stop().await;
}

async fn query_filters_and_pages_with_a_stable_cursor(db: Db) {
    let s = started(db).await;
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let st = s.storage();
    let failures = st.audit_query(&q(|q| q.outcome = Some("failure".into()))).await.unwrap().records;
    assert_eq!(failures.len(), 2, "two wrong passwords");
    assert!(failures.iter().all(|r| r.event_type == "login_password"));
    // A failed password never says whether the account exists: search by the token's account.
    assert!(failures.iter().all(|r| r.account_id.is_none()));
    let account = st
        .audit_query(&q(|q| q.event_type = Some("token_issued".into())))
        .await
        .unwrap()
        .records[0]
        .account_id
        .clone();
    assert!(account.is_some());
    let by_account = st
        .audit_query(&AuditQuery {
            account_id: account,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .records;
    assert!(by_account.iter().any(|r| r.event_type == "token_issued"));
    let tokens = st
        .audit_query(&q(|q| {
            q.client_id = Some("web".into());
            q.event_type = Some("token_issued".into());
            q.source_ip = Some("127.0.0.1".into());
        }))
        .await
        .unwrap()
        .records;
    assert_eq!(tokens.len(), 2);
    let future = st
        .audit_query(&AuditQuery {
            since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(future.records.is_empty());
    // Pages of 2, newest first, while records keep being appended: no duplicates, no holes.
    let (head, _) = st.audit_head().await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = st
            .audit_query(&AuditQuery {
                cursor,
                limit: 2,
                max_seq: Some(head),
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.records.iter().map(|r| r.seq));
        login_flow(&s, &s.base).await;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (1..=head).rev().collect::<Vec<_>>());
    s.stop().await;
}

async fn an_altered_record_is_reported(db: Db) {
    let s = started(db).await;
    let seq = seq_of(&s, "token_issued").await;
    sql(&s, &format!("UPDATE audit_events SET source_ip = '10.6.6.6' WHERE seq = {seq}")).await;
    assert_eq!(verify(&s).await.problem, Some(ChainProblem::Altered { seq }));
    s.stop().await;
}

async fn a_deleted_record_is_reported(db: Db) {
    let s = started(db).await;
    let seq = seq_of(&s, "login_password").await;
    sql(&s, &format!("DELETE FROM audit_events WHERE seq = {seq}")).await;
    assert_eq!(verify(&s).await.problem, Some(ChainProblem::Missing { seq }));
    // The oldest record too: nothing anchors the chain there.
    let s2 = started(db).await;
    sql(&s2, "DELETE FROM audit_events WHERE seq = 1").await;
    assert_eq!(verify(&s2).await.problem, Some(ChainProblem::NoAnchor { seq: 2 }));
    // And the newest: the head still names it.
    let s3 = started(db).await;
    let (head, _) = s3.storage().audit_head().await.unwrap();
    sql(&s3, &format!("DELETE FROM audit_events WHERE seq = {head}")).await;
    assert_eq!(verify(&s3).await.problem, Some(ChainProblem::Missing { seq: head }));
    for s in [s, s2, s3] {
        s.stop().await;
    }
}

async fn insert_forged(s: &Server, r: &ChainedRecord) {
    use sea_orm::sea_query::Query;
    let stmt = Query::insert()
        .into_table("audit_events")
        .columns([
            "seq",
            "at",
            "event_type",
            "outcome",
            "source_ip",
            "user_agent",
            "correlation_id",
            "account_id",
            "client_id",
            "event",
            "prev_hash",
            "hash",
        ])
        .values_panic([
            r.seq.into(),
            r.at.into(),
            r.event_type.clone().into(),
            r.outcome.clone().into(),
            r.source_ip.clone().into(),
            r.user_agent.clone().into(),
            r.correlation_id.clone().into(),
            r.account_id.clone().into(),
            r.client_id.clone().into(),
            r.event.clone().into(),
            r.prev_hash.clone().into(),
            r.hash.clone().into(),
        ])
        .to_owned();
    s.components().store.connection().execute(&stmt).await.unwrap();
}

async fn an_inserted_record_is_reported(db: Db) {
    let s = started(db).await;
    // A well-formed forgery: right seq, right link, right hash. Only the head betrays it.
    let (head, head_hash) = s.storage().audit_head().await.unwrap();
    let forged = ChainedRecord::new(
        head + 1,
        &AuditRecord {
            at: chrono::Utc::now(),
            event: AuditEvent::LoginPassword {
                username: "bob".into(),
                account_id: None,
                success: true,
                reason: None,
            },
            context: Default::default(),
        },
        &head_hash,
    );
    insert_forged(&s, &forged).await;
    assert_eq!(verify(&s).await.problem, Some(ChainProblem::BeyondHead { seq: head + 1 }));
    // Rewriting a record with a recomputed hash (and relinking the next one) is caught by
    // the signed checkpoint that covers it.
    let s2 = started(db).await;
    let cps = s2.storage().audit_checkpoints().await.unwrap();
    let cp = cps.first().unwrap().seq;
    let page = s2
        .storage()
        .audit_query(&AuditQuery {
            min_seq: Some(cp),
            max_seq: Some(cp),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut r = page.records[0].clone();
    r.source_ip = Some("10.6.6.6".into());
    let h = r.compute_hash();
    sql(
        &s2,
        &format!("UPDATE audit_events SET source_ip = '10.6.6.6', hash = '{h}' WHERE seq = {cp}"),
    )
    .await;
    sql(&s2, &format!("UPDATE audit_events SET prev_hash = '{h}' WHERE seq = {}", cp + 1)).await;
    let p = verify(&s2).await.problem;
    assert!(
        matches!(p, Some(ChainProblem::BadCheckpoint { seq, .. } | ChainProblem::Altered { seq }) if seq == cp || seq == cp + 1),
        "{p:?}"
    );
    s.stop().await;
    s2.stop().await;
}

async fn a_forged_checkpoint_is_reported(db: Db) {
    let s = started(db).await;
    let cps = s.storage().audit_checkpoints().await.unwrap();
    let cp = &cps[0];
    // A signature over other claims by the right key, pasted onto this row.
    let other = s.components().keys.sign(
        relais::domain::records::SigningAlg::ES256,
        relais::domain::audit_chain::CHECKPOINT_TYP,
        &serde_json::json!({"seq": cp.seq, "hash": "0".repeat(64), "at": 0}),
    );
    sql(
        &s,
        &format!(
            "UPDATE audit_checkpoints SET signature = '{}' WHERE seq = {}",
            other.unwrap(),
            cp.seq
        ),
    )
    .await;
    assert!(matches!(verify(&s).await.problem, Some(ChainProblem::BadCheckpoint { seq, .. }) if seq == cp.seq));

    // A checkpoint signed by a key Relais does not hold, with its own JWK stored beside it.
    let s2 = started(db).await;
    let (pkcs8, jwk) = harness::es256_client_key();
    let newest = s2.storage().audit_checkpoints().await.unwrap().pop().unwrap();
    let (head, head_hash) = s2.storage().audit_head().await.unwrap();
    assert!(head > newest.seq);
    let jws = forge_jws(&pkcs8, jwk["kid"].as_str().unwrap(), head, &head_hash);
    s2.storage()
        .insert_audit_checkpoint(&relais::domain::audit_chain::Checkpoint {
            seq: head,
            hash: head_hash,
            at: chrono::DateTime::UNIX_EPOCH,
            kid: jwk["kid"].as_str().unwrap().into(),
            jwk,
            signature: jws,
        })
        .await
        .unwrap();
    assert!(matches!(verify(&s2).await.problem, Some(ChainProblem::UntrustedCheckpoint { seq, .. }) if seq == head));
    s.stop().await;
    s2.stop().await;
}

fn forge_jws(pkcs8: &[u8], kid: &str, seq: i64, hash: &str) -> String {
    let claims = serde_json::json!({"seq": seq, "hash": hash, "at": 0});
    harness::sign_jws(pkcs8, kid, relais::domain::audit_chain::CHECKPOINT_TYP, &claims)
}

async fn a_purge_keeps_the_rest_verifiable_and_is_audited(db: Db) {
    let s = started(db).await;
    let (old_head, _) = s.storage().audit_head().await.unwrap();
    s.clock.advance(Duration::from_secs(3 * 86_400));
    login_flow(&s, &s.base).await;
    let c = s.components();
    let cutoff = c.clock.now() - chrono::Duration::days(1);
    let out = audit_verify::purge(s.storage(), c.keys.as_ref(), c.audit.as_ref(), cutoff, None, c.clock.now())
        .await
        .unwrap();
    assert_eq!(out.through_seq, Some(old_head));
    assert_eq!(out.deleted as i64, old_head);
    let report = verify(&s).await;
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.first_seq, Some(old_head + 1));
    assert_eq!(s.audit_kinds().await[0], "audit_purged");
    // Without its anchor the remaining chain no longer verifies.
    sql(&s, &format!("DELETE FROM audit_checkpoints WHERE seq = {old_head}")).await;
    assert_eq!(verify(&s).await.problem, Some(ChainProblem::NoAnchor { seq: old_head + 1 }));
    s.stop().await;
}

async fn a_typed_password_never_reaches_the_audit_trail(db: Db) {
    let s = started(db).await;
    let c = s.components();
    let mut out = Vec::new();
    let since = c.clock.now() - chrono::Duration::days(1);
    let n = audit_verify::export_jsonl(s.storage(), c.audit.as_ref(), c.keys.as_ref(), since, None, c.clock.now(), &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count() as u64, n + 1, "the records and the final checkpoint");
    assert!(text.contains("login_password") && text.contains("\"hash\""));
    for secret in [WRONG_PASSWORD, ALICE.1, s.web_secret.as_str()] {
        assert!(!text.contains(secret), "a secret reached the audit trail");
    }
    assert_eq!(s.audit_kinds().await[0], "audit_exported", "the export is audited");
    s.stop().await;
}

/// An export checks out offline, by the library and by `relais audit verify-export` (the built
/// binary, no configuration); an altered field, a removed line, a swapped order and an event
/// shown differently from the one hashed are each found. The export ends with a checkpoint
/// signed by Relais' key over its last record: a record altered with its hash recomputed, a
/// checkpoint signed by another key, an altered signature and a cut file are each found too.
async fn an_export_is_checked_offline_and_tampering_is_found(db: Db) {
    use relais::adapters::keys::verify_es256_with_jwk as verify;
    use relais::domain::audit_export_check::{ExportProblem, SignatureProblem, check_export};
    let s = started(db).await;
    let c = s.components();
    let mut out = Vec::new();
    let since = c.clock.now() - chrono::Duration::days(1);
    audit_verify::export_jsonl(s.storage(), c.audit.as_ref(), c.keys.as_ref(), since, None, c.clock.now(), &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 5, "{text}");
    let ok = check_export(&lines, &verify);
    assert_eq!(ok.problem, None);
    assert_eq!(ok.records as usize, lines.len() - 1, "every line but the checkpoint is a record");
    assert_eq!(ok.first_seq, Some(1));
    assert_eq!(ok.anchor.as_deref(), Some(relais::domain::audit_chain::GENESIS));
    let relais_jwks = c.keys.jwks();
    assert_eq!(ok.signed_by(&relais_jwks), Ok(()), "signed by Relais' key");
    let signed = ok.final_checkpoint().expect("a checkpoint over the last record");
    assert_eq!(Some(signed.seq), ok.last_seq);
    assert_eq!(
        ok.signed_by(&serde_json::json!({"keys": [harness::es256_client_key().1]})),
        Err(SignatureProblem::UnknownKey {
            kid: signed.kid.clone(),
            thumbprint: signed.thumbprint.clone()
        })
    );

    let mut v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    v["source_ip"] = serde_json::json!("198.51.100.99");
    let altered = v.to_string();
    let with = |i: usize, l: &str| -> Vec<String> {
        let mut out: Vec<String> = lines.iter().map(|x| x.to_string()).collect();
        out[i] = l.to_owned();
        out
    };
    assert!(matches!(
        check_export(with(1, &altered), &verify).problem,
        Some(ExportProblem::Altered { line: 2, .. })
    ));
    let mut removed: Vec<&str> = lines.clone();
    removed.remove(2);
    assert!(matches!(
        check_export(&removed, &verify).problem,
        Some(ExportProblem::Gap { line: 3, .. })
    ));
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    assert!(check_export(&swapped, &verify).problem.is_some());
    let mut v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    v["event"] = serde_json::json!({"type": "something_else"});
    let shown_otherwise = v.to_string();
    assert!(matches!(
        check_export(with(0, &shown_otherwise), &verify).problem,
        Some(ExportProblem::EventMismatch { line: 1, .. })
    ));
    assert!(matches!(
        check_export(with(0, "not json"), &verify).problem,
        Some(ExportProblem::Malformed { line: 1, .. })
    ));

    // Someone who can edit the file (or the database) but does not hold Relais' key.
    let last = lines.len() - 2;
    let rehashed = rehashed(lines[last], |r| r.source_ip = Some("198.51.100.99".into()));
    let forged_record = with(last, &rehashed.export_json().to_string());
    assert!(
        matches!(
            check_export(&forged_record, &verify).problem,
            Some(ExportProblem::CheckpointMisplaced { line, .. }) if line as usize == lines.len()
        ),
        "a recomputed hash no longer matches the signed one"
    );
    let (pkcs8, jwk) = harness::es256_client_key();
    let kid = jwk["kid"].as_str().unwrap();
    let forged_checkpoint = relais::domain::audit_chain::Checkpoint {
        seq: rehashed.seq,
        hash: rehashed.hash.clone(),
        at: chrono::DateTime::UNIX_EPOCH,
        kid: kid.into(),
        jwk: jwk.clone(),
        signature: forge_jws(&pkcs8, kid, rehashed.seq, &rehashed.hash),
    };
    let mut resigned = forged_record.clone();
    *resigned.last_mut().unwrap() = forged_checkpoint.export_json().to_string();
    let report = check_export(&resigned, &verify);
    assert_eq!(report.problem, None, "consistent in itself");
    assert!(matches!(report.signed_by(&relais_jwks), Err(SignatureProblem::UnknownKey { kid: k, .. }) if k == kid));
    let mut cp: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    let sig = cp["checkpoint"]["signature"].as_str().unwrap().to_owned();
    let flipped = if sig.ends_with('A') { "B" } else { "A" };
    let mut later = cp.clone();
    later["checkpoint"]["at"] = serde_json::json!("2099-01-01T00:00:00.000000Z");
    assert!(
        matches!(
            check_export(with(lines.len() - 1, &later.to_string()), &verify).problem,
            Some(ExportProblem::CheckpointInvalid { .. })
        ),
        "the signed time cannot be edited"
    );
    cp["checkpoint"]["signature"] = serde_json::json!(format!("{}{flipped}", &sig[..sig.len() - 1]));
    assert!(matches!(
        check_export(with(lines.len() - 1, &cp.to_string()), &verify).problem,
        Some(ExportProblem::CheckpointInvalid { .. })
    ));
    let cut = &lines[..lines.len() - 2];
    let report = check_export(cut, &verify);
    assert_eq!(report.problem, None);
    assert_eq!(report.signed_by(&relais_jwks).unwrap_err(), SignatureProblem::Unsigned);

    // The command, on a file, as an auditor runs it.
    let dir = std::env::temp_dir().join(crate::harness::unique("relais-export"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: String| {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f
    };
    let good = file("good.jsonl", text.clone());
    let bad = file("bad.jsonl", with(1, &altered).join("\n"));
    let resigned = file("resigned.jsonl", resigned.join("\n"));
    let jwks = file("jwks.json", relais_jwks.to_string());
    let run = |f: &std::path::Path, jwks: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(crate::process::relais_bin());
        cmd.args(["audit", "verify-export"]).arg(f).env_remove("RELAIS_CONFIG");
        if let Some(j) = jwks {
            cmd.arg("--jwks").arg(j);
        }
        let r = cmd.output().unwrap();
        (r.status.code(), String::from_utf8_lossy(&r.stdout).into_owned())
    };
    let (code, said) = run(&good, Some(&jwks));
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("export OK") && said.contains("the signing key is in the given JWKS"),
        "{said}"
    );
    assert!(
        said.contains(ok.last_hash.as_deref().unwrap()) && said.contains(&signed.thumbprint),
        "{said}"
    );
    let (code, said) = run(&good, None);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("is not checked: pass --jwks"), "{said}");
    let (code, said) = run(&bad, None);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("record 2 was altered"), "{said}");
    let (code, said) = run(&resigned, Some(&jwks));
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("NOT SIGNED by a trusted key") && said.contains(kid), "{said}");
    std::fs::remove_dir_all(dir).ok();
    s.stop().await;
}

/// The record of an export line, changed by `change`, with its hash recomputed as someone
/// who knows the hash function but not Relais' key would.
pub(crate) fn rehashed(line: &str, change: impl FnOnce(&mut ChainedRecord)) -> ChainedRecord {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let text = |k: &str| v[k].as_str().map(str::to_owned);
    let mut r = ChainedRecord {
        seq: v["seq"].as_i64().unwrap(),
        at: chrono::DateTime::parse_from_rfc3339(v["at"].as_str().unwrap()).unwrap().into(),
        event_type: text("event_type").unwrap(),
        outcome: text("outcome").unwrap(),
        source_ip: text("source_ip"),
        user_agent: text("user_agent"),
        correlation_id: text("correlation_id"),
        account_id: text("account_id"),
        client_id: text("client_id"),
        event: text("event_text").unwrap(),
        prev_hash: text("prev_hash").unwrap(),
        hash: String::new(),
    };
    change(&mut r);
    r.hash = r.compute_hash();
    r
}

macro_rules! on_both_databases {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(super::Db::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(super::Db::Postgres).await } )* }
    };
}

on_both_databases!(
    real_flows_make_a_valid_chain,
    an_export_is_checked_offline_and_tampering_is_found,
    query_filters_and_pages_with_a_stable_cursor,
    an_altered_record_is_reported,
    a_deleted_record_is_reported,
    an_inserted_record_is_reported,
    a_forged_checkpoint_is_reported,
    a_purge_keeps_the_rest_verifiable_and_is_audited,
    a_typed_password_never_reaches_the_audit_trail
);

#[tokio::test]
async fn two_replicas_on_one_postgres_keep_one_gap_free_chain() {
    let db = harness::database_toml(Db::Postgres).await;
    let redis = harness::sessions_toml(Sessions::Redis);
    let kek = relais::adapters::keys::Kek::generate().to_base64();
    let a = harness::start_shared(&db, &redis, &kek, true).await;
    let b = harness::start_shared(&db, &redis, &kek, false).await;
    let mut logins = Vec::new();
    for i in 0..8 {
        let base = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
        logins.push(tokio::spawn(async move {
            let browser = Browser::new();
            browser.login(&base, &authorize_url(&base), ALICE.0, ALICE.1).await
        }));
    }
    for l in logins {
        l.await.unwrap();
    }
    for s in [&a, &b] {
        let report = verify(s).await;
        assert_eq!(report.problem, None, "{report:?}");
        let (head, _) = s.storage().audit_head().await.unwrap();
        assert_eq!(
            (report.first_seq, report.last_seq, report.records as i64),
            (Some(1), Some(head), head)
        );
    }
    let logins_recorded = a
        .storage()
        .audit_query(&AuditQuery {
            event_type: Some("login_password".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .records;
    assert_eq!(logins_recorded.len(), 8);
    a.stop().await;
    b.stop().await;
}
