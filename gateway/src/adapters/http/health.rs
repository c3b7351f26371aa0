//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database and the
//! session store answer within the probe timeout, and the server is not shutting down).
use super::AppState;
use actix_web::{HttpResponse, web};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set on SIGTERM: from then on `/readyz` says not ready, so load balancers take this replica
/// out before its listener closes (server.rs `Running::shutdown`).
#[derive(Default)]
pub struct Readiness {
    draining: AtomicBool,
}

impl Readiness {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>, readiness: Option<web::Data<Readiness>>) -> HttpResponse {
    if readiness.is_some_and(|r| r.draining()) {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "draining"}));
    }
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
