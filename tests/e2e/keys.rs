//! Signing keys: ES256 by default, rotation with an overlap window, sealed at rest.
use crate::browser::Browser;
use crate::harness::{self, ALICE, CALLBACK, Db, Sessions};
use crate::rp;
use openidconnect::TokenResponse;
use relais::adapters::keys::{Kek, KeyRing, KeyStoreError};
use relais::domain::ports::Storage;
use relais::domain::records::SigningAlg;

#[tokio::test]
async fn rotation_keeps_old_tokens_verifiable_during_the_overlap() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let web = rp::client(rp::metadata(&s.base).await, "web", Some(&s.web_secret), CALLBACK);
    let b = Browser::new();
    let req = rp::auth_request(&web, &[]);
    let cb = b.login(&s.base, &req.url, ALICE.0, ALICE.1).await;
    let old = web
        .exchange_code(rp::code(&cb["code"]))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .unwrap();
    let old_id = old.id_token().unwrap().clone();
    let old_kid = rp::header(&old_id.to_string())["kid"].as_str().unwrap().to_owned();

    let c = s.components();
    let now = relais::domain::ports::Clock::now(&s.clock);
    let new_kid = c
        .keys
        .rotate(c.store.as_ref(), SigningAlg::ES256, chrono::Duration::hours(1), now)
        .await
        .unwrap();
    assert_ne!(new_kid, old_kid);

    // A relying party that fetches the JWKS again still verifies the old token...
    let web = rp::client(rp::metadata(&s.base).await, "web", Some(&s.web_secret), CALLBACK);
    let verifier = web.id_token_verifier().set_allowed_algs(rp::algs());
    old_id.claims(&verifier, &req.nonce).expect("old token verifies during the overlap");
    // ...and new tokens carry the new kid.
    let req = rp::auth_request(&web, &[]);
    let openidconnect_step = b.start(&req.url).await;
    let crate::browser::Step::Callback(cb) = openidconnect_step else {
        panic!()
    };
    let fresh = web
        .exchange_code(rp::code(&cb["code"]))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .unwrap();
    assert_eq!(rp::header(&fresh.id_token().unwrap().to_string())["kid"], new_kid.as_str());

    // After the overlap the old key leaves the JWKS.
    let later = now + chrono::Duration::hours(2);
    c.keys
        .rotate(c.store.as_ref(), SigningAlg::ES256, chrono::Duration::hours(1), later)
        .await
        .unwrap();
    let jwks: serde_json::Value = reqwest::get(s.url("/jwks")).await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(!kids.contains(&old_kid.as_str()), "{kids:?}");
    assert!(kids.contains(&new_kid.as_str()), "the previous key is in its own overlap");
    s.stop().await;
}

#[tokio::test]
async fn private_keys_are_sealed_under_the_kek() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let store = s.components().store.clone();
    let keys = store.signing_keys().await.unwrap();
    assert!(keys.iter().any(|k| k.alg == SigningAlg::ES256) && keys.iter().any(|k| k.alg == SigningAlg::RS256));
    // PKCS#8 documents start with a DER SEQUENCE (0x30); sealed blobs are nonce || ciphertext.
    for k in &keys {
        assert!(k.sealed_private_key.len() > 12 + 16);
    }
    // Another key-encryption key cannot open them, and says so.
    match KeyRing::load(store.as_ref(), Kek::generate(), chrono::Utc::now()).await {
        Err(KeyStoreError::Unseal(_)) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a wrong KEK must not load the keys"),
    }
    assert!(Kek::from_base64("too-short").is_err());
    s.stop().await;
}
