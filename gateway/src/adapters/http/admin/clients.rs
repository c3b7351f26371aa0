//! Clients (relying parties): list, register a local application or Pro Santé Connect (the
//! secret is shown once, only its digest is stored), rotate a secret.
use super::{AdminState, admin, management_error, posted_change};
use crate::adapters::http::AppState;
use crate::adapters::http::pages::html;
use crate::domain::client::TokenAuthMethod;
use crate::domain::management::{ManagementError, NewClient, PscEnvironment};
use crate::protocol::{ClientId, RedirectUri};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use relais_admin_ui::views::{ClientRow, ClientsView};

async fn render(
    state: &AppState,
    a: &super::Admin,
    status: StatusCode,
    secret: Option<(String, String)>,
    error: Option<String>,
) -> HttpResponse {
    let clients = match state.storage.list_clients().await {
        Ok(c) => c,
        Err(e) => return super::domain_error(e, a.lang),
    };
    html(
        status,
        &ClientsView {
            c: a.chrome("clients"),
            clients: clients
                .iter()
                .map(|c| ClientRow {
                    id: c.id.to_string(),
                    name: c.name.clone(),
                    kind: format!("{:?}", c.kind).to_lowercase(),
                    auth_method: c.auth_method.as_str().into(),
                    redirect_uris: c.redirect_uris.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(" "),
                    min_acr: c.min_acr.clone().unwrap_or_default(),
                    required_roles: c.required_roles.join(" "),
                    has_secret: c.secret_digest.is_some(),
                })
                .collect(),
            secret,
            error,
            acr_levels: state.provider.settings.acr_levels.clone(),
        },
    )
}

pub async fn page(req: HttpRequest, state: web::Data<AppState>, admin_state: web::Data<AdminState>) -> HttpResponse {
    let a = match admin(&req, &state, &admin_state).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if !a.session.may_change() {
        return super::forbidden(a.lang, "read-only role: the clients page is for administrators");
    }
    render(&state, &a, StatusCode::OK, None, None).await
}

fn invalid(e: impl std::fmt::Display) -> ManagementError {
    ManagementError::Invalid(e.to_string())
}

fn new_client(f: &super::Form, strongest_acr: &str) -> Result<NewClient, ManagementError> {
    let id = ClientId::parse(f.get("client_id").unwrap_or("").trim()).map_err(invalid)?;
    match f.get("kind") {
        Some("psc") => {
            let env = PscEnvironment::parse(f.get("environment").unwrap_or("")).ok_or_else(|| invalid("unknown PSC environment"))?;
            let redirect = env.broker_redirect_uri(f.get("hint").unwrap_or("").trim())?;
            Ok(NewClient::psc(id, redirect, strongest_acr))
        }
        _ => {
            let uris = f
                .get("redirect_uris")
                .unwrap_or("")
                .split_whitespace()
                .map(RedirectUri::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            let auth_method = TokenAuthMethod::parse(f.get("auth_method").unwrap_or("client_secret_basic"))
                .filter(|m| *m != TokenAuthMethod::PrivateKeyJwt)
                .ok_or_else(|| invalid("unknown authentication method"))?;
            let name = f.get("name").unwrap_or("").trim();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(invalid("the name must have 1 to 200 characters"));
            }
            Ok(NewClient {
                auth_method,
                min_acr: f.get("min_acr").map(str::to_owned),
                required_roles: f
                    .get("required_roles")
                    .unwrap_or("")
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect(),
                ..NewClient::confidential(id, name, uris)
            })
        }
    }
}

#[tracing::instrument(skip_all)]
pub async fn register(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let (f, a) = match posted_change(&req, payload, &state, &admin_state, "client_register").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let strongest = state.provider.settings.acr_levels.last().cloned().unwrap_or_default();
    if let Some(acr) = f.get("min_acr")
        && !state.provider.settings.acr_levels.iter().any(|l| l == acr)
    {
        return render(&state, &a, StatusCode::BAD_REQUEST, None, Some(format!("unknown acr {acr}"))).await;
    }
    let actor = a.actor();
    let result = match new_client(&f, &strongest) {
        Ok(c) => state.provider.management(&actor).register_client(c).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((client, secret)) => {
            let shown = secret.map(|s| (client.id.to_string(), s));
            render(&state, &a, StatusCode::CREATED, shown, None).await
        }
        Err(e) => match management_error(e, a.lang) {
            Ok(msg) => render(&state, &a, StatusCode::BAD_REQUEST, None, Some(msg)).await,
            Err(r) => r,
        },
    }
}

pub async fn rotate(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let (_, a) = match posted_change(&req, payload, &state, &admin_state, "client_rotate").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match ClientId::parse(&path) {
        Ok(id) => id,
        Err(e) => return render(&state, &a, StatusCode::BAD_REQUEST, None, Some(e.to_string())).await,
    };
    let actor = a.actor();
    match state.provider.management(&actor).rotate_client_secret(&id).await {
        Ok(secret) => render(&state, &a, StatusCode::OK, Some((id.to_string(), secret)), None).await,
        Err(e) => match management_error(e, a.lang) {
            Ok(msg) => render(&state, &a, StatusCode::BAD_REQUEST, None, Some(msg)).await,
            Err(r) => r,
        },
    }
}
