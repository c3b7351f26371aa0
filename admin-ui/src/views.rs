//! One typed view per page. The gateway's handlers fill them from the domain; the templates
//! in `templates/` render them. Everything here is plain data: no I/O.
use crate::texts::Texts;
use askama::Template;

/// What every page after login shows around its content.
pub struct Chrome {
    pub lang: &'static str,
    pub t: &'static Texts,
    /// Sent back by every form (hidden field) and by htmx (`X-CSRF-Token` header).
    pub csrf: String,
    pub admin_name: String,
    pub role: &'static str,
    pub may_change: bool,
    /// The menu entry to highlight.
    pub nav: &'static str,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginView {
    pub lang: &'static str,
    pub t: &'static Texts,
    pub csrf: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "key.html")]
pub struct KeyView {
    pub lang: &'static str,
    pub t: &'static Texts,
    pub pending_id: String,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessageView {
    pub lang: &'static str,
    pub t: &'static Texts,
    pub title: String,
    pub message: String,
}

pub struct CountRow {
    pub label: String,
    pub success: u64,
    pub failure: u64,
}

pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub age_days: i64,
    pub active: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct DashboardView {
    pub c: Chrome,
    pub logins: Vec<CountRow>,
    pub lockouts: u64,
    pub db_ok: bool,
    pub sessions_ok: bool,
    pub signing_keys: Vec<SigningKeyRow>,
    pub audit_head: i64,
    pub last_checkpoint: Option<i64>,
    pub fido_mds: Option<MdsRow>,
}

/// The FIDO MDS3 blob in use.
pub struct MdsRow {
    pub number: u64,
    pub next_update: String,
    /// Past its next update: a newer blob is out.
    pub stale: bool,
    /// The signer's revocation: checked against current CRLs, against a stale one, or not.
    pub crl: CrlCheck,
}

pub enum CrlCheck {
    Checked,
    Stale,
    NotChecked,
}

pub struct PersonRow {
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub source: String,
    pub disabled: bool,
}

#[derive(Template)]
#[template(path = "people.html")]
pub struct PeopleView {
    pub c: Chrome,
    pub q: String,
    pub people: Vec<PersonRow>,
    pub more: bool,
}

/// Only the result table, for htmx's live search.
#[derive(Template)]
#[template(path = "people_results.html")]
pub struct PeopleResultsView {
    pub t: &'static Texts,
    pub people: Vec<PersonRow>,
    pub more: bool,
}

pub struct MappingRow {
    pub idnat: String,
    pub provenance: String,
    pub verified: bool,
    pub profession: String,
}

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub aaguid: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
}

pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub outcome: String,
    pub account: String,
    pub client: String,
    pub ip: String,
    pub details: String,
}

/// A live SSO session of a person.
pub struct SessionRow {
    /// The session id (`sid`): a digest, not a secret.
    pub id: String,
    /// Its first characters, to tell sessions apart on screen.
    pub short_id: String,
    pub created: String,
    pub last_auth: String,
    pub amr: String,
    pub acr: String,
    pub clients: String,
    pub ip: String,
    pub expires: String,
    /// The session of the browser looking at the page (account page).
    pub current: bool,
}

#[derive(Template)]
#[template(path = "person.html")]
pub struct PersonView {
    pub c: Chrome,
    pub person: PersonRow,
    pub account_id: String,
    pub role: String,
    pub mappings: Vec<MappingRow>,
    pub keys: Vec<KeyRow>,
    pub sessions: Vec<SessionRow>,
    pub events: Vec<AuditRow>,
    /// Outcome of the last action (a notice or an error).
    pub notice: Option<String>,
    pub error: Option<String>,
    /// A fresh enrolment code and its expiry: shown once.
    pub enrolment_code: Option<(String, String)>,
}

pub struct ImportResult {
    pub dry_run: bool,
    pub applied: bool,
    pub lines: usize,
    pub changes: Vec<String>,
    pub review: Vec<String>,
    pub errors: Vec<String>,
}

/// An item of the identity review queue: a person the import could not match alone.
pub struct ReviewRow {
    pub id: i64,
    pub username: String,
    pub reason: String,
    /// The homonyms' identifiers to choose from (none: the admin types one).
    pub candidates: Vec<String>,
}

#[derive(Template)]
#[template(path = "import.html")]
pub struct ImportView {
    pub c: Chrome,
    pub text: String,
    pub result: Option<ImportResult>,
    pub error: Option<String>,
    /// The review queue, decided here or with `relais identity review`.
    pub queue: Vec<ReviewRow>,
    /// What the last decision did.
    pub notice: Option<String>,
}

pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub auth_method: String,
    pub redirect_uris: String,
    pub min_acr: String,
    pub required_roles: String,
    pub has_secret: bool,
}

#[derive(Template)]
#[template(path = "clients.html")]
pub struct ClientsView {
    pub c: Chrome,
    pub clients: Vec<ClientRow>,
    /// (client id, secret) right after a registration or rotation: shown once.
    pub secret: Option<(String, String)>,
    pub error: Option<String>,
    pub acr_levels: Vec<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditView {
    pub c: Chrome,
    pub event_type: String,
    pub account_id: String,
    pub client_id: String,
    pub outcome: String,
    pub since: String,
    pub until: String,
    pub rows: Vec<AuditRow>,
    /// Query string of the next page, when there is one.
    pub next: Option<String>,
    /// Query string of the current filters (for the export link).
    pub filters: String,
    pub verify: Option<(bool, String)>,
    /// Every event type, and whether it is the one filtered on.
    pub event_types: Vec<(&'static str, bool)>,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsView {
    pub c: Chrome,
    pub config: String,
}

/// A recent login of the person, on their account page.
pub struct LoginRow {
    pub at: String,
    pub method: String,
    pub outcome: String,
    pub ip: String,
}

/// The staff self-service page (`/account`), behind the SSO session, not the admin session.
#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountView {
    pub lang: &'static str,
    pub t: &'static Texts,
    /// Bound to the SSO session; every form sends it back.
    pub csrf: String,
    pub display_name: String,
    pub username: String,
    pub logins: Vec<LoginRow>,
    pub sessions: Vec<SessionRow>,
    pub keys: Vec<KeyRow>,
    /// Without one, adding a key asks for the admin's enrolment code.
    pub has_active_key: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}
