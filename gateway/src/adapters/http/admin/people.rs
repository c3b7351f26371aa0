//! People: search across local and directory accounts, one page per person (account,
//! national identity mappings, security keys, latest events) and the changes made there.
use super::{AdminState, Form, admin, date, management_error, posted_change, query, see_other};
use crate::adapters::http::AppState;
use crate::adapters::http::pages::html;
use crate::domain::account::Account;
use crate::domain::audit_chain::AuditQuery;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use relais_admin_ui::texts::texts;
use relais_admin_ui::views::{KeyRow, MappingRow, PeopleResultsView, PeopleView, PersonRow, PersonView};

/// Rows shown for a search.
const MAX_RESULTS: usize = 50;

fn row(a: &Account) -> PersonRow {
    PersonRow {
        username: a.username.clone(),
        display_name: a.display_name.clone(),
        email: a.email.clone().unwrap_or_default(),
        // Directory accounts have no password hash here: the directory checks it.
        source: if a.password_hash.is_some() { "local" } else { "directory" }.into(),
        disabled: a.disabled,
    }
}

async fn find(state: &AppState, q: &str) -> Result<(Vec<PersonRow>, bool), crate::domain::ports::StoreError> {
    let q = q.trim().to_lowercase();
    if q.is_empty() {
        return Ok((Vec::new(), false));
    }
    // One more than shown says whether there are more.
    let accounts = state.provider.identities.search_accounts(&q, MAX_RESULTS as u64 + 1).await?;
    let rows: Vec<PersonRow> = accounts.iter().take(MAX_RESULTS).map(row).collect();
    Ok((rows, accounts.len() > MAX_RESULTS))
}

#[tracing::instrument(skip_all)]
pub async fn search(req: HttpRequest, state: web::Data<AppState>, admin_state: web::Data<AdminState>) -> HttpResponse {
    let a = match admin(&req, &state, &admin_state).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let q = query(&req).remove("q").unwrap_or_default();
    match find(&state, &q).await {
        Ok((people, more)) => html(
            StatusCode::OK,
            &PeopleView {
                c: a.chrome("people"),
                q,
                people,
                more,
            },
        ),
        Err(e) => super::domain_error(e, a.lang),
    }
}

/// The result table alone (htmx live search).
pub async fn results(req: HttpRequest, state: web::Data<AppState>, admin_state: web::Data<AdminState>) -> HttpResponse {
    let a = match admin(&req, &state, &admin_state).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let q = query(&req).remove("q").unwrap_or_default();
    match find(&state, &q).await {
        Ok((people, more)) => html(
            StatusCode::OK,
            &PeopleResultsView {
                t: texts(a.lang.code()),
                people,
                more,
            },
        ),
        Err(e) => super::domain_error(e, a.lang),
    }
}

/// What the person page shows after an action.
#[derive(Default)]
struct Flash {
    notice: Option<String>,
    error: Option<String>,
    enrolment_code: Option<(String, String)>,
}

async fn render(req: &HttpRequest, state: &AppState, admin_state: &AdminState, username: &str, flash: Flash) -> HttpResponse {
    let a = match admin(req, state, admin_state).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let actor = a.actor();
    let m = state.provider.management(&actor);
    let (account, ids) = match m.show(username).await {
        Ok(x) => x,
        Err(e) => {
            return match management_error(e, a.lang) {
                Ok(msg) => crate::adapters::http::pages::html(
                    StatusCode::NOT_FOUND,
                    &relais_admin_ui::views::MessageView {
                        lang: a.lang.code(),
                        t: texts(a.lang.code()),
                        title: texts(a.lang.code()).error_title.into(),
                        message: msg,
                    },
                ),
                Err(r) => r,
            };
        }
    };
    let keys = match state.provider.key_store.security_keys(account.id).await {
        Ok(k) => k,
        Err(e) => return super::domain_error(e, a.lang),
    };
    let sessions = match state.provider.sso_sessions_of(account.id).await {
        Ok(s) => super::session_rows(&s, None),
        Err(e) => return super::domain_error(e, a.lang),
    };
    let role = match admin_state.roles.admin_role(account.id).await {
        Ok(r) => r.map(|r| r.as_str().to_owned()).unwrap_or_else(|| "—".into()),
        Err(e) => return super::domain_error(e, a.lang),
    };
    let events = match state
        .storage
        .audit_query(&AuditQuery {
            account_id: Some(account.id.to_string()),
            limit: 20,
            ..Default::default()
        })
        .await
    {
        Ok(p) => p.records.iter().map(super::audit_row).collect(),
        Err(e) => return super::domain_error(e, a.lang),
    };
    html(
        StatusCode::OK,
        &PersonView {
            c: a.chrome("people"),
            person: row(&account),
            account_id: account.id.to_string(),
            role,
            mappings: ids
                .iter()
                .map(|n| MappingRow {
                    idnat: n.idnat.to_string(),
                    provenance: n.provenance.as_str().into(),
                    verified: n.verified,
                    profession: n.profession.clone().unwrap_or_default(),
                })
                .collect(),
            keys: keys
                .iter()
                .map(|k| KeyRow {
                    id: k.id.to_string(),
                    name: k.name.clone(),
                    aaguid: k.aaguid.to_string(),
                    created: date(k.created_at),
                    last_used: k.last_used_at.map(date).unwrap_or_else(|| "—".into()),
                    revoked: k.revoked_at.map(date),
                })
                .collect(),
            sessions,
            events,
            notice: flash.notice,
            error: flash.error,
            enrolment_code: flash.enrolment_code,
        },
    )
}

