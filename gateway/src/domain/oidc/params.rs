//! Request parameters as the HTTP layer hands them over: a list of pairs, checked for
//! duplicates (RFC 6749 §3.1) and size once.
use crate::protocol::OAuthError;
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct Params {
    map: HashMap<String, String>,
    duplicated: Option<String>,
    oversized: Option<String>,
}

impl Params {
    /// Builds the parameter map. Values longer than `max_len` are remembered as oversized.
    pub fn new(pairs: Vec<(String, String)>, max_len: usize) -> Self {
        let mut p = Params::default();
        for (k, v) in pairs {
            if v.len() > max_len && p.oversized.is_none() {
                p.oversized = Some(k.clone());
            }
            if p.map.contains_key(&k) {
                p.duplicated.get_or_insert(k.clone());
                continue;
            }
            p.map.insert(k, v);
        }
        p
    }

    /// Any parameter value; empty values count as absent (RFC 6749 §3.1).
    pub fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A parameter that, if duplicated or oversized, makes the request invalid.
    pub fn single(&self, k: &str) -> Result<Option<&str>, OAuthError> {
        if self.duplicated.as_deref() == Some(k) {
            return Err(OAuthError::invalid_request(format!("parameter {k} is repeated")));
        }
        if self.oversized.as_deref() == Some(k) {
            return Err(OAuthError::invalid_request(format!("parameter {k} is too long")));
        }
        Ok(self.get(k))
    }

    pub fn required(&self, k: &str) -> Result<&str, OAuthError> {
        self.single(k)?
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter {k} is missing")))
    }

    /// Fails when any parameter was repeated or oversized.
    pub fn check_well_formed(&self) -> Result<(), OAuthError> {
        if let Some(k) = &self.duplicated {
            return Err(OAuthError::invalid_request(format!("parameter {k} is repeated")));
        }
        if let Some(k) = &self.oversized {
            return Err(OAuthError::invalid_request(format!("parameter {k} is too long")));
        }
        Ok(())
    }
}
