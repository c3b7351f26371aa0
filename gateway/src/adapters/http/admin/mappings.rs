//! Mapping file import (`login;idNat` per line): a dry run shows the diff and every line's
//! error; the import applies all changes in one transaction, or nothing when a line is wrong.
//! The same page lists the review queue (people an import could not match alone) and decides
//! its items, as `relais identity review --resolve` does.
use super::{AdminState, admin, management_error, posted_change, see_other};
use crate::adapters::http::AppState;
use crate::adapters::http::i18n::Lang;
use crate::adapters::http::pages::html;
use crate::domain::management::ReviewDecision;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use relais_admin_ui::views::{ImportResult, ImportView, ReviewRow};

pub async fn page(req: HttpRequest, state: web::Data<AppState>, admin_state: web::Data<AdminState>) -> HttpResponse {
    let a = match admin(&req, &state, &admin_state).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let t = a.chrome("import").t;
    let notice = match super::query(&req).get("decided").map(String::as_str) {
        Some("linked") => Some(t.queue_linked.to_owned()),
        Some("dismissed") => Some(t.queue_dismissed.to_owned()),
        _ => None,
    };
    render(&state, &a, StatusCode::OK, Page { notice, ..Page::default() }).await
}

/// What the import page shows besides the review queue.
#[derive(Default)]
struct Page {
    text: String,
    result: Option<ImportResult>,
    error: Option<String>,
    notice: Option<String>,
}

/// The import page with the current review queue.
async fn render(state: &AppState, a: &super::Admin, status: StatusCode, p: Page) -> HttpResponse {
    let queue = match queue(state, a.lang).await {
        Ok(q) => q,
        Err(e) => return super::domain_error(e, a.lang),
    };
    html(
        status,
        &ImportView {
            c: a.chrome("import"),
            text: p.text,
            result: p.result,
            error: p.error,
            queue,
            notice: p.notice,
        },
    )
}

async fn queue(state: &AppState, lang: Lang) -> Result<Vec<ReviewRow>, crate::domain::ports::StoreError> {
    Ok(state
        .provider
        .identities
        .review_items()
        .await?
        .into_iter()
        .filter_map(|r| {
            Some(ReviewRow {
                id: r.id?,
                username: r.username,
                reason: lang.review_reason(&r.reason).into_owned(),
                candidates: r.candidates.iter().map(ToString::to_string).collect(),
            })
        })
        .collect())
}

/// Decides a review item: link one of its candidates (or, without candidates, a typed idNat)
/// to the person, or dismiss it. Audited as `identity_review_resolved` with the admin's name.
#[tracing::instrument(skip_all)]
pub async fn decide(
    req: HttpRequest,
    path: web::Path<i64>,
    payload: web::Payload,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let (f, a) = match posted_change(&req, payload, &state, &admin_state, "identity_review_resolved").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let decision = match f.get("decision") {
        Some("dismiss") => ReviewDecision::Dismiss,
        _ => ReviewDecision::Link {
            idnat: f.get("idnat").unwrap_or("").trim(),
            verified: f.flag("verified"),
        },
    };
    let decided = if matches!(decision, ReviewDecision::Dismiss) {
        "dismissed"
    } else {
        "linked"
    };
    match state.provider.management(&a.actor()).resolve_review(*path, decision).await {
        Ok(_) => see_other(&format!("/admin/mappings/import?decided={decided}")),
        Err(e) => match management_error(e, a.lang) {
            Ok(msg) => {
                let p = Page {
                    error: Some(msg),
                    ..Page::default()
                };
                render(&state, &a, StatusCode::BAD_REQUEST, p).await
            }
            Err(r) => r,
        },
    }
}

#[tracing::instrument(skip_all)]
pub async fn import(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let (f, a) = match posted_change(&req, payload, &state, &admin_state, "identity_import").await {
        Ok(x) => x,
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
                            format!("{} : {} ({})", r.username, a.lang.review_reason(&r.reason), c.join(", "))
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
    render(
        &state,
        &a,
        status,
        Page {
            text,
            result,
            error,
            notice: None,
        },
    )
    .await
}
