//! The relying party side: the `openidconnect` crate over reqwest.
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};

pub use relais::adapters::psc_client::http;

pub async fn metadata(base: &str) -> CoreProviderMetadata {
    CoreProviderMetadata::discover_async(IssuerUrl::new(base.to_owned()).unwrap(), &http)
        .await
        .expect("discovery")
}

pub type Rp = openidconnect::core::CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

pub fn client(meta: CoreProviderMetadata, id: &str, secret: Option<&str>, redirect: &str) -> Rp {
    CoreClient::from_provider_metadata(meta, ClientId::new(id.into()), secret.map(|s| ClientSecret::new(s.into())))
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap())
}

pub struct AuthRequest {
    pub url: String,
    pub state: CsrfToken,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
}

pub fn auth_request(rp: &Rp, scopes: &[&str]) -> AuthRequest {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = rp
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge);
    for s in scopes {
        req = req.add_scope(Scope::new((*s).into()));
    }
    let (url, state, nonce) = req.url();
    AuthRequest {
        url: url.to_string(),
        state,
        nonce,
        verifier,
    }
}

pub fn code(c: &str) -> AuthorizationCode {
    AuthorizationCode::new(c.into())
}

pub fn algs() -> Vec<CoreJwsSigningAlgorithm> {
    vec![
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ]
}

/// The claims of a JWT, unverified (for claims openidconnect does not model, like `sid`).
pub fn payload(jwt: &str) -> serde_json::Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&relais::domain::crypto::b64url_decode(p).unwrap()).unwrap()
}

pub fn header(jwt: &str) -> serde_json::Value {
    let p = jwt.split('.').next().unwrap();
    serde_json::from_slice(&relais::domain::crypto::b64url_decode(p).unwrap()).unwrap()
}
