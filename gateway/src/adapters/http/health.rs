//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database, the
//! session store and — when directories are configured — at least one directory answer within
//! the probe timeout, and the server is not shutting down).
//!
//! One directory of several down (contractors' OpenLDAP, say) keeps the replica ready: the
//! others still log people in. All of them down makes every replica not ready, since no
//! password login can succeed (card logins would, but a load balancer cannot tell them apart).
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
    let (db, sessions, dirs) = tokio::join!(
        async { matches!(tokio::time::timeout(t, state.storage.ping()).await, Ok(Ok(()))) },
        async { matches!(tokio::time::timeout(t, state.sessions.ping()).await, Ok(Ok(()))) },
        futures_util::future::join_all(state.directories.iter().map(|d| async move {
            let ok = matches!(tokio::time::timeout(t, d.ping()).await, Ok(Ok(())));
            (d.settings.name.clone(), ok)
        })),
    );
    let directory_ok = dirs.is_empty() || dirs.iter().any(|(_, ok)| *ok);
    let ready = db && sessions && directory_ok;
    let body = json!({
        "status": if ready {"ready"} else {"not_ready"},
        "database": db,
        "session_store": sessions,
        "directories": dirs.iter().map(|(name, ok)| json!({"name": name, "up": ok})).collect::<Vec<_>>(),
        "audit_forward": state.audit_forward.snapshot(),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
