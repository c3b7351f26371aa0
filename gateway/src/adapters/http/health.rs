//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database and the
//! session store answer within the probe timeout).
use super::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let t = state.probe_timeout;
    let db = matches!(tokio::time::timeout(t, state.storage.ping()).await, Ok(Ok(())));
    let sessions = matches!(tokio::time::timeout(t, state.sessions.ping()).await, Ok(Ok(())));
    let body = json!({
        "status": if db && sessions {"ready"} else {"not_ready"},
        "database": db,
        "session_store": sessions,
        "audit_forward": state.audit_forward.snapshot(),
    });
    if db && sessions {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
