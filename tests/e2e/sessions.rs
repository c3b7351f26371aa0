//! The session-store contract, run against the in-process store and Redis.
use crate::harness;
use relais::adapters::sessions::{MemorySessionStore, RedisSessionStore, RedisSettings};
use relais::domain::ports::{ManualClock, Namespace, SessionStore};
use std::sync::Arc;
use std::time::Duration;

enum Expiry {
    /// Move this clock (memory store).
    Manual(ManualClock),
    /// Wait in real time (Redis enforces TTLs itself).
    Real,
}

async fn memory() -> (Arc<dyn SessionStore>, Expiry) {
    let clock = ManualClock::starting_now();
    (Arc::new(MemorySessionStore::new(Arc::new(clock.clone()))), Expiry::Manual(clock))
}

async fn redis() -> (Arc<dyn SessionStore>, Expiry) {
    let s = RedisSettings {
        url: harness::redis_url(),
        key_prefix: harness::unique("relais-test"),
        timeout: Duration::from_secs(2),
    };
    (
        Arc::new(
            RedisSessionStore::connect(&s)
                .await
                .expect("Redis on 127.0.0.1:6379 must be running"),
        ),
        Expiry::Real,
    )
}

async fn pass(e: &Expiry, d: Duration) {
    match e {
        Expiry::Manual(c) => c.advance(d),
        Expiry::Real => tokio::time::sleep(d).await,
    }
}

async fn take_is_atomic((store, _): (Arc<dyn SessionStore>, Expiry)) {
    store.put(Namespace::Code, "c1", b"grant", Duration::from_secs(60)).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.take(Namespace::Code, "c1").await.unwrap() }));
    }
    let mut winners = 0;
    for t in tasks {
        if let Some(v) = t.await.unwrap() {
            assert_eq!(v, b"grant");
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "a code is redeemed exactly once");
}

