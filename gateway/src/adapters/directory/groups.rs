//! A person's groups (direct, then nested within bounds) and the Relais roles they grant.
//!
//! Direct groups come from the entry's `memberOf` or from a group search. Nesting is followed
//! either with Active Directory's LDAP_MATCHING_RULE_IN_CHAIN (one search, the server walks the
//! chain) or level by level (any server: slapd has no in-chain rule), never further than
//! `max_depth` levels nor past `max_groups` groups, so a group cycle or a huge tree cannot make a
//! login slow.
use super::DirectoryError;
use super::conn;
use ldap3::{Ldap, Scope, SearchEntry, ldap_escape};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

/// AD's LDAP_MATCHING_RULE_IN_CHAIN (MS-ADTS 3.1.1.3.4.4.3).
pub const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";
/// Group DNs per OR-filter in the iterative walk.
const BATCH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    MemberOf,
    Search,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nested {
    None,
    InChain,
    Iterative,
}

#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub direct: Direct,
    pub base_dn: String,
    /// `{dn}` and `{login}` are replaced, escaped.
    pub filter: String,
    pub nested: Nested,
    pub max_depth: u32,
    pub max_groups: usize,
}

impl GroupSettings {
    /// Whether finding groups needs a search (and so the service account).
    pub fn searches(&self) -> bool {
        self.direct == Direct::Search || self.nested != Nested::None
    }

    pub fn filter_for(&self, member_dn: &str, login: &str) -> String {
        self.filter
            .replace("{dn}", &ldap_escape(member_dn))
            .replace("{login}", &ldap_escape(login))
    }

    pub fn in_chain_filter(member_dn: &str) -> String {
        format!("(member:{IN_CHAIN}:={})", ldap_escape(member_dn))
    }
}

/// A DN compared loosely: case and spaces around separators ignored.
pub fn dn_key(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    for part in dn.split(',') {
        if !out.is_empty() {
            out.push(',');
        }
        let (a, v) = part.split_once('=').unwrap_or((part, ""));
        out.push_str(&a.trim().to_lowercase());
        out.push('=');
        out.push_str(&v.trim().to_lowercase());
    }
    out
}

/// The value of the first RDN when it is a `cn` (what a role written as a bare name matches).
fn cn_of(dn: &str) -> Option<String> {
    let first = dn.split(',').next()?;
    let (a, v) = first.split_once('=')?;
    a.trim().eq_ignore_ascii_case("cn").then(|| v.trim().to_lowercase())
}

/// Roles granted by `groups` under `mapping` (role → group DNs or CNs), sorted.
pub fn roles_for(groups: &[String], mapping: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let dns: HashSet<String> = groups.iter().map(|g| dn_key(g)).collect();
    let cns: HashSet<String> = groups.iter().filter_map(|g| cn_of(g)).collect();
    mapping
        .iter()
        .filter(|(_, wanted)| {
            wanted.iter().any(|w| {
                if w.contains('=') {
                    dns.contains(&dn_key(w))
                } else {
                    cns.contains(&w.trim().to_lowercase())
                }
            })
        })
        .map(|(role, _)| role.clone())
        .collect()
}

/// What a group search found, and whether a bound cut it short.
struct Found {
    dns: Vec<String>,
    truncated: bool,
}

async fn search_dns(ldap: &mut Ldap, timeout: Duration, base: &str, filter: &str, limit: usize) -> Result<Found, DirectoryError> {
    let (entries, res) = conn::timed(timeout, "group search", async {
        ldap.with_search_options(ldap3::SearchOptions::new().sizelimit(limit.min(i32::MAX as usize) as i32));
        // "1.1": no attributes, the DN is all that is needed.
        let r = ldap.search(base, Scope::Subtree, filter, vec!["1.1"]).await?;
        Ok::<_, ldap3::LdapError>((r.0, r.1))
    })
    .await?;
    // 4 = sizeLimitExceeded: the entries up to the limit are there, the rest is cut off.
    if res.rc != 0 && res.rc != 4 {
        return Err(DirectoryError::Unavailable(format!(
            "group search answered {}: {}",
            res.rc, res.text
        )));
    }
    Ok(Found {
        dns: entries.into_iter().map(|e| SearchEntry::construct(e).dn).collect(),
        truncated: res.rc == 4,
    })
}

