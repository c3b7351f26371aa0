//! Reader for the public Annuaire Santé extraction `PS_LibreAcces_Personne_activite_*.txt`
//! (psc.md §4): `|`-separated with a trailing `|`, a header line, one line per activity.
//! Columns are found by header name (new columns appear over time); each line is decoded as
//! UTF-8 or, failing that, Latin-1 (older files). Streaming: one line in memory at a time.
use crate::domain::identity::IdNat;
use std::collections::HashMap;
use std::io::BufRead;

const TYPE: &str = "Type d'identifiant PP";
const ID: &str = "Identifiant PP";
const IDNAT: &str = "Identification nationale PP";
const FAMILY: &str = "Nom d'exercice";
const GIVEN: &str = "Prénom d'exercice";
const PROFESSION: &str = "Code profession";
const PROFESSION_LABEL: &str = "Libellé profession";
const CATEGORY: &str = "Code catégorie professionnelle";
const SAVOIR_FAIRE: &str = "Code savoir-faire";
const SAVOIR_FAIRE_LABEL: &str = "Libellé savoir-faire";
const MODE: &str = "Code mode exercice";
const FINESS_SITE: &str = "Numéro FINESS site";
const FINESS_EJ: &str = "Numéro FINESS établissement juridique";
const SITE_NAME: &str = "Raison sociale site";
const REQUIRED: &[&str] = &[TYPE, ID, IDNAT, FAMILY, GIVEN, PROFESSION];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnuaireError {
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("the header lacks the column {0:?}")]
    MissingColumn(String),
    #[error("the file is empty")]
    Empty,
}

/// A line that could not be used, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// One activity line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub savoir_faire: Option<String>,
    pub savoir_faire_label: Option<String>,
    pub mode: Option<String>,
    pub finess_site: Option<String>,
    pub finess_ej: Option<String>,
    pub site_name: Option<String>,
}

/// A professional, with their activity lines grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Professional {
    pub idnat: IdNat,
    pub family_name: String,
    pub given_name: String,
    pub profession: String,
    pub profession_label: Option<String>,
    pub category: Option<String>,
    /// Activities at our establishment (site or legal-entity FINESS).
    pub activities_here: Vec<Activity>,
    pub other_activities: usize,
}

/// Decodes one raw line: UTF-8 when valid, else Latin-1 (every byte is a code point).
fn decode(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_owned(),
        Err(_) => raw.iter().map(|&b| b as char).collect(),
    }
}

fn fields(line: &str) -> Vec<&str> {
    let line = line.strip_suffix('|').unwrap_or(line);
    line.split('|').collect()
}

/// What the reader keeps: people with an activity at one of `finess`, or whose idNat is in
/// `wanted` (already mapped locally). Memory is bounded by the establishment, not the country.
pub struct Selection<'a> {
    pub finess: &'a [String],
    pub wanted: &'a std::collections::HashSet<String>,
}

#[derive(Debug, Default)]
pub struct Extraction {
    pub lines: usize,
    pub professionals: HashMap<IdNat, Professional>,
    pub errors: Vec<LineError>,
}

/// Reads the whole extraction, keeping what `sel` asks for.
pub fn read(mut input: impl BufRead, sel: &Selection<'_>) -> Result<Extraction, AnnuaireError> {
    let mut raw = Vec::new();
    let io = |e: std::io::Error| AnnuaireError::Io(e.to_string());
    if input.read_until(b'\n', &mut raw).map_err(io)? == 0 {
        return Err(AnnuaireError::Empty);
    }
    let header_line = decode(&raw);
    let header_line = header_line.trim_start_matches('\u{feff}').trim_end_matches(['\r', '\n']);
    let header: Vec<String> = fields(header_line).into_iter().map(str::to_owned).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    for r in REQUIRED {
        if col(r).is_none() {
            return Err(AnnuaireError::MissingColumn((*r).to_owned()));
        }
    }
    let idx = |name: &str| col(name);
    let (c_type, c_id, c_idnat, c_family, c_given, c_prof) = (
        idx(TYPE).unwrap(),
        idx(ID).unwrap(),
        idx(IDNAT).unwrap(),
        idx(FAMILY).unwrap(),
        idx(GIVEN).unwrap(),
        idx(PROFESSION).unwrap(),
    );
    let optional = [
        PROFESSION_LABEL,
        CATEGORY,
        SAVOIR_FAIRE,
        SAVOIR_FAIRE_LABEL,
        MODE,
        FINESS_SITE,
        FINESS_EJ,
        SITE_NAME,
    ]
    .map(idx);

    let mut out = Extraction::default();
    let mut line_no = 1;
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw).map_err(io)? == 0 {
            break;
        }
        line_no += 1;
        let line = decode(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            continue;
        }
        out.lines += 1;
        let f = fields(line);
        if f.len() != header.len() {
            out.errors.push(LineError {
                line: line_no,
                message: format!("{} fields instead of {}", f.len(), header.len()),
            });
            continue;
        }
        let get = |i: Option<usize>| i.map(|i| f[i].trim()).filter(|v| !v.is_empty()).map(str::to_owned);
        let idnat = match IdNat::parse(f[c_idnat]) {
            Ok(i) => i,
            Err(e) => {
                out.errors.push(LineError {
                    line: line_no,
                    message: e.to_string(),
                });
                continue;
            }
        };
        // The idNat must be the type digit followed by the identifier.
        if format!("{}{}", f[c_type].trim(), f[c_id].trim()) != idnat.as_str() {
            out.errors.push(LineError {
                line: line_no,
                message: format!("idNat {idnat} does not match type {:?} and identifier {:?}", f[c_type], f[c_id]),
            });
            continue;
        }
        let activity = Activity {
            savoir_faire: get(optional[2]),
            savoir_faire_label: get(optional[3]),
            mode: get(optional[4]),
            finess_site: get(optional[5]),
            finess_ej: get(optional[6]),
            site_name: get(optional[7]),
        };
        let here = [&activity.finess_site, &activity.finess_ej]
            .into_iter()
            .flatten()
            .any(|f| sel.finess.contains(f));
        if !here && !sel.wanted.contains(idnat.as_str()) && !out.professionals.contains_key(&idnat) {
            continue;
        }
        let p = out.professionals.entry(idnat.clone()).or_insert_with(|| Professional {
            idnat,
            family_name: f[c_family].trim().to_owned(),
            given_name: f[c_given].trim().to_owned(),
            profession: f[c_prof].trim().to_owned(),
            profession_label: get(optional[0]),
            category: get(optional[1]),
            activities_here: Vec::new(),
            other_activities: 0,
        });
        if here {
            p.activities_here.push(activity);
        } else {
            p.other_activities += 1;
        }
    }
    Ok(out)
}

