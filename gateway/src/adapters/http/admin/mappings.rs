//! Mapping file import (`login;idNat` per line): a dry run shows the diff and every line's
//! error; the import applies all changes in one transaction, or nothing when a line is wrong.
use super::{AdminState, admin, changer, form, management_error};
use crate::adapters::http::AppState;
use crate::adapters::http::pages::html;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use relais_admin_ui::views::{ImportResult, ImportView};

pub async fn page(req: HttpRequest, state: web::Data<AppState>, admin_state: web::Data<AdminState>) -> HttpResponse {
    let a = match admin(&req, &state, &admin_state).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    html(
        StatusCode::OK,
        &ImportView {
            c: a.chrome("import"),
            text: String::new(),
            result: None,
            error: None,
        },
    )
}

#[tracing::instrument(skip_all)]
pub async fn import(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let f = match form(&req, payload).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let a = match changer(&req, &state, &admin_state, &f, "identity_import").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let text = f.get("file").unwrap_or("").to_owned();
    let dry_run = f.flag("dry_run");
    let actor = a.actor();
    let (result, error, status) = match state.provider.management(&actor).import_mapping_file(&text, dry_run).await {
        Ok(plan) => {
            let applied = !dry_run && plan.applicable();
            let status = if plan.errors.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (
                Some(ImportResult {
                    dry_run,
                    applied,
                    lines: plan.lines,
                    changes: plan.changes.iter().map(|c| c.to_string()).collect(),
                    review: plan
                        .review
                        .iter()
                        .map(|r| {
                            let c: Vec<String> = r.candidates.iter().map(|c| c.to_string()).collect();
                            format!("{} : {} ({})", r.username, r.reason, c.join(", "))
                        })
                        .collect(),
                    errors: plan
                        .errors
                        .iter()
                        .map(|e| format!("ligne/line {} : {}", e.line, e.message))
                        .collect(),
                }),
                None,
                status,
            )
        }
        Err(e) => match management_error(e, a.lang) {
            Ok(msg) => (None, Some(msg), StatusCode::BAD_REQUEST),
            Err(r) => return r,
        },
    };
    html(
        status,
        &ImportView {
            c: a.chrome("import"),
            text,
            result,
            error,
        },
    )
}
