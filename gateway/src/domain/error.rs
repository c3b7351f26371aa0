//! The domain's error type. The HTTP layer maps it to OAuth error JSON or pages in one place
//! (`adapters::http::errors`).
use crate::protocol::OAuthError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The request is wrong; the client gets this OAuth error.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// A dependency (database, session store) failed or is too slow. Never reported as the
    /// client's fault, never turned into a token.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupted state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::domain::ports::StoreError> for DomainError {
    fn from(e: crate::domain::ports::StoreError) -> Self {
        match e {
            crate::domain::ports::StoreError::Unavailable(m) => DomainError::Unavailable(m),
            other => DomainError::Internal(other.to_string()),
        }
    }
}

impl From<crate::domain::ports::SessionStoreError> for DomainError {
    fn from(e: crate::domain::ports::SessionStoreError) -> Self {
        DomainError::Unavailable(e.to_string())
    }
}

impl From<crate::domain::ports::KeyError> for DomainError {
    fn from(e: crate::domain::ports::KeyError) -> Self {
        DomainError::Internal(e.to_string())
    }
}
