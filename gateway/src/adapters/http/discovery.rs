//! The discovery document (OpenID Connect Discovery 1.0), built with the `openidconnect`
//! crate's metadata types once at start, plus the fields of RFC 7009, RFC 7662, RFC 7636,
//! RFC 9207 and RP-Initiated Logout that the crate does not model.
use crate::domain::oidc::{ProviderSettings, SUPPORTED_SCOPES};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthUrl, IssuerUrl, JsonWebKeySetUrl, LanguageTag, ProviderMetadata, ResponseTypes, Scope, TokenUrl,
    UserInfoUrl,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RelaisMetadata {
    end_session_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    revocation_endpoint_auth_methods_supported: Vec<String>,
    introspection_endpoint_auth_methods_supported: Vec<String>,
    code_challenge_methods_supported: Vec<String>,
    authorization_response_iss_parameter_supported: bool,
}
impl AdditionalProviderMetadata for RelaisMetadata {}

pub type Metadata = ProviderMetadata<
    RelaisMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

const CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "sid",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "email",
    "email_verified",
];

/// The discovery document as JSON. Fails only if the issuer is not a URL (config refuses that).
pub fn document(s: &ProviderSettings) -> Result<serde_json::Value, String> {
    let e = |p: &str| s.endpoint(p);
    let auth_methods = |with_none: bool| {
        let mut v: Vec<String> = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
            .iter()
            .map(|m| m.to_string())
            .collect();
        if with_none {
            v.push("none".into());
        }
        v
    };
    let extra = RelaisMetadata {
        end_session_endpoint: e("/logout"),
        revocation_endpoint: e("/revoke"),
        introspection_endpoint: e("/introspect"),
        revocation_endpoint_auth_methods_supported: auth_methods(true),
        introspection_endpoint_auth_methods_supported: auth_methods(false),
        code_challenge_methods_supported: vec!["S256".into()],
        authorization_response_iss_parameter_supported: true,
    };
    let url_err = |x: openidconnect::url::ParseError| x.to_string();
    let algs = vec![
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ];
    let m = Metadata::new(
        IssuerUrl::new(s.issuer.clone()).map_err(url_err)?,
        AuthUrl::new(e("/authorize")).map_err(url_err)?,
        JsonWebKeySetUrl::new(e("/jwks")).map_err(url_err)?,
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![CoreSubjectIdentifierType::Public],
        algs.clone(),
        extra,
    )
    .set_token_endpoint(Some(TokenUrl::new(e("/token")).map_err(url_err)?))
    .set_userinfo_endpoint(Some(UserInfoUrl::new(e("/userinfo")).map_err(url_err)?))
    .set_response_modes_supported(Some(vec![CoreResponseMode::Query]))
    .set_grant_types_supported(Some(vec![CoreGrantType::AuthorizationCode, CoreGrantType::RefreshToken]))
    .set_userinfo_signing_alg_values_supported(Some(algs))
    .set_token_endpoint_auth_methods_supported(Some(vec![
        CoreClientAuthMethod::ClientSecretBasic,
        CoreClientAuthMethod::ClientSecretPost,
        CoreClientAuthMethod::PrivateKeyJwt,
        CoreClientAuthMethod::None,
    ]))
    .set_token_endpoint_auth_signing_alg_values_supported(Some(vec![
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        CoreJwsSigningAlgorithm::EdDsa,
    ]))
    .set_scopes_supported(Some(SUPPORTED_SCOPES.iter().map(|s| Scope::new(s.to_string())).collect()))
    .set_claims_supported(Some(CLAIMS.iter().map(|c| CoreClaimName::new(c.to_string())).collect()))
    .set_acr_values_supported(Some(
        s.acr_levels
            .iter()
            .map(|a| openidconnect::AuthenticationContextClass::new(a.clone()))
            .collect(),
    ))
    .set_ui_locales_supported(Some(vec![LanguageTag::new("fr".into()), LanguageTag::new("en".into())]))
    .set_claims_parameter_supported(Some(false))
    .set_request_parameter_supported(Some(false))
    .set_request_uri_parameter_supported(Some(false));
    serde_json::to_value(&m).map_err(|e| e.to_string())
}
