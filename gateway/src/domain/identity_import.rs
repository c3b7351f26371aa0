//! Planning identity-mapping changes from the Annuaire extraction or a mapping file. Pure: the
//! plan is computed from what is stored and what was read, shown in a dry run, and applied in
//! one transaction only when asked. Nothing existing is overwritten: conflicts go to review.
use crate::domain::account::{Account, normalise_username};
use crate::domain::annuaire::{Extraction, LineError, name_key};
use crate::domain::identity::{IdNat, NationalIdentity, Provenance};
use std::collections::{HashMap, HashSet};
use std::fmt;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A mapping that existed unverified is confirmed by the Annuaire.
    Verify {
        account_id: Uuid,
        username: String,
        idnat: IdNat,
        profession: Option<String>,
    },
    /// A new mapping.
    Link {
        account_id: Uuid,
        username: String,
        idnat: IdNat,
        profession: Option<String>,
        provenance: Provenance,
        verified: bool,
        rule: &'static str,
    },
}

impl Change {
    pub fn identity(&self) -> NationalIdentity {
        match self {
            Change::Verify {
                account_id,
                idnat,
                profession,
                ..
            } => NationalIdentity {
                account_id: *account_id,
                idnat: idnat.clone(),
                provenance: Provenance::AnnuaireImport,
                verified: true,
                profession: profession.clone(),
            },
            Change::Link {
                account_id,
                idnat,
                profession,
                provenance,
                verified,
                ..
            } => NationalIdentity {
                account_id: *account_id,
                idnat: idnat.clone(),
                provenance: *provenance,
                verified: *verified,
                profession: profession.clone(),
            },
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Verify { username, idnat, .. } => write!(f, "verify  {username} ↔ {idnat} (found in the Annuaire)"),
            Change::Link {
                username,
                idnat,
                rule,
                verified,
                ..
            } => {
                write!(
                    f,
                    "link    {username} ↔ {idnat} ({rule}{})",
                    if *verified { ", verified" } else { ", unverified" }
                )
            }
        }
    }
}

/// Something a person must decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewItem {
    /// The queue's number for the item, once stored (what `relais identity review --resolve`
    /// takes).
    pub id: Option<i64>,
    pub account_id: Uuid,
    pub username: String,
    pub candidates: Vec<IdNat>,
    pub reason: ReviewReason,
}

/// Why an item needs a person's decision. Typed, so that each page shows it in its language
/// (the English wording is `Display`, used by the CLI); stored as JSON in the review queue.
/// `source` is where a directory holds the identifier (`directory:attribute`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReviewReason {
    InvalidIdentifier {
        source: String,
        error: String,
    },
    NotTheMappedIdentifier {
        source: String,
    },
    IdentifierOfSomeoneElse {
        source: String,
    },
    AbsentFromAnnuaire {
        source: String,
    },
    AnnuaireNamesAnother {
        source: String,
        given_name: String,
        family_name: String,
    },
    SeveralProfessionalsWithThisName,
    SeveralLocalPeopleWithThisName,
    NameMatchIdentifierTaken,
    /// An item queued before reasons were typed: its English text as stored.
    Text(String),
}

impl ReviewReason {
    /// The stored form (`identity_review.reason`).
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).expect("plain strings serialise")
    }

    /// Reads the stored form; plain text (older rows) stays readable as `Text`.
    pub fn from_stored(s: &str) -> Self {
        serde_json::from_str(s).unwrap_or_else(|_| Self::Text(s.to_owned()))
    }
}

impl fmt::Display for ReviewReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidIdentifier { source, error } => write!(f, "{source} holds an invalid national identifier: {error}"),
            Self::NotTheMappedIdentifier { source } => write!(f, "{source} names another identifier than the one already mapped"),
            Self::IdentifierOfSomeoneElse { source } => write!(f, "{source} names an identifier already mapped to someone else"),
            Self::AbsentFromAnnuaire { source } => write!(f, "{source} names an identifier absent from the Annuaire extraction"),
            Self::AnnuaireNamesAnother {
                source,
                given_name,
                family_name,
            } => write!(f, "{source} names an identifier the Annuaire gives to {given_name} {family_name}"),
            Self::SeveralProfessionalsWithThisName => f.write_str("several professionals at this establishment have this name"),
            Self::SeveralLocalPeopleWithThisName => f.write_str("several local people have this name"),
            Self::NameMatchIdentifierTaken => f.write_str("this national identifier is already mapped to someone else"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

#[derive(Debug, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub review: Vec<ReviewItem>,
    pub errors: Vec<LineError>,
    pub lines: usize,
}

impl Plan {
    /// A plan with line errors is never applied: nothing is half-imported.
    pub fn applicable(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} lines read, {} changes, {} for review, {} errors",
            self.lines,
            self.changes.len(),
            self.review.len(),
            self.errors.len()
        )?;
        for c in &self.changes {
            writeln!(f, "  {c}")?;
        }
        for r in &self.review {
            let c: Vec<String> = r.candidates.iter().map(ToString::to_string).collect();
            writeln!(f, "  review  {}: {} [{}]", r.username, r.reason, c.join(", "))?;
        }
        for e in &self.errors {
            writeln!(f, "  error   line {}: {}", e.line, e.message)?;
        }
        Ok(())
    }
}

