//! What Relais reads from a directory entry: names, the stable id, groups and the account state
//! (Active Directory flags, OpenLDAP ppolicy). Pure functions over the entry's attributes.
use super::{AttributeMap, StableId};
use crate::domain::ports::AccountRefusal;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

/// userAccountControl bits (MS-ADTS 2.2.16).
const UAC_ACCOUNTDISABLE: i64 = 0x2;
const UAC_LOCKOUT: i64 = 0x10;
const UAC_PASSWORD_EXPIRED: i64 = 0x80_0000;
/// accountExpires: 0 and 0x7FFF_FFFF_FFFF_FFFF both mean "never".
const AD_NEVER: i64 = i64::MAX;
/// Seconds between 1601-01-01 (Windows FILETIME epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET_SECS: i64 = 11_644_473_600;
/// ppolicy's "locked by an administrator until unlocked" value.
const PPOLICY_PERMANENT_LOCK: &str = "000001010000Z";

/// State attributes read for every preset: asking for a type the server lacks is harmless.
pub const STATE_ATTRIBUTES: &[&str] = &[
    "userAccountControl",
    "pwdLastSet",
    "accountExpires",
    "lockoutTime",
    "pwdAccountLockedTime",
    "pwdReset",
];

/// An entry's attributes, names compared without case (servers echo their own spelling).
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    text: HashMap<String, Vec<String>>,
    binary: HashMap<String, Vec<Vec<u8>>>,
}

impl Attributes {
    pub fn new(text: HashMap<String, Vec<String>>, binary: HashMap<String, Vec<Vec<u8>>>) -> Self {
        let low = |m: HashMap<String, Vec<String>>| m.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        Self {
            text: low(text),
            binary: binary.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect(),
        }
    }
    pub fn all(&self, name: &str) -> &[String] {
        self.text.get(&name.to_ascii_lowercase()).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn first(&self, name: &str) -> Option<&str> {
        self.all(name).first().map(String::as_str).filter(|v| !v.is_empty())
    }
    /// Raw bytes of the first value: binary values (objectGUID) may arrive either way, since
    /// ldap3 files a value under "text" whenever its bytes happen to be valid UTF-8.
    fn first_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let n = name.to_ascii_lowercase();
        self.binary
            .get(&n)
            .and_then(|v| v.first().cloned())
            .or_else(|| self.text.get(&n).and_then(|v| v.first()).map(|s| s.as_bytes().to_vec()))
    }
    fn int(&self, name: &str) -> Option<i64> {
        self.first(name)?.trim().parse().ok()
    }
}

/// The person as the directory describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub login: String,
    pub stable_id: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub employee_number: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("the entry has no {0} attribute (the stable id); check `attributes.id`")]
    NoStableId(String),
    #[error("the entry's {0} is not a 16-byte GUID")]
    BadGuid(String),
}

pub fn profile(a: &Attributes, map: &AttributeMap, typed_login: &str) -> Result<Profile, EntryError> {
    let stable_id = match map.id_kind {
        StableId::Text => a
            .first(&map.id)
            .map(|s| s.to_ascii_lowercase())
            .ok_or_else(|| EntryError::NoStableId(map.id.clone()))?,
        StableId::AdGuid => {
            let b = a.first_bytes(&map.id).ok_or_else(|| EntryError::NoStableId(map.id.clone()))?;
            let b: [u8; 16] = b.try_into().map_err(|_| EntryError::BadGuid(map.id.clone()))?;
            // AD stores the first three GUID fields little-endian.
            Uuid::from_bytes_le(b).to_string()
        }
    };
    let login = a.first(&map.login).unwrap_or(typed_login).to_owned();
    let given_name = a.first(&map.given_name).map(str::to_owned);
    let family_name = a.first(&map.family_name).map(str::to_owned);
    let display_name = a
        .first(&map.display_name)
        .or_else(|| a.first("cn"))
        .map(str::to_owned)
        .unwrap_or_else(|| login.clone());
    Ok(Profile {
        login,
        stable_id,
        display_name,
        given_name,
        family_name,
        email: a.first(&map.email).map(str::to_owned),
        employee_number: a.first(&map.employee_number).map(str::to_owned),
        groups: a.all(&map.groups).to_vec(),
    })
}

