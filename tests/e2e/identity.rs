//! National identity mapping: the Annuaire Santé import and mapping files, on SQLite and
//! PostgreSQL, through the same management operations the `relais identity` commands use.
use crate::harness::{self, Db, Server, Sessions};
use relais::domain::identity::{IdKind, Provenance};
use relais::domain::management::NewAccount;
use relais::domain::ports::IdentityStore;

pub const SAMPLE: &str = include_str!("../fixtures/annuaire/PS_LibreAcces_Personne_activite_202611230000.txt");
pub const FINESS: &str = "750000011";

/// An RPPS with a valid Luhn check digit from its first 10 digits.
pub fn rpps(first10: &str) -> String {
    for d in 0..10 {
        let candidate = format!("{first10}{d}");
        if relais::domain::identity::luhn_ok(&candidate) {
            return candidate;
        }
    }
    unreachable!()
}

pub async fn person(s: &Server, username: &str, given: &str, family: &str) -> uuid::Uuid {
    let policy = s.components().config.passwords;
    let a = s
        .components()
        .management("test")
        .create_account(&policy, NewAccount::new(username, given, family), "password-long-1")
        .await
        .unwrap();
    a.id
}

pub fn with_lines(extra: &[String]) -> String {
    let mut t = SAMPLE.to_owned();
    for l in extra {
        t.push_str(l);
        t.push('\n');
    }
    t
}

/// A line of the extraction in the sample's layout (52 columns).
pub fn line(rpps: &str, family: &str, given: &str, profession: &str, finess: &str) -> String {
    let header_len = SAMPLE.lines().next().unwrap().trim_end_matches('|').split('|').count();
    let mut f = vec![String::new(); header_len];
    f[0] = "8".into();
    f[1] = rpps.into();
    f[2] = format!("8{rpps}");
    f[7] = family.into();
    f[8] = given.into();
    f[9] = profession.into();
    f[21] = finess.into();
    format!("{}|", f.join("|"))
}

async fn annuaire_import(db: Db) {
    let s = harness::start(db, Sessions::Memory).await;
    let elodie = person(&s, "emartin", "Élodie", "Martin").await;
    let jean = person(&s, "jmdupont", "Jean-Marc", "Dupont").await;
    person(&s, "tgirard", "Thomas", "Girard").await;
    person(&s, "tgirard2", "Thomas", "Girard").await;
    person(&s, "llambert", "Lucie", "Lambert").await;
    person(&s, "secretaire", "Anne", "Administrative").await;
    // A homonym of Lucie Lambert, also at our establishment.
    let homonym = line(&rpps("9990000001"), "LAMBERT", "Lucie", "60", FINESS);
    let text = with_lines(&[homonym]);
    let m = s.components().management("test");
    let finess = vec![FINESS.to_string()];

    let dry = m.import_annuaire(text.as_bytes(), &finess, true).await.unwrap();
    assert!(dry.errors.is_empty(), "{dry}");
    let linked: Vec<&str> = dry
        .changes
        .iter()
        .map(|c| c.to_string())
        .filter(|c| c.starts_with("link"))
        .map(|_| "x")
        .collect();
    assert_eq!(linked.len(), 2, "Élodie Martin and Jean-Marc Dupont: {dry}");
    assert_eq!(
        dry.review.len(),
        3,
        "two local Thomas Girard, and two professionals named Lucie Lambert: {dry}"
    );
    assert!(
        s.components().store.all_national_ids().await.unwrap().is_empty(),
        "a dry run changes nothing"
    );

    m.import_annuaire(text.as_bytes(), &finess, false).await.unwrap();
    let e = s.components().store.national_ids(elodie).await.unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].idnat.as_str(), "899926018153");
    assert_eq!(
        (e[0].verified, e[0].provenance, e[0].profession.as_deref()),
        (true, Provenance::AnnuaireImport, Some("10"))
    );
    assert_eq!(s.components().store.national_ids(jean).await.unwrap()[0].idnat.kind(), IdKind::Rpps);
    assert_eq!(s.components().store.review_items().await.unwrap().len(), 3);
    let kinds = s.audit_kinds().await;
    assert_eq!(kinds.iter().filter(|k| *k == "identity_linked").count(), 2);
    assert_eq!(
        kinds.iter().filter(|k| *k == "identity_import").count(),
        2,
        "dry runs are audited too"
    );

    // Running it again changes nothing: nothing is overwritten silently.
    let again = m.import_annuaire(text.as_bytes(), &finess, true).await.unwrap();
    assert!(again.changes.is_empty(), "{again}");

    // A Latin-1 copy of the extraction reads the same.
    let latin1: Vec<u8> = text.chars().map(|c| u8::try_from(c as u32).expect("sample fits Latin-1")).collect();
    let l = m.import_annuaire(&latin1[..], &finess, true).await.unwrap();
    assert!(l.errors.is_empty() && l.changes.is_empty(), "{l}");
    s.stop().await;
}