/// A national identifier the directory holds for a person (an RPPS attribute, or an employee
/// number that is one), as read; parsed by the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryClaim {
    pub account_id: Uuid,
    pub value: String,
    /// `directory:attribute`, for the plan and the audit trail.
    pub source: String,
}

impl DirectoryClaim {
    /// The idNat the value stands for: an 11-digit RPPS number, or an idNat.
    pub fn idnat(&self) -> Result<IdNat, crate::protocol::ParseError> {
        let v = self.value.trim();
        match crate::domain::identity::Rpps::parse(v) {
            Ok(r) => Ok(IdNat::from_rpps(&r)),
            Err(_) => IdNat::parse(v),
        }
    }
}

/// Matches the Annuaire extraction against local people.
///
/// Rules, in order: an existing unverified mapping found in the extraction is verified; a
/// person without a mapping whose family and given names match exactly one professional
/// active at our establishment is linked; several candidates (homonyms) or several people
/// with the same name go to review.
pub fn plan_annuaire(x: Extraction, accounts: &[Account], existing: &[NationalIdentity]) -> Plan {
    plan_annuaire_with(x, accounts, existing, &[])
}

/// `plan_annuaire` with the directory's own identifiers first: a person whose directory entry
/// names an idNat that the extraction lists under the same family name is linked (verified);
/// anything else about such a person (not in the extraction, another name, an invalid value,
/// an idNat mapped to someone else, a different existing mapping) goes to review. People with
/// a directory claim are not matched by name.
pub fn plan_annuaire_with(x: Extraction, accounts: &[Account], existing: &[NationalIdentity], claims: &[DirectoryClaim]) -> Plan {
    let mut plan = Plan {
        lines: x.lines,
        errors: x.errors,
        ..Plan::default()
    };
    let username: HashMap<Uuid, &str> = accounts.iter().map(|a| (a.id, a.username.as_str())).collect();
    let mapped_people: HashSet<Uuid> = existing.iter().map(|n| n.account_id).collect();
    let taken: HashSet<&IdNat> = existing.iter().map(|n| &n.idnat).collect();

    for n in existing.iter().filter(|n| !n.verified) {
        if let Some(p) = x.professionals.get(&n.idnat) {
            plan.changes.push(Change::Verify {
                account_id: n.account_id,
                username: username.get(&n.account_id).unwrap_or(&"?").to_string(),
                idnat: n.idnat.clone(),
                profession: Some(p.profession.clone()),
            });
        }
    }

    let by_id: HashMap<Uuid, &Account> = accounts.iter().map(|a| (a.id, a)).collect();
    let mut claimed: HashSet<Uuid> = HashSet::new();
    for c in claims {
        let Some(a) = by_id.get(&c.account_id) else { continue };
        claimed.insert(a.id);
        let review = |reason: ReviewReason, candidates: Vec<IdNat>| ReviewItem {
            id: None,
            account_id: a.id,
            username: a.username.clone(),
            candidates,
            reason,
        };
        let idnat = match c.idnat() {
            Ok(i) => i,
            Err(e) => {
                plan.review.push(review(
                    ReviewReason::InvalidIdentifier {
                        source: c.source.clone(),
                        error: e.to_string(),
                    },
                    vec![],
                ));
                continue;
            }
        };
        let mine: Vec<&NationalIdentity> = existing.iter().filter(|n| n.account_id == a.id).collect();
        if mine.iter().any(|n| n.idnat == idnat) {
            continue; // already mapped; rule 1 verifies it
        }
        if !mine.is_empty() {
            plan.review.push(review(
                ReviewReason::NotTheMappedIdentifier { source: c.source.clone() },
                vec![idnat],
            ));
            continue;
        }
        if taken.contains(&idnat) {
            plan.review.push(review(
                ReviewReason::IdentifierOfSomeoneElse { source: c.source.clone() },
                vec![idnat],
            ));
            continue;
        }
        match x.professionals.get(&idnat) {
            None => plan
                .review
                .push(review(ReviewReason::AbsentFromAnnuaire { source: c.source.clone() }, vec![idnat])),
            Some(p) if a.family_name.as_deref().map(name_key) != Some(name_key(&p.family_name)) => plan.review.push(review(
                ReviewReason::AnnuaireNamesAnother {
                    source: c.source.clone(),
                    given_name: p.given_name.clone(),
                    family_name: p.family_name.clone(),
                },
                vec![idnat],
            )),
            Some(p) => plan.changes.push(Change::Link {
                account_id: a.id,
                username: a.username.clone(),
                idnat,
                profession: Some(p.profession.clone()),
                provenance: Provenance::AnnuaireImport,
                verified: true,
                rule: "directory attribute, confirmed by the Annuaire",
            }),
        }
    }

    let key = |family: &str, given: &str| format!("{}|{}", name_key(family), name_key(given));
    let mut by_name: HashMap<String, Vec<&crate::domain::annuaire::Professional>> = HashMap::new();
    for p in x.professionals.values().filter(|p| !p.activities_here.is_empty()) {
        by_name.entry(key(&p.family_name, &p.given_name)).or_default().push(p);
    }
    let unmapped: Vec<&Account> = accounts
        .iter()
        .filter(|a| !mapped_people.contains(&a.id) && !claimed.contains(&a.id) && !a.disabled)
        .collect();
    let mut people_by_name: HashMap<String, usize> = HashMap::new();
    for a in &unmapped {
        if let (Some(f), Some(g)) = (&a.family_name, &a.given_name) {
            *people_by_name.entry(key(f, g)).or_default() += 1;
        }
    }
    for a in unmapped {
        let (Some(f), Some(g)) = (&a.family_name, &a.given_name) else {
            continue;
        };
        let k = key(f, g);
        let Some(candidates) = by_name.get(&k) else { continue };
        let mut ids: Vec<IdNat> = candidates.iter().map(|p| p.idnat.clone()).collect();
        ids.sort();
        let review = |reason: ReviewReason| ReviewItem {
            id: None,
            account_id: a.id,
            username: a.username.clone(),
            candidates: ids.clone(),
            reason,
        };
        if candidates.len() > 1 {
            plan.review.push(review(ReviewReason::SeveralProfessionalsWithThisName));
        } else if people_by_name[&k] > 1 {
            plan.review.push(review(ReviewReason::SeveralLocalPeopleWithThisName));
        } else if taken.contains(&candidates[0].idnat) {
            plan.review.push(review(ReviewReason::NameMatchIdentifierTaken));
        } else {
            plan.changes.push(Change::Link {
                account_id: a.id,
                username: a.username.clone(),
                idnat: candidates[0].idnat.clone(),
                profession: Some(candidates[0].profession.clone()),
                provenance: Provenance::AnnuaireImport,
                verified: true,
                rule: "unique name match at our FINESS",
            });
        }
    }
    plan.changes.sort_by_key(|c| c.to_string());
    plan
}

