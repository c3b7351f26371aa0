//! Relais as a client of Pro Santé Connect (psc.md §3), for one purpose: a person proves their
//! national identity once with e-CPS or a card at PSC, and Relais marks the mapping verified.
//! PSC's discovery lives at a non-standard path, so the metadata is fetched by hand and then
//! handled by the `openidconnect` crate (id_token checks, JSON or signed-JWT UserInfo).
use crate::config::Secret;
use crate::domain::identity::IdNat;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJwsSigningAlgorithm, CoreProviderMetadata};
use openidconnect::{
    AdditionalClaims, AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, JsonWebKeySet, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, UserInfoClaims,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct PscClientSettings {
    /// PSC's issuer, e.g. `https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet`.
    pub issuer: String,
    /// Appended to the issuer to find the discovery document.
    pub discovery_path: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Relais' callback, registered at PSC.
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub acr_values: Option<String>,
    /// CAs to verify PSC's servers with (default: the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// The TLS client certificate and key PSC's "Espace de Confiance" asks for on the back
    /// channel (psc.md §3, EXI PSC 24): presented to discovery, JWKS, token and UserInfo.
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PscClientError {
    #[error("Pro Santé Connect is unreachable or answered badly: {0}")]
    Unavailable(String),
    #[error("Pro Santé Connect's answer was refused: {0}")]
    Rejected(String),
}

/// What must survive the round trip to PSC (kept server-side, in the session store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PscRoundTrip {
    pub pkce_verifier: String,
    pub nonce: String,
}

/// PSC's UserInfo carries the idNat as `SubjectNameID` (psc.md §3).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PscClaims {
    #[serde(rename = "SubjectNameID")]
    subject_name_id: Option<String>,
}
impl AdditionalClaims for PscClaims {}

/// openidconnect's HTTP client contract on a default reqwest client (no redirects followed,
/// 10 s timeout); the tests' relying parties use it too.
pub async fn http(req: openidconnect::HttpRequest) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    send(client, req).await
}

/// openidconnect's HTTP client contract served by a given reqwest client.
async fn send(client: reqwest::Client, req: openidconnect::HttpRequest) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let mut rb = client.request(req.method().clone(), req.uri().to_string());
    for (k, v) in req.headers() {
        rb = rb.header(k, v);
    }
    let resp = rb.body(req.body().clone()).send().await?;
    let mut b = openidconnect::http::Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        b = b.header(k, v);
    }
    Ok(b.body(resp.bytes().await?.to_vec())
        .expect("a response from parts that came from a response"))
}

pub struct PscVerifier {
    s: PscClientSettings,
    /// One client for every back-channel call: its TLS settings (CAs, client certificate)
    /// and its connection pool.
    http: reqwest::Client,
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

impl PscVerifier {
    /// Reads the CA bundle and client certificate; an error names the file at fault.
    pub fn new(s: PscClientSettings) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10));
        if s.ca_file.is_some() || s.client_cert.is_some() {
            let cert = s.client_cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
            let tls = super::tls_client::client_config(s.ca_file.as_deref(), cert)?;
            builder = builder.tls_backend_preconfigured(rustls::ClientConfig::clone(&tls));
        }
        let http = builder.build().map_err(|e| format!("HTTP client for Pro Santé Connect: {e}"))?;
        Ok(Self { s, http })
    }

    /// openidconnect's HTTP client over our reqwest client.
    fn http(
        &self,
    ) -> impl Fn(openidconnect::HttpRequest) -> futures_util::future::BoxFuture<'static, Result<openidconnect::HttpResponse, reqwest::Error>> + '_
    {
        |req| Box::pin(send(self.http.clone(), req))
    }

    async fn client(&self) -> Result<Client, PscClientError> {
        let down = |e: &dyn std::fmt::Display| PscClientError::Unavailable(e.to_string());
        let url = format!("{}{}", self.s.issuer, self.s.discovery_path);
        let raw = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| down(&e))?;
        if !raw.status().is_success() {
            return Err(PscClientError::Unavailable(format!("discovery answered {}", raw.status())));
        }
        let meta: CoreProviderMetadata = raw.json().await.map_err(|e| down(&e))?;
        if meta.issuer().as_str() != self.s.issuer {
            return Err(PscClientError::Rejected(format!(
                "discovery names issuer {}",
                meta.issuer().as_str()
            )));
        }
        let jwks = JsonWebKeySet::fetch_async(meta.jwks_uri(), &self.http())
            .await
            .map_err(|e| down(&e))?;
        let meta = meta.set_jwks(jwks);
        let redirect = RedirectUrl::new(self.s.redirect_uri.clone()).map_err(|e| down(&e))?;
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.s.client_id.clone()),
            Some(ClientSecret::new(self.s.client_secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// The URL to send the browser to, with `state`, and what to keep for the return.
    pub async fn start(&self, state: &str) -> Result<(String, PscRoundTrip), PscClientError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in self.s.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        if let Some(acr) = &self.s.acr_values {
            req = req.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
        }
        let (url, _, nonce) = req.url();
        Ok((
            url.to_string(),
            PscRoundTrip {
                pkce_verifier: verifier.secret().clone(),
                nonce: nonce.secret().clone(),
            },
        ))
    }

    /// Redeems the code, checks the id_token and reads the idNat from UserInfo.
    pub async fn finish(&self, code: &str, trip: PscRoundTrip) -> Result<IdNat, PscClientError> {
        let client = self.client().await?;
        let rejected = |e: &dyn std::fmt::Display| PscClientError::Rejected(e.to_string());
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| rejected(&e))?
            .set_pkce_verifier(PkceCodeVerifier::new(trip.pkce_verifier))
            .request_async(&self.http())
            .await
            .map_err(|e| rejected(&e))?;
        let id_token = tokens.id_token().ok_or_else(|| PscClientError::Rejected("no id_token".into()))?;
        // PSC signs RS256 today [O]; ES256 is accepted should it change.
        let verifier = client.id_token_verifier().set_allowed_algs(vec![
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ]);
        let claims = id_token.claims(&verifier, &Nonce::new(trip.nonce)).map_err(|e| rejected(&e))?;
        let info: UserInfoClaims<PscClaims, CoreGenderClaim> = client
            .user_info(tokens.access_token().clone(), Some(claims.subject().clone()))
            .map_err(|e| rejected(&e))?
            .request_async(&self.http())
            .await
            .map_err(|e| rejected(&e))?;
        let raw = info
            .additional_claims()
            .subject_name_id
            .clone()
            .ok_or_else(|| PscClientError::Rejected("UserInfo has no SubjectNameID".into()))?;
        let idnat = IdNat::parse(&raw).map_err(|e| rejected(&e))?;
        // PSC's id_token also names the idNat (preferred_username); both must agree.
        if let Some(u) = claims.preferred_username()
            && u.as_str() != idnat.as_str()
        {
            return Err(PscClientError::Rejected("id_token and UserInfo name different people".into()));
        }
        Ok(idnat)
    }
}