/// Why a correctly authenticated entry still may not log in, if it may not.
pub fn refusal(a: &Attributes, now: DateTime<Utc>) -> Option<AccountRefusal> {
    // Active Directory.
    if let Some(uac) = a.int("userAccountControl") {
        if uac & UAC_ACCOUNTDISABLE != 0 {
            return Some(AccountRefusal::Disabled);
        }
        if uac & UAC_LOCKOUT != 0 {
            return Some(AccountRefusal::Locked);
        }
        if uac & UAC_PASSWORD_EXPIRED != 0 {
            return Some(AccountRefusal::MustChangePassword);
        }
    }
    if a.int("lockoutTime").is_some_and(|t| t > 0) {
        return Some(AccountRefusal::Locked);
    }
    if let Some(exp) = a.int("accountExpires").filter(|&e| e != 0 && e != AD_NEVER) {
        let unix = exp / 10_000_000 - FILETIME_UNIX_OFFSET_SECS;
        if unix <= now.timestamp() {
            return Some(AccountRefusal::Expired);
        }
    }
    if a.int("pwdLastSet") == Some(0) {
        return Some(AccountRefusal::MustChangePassword);
    }
    // OpenLDAP ppolicy (slapd itself refuses the bind of a locked entry; this catches
    // directories where the overlay is off but the attribute is kept).
    if let Some(t) = a.first("pwdAccountLockedTime") {
        return Some(if t == PPOLICY_PERMANENT_LOCK {
            AccountRefusal::Disabled
        } else {
            AccountRefusal::Locked
        });
    }
    if a.first("pwdReset").is_some_and(|v| v.eq_ignore_ascii_case("TRUE")) {
        return Some(AccountRefusal::MustChangePassword);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::directory::Preset;

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            m.entry((*k).into()).or_default().push((*v).into());
        }
        Attributes::new(m, HashMap::new())
    }

    #[test]
    fn ad_flags_are_refusals() {
        let now = Utc::now();
        assert_eq!(
            refusal(&attrs(&[("userAccountControl", "514")]), now),
            Some(AccountRefusal::Disabled)
        );
        assert_eq!(refusal(&attrs(&[("userAccountControl", "528")]), now), Some(AccountRefusal::Locked));
        assert_eq!(
            refusal(&attrs(&[("userAccountControl", "512"), ("pwdLastSet", "0")]), now),
            Some(AccountRefusal::MustChangePassword)
        );
        assert_eq!(
            refusal(&attrs(&[("accountExpires", "116444736000000000")]), now),
            Some(AccountRefusal::Expired)
        );
        assert_eq!(
            refusal(
                &attrs(&[("accountExpires", "9223372036854775807"), ("userAccountControl", "512")]),
                now
            ),
            None
        );
    }

    #[test]
    fn ppolicy_state_is_a_refusal() {
        let now = Utc::now();
        assert_eq!(
            refusal(&attrs(&[("pwdReset", "TRUE")]), now),
            Some(AccountRefusal::MustChangePassword)
        );
        assert_eq!(
            refusal(&attrs(&[("pwdAccountLockedTime", "000001010000Z")]), now),
            Some(AccountRefusal::Disabled)
        );
        assert_eq!(refusal(&attrs(&[("uid", "x")]), now), None);
    }

    #[test]
    fn ad_guid_is_read_in_ad_byte_order() {
        let map = Preset::ActiveDirectory.attributes();
        let mut bin = HashMap::new();
        bin.insert(
            "objectGUID".to_string(),
            vec![vec![
                0x9a, 0x1c, 0x7e, 0x5b, 0x4d, 0x2f, 0x8a, 0x4e, 0x9c, 0x1b, 0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f,
            ]],
        );
        let a = Attributes::new(HashMap::from([("sAMAccountName".to_string(), vec!["adupuis".to_string()])]), bin);
        let p = profile(&a, &map, "ADUPUIS").unwrap();
        assert_eq!(p.stable_id, "5b7e1c9a-2f4d-4e8a-9c1b-0a1b2c3d4e5f");
        assert_eq!(p.login, "adupuis");
        assert!(matches!(profile(&attrs(&[]), &map, "x"), Err(EntryError::NoStableId(_))));
    }
}
