//! `vouch import customers FILE.csv` as an operator runs it, on SQLite and on
//! Postgres: what it prints, its exit status, and what the registry then holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vouch_domain::customer::KnownBy;
use vouch_store::Store;
use vouch_store::testing::TestDatabase;

use crate::VOUCH;

/// What a finished `vouch` said.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

/// `vouch DB_ARGS... import customers FILE`, with no `VOUCH_*` setting of the
/// developer's shell leaking in.
fn import(db: &TestDatabase, file: &Path) -> Ran {
    let mut cmd = Command::new(VOUCH);
    for var in ["VOUCH_DATA", "VOUCH_DATABASE_URL", "VOUCH_CONFIG", "VOUCH_LOG"] {
        cmd.env_remove(var);
    }
    let output = cmd
        .env("VOUCH_LOG", "warn")
        .args(db.cli_args())
        .args(["import", "customers"])
        .arg(file)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run vouch import customers");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A CSV file in a fresh folder, kept until the returned guard drops.
fn csv_file(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write csv");
    (dir, path)
}

async fn count(db: &TestDatabase) -> i64 {
    let store = db.open().await;
    let n = store.count_customers().await.expect("count customers");
    store.close().await;
    n
}

async fn known(store: &Store, email: Option<&str>, domain: Option<&str>, external_id: Option<&str>) -> Option<KnownBy> {
    store.is_known_customer(email, domain, external_id).await.expect("is_known_customer")
}

const GOOD: &str = "email,domain,external_id
Jane.Doe@Acme.com,acme.com,cus_001
,globex.example,
,,crm-42
bob@initech.example,,
";

#[tokio::test]
async fn a_good_file_is_imported_and_every_identifier_becomes_known() {
    for db in TestDatabase::all().await {
        let (_dir, path) = csv_file("customers.csv", GOOD);
        let ran = import(&db, &path);
        assert_eq!(ran.code, Some(0), "{}: {ran}", db.engine);
        assert_eq!(ran.stdout.trim(), "Imported 4 customers (0 already known)", "{}: {ran}", db.engine);
        let store = db.open().await;
        assert_eq!(store.count_customers().await.unwrap(), 4, "{}", db.engine);
        let e = db.engine;
        assert_eq!(known(&store, Some("jane.doe@acme.com"), None, None).await, Some(KnownBy::Email), "{e}");
        assert_eq!(known(&store, None, Some("globex.example"), None).await, Some(KnownBy::Domain), "{e}");
        assert_eq!(known(&store, None, None, Some("crm-42")).await, Some(KnownBy::ExternalId), "{e}");
        assert_eq!(known(&store, None, None, Some("cus_001")).await, Some(KnownBy::ExternalId), "{e}");
        assert_eq!(known(&store, Some("bob@initech.example"), None, None).await, Some(KnownBy::Email), "{e}");
        assert_eq!(known(&store, Some("someone@else.example"), Some("else.example"), None).await, None, "{e}");
        store.close().await;
    }
}

#[tokio::test]
async fn importing_the_same_file_again_adds_nothing() {
    for db in TestDatabase::all().await {
        let (_dir, path) = csv_file("customers.csv", GOOD);
        assert_eq!(import(&db, &path).code, Some(0), "{}", db.engine);
        let again = import(&db, &path);
        assert_eq!(again.code, Some(0), "{}: {again}", db.engine);
        assert_eq!(again.stdout.trim(), "Imported 0 customers (4 already known)", "{}: {again}", db.engine);
        // The same people written differently, with Windows line ends, plus one new.
        let (_dir2, other) = csv_file(
            "export.csv",
            "email,domain,external_id\r\njane.doe@ACME.COM,www.Acme.com,cus_001\r\n,GLOBEX.example,\r\nnew@initech.example,initech.example,\r\n",
        );
        let ran = import(&db, &other);
        assert_eq!(ran.code, Some(0), "{}: {ran}", db.engine);
        assert_eq!(ran.stdout.trim(), "Imported 1 customers (2 already known)", "{}: {ran}", db.engine);
        assert_eq!(count(&db).await, 5, "{}", db.engine);
    }
}

#[tokio::test]
async fn a_file_with_the_wrong_header_exits_2_naming_the_header_and_imports_nothing() {
    for db in TestDatabase::all().await {
        for (content, says) in [
            ("email,domain,external_id,name\njane@acme.com,acme.com,1,Jane\n", "unknown `name`"),
            ("email,domain\njane@acme.com,acme.com\n", "missing external_id"),
            ("Email,Domain,External_ID\njane@acme.com,acme.com,1\n", "missing email, domain, external_id"),
            ("domain,email,external_id\nacme.com,jane@acme.com,1\n", "another order"),
            ("jane@acme.com,acme.com,1\n", "the header is `jane@acme.com,acme.com,1`"),
            ("", "the header is ``"),
        ] {
            let (_dir, path) = csv_file("customers.csv", content);
            let ran = import(&db, &path);
            assert_eq!(ran.code, Some(2), "{}: {content:?}: {ran}", db.engine);
            let place = format!("{}:1: the header is", path.display());
            assert!(ran.stderr.contains(&place), "{}: names file and header: {ran}", db.engine);
            assert!(ran.stderr.contains("email,domain,external_id"), "{}: shows the expected header: {ran}", db.engine);
            assert!(ran.stderr.contains(says), "{}: {content:?} should say {says:?}: {ran}", db.engine);
            assert!(ran.stderr.contains("Nothing was imported."), "{}: {ran}", db.engine);
        }
        assert_eq!(count(&db).await, 0, "{}: nothing imported", db.engine);
    }
}

#[tokio::test]
async fn bad_rows_exit_2_listing_file_line_and_column_and_nothing_is_imported() {
    for db in TestDatabase::all().await {
        let content = "email,domain,external_id
jane@acme.com,acme.com,cus_1
bob@globex.example,,
not-an-email,,cus_3
\"quoted@example.org\",\"a
multi-line value\",
ok@example.org,https://example.org,
fine@example.org,,
too,many,fields,here
";
        let (_dir, path) = csv_file("customers.csv", content);
        let ran = import(&db, &path);
        assert_eq!(ran.code, Some(2), "{}: {ran}", db.engine);
        let file = path.display().to_string();
        for expected in [
            format!("{file}:4: email: `not-an-email` is not a valid email address"),
            format!("{file}:5: domain:"),
            format!("{file}:7: domain: `https://example.org` is not a valid company domain"),
            format!("{file}:9: the row has 4 fields"),
        ] {
            assert!(ran.stderr.contains(&expected), "{}: expected {expected:?} in: {ran}", db.engine);
        }
        assert!(
            !ran.stderr.contains(":2:") && !ran.stderr.contains(":8:"),
            "{}: good lines not listed: {ran}",
            db.engine
        );
        assert!(ran.stderr.contains("Nothing was imported."), "{}: {ran}", db.engine);
        assert!(ran.stdout.is_empty(), "{}: {ran}", db.engine);
        assert_eq!(count(&db).await, 0, "{}: all or nothing", db.engine);
    }
}

#[tokio::test]
async fn empty_rows_are_skipped_and_counted() {
    for db in TestDatabase::all().await {
        let content = "email,domain,external_id
jane@acme.com,,

,,
bob@acme.com,acme.com,
  ,  ,  
,,
";
        let (_dir, path) = csv_file("customers.csv", content);
        let ran = import(&db, &path);
        assert_eq!(ran.code, Some(0), "{}: {ran}", db.engine);
        let lines: Vec<&str> = ran.stdout.lines().collect();
        assert_eq!(lines, ["Imported 2 customers (0 already known)", "Skipped 3 empty rows."], "{}: {ran}", db.engine);
        assert_eq!(count(&db).await, 2, "{}", db.engine);
        // A file with a header and nothing else imports nothing, successfully.
        let (_dir2, header_only) = csv_file("empty.csv", "email,domain,external_id\n");
        let ran = import(&db, &header_only);
        assert_eq!(ran.code, Some(0), "{}: {ran}", db.engine);
        assert_eq!(ran.stdout.trim(), "Imported 0 customers (0 already known)", "{}: {ran}", db.engine);
    }
}

#[tokio::test]
async fn a_missing_file_exits_2() {
    for db in TestDatabase::all().await {
        let path = std::env::temp_dir().join(format!("no-such-{}.csv", uuid::Uuid::now_v7().simple()));
        let ran = import(&db, &path);
        assert_eq!(ran.code, Some(2), "{}: {ran}", db.engine);
        assert!(ran.stderr.contains(&format!("{}: cannot read", path.display())), "{}: {ran}", db.engine);
    }
}

#[tokio::test]
async fn a_file_of_ten_thousand_rows_is_imported_at_once_and_again_harmlessly() {
    for db in TestDatabase::all().await {
        let mut content = String::from("email,domain,external_id\n");
        for i in 0..10_000 {
            // Every fifth row names its company, shared by 50 people; the domain is stored once.
            let domain = if i % 5 == 0 { format!("company{}.example", i / 50) } else { String::new() };
            content.push_str(&format!("person{i}@company{}.example,{domain},ext-{i}\n", i / 50));
        }
        let (_dir, path) = csv_file("big.csv", &content);
        let ran = import(&db, &path);
        assert_eq!(ran.code, Some(0), "{}: {ran}", db.engine);
        assert_eq!(ran.stdout.trim(), "Imported 10000 customers (0 already known)", "{}: {ran}", db.engine);
        let again = import(&db, &path);
        assert_eq!(again.stdout.trim(), "Imported 0 customers (10000 already known)", "{}: {again}", db.engine);
        let store = db.open().await;
        assert_eq!(store.count_customers().await.unwrap(), 10_000, "{}", db.engine);
        let e = db.engine;
        assert_eq!(known(&store, Some("person9999@company199.example"), None, None).await, Some(KnownBy::Email), "{e}");
        assert_eq!(known(&store, None, Some("company199.example"), None).await, Some(KnownBy::Domain), "{e}");
        store.close().await;
        // One bad row near the end refuses the whole of a new file.
        let mut bad = String::from("email,domain,external_id\n");
        for i in 0..10_000 {
            let email = if i == 9_998 { "broken@".to_string() } else { format!("other{i}@example.org") };
            bad.push_str(&format!("{email},,\n"));
        }
        let (_dir2, bad_path) = csv_file("bad.csv", &bad);
        let ran = import(&db, &bad_path);
        assert_eq!(ran.code, Some(2), "{}: {ran}", db.engine);
        assert!(ran.stderr.contains(&format!("{}:10000: email:", bad_path.display())), "{}: {ran}", db.engine);
        assert_eq!(count(&db).await, 10_000, "{}: nothing of the bad file imported", db.engine);
    }
}
