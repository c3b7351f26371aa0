//! "Verify my national identity with Pro Santé Connect": the logged-in person goes to PSC once
//! (e-CPS or card), and the idNat PSC returns becomes a verified mapping.
use super::AppState;
use super::errors;
use super::extract::{self, SSO_COOKIE};
use super::i18n::Lang;
use super::pages;
use crate::adapters::psc_client::PscRoundTrip;
use crate::domain::identity::Provenance;
use crate::domain::ports::Namespace;
use crate::protocol::{OAuthError, OAuthErrorCode};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct Pending {
    account_id: uuid::Uuid,
    trip: PscRoundTrip,
}

fn refused(lang: Lang, why: &str) -> HttpResponse {
    errors::page(&OAuthError::new(OAuthErrorCode::AccessDenied, why), lang)
}

#[tracing::instrument(skip_all)]
pub async fn start(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let lang = Lang::pick(None, &req);
    let Some(psc) = &state.psc_verifier else {
        return pages::not_found(req).await;
    };
    let account = match state.provider.sso_account(extract::cookie(&req, SSO_COOKIE).as_deref()).await {
        Ok(Some(a)) => a,
        Ok(None) => return refused(lang, "log in to an application of the establishment first"),
        Err(e) => return errors::domain_page(e, lang),
    };
    let key = state.provider.random.token();
    let (url, trip) = match psc.start(&key).await {
        Ok(x) => x,
        Err(e) => return errors::page(&OAuthError::unavailable(e.to_string()), lang),
    };
    let bytes = serde_json::to_vec(&Pending { account_id: account, trip }).expect("serialisable");
    if let Err(e) = state
        .sessions
        .put(Namespace::PscProof, &key, &bytes, Duration::from_secs(600))
        .await
    {
        return errors::domain_page(e.into(), lang);
    }
    HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

#[tracing::instrument(skip_all)]
pub async fn callback(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let lang = Lang::pick(None, &req);
    let Some(psc) = &state.psc_verifier else {
        return pages::not_found(req).await;
    };
    let params = extract::query_params(&req, 4096);
    let (Some(key), Some(code)) = (params.get("state"), params.get("code")) else {
        return refused(
            lang,
            &format!(
                "Pro Santé Connect did not complete the verification ({})",
                params.get("error").unwrap_or("no code")
            ),
        );
    };
    let pending: Pending = match state.sessions.take(Namespace::PscProof, key).await {
        Ok(Some(b)) => match serde_json::from_slice(&b) {
            Ok(p) => p,
            Err(_) => return refused(lang, "unknown or expired verification"),
        },
        Ok(None) => return refused(lang, "unknown or expired verification"),
        Err(e) => return errors::domain_page(e.into(), lang),
    };
    // The browser coming back must be the one that left.
    match state.provider.sso_account(extract::cookie(&req, SSO_COOKIE).as_deref()).await {
        Ok(Some(a)) if a == pending.account_id => {}
        Ok(_) => return refused(lang, "this verification was started by another session"),
        Err(e) => return errors::domain_page(e, lang),
    }
    let idnat = match psc.finish(code, pending.trip).await {
        Ok(i) => i,
        Err(e) => return refused(lang, &e.to_string()),
    };
    let m = state.provider.management("psc");
    match m.link_proven(pending.account_id, idnat.clone(), Provenance::PscProof).await {
        Ok(_) => {
            let body = format!("{} {idnat}", lang.text().verified_body);
            pages::message(StatusCode::OK, lang, lang.text().verified_title, &body)
        }
        Err(crate::domain::management::ManagementError::Invalid(m)) => refused(lang, &format!("{idnat} cannot be linked to you: {m}")),
        Err(crate::domain::management::ManagementError::Domain(e)) => errors::domain_page(e, lang),
    }
}