/// The person's groups (DNs): direct ones, then nested ones within the bounds. `member_of` is
/// the entry's own list (used when `direct` is `MemberOf`). `ldap` is bound as the service
/// account.
pub async fn resolve(
    s: &GroupSettings,
    ldap: &mut Ldap,
    timeout: Duration,
    user_dn: &str,
    login: &str,
    member_of: &[String],
) -> Result<Vec<String>, DirectoryError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut all: Vec<String> = Vec::new();
    let mut truncated = false;
    let add = |dn: String, seen: &mut HashSet<String>, all: &mut Vec<String>| -> bool {
        if all.len() >= s.max_groups {
            return false;
        }
        if seen.insert(dn_key(&dn)) {
            all.push(dn);
            return true;
        }
        false
    };
    let direct = match s.direct {
        Direct::MemberOf => member_of.to_vec(),
        Direct::Search => {
            let f = search_dns(ldap, timeout, &s.base_dn, &s.filter_for(user_dn, login), s.max_groups).await?;
            truncated |= f.truncated;
            f.dns
        }
    };
    let mut frontier = Vec::new();
    for g in direct {
        if add(g.clone(), &mut seen, &mut all) {
            frontier.push(g);
        }
    }
    match s.nested {
        Nested::None => {}
        Nested::InChain => {
            let f = search_dns(ldap, timeout, &s.base_dn, &GroupSettings::in_chain_filter(user_dn), s.max_groups).await?;
            truncated |= f.truncated;
            for g in f.dns {
                add(g, &mut seen, &mut all);
            }
        }
        Nested::Iterative => {
            let mut depth = 0;
            while !frontier.is_empty() && depth < s.max_depth && all.len() < s.max_groups {
                depth += 1;
                let mut next = Vec::new();
                for chunk in frontier.chunks(BATCH) {
                    let parts: String = chunk.iter().map(|g| s.filter_for(g, login)).collect();
                    let filter = format!("(|{parts})");
                    let room = s.max_groups - all.len();
                    let f = search_dns(ldap, timeout, &s.base_dn, &filter, room.max(1)).await?;
                    truncated |= f.truncated;
                    for g in f.dns {
                        if add(g.clone(), &mut seen, &mut all) {
                            next.push(g);
                        }
                    }
                }
                frontier = next;
            }
            if !frontier.is_empty() && depth >= s.max_depth {
                truncated = true;
            }
        }
    }
    if truncated || all.len() >= s.max_groups {
        tracing::warn!(
            groups = all.len(),
            max_groups = s.max_groups,
            max_depth = s.max_depth,
            "group lookup stopped at its bound; roles come from the groups found so far"
        );
    }
    // Stable order for logs and `relais ldap test`.
    let order: BTreeSet<(String, String)> = all.into_iter().map(|g| (dn_key(&g), g)).collect();
    Ok(order.into_iter().map(|(_, g)| g).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_match_dns_loosely_and_cns_by_name() {
        let groups = vec![
            "CN=Relais-Admins, OU=Groups,DC=chu,DC=example".to_string(),
            "cn=medecins,ou=groups,dc=chu,dc=example".to_string(),
        ];
        let mut m = BTreeMap::new();
        m.insert(
            "admin".to_string(),
            vec!["cn=relais-admins,ou=groups,dc=chu,dc=example".to_string()],
        );
        m.insert("doctor".to_string(), vec!["Medecins".to_string()]);
        m.insert("auditor".to_string(), vec!["cn=auditeurs,ou=groups,dc=chu,dc=example".to_string()]);
        assert_eq!(roles_for(&groups, &m), vec!["admin".to_string(), "doctor".to_string()]);
        // A CN does not match a group whose first RDN is not a cn.
        assert!(roles_for(&["ou=medecins,dc=x".to_string()], &m).is_empty());
    }

    #[test]
    fn filters_escape_the_member() {
        let s = GroupSettings {
            direct: Direct::Search,
            base_dn: "dc=x".into(),
            filter: "(|(member={dn})(memberUid={login}))".into(),
            nested: Nested::Iterative,
            max_depth: 3,
            max_groups: 10,
        };
        assert_eq!(
            s.filter_for("uid=o*brien(ext),dc=x", "o*brien(ext)"),
            "(|(member=uid=o\\2abrien\\28ext\\29,dc=x)(memberUid=o\\2abrien\\28ext\\29))"
        );
        assert_eq!(
            GroupSettings::in_chain_filter("cn=A (B),dc=x"),
            "(member:1.2.840.113556.1.4.1941:=cn=A \\28B\\29,dc=x)"
        );
    }
}
