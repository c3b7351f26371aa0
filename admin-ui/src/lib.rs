//! The admin web UI for the hospital's IT team, mounted by the gateway under `/admin`.
//! For now a placeholder page: the pages arrive with the admin UI issue (#7).
use actix_web::{HttpResponse, web};
use askama::Template;

#[derive(Template)]
#[template(path = "placeholder.html")]
struct PlaceholderView {
    version: &'static str,
}

async fn placeholder() -> HttpResponse {
    match (PlaceholderView {
        version: env!("CARGO_PKG_VERSION"),
    })
    .render()
    {
        Ok(body) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(body),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// Routes under `/admin`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(placeholder)).route("/", web::get().to(placeholder));
}