/// A name as compared for matching: upper case, accents and punctuation removed.
pub fn name_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let base = match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' | 'À' | 'Á' | 'Â' | 'Ä' | 'Ã' | 'Å' => 'A',
            'ç' | 'Ç' => 'C',
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'E',
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'I',
            'ñ' | 'Ñ' => 'N',
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' | 'Ò' | 'Ó' | 'Ô' | 'Ö' | 'Õ' => 'O',
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'U',
            'ý' | 'ÿ' | 'Ý' => 'Y',
            'œ' | 'Œ' => {
                out.push_str("OE");
                continue;
            }
            'æ' | 'Æ' => {
                out.push_str("AE");
                continue;
            }
            c if c.is_alphanumeric() => c.to_ascii_uppercase(),
            _ => continue,
        };
        out.push(base);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const HEADER: &str = "Type d'identifiant PP|Identifiant PP|Identification nationale PP|Nom d'exercice|Prénom d'exercice|Code profession|Numéro FINESS site|";

    fn sel<'a>(finess: &'a [String], wanted: &'a HashSet<String>) -> Selection<'a> {
        Selection { finess, wanted }
    }

    #[test]
    fn groups_lines_and_keeps_only_our_establishment() {
        let data = format!(
            "{HEADER}\n8|99926018153|899926018153|MARTIN|Élodie|10|750000011|\n8|99926018153|899926018153|MARTIN|Élodie|10|690000022|\n8|99983016611|899983016611|DUPONT|Jean|10|690000022|\n"
        );
        let finess = vec!["750000011".to_string()];
        let wanted = HashSet::new();
        let x = read(data.as_bytes(), &sel(&finess, &wanted)).unwrap();
        assert_eq!(x.lines, 3);
        assert_eq!(x.professionals.len(), 1);
        let p = x.professionals.values().next().unwrap();
        assert_eq!((p.activities_here.len(), p.other_activities), (1, 1));
        assert_eq!(p.given_name, "Élodie");
    }

    #[test]
    fn latin1_lines_decode_and_bad_lines_are_reported() {
        let mut data = format!("{HEADER}\n").into_bytes();
        data.extend_from_slice(b"8|99926018153|899926018153|MARTIN|\xc9lodie|10|750000011|\n");
        data.extend_from_slice(b"8|99926018154|899926018154|BAD|Check|10|750000011|\n");
        data.extend_from_slice(b"8|99926018153|899926018153|TRUNCATED\n");
        let finess = vec!["750000011".to_string()];
        let wanted = HashSet::new();
        let x = read(&data[..], &sel(&finess, &wanted)).unwrap();
        assert_eq!(x.professionals.values().next().unwrap().given_name, "Élodie");
        assert_eq!(x.errors.len(), 2);
        assert_eq!(x.errors[0].line, 3);
        assert!(x.errors[0].message.contains("Luhn"));
        assert_eq!(x.errors[1].line, 4);
    }

    #[test]
    fn missing_column_is_named() {
        let wanted = HashSet::new();
        let e = read("A|B|\n".as_bytes(), &sel(&[], &wanted)).unwrap_err();
        assert!(matches!(e, AnnuaireError::MissingColumn(c) if c == TYPE));
    }

    #[test]
    fn name_keys_ignore_accents_and_punctuation() {
        assert_eq!(name_key("Lefèvre"), name_key("LEFEVRE"));
        assert_eq!(name_key("N'Diaye"), "NDIAYE");
        assert_eq!(name_key("Jean-Marc"), "JEANMARC");
    }
}
