//! The dashboard: today's logins by method and outcome, lockouts, dependency health, signing
//! key age, the audit chain's head and the FIDO MDS3 blob in use.
use super::{AdminState, admin};
use crate::adapters::fido_mds::SignerRevocation;
use crate::adapters::http::AppState;
use crate::adapters::http::pages::html;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use relais_admin_ui::views::{CountRow, CrlCheck, DashboardView, MdsRow, SigningKeyRow};
use std::collections::HashMap;

/// The login events and how the dashboard names their method.
const METHODS: &[(&str, &str)] = &[
    ("login_password", "mot de passe / password"),
    ("fido2_authentication", "clé FIDO2 / FIDO2 key"),
    ("sso_reused", "SSO"),
    ("admin_login", "admin"),
];

#[tracing::instrument(skip_all)]
pub async fn page(req: HttpRequest, state: web::Data<AppState>, admin_state: web::Data<AdminState>) -> HttpResponse {
    let a = match admin(&req, &state, &admin_state).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let now = state.provider.clock.now();
    let midnight = now.date_naive().and_hms_opt(0, 0, 0).map(|d| d.and_utc()).unwrap_or(now);
    // One aggregate query over the day's rows (the `at` index), not a scan of the records.
    let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
    let mut lockouts = 0;
    match state.storage.audit_counts(midnight).await {
        Ok(rows) => {
            for r in rows {
                if r.event_type == "login_throttled" {
                    lockouts += r.count;
                }
                let e = counts.entry(r.event_type).or_default();
                if r.outcome == "success" {
                    e.0 += r.count;
                } else {
                    e.1 += r.count;
                }
            }
        }
        Err(e) => return super::domain_error(e, a.lang),
    }
    let logins = METHODS
        .iter()
        .map(|(kind, label)| {
            let (success, failure) = counts.get(*kind).copied().unwrap_or_default();
            CountRow {
                label: (*label).into(),
                success,
                failure,
            }
        })
        .collect();
    let timeout = state.probe_timeout;
    let db_ok = matches!(tokio::time::timeout(timeout, state.storage.ping()).await, Ok(Ok(())));
    let sessions_ok = matches!(tokio::time::timeout(timeout, state.sessions.ping()).await, Ok(Ok(())));
    let signing_keys = match state.storage.signing_keys().await {
        Ok(keys) => keys
            .into_iter()
            .map(|k| SigningKeyRow {
                kid: k.kid,
                alg: k.alg.as_str().into(),
                age_days: (now - k.created_at).num_days(),
                active: k.rotated_at.is_none(),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let audit_head = state.storage.audit_head().await.map(|(seq, _)| seq).unwrap_or(-1);
    let last_checkpoint = state.storage.audit_checkpoints().await.ok().and_then(|c| c.last().map(|c| c.seq));
    let fido_mds = admin_state.mds_blob.as_ref().map(|b| MdsRow {
        number: b.number,
        next_update: b.next_update.clone(),
        stale: b.past_next_update(now.date_naive()),
        crl: match b.signer_revocation {
            SignerRevocation::Checked => CrlCheck::Checked,
            SignerRevocation::CheckedWithStaleCrl => CrlCheck::Stale,
            SignerRevocation::NotChecked => CrlCheck::NotChecked,
        },
    });
    html(
        StatusCode::OK,
        &DashboardView {
            c: a.chrome("dashboard"),
            logins,
            lockouts,
            db_ok,
            sessions_ok,
            signing_keys,
            audit_head,
            last_checkpoint,
            fido_mds,
        },
    )
}