async fn broken_files_import_nothing(db: Db) {
    let s = harness::start(db, Sessions::Memory).await;
    person(&s, "emartin", "Élodie", "Martin").await;
    let m = s.components().management("test");
    let finess = vec![FINESS.to_string()];
    let bad_check = line("99926018154", "X", "Y", "10", FINESS);
    let truncated = "8|99983016611|899983016611|DUPONT".to_string();
    let text = with_lines(&[bad_check, truncated]);
    let plan = m.import_annuaire(text.as_bytes(), &finess, false).await.unwrap();
    let n = SAMPLE.lines().count();
    assert_eq!(plan.errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![n + 1, n + 2], "{plan}");
    assert!(plan.errors[0].message.contains("Luhn"), "{plan}");
    assert!(!plan.applicable());
    assert!(
        s.components().store.all_national_ids().await.unwrap().is_empty(),
        "nothing half-imported"
    );
    // A header without the needed columns is refused with its name.
    let err = m
        .import_annuaire("a|b|\n1|2|\n".as_bytes(), &finess, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Type d'identifiant PP"), "{err}");
    s.stop().await;
}

async fn mapping_files(db: Db) {
    let s = harness::start(db, Sessions::Memory).await;
    let elodie = person(&s, "emartin", "Élodie", "Martin").await;
    person(&s, "pierre", "Bernadette", "Pierre").await;
    let m = s.components().management("test");
    let bad = "local_login;idnat\nemartin;899926018153\nnobody;899983016611\npierre;899926018154\npierre;899926018153\n";
    let plan = m.import_mapping_file(bad, false).await.unwrap();
    let lines: Vec<usize> = plan.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![3, 4, 5], "{plan}");
    assert!(s.components().store.all_national_ids().await.unwrap().is_empty());

    let good = "local_login;idnat\nemartin;899926018153\npierre;0012800730\n";
    let plan = m.import_mapping_file(good, true).await.unwrap();
    assert_eq!(plan.changes.len(), 2);
    assert!(s.components().store.all_national_ids().await.unwrap().is_empty(), "dry run");
    m.import_mapping_file(good, false).await.unwrap();
    let e = s.components().store.national_ids(elodie).await.unwrap();
    assert_eq!(
        (e[0].provenance, e[0].verified),
        (Provenance::FileImport, false),
        "a file is not a proof"
    );
    // Moving an idNat to someone else is refused; unlink first.
    let steal = m.import_mapping_file("pierre;899926018153\n", false).await.unwrap();
    assert_eq!(steal.errors.len(), 1);
    assert!(
        m.link("pierre", "899926018153", false).await.is_err(),
        "the database refuses it too"
    );
    assert!(m.unlink("emartin", "899926018153").await.unwrap());
    m.link("pierre", "899926018153", true).await.unwrap();
    let (_, ids) = m.show("pierre").await.unwrap();
    assert_eq!(ids.len(), 2);
    assert!(s.audit_kinds().await.iter().any(|k| k == "identity_unlinked"));
    s.stop().await;
}

#[tokio::test]
async fn a_million_line_extraction_streams_and_keeps_only_our_establishment() {
    // Generated on the fly: 1,000,000 activity lines, 1 in 10,000 at our FINESS.
    struct Gen {
        i: usize,
        buf: Vec<u8>,
        pos: usize,
        header: String,
    }
    impl std::io::Read for Gen {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.pos == self.buf.len() {
                self.buf.clear();
                self.pos = 0;
                if self.i == 0 {
                    self.buf.extend_from_slice(self.header.as_bytes());
                    self.buf.push(b'\n');
                } else if self.i <= 1_000_000 {
                    let r = rpps(&format!("99{:08}", self.i));
                    let finess = if self.i.is_multiple_of(10_000) { FINESS } else { "690000022" };
                    self.buf.extend_from_slice(line(&r, "NOM", "Prenom", "60", finess).as_bytes());
                    self.buf.push(b'\n');
                } else {
                    return Ok(0);
                }
                self.i += 1;
            }
            let n = out.len().min(self.buf.len() - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }
    let header = SAMPLE.lines().next().unwrap().to_owned();
    let input = std::io::BufReader::new(Gen {
        i: 0,
        buf: Vec::new(),
        pos: 0,
        header,
    });
    let wanted = std::collections::HashSet::new();
    let finess = vec![FINESS.to_string()];
    let x = relais::domain::annuaire::read(
        input,
        &relais::domain::annuaire::Selection {
            finess: &finess,
            wanted: &wanted,
        },
    )
    .unwrap();
    assert_eq!(x.lines, 1_000_000);
    assert!(x.errors.is_empty());
    assert_eq!(x.professionals.len(), 100, "memory holds the establishment's people only");
}

macro_rules! on_both_databases {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(super::Db::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(super::Db::Postgres).await } )* }
    };
}