#[tracing::instrument(skip_all)]
pub async fn person(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let flash = Flash {
        notice: query(&req).get("done").map(|_| texts(super::lang(&req).code()).done.to_owned()),
        ..Default::default()
    };
    render(&req, &state, &admin_state, &path, flash).await
}

fn person_url(username: &str) -> String {
    let u: String = url::form_urlencoded::byte_serialize(username.as_bytes()).collect();
    format!("/admin/people/{}?done=1", u.replace('+', "%20"))
}

/// Runs a change for the person at `path`: on success back to the person page, on invalid
/// input the page again with the error.
async fn change<F, Fut>(
    req: HttpRequest,
    payload: web::Payload,
    username: String,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
    action: &str,
    run: F,
) -> HttpResponse
where
    F: FnOnce(String, Form, String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Flash>, crate::domain::management::ManagementError>>,
{
    let (f, a) = match posted_change(&req, payload, &state, &admin_state, action).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match run(a.actor(), f, username.clone()).await {
        Ok(None) => see_other(&person_url(&username)),
        Ok(Some(flash)) => render(&req, &state, &admin_state, &username, flash).await,
        Err(e) => match management_error(e, a.lang) {
            Ok(msg) => {
                let mut r = render(
                    &req,
                    &state,
                    &admin_state,
                    &username,
                    Flash {
                        error: Some(msg),
                        ..Default::default()
                    },
                )
                .await;
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r
            }
            Err(r) => r,
        },
    }
}

pub async fn link(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let st = state.clone();
    change(
        req,
        payload,
        path.into_inner(),
        state,
        admin_state,
        "identity_link",
        |actor, f, user| async move {
            let idnat = f.get("idnat").unwrap_or("").trim().to_owned();
            st.provider.management(&actor).link(&user, &idnat, f.flag("verified")).await?;
            Ok(None)
        },
    )
    .await
}

pub async fn unlink(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let st = state.clone();
    change(
        req,
        payload,
        path.into_inner(),
        state,
        admin_state,
        "identity_unlink",
        |actor, f, user| async move {
            let idnat = f.get("idnat").unwrap_or("").to_owned();
            st.provider.management(&actor).unlink(&user, &idnat).await?;
            Ok(None)
        },
    )
    .await
}

pub async fn set_disabled(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let st = state.clone();
    change(
        req,
        payload,
        path.into_inner(),
        state,
        admin_state,
        "account_disable",
        |actor, f, user| async move {
            st.provider.management(&actor).set_disabled(&user, f.flag("disabled")).await?;
            Ok(None)
        },
    )
    .await
}

pub async fn enrolment_code(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let st = state.clone();
    let ttl = admin_state.enrolment_code_ttl_secs;
    change(
        req,
        payload,
        path.into_inner(),
        state,
        admin_state,
        "fido2_enrolment_code",
        |actor, _f, user| async move {
            let (code, expires) = st.provider.management(&actor).issue_enrolment_code(&user, ttl).await?;
            // Shown once, in this response only: never in a URL, never stored in clear.
            Ok(Some(Flash {
                enrolment_code: Some((code, date(expires))),
                ..Default::default()
            }))
        },
    )
    .await
}

pub async fn revoke_key(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<(String, uuid::Uuid)>,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let (username, key) = path.into_inner();
    let st = state.clone();
    change(
        req,
        payload,
        username,
        state,
        admin_state,
        "fido2_revoke",
        |actor, _f, user| async move {
            st.provider.management(&actor).revoke_security_key(&user, key).await?;
            Ok(None)
        },
    )
    .await
}

/// The account id of `username`, for the session actions.
async fn account_of(state: &AppState, actor: &str, username: &str) -> Result<uuid::Uuid, crate::domain::management::ManagementError> {
    Ok(state.provider.management(actor).show(username).await?.0.id)
}

#[tracing::instrument(skip_all, fields(username = %path.as_str()))]
pub async fn revoke_session(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let st = state.clone();
    let ctx = crate::adapters::http::extract::context(&req);
    change(
        req,
        payload,
        path.into_inner(),
        state,
        admin_state,
        "session_revoke",
        |actor, f, user| async move {
            let account = account_of(&st, &actor, &user).await?;
            let sid = f.get("session").unwrap_or("").to_owned();
            if !st.provider.revoke_sso_session(account, &sid, &actor, &ctx).await? {
                return Err(crate::domain::management::ManagementError::Invalid(format!(
                    "{user} has no such active session"
                )));
            }
            Ok(None)
        },
    )
    .await
}

#[tracing::instrument(skip_all, fields(username = %path.as_str()))]
pub async fn revoke_all_sessions(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let st = state.clone();
    let ctx = crate::adapters::http::extract::context(&req);
    change(
        req,
        payload,
        path.into_inner(),
        state,
        admin_state,
        "session_revoke_all",
        |actor, _f, user| async move {
            let account = account_of(&st, &actor, &user).await?;
            st.provider.revoke_all_sso_sessions(account, &actor, &ctx).await?;
            Ok(None)
        },
    )
    .await
}
