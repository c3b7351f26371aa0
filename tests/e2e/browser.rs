//! A scripted browser: real HTTP with a cookie jar, redirects inspected rather than followed.
use reqwest::{Client, Response, StatusCode, header::LOCATION};
use std::collections::HashMap;
use url::Url;

pub struct Browser {
    pub http: Client,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub async fn get(&self, url: &str) -> Response {
        self.http.get(url).send().await.unwrap()
    }

    /// Follows the authorization request up to the login form or back to the client.
    pub async fn start(&self, authorize_url: &str) -> Step {
        let r = self.get(authorize_url).await;
        step(r).await
    }

    /// Submits the login form found at `login_url`.
    pub async fn submit_login(&self, base: &str, login_url: &str, user: &str, password: &str) -> Step {
        let page = self.get(&absolute(base, login_url)).await.text().await.unwrap();
        let fields = [
            ("login_id", field(&page, "login_id").expect("login_id field")),
            ("csrf", field(&page, "csrf").expect("csrf field")),
            ("username", user.to_owned()),
            ("password", password.to_owned()),
        ];
        let r = self.http.post(format!("{base}/login")).form(&fields).send().await.unwrap();
        step(r).await
    }

    /// Answers the terms-of-use page at `terms_url`.
    pub async fn answer_terms(&self, base: &str, terms_url: &str, accept: bool) -> Step {
        let page = self.get(&absolute(base, terms_url)).await.text().await.unwrap();
        let fields = [
            ("terms_id", field(&page, "terms_id").expect("terms_id field")),
            ("csrf", field(&page, "csrf").expect("csrf field")),
            ("answer", if accept { "accept" } else { "decline" }.to_owned()),
        ];
        let r = self.http.post(format!("{base}/terms")).form(&fields).send().await.unwrap();
        step(r).await
    }

    /// Authorization request + login: returns the callback URL's query parameters.
    pub async fn login(&self, base: &str, authorize_url: &str, user: &str, password: &str) -> HashMap<String, String> {
        match self.start(authorize_url).await {
            Step::LoginForm(login) => match self.submit_login(base, &login, user, password).await {
                Step::Callback(q) => q,
                other => panic!("login did not return to the client: {other:?}"),
            },
            other => panic!("expected a login form, got {other:?}"),
        }
    }
}

#[derive(Debug)]
pub enum Step {
    LoginForm(String),
    /// The terms-of-use page (PSC profile).
    Terms(String),
    Callback(HashMap<String, String>),
    Page(StatusCode, String),
    #[allow(dead_code)] // shown in assertion messages through Debug
    Redirect(String),
}

async fn step(r: Response) -> Step {
    let status = r.status();
    if status.is_redirection() {
        let to = r.headers().get(LOCATION).unwrap().to_str().unwrap().to_owned();
        if to.starts_with("/login") {
            return Step::LoginForm(to);
        }
        if to.starts_with("/terms") {
            return Step::Terms(to);
        }
        // Absolute URLs lead back to a client (the tests' clients live on other hosts/ports).
        if to.starts_with("http://") || to.starts_with("https://") {
            return Step::Callback(query(&to));
        }
        return Step::Redirect(to);
    }
    Step::Page(status, r.text().await.unwrap())
}

pub fn absolute(base: &str, path: &str) -> String {
    if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{base}{path}")
    }
}

pub fn query(url: &str) -> HashMap<String, String> {
    Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// The value of a named input in an HTML form.
/// The value of the first `data-<name>` attribute in `html`, unescaped (askama's escapes).
pub fn data_attribute(html: &str, name: &str) -> Option<String> {
    let key = format!("data-{name}=\"");
    let v = html.find(&key)? + key.len();
    let end = html[v..].find('"')?;
    Some(
        html[v..v + end]
            .replace("&#34;", "\"")
            .replace("&#39;", "'")
            .replace("&#60;", "<")
            .replace("&#62;", ">")
            .replace("&#38;", "&"),
    )
}

pub fn field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let v = tag.find("value=\"")? + 7;
    let end = tag[v..].find('"')?;
    Some(
        tag[v..v + end]
            .replace("&#x2f;", "/")
            .replace("&#x2F;", "/")
            .replace("&amp;", "&")
            .replace("&#43;", "+")
            .replace("&#x3d;", "=")
            .replace("&#61;", "="),
    )
}