on_both_databases!(annuaire_import, broken_files_import_nothing, mapping_files);

/// `relais identity review` as an admin uses it, on the built binary: list the queue, refuse a
/// link to an identifier that is not a candidate, link one of a homonym's candidates, dismiss
/// another item; each decision leaves the queue and is in the audit trail.
#[tokio::test]
async fn the_review_queue_is_decided_from_the_command_line() {
    use crate::process;
    let dir = process::temp_dir("relais-review");
    let cfg = process::config(
        &dir,
        "http://localhost:1",
        &harness::database_toml(Db::Sqlite).await,
        &harness::sessions_toml(Sessions::Memory),
        "",
    );
    for (user, given, family) in [
        ("llambert", "Lucie", "Lambert"),
        ("tgirard", "Thomas", "Girard"),
        ("tgirard2", "Thomas", "Girard"),
    ] {
        process::cli(
            &cfg,
            &["user", "add", "--username", user, "--given-name", given, "--family-name", family],
            "password-long-1\n",
        );
    }
    let homonym_rpps = rpps("9990000001");
    let file = dir.join("PS_LibreAcces_Personne_activite_202611230000.txt");
    std::fs::write(&file, with_lines(&[line(&homonym_rpps, "LAMBERT", "Lucie", "60", FINESS)])).unwrap();
    let out = process::cli(
        &cfg,
        &["identity", "import-annuaire", file.to_str().unwrap(), "--finess", FINESS],
        "",
    );
    assert!(out.contains("applied"), "{out}");

    let list = process::cli(&cfg, &["identity", "review"], "");
    let row = |user: &str| -> Vec<String> {
        list.lines()
            .find(|l| l.split('\t').nth(1) == Some(user))
            .unwrap_or_else(|| panic!("{user} not in the queue: {list}"))
            .split('\t')
            .map(str::to_owned)
            .collect()
    };
    let lucie = row("llambert");
    let candidates: Vec<&str> = lucie[3].split(',').collect();
    assert_eq!(candidates.len(), 2, "two professionals named Lucie Lambert: {list}");
    assert!(candidates.contains(&format!("8{homonym_rpps}").as_str()), "{list}");
    let thomas = row("tgirard");

    let run = |args: &[&str]| {
        let out = std::process::Command::new(process::relais_bin())
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    // Not one of the candidates: refused, nothing changes.
    let other = format!("8{}", rpps("9990000002"));
    let (ok, out) = run(&["identity", "review", "--resolve", &lucie[0], "--link", &other]);
    assert!(!ok && out.contains("not a candidate"), "{out}");
    // Neither --link nor --dismiss: clap refuses.
    assert!(!run(&["identity", "review", "--resolve", &lucie[0]]).0);

    let chosen = candidates[1];
    let out = process::cli(
        &cfg,
        &["identity", "review", "--resolve", &lucie[0], "--link", chosen, "--verified"],
        "",
    );
    assert!(out.contains("linked to llambert"), "{out}");
    let shown = process::cli(&cfg, &["identity", "show", "llambert"], "");
    assert!(shown.contains(chosen), "{shown}");
    let (ok, out) = run(&["identity", "review", "--resolve", &lucie[0], "--dismiss"]);
    assert!(!ok && out.contains("already decided"), "a decided item is gone: {out}");
    process::cli(&cfg, &["identity", "review", "--resolve", &thomas[0], "--dismiss"], "");

    let list = process::cli(&cfg, &["identity", "review"], "");
    assert!(
        !list.contains("llambert") && !list.lines().any(|l| l.split('\t').nth(1) == Some("tgirard")),
        "{list}"
    );
    let trail = process::cli(&cfg, &["audit", "export", "--since", "2000-01-01T00:00:00Z"], "");
    let decided: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event_type"] == "identity_review_resolved")
        .collect();
    assert_eq!(decided.len(), 2, "{trail}");
    let events: Vec<&serde_json::Value> = decided.iter().map(|r| &r["event"]).collect();
    assert_eq!(events[0]["resolution"], "linked", "{events:?}");
    assert_eq!(events[0]["idnat"], chosen);
    assert_eq!(events[0]["actor"], "cli");
    assert_eq!(events[1]["resolution"], "dismissed");
    let _ = std::fs::remove_dir_all(&dir);
}