/// Plans a bulk mapping file: one `login;idnat` per line (`,` also accepted), an optional
/// header, `#` comments. Mappings from a file are unverified until the Annuaire or a card
/// confirms them.
pub fn plan_mapping_file(text: &str, accounts: &[Account], existing: &[NationalIdentity]) -> Plan {
    let mut plan = Plan::default();
    let by_username: HashMap<&str, &Account> = accounts.iter().map(|a| (a.username.as_str(), a)).collect();
    let owner: HashMap<&IdNat, Uuid> = existing.iter().map(|n| (&n.idnat, n.account_id)).collect();
    let mut seen: HashMap<IdNat, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        plan.lines += 1;
        let mut err = |m: String| plan.errors.push(LineError { line: line_no, message: m });
        let Some((login, idnat)) = line.split_once(';').or_else(|| line.split_once(',')) else {
            err("expected login;idnat".into());
            continue;
        };
        if line_no == 1 && IdNat::parse(idnat).is_err() && login.trim().eq_ignore_ascii_case("local_login") {
            plan.lines -= 1;
            continue; // header
        }
        let idnat = match IdNat::parse(idnat) {
            Ok(i) => i,
            Err(e) => {
                err(e.to_string());
                continue;
            }
        };
        let Some(account) = normalise_username(login).and_then(|u| by_username.get(u.as_str()).copied()) else {
            err(format!("no local account {:?}", login.trim()));
            continue;
        };
        if let Some(first) = seen.insert(idnat.clone(), line_no) {
            err(format!("{idnat} also appears on line {first}"));
            continue;
        }
        match owner.get(&idnat) {
            Some(o) if *o == account.id => {}
            Some(_) => err(format!("{idnat} is already mapped to another person; unlink it first")),
            None => plan.changes.push(Change::Link {
                account_id: account.id,
                username: account.username.clone(),
                idnat,
                profession: None,
                provenance: Provenance::FileImport,
                verified: false,
                rule: "mapping file",
            }),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::ReviewReason;

    #[test]
    fn review_reasons_are_stored_typed_and_older_plain_text_rows_stay_readable() {
        let r = ReviewReason::AnnuaireNamesAnother {
            source: "ad:employeeNumber".into(),
            given_name: "Lucie".into(),
            family_name: "Lambert".into(),
        };
        assert_eq!(ReviewReason::from_stored(&r.to_stored()), r);
        assert_eq!(
            r.to_string(),
            "ad:employeeNumber names an identifier the Annuaire gives to Lucie Lambert"
        );
        let legacy = "several local people have this name";
        assert_eq!(ReviewReason::from_stored(legacy), ReviewReason::Text(legacy.into()));
        assert_eq!(ReviewReason::from_stored(legacy).to_string(), legacy);
    }
}