/// `replace`: nothing for an absent key (and nothing stored); otherwise the old value, the new
/// one stored with its own expiry; concurrent callers each see the value the one before left.
async fn replace_swaps_atomically((store, e): (Arc<dyn SessionStore>, Expiry)) {
    let ns = Namespace::Code;
    assert_eq!(store.replace(ns, "absent", b"m", Duration::from_secs(60)).await.unwrap(), None);
    assert_eq!(
        store.get(ns, "absent").await.unwrap(),
        None,
        "replace stores nothing for an absent key"
    );
    store.put(ns, "c", b"grant", Duration::from_millis(300)).await.unwrap();
    let old = store.replace(ns, "c", b"marker", Duration::from_secs(60)).await.unwrap();
    assert_eq!(old.as_deref(), Some(&b"grant"[..]));
    pass(&e, Duration::from_millis(600)).await;
    assert_eq!(
        store.get(ns, "c").await.unwrap().as_deref(),
        Some(&b"marker"[..]),
        "the new value has the new expiry, not the grant's"
    );
    // 16 concurrent swaps on a fresh key: exactly one sees the original, and every value seen
    // was written exactly once before (a chain, no lost update).
    store.put(ns, "d", b"grant", Duration::from_secs(60)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.replace(ns, "d", format!("m{i}").as_bytes(), Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(String::from_utf8(t.await.unwrap().expect("the key exists")).unwrap());
    }
    let last = String::from_utf8(store.get(ns, "d").await.unwrap().unwrap()).unwrap();
    assert_eq!(seen.iter().filter(|v| *v == "grant").count(), 1, "{seen:?}");
    let mut written: Vec<String> = seen.iter().filter(|v| *v != "grant").cloned().collect();
    written.push(last);
    written.sort();
    let mut all: Vec<String> = (0..16).map(|i| format!("m{i}")).collect();
    all.sort();
    assert_eq!(written, all, "every value written was seen once or is the last");
}

async fn entries_expire((store, e): (Arc<dyn SessionStore>, Expiry)) {
    store.put(Namespace::Sso, "s", b"v", Duration::from_millis(400)).await.unwrap();
    assert_eq!(store.get(Namespace::Sso, "s").await.unwrap().as_deref(), Some(&b"v"[..]));
    pass(&e, Duration::from_millis(700)).await;
    assert_eq!(store.get(Namespace::Sso, "s").await.unwrap(), None);
    assert_eq!(store.take(Namespace::Sso, "s").await.unwrap(), None);
}

async fn put_if_absent_detects_replay((store, e): (Arc<dyn SessionStore>, Expiry)) {
    assert!(
        store
            .put_if_absent(Namespace::AssertionJti, "j", b"1", Duration::from_millis(400))
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_if_absent(Namespace::AssertionJti, "j", b"1", Duration::from_millis(400))
            .await
            .unwrap()
    );
    pass(&e, Duration::from_millis(700)).await;
    assert!(
        store
            .put_if_absent(Namespace::AssertionJti, "j", b"1", Duration::from_millis(400))
            .await
            .unwrap()
    );
}

async fn namespaces_and_counters((store, _): (Arc<dyn SessionStore>, Expiry)) {
    store.put(Namespace::Sso, "k", b"a", Duration::from_secs(10)).await.unwrap();
    store.put(Namespace::Code, "k", b"b", Duration::from_secs(10)).await.unwrap();
    assert_eq!(store.get(Namespace::Sso, "k").await.unwrap().as_deref(), Some(&b"a"[..]));
    store.delete(Namespace::Sso, "k").await.unwrap();
    assert_eq!(store.get(Namespace::Sso, "k").await.unwrap(), None);
    assert_eq!(store.get(Namespace::Code, "k").await.unwrap().as_deref(), Some(&b"b"[..]));
    assert_eq!(store.increment(Namespace::Counter, "n", Duration::from_secs(10)).await.unwrap(), 1);
    assert_eq!(store.increment(Namespace::Counter, "n", Duration::from_secs(10)).await.unwrap(), 2);
    store.ping().await.unwrap();
}

/// The per-person session index: sets with an expiry that only moves forward.
async fn sets_index_and_expire((store, e): (Arc<dyn SessionStore>, Expiry)) {
    let ns = Namespace::SessionIndex;
    assert!(store.set_members(ns, "a:p").await.unwrap().is_empty());
    store.set_add(ns, "a:p", "s1", Duration::from_millis(1500)).await.unwrap();
    store.set_add(ns, "a:p", "s2", Duration::from_millis(300)).await.unwrap();
    store.set_add(ns, "a:p", "s2", Duration::from_millis(300)).await.unwrap();
    store.set_add(ns, "a:q", "s3", Duration::from_millis(300)).await.unwrap();
    let mut m = store.set_members(ns, "a:p").await.unwrap();
    m.sort();
    assert_eq!(m, vec!["s1".to_owned(), "s2".to_owned()]);
    store.set_remove(ns, "a:p", &["s2".to_owned(), "nope".to_owned()]).await.unwrap();
    assert_eq!(store.set_members(ns, "a:p").await.unwrap(), vec!["s1".to_owned()]);
    // The shorter TTL of a later add did not shorten the set's life.
    pass(&e, Duration::from_millis(700)).await;
    assert_eq!(store.set_members(ns, "a:p").await.unwrap(), vec!["s1".to_owned()]);
    assert!(store.set_members(ns, "a:q").await.unwrap().is_empty(), "expired");
    pass(&e, Duration::from_millis(1200)).await;
    assert!(store.set_members(ns, "a:p").await.unwrap().is_empty(), "expired");
    // Removing the last member removes the set; a value of the same key is another thing.
    store.set_add(ns, "a:r", "s4", Duration::from_secs(10)).await.unwrap();
    store.set_remove(ns, "a:r", &["s4".to_owned()]).await.unwrap();
    assert!(store.set_members(ns, "a:r").await.unwrap().is_empty());
}

macro_rules! on_both_stores {
    ($($name:ident),*) => {
        mod memory_store { $( #[tokio::test] async fn $name() { super::$name(super::memory().await).await } )* }
        mod redis_store { $( #[tokio::test] async fn $name() { super::$name(super::redis().await).await } )* }
    };
}

on_both_stores!(
    take_is_atomic,
    replace_swaps_atomically,
    entries_expire,
    put_if_absent_detects_replay,
    namespaces_and_counters,
    sets_index_and_expire
);

#[tokio::test]
async fn codes_are_single_use_across_two_replicas_sharing_redis_and_postgres() {
    // Two servers on one PostgreSQL schema and one Redis prefix behave as one.
    let db = harness::database_toml(harness::Db::Postgres).await;
    let redis = harness::sessions_toml(harness::Sessions::Redis);
    let kek = relais::adapters::keys::Kek::generate().to_base64();
    let a = harness::start_shared(&db, &redis, &kek, true).await;
    let b = harness::start_shared(&db, &redis, &kek, false).await;
    let browser = crate::browser::Browser::new();
    // The login starts on replica A and the code is redeemed on replica B.
    let url = format!(
        "{}/authorize?response_type=code&client_id=web&scope=openid&redirect_uri={}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        a.base,
        crate::flows::urlencode(harness::CALLBACK)
    );
    let cb = browser.login(&a.base, &url, harness::ALICE.0, harness::ALICE.1).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", cb["code"].as_str()),
        ("redirect_uri", harness::CALLBACK),
        ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    ];
    let http = reqwest::Client::new();
    let (ra, rb) = tokio::join!(
        http.post(b.url("/token")).basic_auth("web", Some(&a.web_secret)).form(&form).send(),
        http.post(a.url("/token")).basic_auth("web", Some(&a.web_secret)).form(&form).send()
    );
    let ok = [ra.unwrap().status(), rb.unwrap().status()]
        .iter()
        .filter(|s| s.is_success())
        .count();
    assert_eq!(ok, 1, "the code is redeemed once across replicas");
    // An ID token signed by one replica verifies with the other's JWKS (shared keys).
    let ja: serde_json::Value = reqwest::get(a.url("/jwks")).await.unwrap().json().await.unwrap();
    let jb: serde_json::Value = reqwest::get(b.url("/jwks")).await.unwrap().json().await.unwrap();
    assert_eq!(ja, jb);
    a.stop().await;
    b.stop().await;
}
