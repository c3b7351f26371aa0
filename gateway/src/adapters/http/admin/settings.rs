//! The effective configuration, secrets masked (the `Secret` type prints `***`).
use super::{AdminState, admin};
use crate::adapters::http::AppState;
use crate::adapters::http::pages::html;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use relais_admin_ui::views::SettingsView;

pub async fn page(req: HttpRequest, state: web::Data<AppState>, admin_state: web::Data<AdminState>) -> HttpResponse {
    let a = match admin(&req, &state, &admin_state).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    // Auditors see the audit trail and mappings only.
    if !a.session.may_change() {
        return super::forbidden(a.lang, "read-only role: the settings page is for administrators");
    }
    html(
        StatusCode::OK,
        &SettingsView {
            c: a.chrome("settings"),
            config: admin_state.settings_text.clone(),
        },
    )
}
