//! OAuth 2.0 / OpenID Connect wire types. Values are parsed once at the edge into newtypes so
//! the domain never sees an unchecked client id, redirect URI or acr.
mod error;
mod ids;
mod net;

pub use error::{OAuthError, OAuthErrorCode};
pub use ids::{Acr, ClientId, CodeChallenge, CodeVerifier, ParseError, Prompt, RedirectUri, Scopes};
pub use net::{IpRange, in_ranges};
