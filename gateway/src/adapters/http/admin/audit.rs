//! The audit trail: filter, page by cursor (newest first), export as JSON lines (streamed,
//! oldest first, audited) and verify the hash chain.
use super::{AdminState, admin, form, query, reader_posting};
use crate::adapters::http::AppState;
use crate::adapters::http::extract;
use crate::adapters::http::pages::html;
use crate::domain::audit::{AuditEvent, AuditRecord};
use crate::domain::audit_chain::{AuditQuery, Order};
use crate::domain::audit_selection::{SelectionDigest, SelectionSeal};
use crate::domain::audit_verify;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use relais_admin_ui::views::AuditView;
use std::collections::HashMap;

const PAGE: u64 = 50;
const EXPORT_PAGE: u64 = 2000;

const EVENT_TYPES: &[&str] = &[
    "login_password",
    "login_throttled",
    "login_account_refused",
    "fido2_authentication",
    "fido2_key_registered",
    "fido2_key_revoked",
    "fido2_enrolment_code_issued",
    "sso_reused",
    "code_issued",
    "token_issued",
    "token_refused",
    "authorize_refused",
    "client_auth_failed",
    "client_registered",
    "client_secret_rotated",
    "account_created",
    "account_changed",
    "identity_linked",
    "identity_unlinked",
    "identity_import",
    "admin_login",
    "admin_refused",
    "admin_role_changed",
    "audit_exported",
    "logout",
    "session_revoked",
];

/// The filters a page, an export and a "next page" link share.
struct Filters {
    event_type: String,
    account_id: String,
    client_id: String,
    outcome: String,
    since: String,
    until: String,
}

fn day(s: &str) -> Option<DateTime<Utc>> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

impl Filters {
    fn from(q: &HashMap<String, String>) -> Self {
        let g = |k: &str| q.get(k).map(|v| v.trim().chars().take(128).collect()).unwrap_or_default();
        Self {
            event_type: g("event_type"),
            account_id: g("account_id"),
            client_id: g("client_id"),
            outcome: g("outcome"),
            since: g("since"),
            until: g("until"),
        }
    }

    fn query(&self, order: Order, limit: u64, cursor: Option<i64>) -> AuditQuery {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        AuditQuery {
            since: day(&self.since),
            // `until` is a day: everything of that day is included.
            until: day(&self.until).map(|d| d + chrono::Duration::days(1)),
            account_id: opt(&self.account_id),
            client_id: opt(&self.client_id),
            event_type: opt(&self.event_type),
            outcome: opt(&self.outcome),
            cursor,
            order,
            limit,
            ..Default::default()
        }
    }

    /// The filter as the export's seal states it, as applied: the fields that were set, the
    /// account a named person resolved to, and the time bounds the days became (a day that
    /// does not parse filters nothing, so it is not stated).
    fn sealed(&self, resolved_account: Option<&str>) -> serde_json::Value {
        let applied = self.query(Order::Ascending, 0, None);
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("event_type", &self.event_type),
            ("person", &self.account_id),
            ("client_id", &self.client_id),
            ("outcome", &self.outcome),
        ] {
            if !v.is_empty() {
                m.insert(k.into(), v.as_str().into());
            }
        }
        if let Some(a) = resolved_account {
            m.insert("account_id".into(), a.into());
        }
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if let Some(t) = applied.since {
            m.insert("since".into(), stamp(t).into());
        }
        if let Some(t) = applied.until {
            m.insert("before".into(), stamp(t).into());
        }
        serde_json::Value::Object(m)
    }

    fn to_query_string(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("event_type", &self.event_type)
            .append_pair("account_id", &self.account_id)
            .append_pair("client_id", &self.client_id)
            .append_pair("outcome", &self.outcome)
            .append_pair("since", &self.since)
            .append_pair("until", &self.until)
            .finish()
    }
}

/// The person filter, resolved: an account id, an idNat or RPPS number, or a login name.
async fn person(state: &AppState, f: &Filters) -> Result<Option<String>, crate::domain::ports::StoreError> {
    if f.account_id.is_empty() {
        return Ok(None);
    }
    let found =
        crate::domain::audit_chain::resolve_person(state.storage.as_ref(), state.provider.identities.as_ref(), &f.account_id).await?;
    // Nobody by that name: a filter that matches nothing, not "no filter".
    Ok(Some(found.unwrap_or_else(|| f.account_id.clone())))
}

async fn render(req: &HttpRequest, state: &AppState, admin_state: &AdminState, verify: Option<(bool, String)>) -> HttpResponse {
    let a = match admin(req, state, admin_state).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let q = query(req);
    let f = Filters::from(&q);
    let cursor = q.get("cursor").and_then(|c| c.parse().ok());
    let mut aq = f.query(Order::Descending, PAGE, cursor);
    match person(state, &f).await {
        Ok(p) => aq.account_id = p,
        Err(e) => return super::domain_error(e, a.lang),
    }
    let page = match state.storage.audit_query(&aq).await {
        Ok(p) => p,
        Err(e) => return super::domain_error(e, a.lang),
    };
    let filters = f.to_query_string();
    let event_types = EVENT_TYPES.iter().map(|e| (*e, *e == f.event_type)).collect();
    html(
        StatusCode::OK,
        &AuditView {
            c: a.chrome("audit"),
            rows: page.records.iter().map(super::audit_row).collect(),
            next: page.next_cursor.map(|c| format!("{filters}&cursor={c}")),
            filters,
            event_type: f.event_type,
            account_id: f.account_id,
            client_id: f.client_id,
            outcome: f.outcome,
            since: f.since,
            until: f.until,
            verify,
            event_types,
        },
    )
}

#[tracing::instrument(skip_all)]
pub async fn page(req: HttpRequest, state: web::Data<AppState>, admin_state: web::Data<AdminState>) -> HttpResponse {
    render(&req, &state, &admin_state, None).await
}

/// Streams the filtered records as JSON lines, oldest first, and ends with a selection seal
/// (Relais' signature over the filter and the records' hashes: `relais audit verify-export`
/// checks it). The export is audited before the seal is written (a failure to audit or to
/// sign cuts the download short, without a seal: fail closed).
#[tracing::instrument(skip_all)]
pub async fn export(req: HttpRequest, state: web::Data<AppState>, admin_state: web::Data<AdminState>) -> HttpResponse {
    let a = match admin(&req, &state, &admin_state).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let f = Filters::from(&query(&req));
    let resolved = match person(&state, &f).await {
        Ok(p) => p,
        Err(e) => return super::domain_error(e, a.lang),
    };
    let mut ctx = extract::context(&req);
    ctx.correlation_id = Some(format!("actor:{}", a.actor()));
    let sealed_filter = f.sealed(resolved.as_deref());
    struct Cursor {
        next: Option<Option<i64>>,
        digest: SelectionDigest,
    }
    let start = Cursor {
        next: Some(None),
        digest: SelectionDigest::default(),
    };
    let exported_at = state.provider.clock.now();
    let state = state.into_inner();
    let stream = futures_util::stream::unfold(start, move |mut cur| {
        let state = state.clone();
        let ctx = ctx.clone();
        let mut q = f.query(Order::Ascending, EXPORT_PAGE, None);
        q.account_id = resolved.clone();
        let (since, until) = (f.since.clone(), f.until.clone());
        let sealed_filter = sealed_filter.clone();
        async move {
            let cursor = cur.next?;
            let page = match state.storage.audit_query(&AuditQuery { cursor, ..q }).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed");
                    cur.next = None;
                    return Some((Err(actix_web::error::ErrorServiceUnavailable("audit export failed")), cur));
                }
            };
            let mut out = String::new();
            for r in &page.records {
                out.push_str(&r.export_json().to_string());
                out.push('\n');
                cur.digest.add(&r.hash);
            }
            cur.next = page.next_cursor.map(Some);
            if cur.next.is_none() {
                let record = AuditRecord {
                    at: state.provider.clock.now(),
                    event: AuditEvent::AuditExported {
                        since: (!since.is_empty()).then_some(since),
                        until: (!until.is_empty()).then_some(until),
                        records: cur.digest.records(),
                    },
                    context: (&ctx).into(),
                };
                if let Err(e) = state.provider.audit.record(record).await {
                    tracing::error!(error = %e, "the audit export could not be audited");
                    return Some((Err(actix_web::error::ErrorServiceUnavailable("audit export failed")), cur));
                }
                let now = state.provider.clock.now();
                match SelectionSeal::sign(state.provider.signer.as_ref(), sealed_filter, &cur.digest, now) {
                    Ok(seal) => {
                        out.push_str(&seal.export_json().to_string());
                        out.push('\n');
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the audit export could not be sealed");
                        return Some((Err(actix_web::error::ErrorServiceUnavailable("audit export failed")), cur));
                    }
                }
            }
            Some((Ok::<_, actix_web::Error>(web::Bytes::from(out)), cur))
        }
    });
    let name = format!("relais-audit-{}.jsonl", exported_at.format("%Y%m%dT%H%M%SZ"));
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream)
}

/// Walks the whole chain and the signed checkpoints (auditors may do this: it changes nothing).
#[tracing::instrument(skip_all)]
pub async fn verify(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    admin_state: web::Data<AdminState>,
) -> HttpResponse {
    let f = match form(&req, payload).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let a = match reader_posting(&req, &state, &admin_state, &f, "audit_verify").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let report = match audit_verify::verify(state.storage.as_ref(), state.provider.signer.as_ref(), None, None).await {
        Ok(r) => r,
        Err(e) => return super::domain_error(e, a.lang),
    };
    let summary = format!(
        "{} records (#{} – #{}), {} checkpoints{}",
        report.records,
        report.first_seq.unwrap_or(0),
        report.last_seq.unwrap_or(0),
        report.checkpoints,
        report.problem.as_ref().map(|p| format!(": {p}")).unwrap_or_default()
    );
    render(&req, &state, &admin_state, Some((report.problem.is_none(), summary))).await
}
