//! The `vouch` commands as an operator runs them: the real binary, its exit status
//! and output, and what it left in the database, on SQLite and on Postgres.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vouch_store::testing::TestDatabase;
use vouch_store::{DatabaseConfig, Store};

const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

/// The settings a developer's shell may carry: the tests say everything on the
/// command line, so none of these may leak in and point a command elsewhere.
const VOUCH_ENV: [&str; 6] =
    ["VOUCH_DATA", "VOUCH_DATABASE_URL", "VOUCH_CONFIG", "VOUCH_LISTEN", "VOUCH_PUBLIC_URL", "VOUCH_LOG"];

fn example_path(slug: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/programs")).join(format!("{slug}.toml"))
}

fn vouch() -> Command {
    let mut cmd = Command::new(VOUCH);
    for var in VOUCH_ENV {
        cmd.env_remove(var);
    }
    cmd.env("VOUCH_LOG", "warn");
    cmd
}

/// What a finished command said.
struct Ran {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "`{}` should exit with {code}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }

    fn ok(&self) -> &Self {
        self.expect_code(0)
    }

    fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }
}

/// Runs `vouch ARGS...` to completion in `cwd` (so a stray default `./vouch-data`
/// would land there, not in the source tree).
fn run_in(cwd: &Path, args: &[&str]) -> Ran {
    let output = vouch().args(args).current_dir(cwd).stdin(Stdio::null()).output().expect("run vouch");
    Ran {
        what: format!("vouch {}", args.join(" ")),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `vouch` against a test database: `vouch DB_ARGS... ARGS...`.
fn run(db: &TestDatabase, args: &[&str]) -> Ran {
    let mut all = db.cli_args();
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let cwd = std::env::temp_dir();
    run_in(&cwd, &all)
}

/// A running `vouch serve`; killed when dropped, so no test leaves one behind.
struct Served {
    child: Child,
    addr: SocketAddr,
    /// Everything it printed on stdout, the lines before "Vouch is serving" included.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Starts `vouch DB_ARGS... serve --listen 127.0.0.1:0 EXTRA...` and waits
    /// until it says where it listens.
    fn start(db: &TestDatabase, extra: &[&str]) -> Served {
        let mut child = vouch()
            .args(db.cli_args())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vouch serve");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let seen = lines.clone();
        // Reads stdout to the end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let addr = line
                    .strip_prefix("Vouch is serving on http://")
                    .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_string());
                // Recorded before the address is announced, so a caller that
                // reads `output()` right after `start` sees the serving line.
                seen.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let mut served = Served { child, addr: ([0, 0, 0, 0], 0).into(), lines };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => served.addr = addr.parse().expect("a socket address after `Vouch is serving on http://`"),
            Err(_) => panic!("vouch serve never said where it listens; it printed {:?}", served.output()),
        }
        served
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {}", self.child.id());
    }

    /// Waits at most `limit` for the process to end.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// `GET path` with `key` as the bearer: the status and the JSON body.
async fn get(served: &Served, path: &str, key: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = http().get(served.url(path));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let res = req.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// One number (or row, columns joined by `|`) from the database, read with the
/// engine's own shell: the store has no method listing participants or summing
/// every code's clicks, and the API has no such route either.
fn sql(db: &TestDatabase, query: &str) -> String {
    let output = match &db.config {
        DatabaseConfig::Sqlite { dir } => Command::new("sqlite3").arg(dir.join("vouch.db")).arg(query).output(),
        DatabaseConfig::Postgres { url, .. } => {
            Command::new("psql").args([url.as_str(), "-X", "-A", "-t", "-c", query]).output()
        }
    }
    .unwrap_or_else(|e| panic!("running the {} shell (sqlite3 or psql) to read the database: {e}", db.engine));
    assert!(output.status.success(), "{query}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn sql_number(db: &TestDatabase, query: &str) -> i64 {
    let out = sql(db, query);
    out.parse().unwrap_or_else(|_| panic!("{query}: `{out}` is not a number"))
}

/// Counts of what the demo (or anything else) stores: to show a command changed nothing.
async fn snapshot(db: &TestDatabase, store: &Store) -> (Vec<(String, i64)>, i64, i64, usize) {
    let programs = store.programs().await.expect("programs");
    let programs = programs.iter().map(|p| (p.definition.slug().as_str().to_string(), p.version)).collect();
    let participants = store.count_participants().await.expect("count participants");
    let clicks = sql_number(db, "SELECT COUNT(*) FROM clicks");
    let keys = store.api_keys().await.expect("api keys").len();
    (programs, participants, clicks, keys)
}

// ---------------------------------------------------------------------------
// vouch migrate

#[tokio::test]
async fn migrate_exits_0_and_says_the_database_is_up_to_date() {
    for db in TestDatabase::all().await {
        for _ in 0..2 {
            let ran = run(&db, &["migrate"]);
            ran.ok();
            assert!(
                ran.stdout.contains(&format!("The {} database is up to date.", db.engine)),
                "{}: {}",
                db.engine,
                ran.stdout
            );
        }
        let store = db.open().await;
        assert!(store.programs().await.expect("programs").is_empty(), "migrate stores no program");
        store.close().await;
    }
}

// ---------------------------------------------------------------------------
// vouch program apply

#[tokio::test]
async fn program_apply_creates_version_1_then_no_change_then_dry_run_shows_the_diff_then_version_2() {
    let example = example_path("per-technician");
    let example = example.to_str().expect("utf-8 path");
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let store = db.open().await;

        let ran = run(&db, &["program", "apply", "--dry-run", example]);
        ran.ok();
        assert!(ran.stdout.contains("Would create program `per-technician` at version 1"), "{engine}: {}", ran.stdout);
        assert!(store.programs().await.expect("programs").is_empty(), "{engine}: a dry run stores nothing");

        let ran = run(&db, &["program", "apply", example]);
        ran.ok();
        assert!(ran.stdout.contains("Created program `per-technician` at version 1"), "{engine}: {}", ran.stdout);
        assert_eq!(store.program("per-technician").await.expect("stored").version, 1, "{engine}");

        let ran = run(&db, &["program", "apply", example]);
        ran.ok();
        assert!(ran.stdout.contains("No change"), "{engine}: {}", ran.stdout);
        assert_eq!(store.program("per-technician").await.expect("stored").version, 1, "{engine}: no new version");

        let original = std::fs::read_to_string(example).expect("example");
        let old = "landing_url = \"https://example.com/referred\"";
        assert!(original.contains(old), "the example's landing_url changed: update this test");
        let dir = tempfile::tempdir().expect("temp dir");
        let modified = dir.path().join("per-technician.toml");
        std::fs::write(&modified, original.replace(old, "landing_url = \"https://example.com/new-landing\""))
            .expect("write");
        let modified = modified.to_str().expect("utf-8 path");

        let ran = run(&db, &["program", "apply", modified, "--dry-run"]);
        ran.ok();
        assert!(
            ran.stdout.contains("landing_url: https://example.com/referred → https://example.com/new-landing"),
            "{engine}: the dry run names the field with old → new: {}",
            ran.stdout
        );
        assert!(ran.stdout.contains("from version 1 to 2"), "{engine}: {}", ran.stdout);
        assert!(ran.stdout.contains("nothing was stored"), "{engine}: {}", ran.stdout);
        let stored = store.program("per-technician").await.expect("stored");
        assert_eq!(stored.version, 1, "{engine}: a dry run stores nothing");
        assert_eq!(stored.definition.landing_url().to_string(), "https://example.com/referred", "{engine}");

        let ran = run(&db, &["program", "apply", modified]);
        ran.ok();
        assert!(
            ran.stdout.contains("Updated program `per-technician` from version 1 to 2"),
            "{engine}: {}",
            ran.stdout
        );
        assert!(
            ran.stdout.contains("landing_url: https://example.com/referred → https://example.com/new-landing"),
            "{engine}: {}",
            ran.stdout
        );
        let stored = store.program("per-technician").await.expect("stored");
        assert_eq!(stored.version, 2, "{engine}");
        assert_eq!(stored.definition.landing_url().to_string(), "https://example.com/new-landing", "{engine}");
        assert_eq!(store.programs().await.expect("programs").len(), 1, "{engine}");

        // Applying the same modified file again adds no version.
        let ran = run(&db, &["program", "apply", modified]);
        ran.ok();
        assert!(ran.stdout.contains("No change"), "{engine}: {}", ran.stdout);
        assert_eq!(store.program("per-technician").await.expect("stored").version, 2, "{engine}");
        store.close().await;
    }
}

#[tokio::test]
async fn program_apply_takes_all_five_example_programs() {
    for db in TestDatabase::all().await {
        for slug in ["customer-credit", "agent-gift-card", "per-technician", "double-sided", "qualified-lead"] {
            let path = example_path(slug);
            let ran = run(&db, &["program", "apply", path.to_str().expect("utf-8")]);
            ran.ok();
            assert!(ran.stdout.contains(&format!("Created program `{slug}` at version 1")), "{}", ran.stdout);
        }
        let store = db.open().await;
        let slugs: Vec<String> = store
            .programs()
            .await
            .expect("programs")
            .iter()
            .map(|p| p.definition.slug().as_str().to_string())
            .collect();
        assert_eq!(slugs.len(), 5, "{}: {slugs:?}", db.engine);
        store.close().await;
    }
}

/// A valid program whose line numbers the cases below rely on.
const BASE: &str = r#"slug = "bad-input"
name = "Bad input"
currency = "USD"
timezone = "America/Chicago"
landing_url = "https://example.com/landing"
eligible = ["customer"]

[[rewards]]
id = "cash"
beneficiary = "referrer"
trigger = "won"
kind = "cash"
per_unit = "technician"
tiers = [
  { up_to = 30, each = 100_00 },
  { up_to = 60, each = 150_00 },
  { each = 200_00 },
]
approval = "auto"
"#;

/// `BASE` with line `n` (from 1) replaced by `text` (which may hold several lines).
fn base_with_line(n: usize, text: &str) -> String {
    let mut lines: Vec<&str> = BASE.lines().collect();
    lines[n - 1] = text;
    lines.join("\n") + "\n"
}

#[tokio::test]
async fn invalid_program_files_exit_2_naming_file_line_and_field_and_apply_nothing() {
    // (what, file text, line of the error, field named)
    let cases: Vec<(&str, String, usize, &str)> = vec![
        ("unknown top-level field", base_with_line(6, "eligible = [\"customer\"]\ncolour = \"red\""), 7, "`colour`"),
        ("unknown rule field", base_with_line(19, "approval = \"auto\"\nbonus = 5"), 20, "`rewards[0].bonus`"),
        ("negative amount", base_with_line(16, "  { up_to = 60, each = -150_00 },"), 16, "`rewards[0].tiers[1].each`"),
        (
            "overlapping tiers",
            base_with_line(16, "  { up_to = 20, each = 150_00 },"),
            16,
            "`rewards[0].tiers[1].up_to`",
        ),
        ("unknown currency", base_with_line(3, "currency = \"XYZ\""), 3, "`currency`"),
        ("unknown time zone", base_with_line(4, "timezone = \"Mars/Olympus_Mons\""), 4, "`timezone`"),
        ("ftp landing URL", base_with_line(5, "landing_url = \"ftp://example.com/x\""), 5, "`landing_url`"),
        ("javascript landing URL", base_with_line(5, "landing_url = \"javascript:alert(1)\""), 5, "`landing_url`"),
        // A syntax error has no field to name: the file and line say where.
        ("TOML syntax error", base_with_line(2, "name = Bad input"), 2, ""),
        (
            "unknown email placeholder",
            base_with_line(19, "approval = \"auto\"\n\n[emails.welcome]\ntext = \"Your code: {code}\""),
            22,
            "`emails.welcome.text`",
        ),
        (
            "unknown message kind",
            base_with_line(19, "approval = \"auto\"\n\n[emails.reminder]\nsubject = \"Hi\""),
            21,
            "`emails.reminder`",
        ),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let store = db.open().await;

        // The base itself is valid (else the cases prove nothing).
        let base = dir.path().join("base.toml");
        std::fs::write(&base, BASE).expect("write");
        let ran = run(&db, &["program", "apply", "--dry-run", base.to_str().expect("utf-8")]);
        ran.ok();
        assert!(ran.stdout.contains("Would create program `bad-input`"), "{}", ran.stdout);

        for (i, (what, text, line, field)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("case-{i}.toml"));
            std::fs::write(&path, text).expect("write");
            let shown = path.display().to_string();
            for dry_run in [false, true] {
                let mut args = vec!["program", "apply", shown.as_str()];
                if dry_run {
                    args.push("--dry-run");
                }
                let ran = run(&db, &args);
                ran.expect_code(2);
                let at = format!("{shown}:{line}:");
                assert!(ran.stderr.contains(&at), "{engine}, {what}: stderr should say `{at}`:\n{}", ran.stderr);
                assert!(ran.stderr.contains(field), "{engine}, {what}: stderr should name {field}:\n{}", ran.stderr);
                assert!(ran.stderr.contains("Nothing was applied"), "{engine}, {what}:\n{}", ran.stderr);
                assert!(ran.stdout.is_empty(), "{engine}, {what}: nothing on stdout: {}", ran.stdout);
            }
            assert!(store.programs().await.expect("programs").is_empty(), "{engine}, {what}: nothing applied");
        }

        // Every problem of a file is reported at once, each at its own line.
        let several = base_with_line(3, "currency = \"XYZ\"").replace("America/Chicago", "Nowhere/Atlantis");
        let path = dir.path().join("several.toml");
        std::fs::write(&path, several).expect("write");
        let shown = path.display().to_string();
        let ran = run(&db, &["program", "apply", &shown]);
        ran.expect_code(2);
        assert!(ran.stderr.contains(&format!("{shown}:3:")), "{}", ran.stderr);
        assert!(ran.stderr.contains(&format!("{shown}:4:")), "{}", ran.stderr);

        let missing = dir.path().join("no-such-program.toml");
        let shown = missing.display().to_string();
        let ran = run(&db, &["program", "apply", &shown]);
        ran.expect_code(2);
        assert!(ran.stderr.contains(&shown), "{engine}: a missing file is named: {}", ran.stderr);
        assert!(store.programs().await.expect("programs").is_empty(), "{engine}: nothing applied");
        store.close().await;
    }
}

// ---------------------------------------------------------------------------
// vouch api-key

#[tokio::test]
async fn api_key_create_prints_the_key_alone_on_the_last_line_and_it_works_within_its_scopes() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let store = db.open().await;
        run(&db, &["program", "apply", example_path("per-technician").to_str().expect("utf-8")]).ok();
        let served = Served::start(&db, &[]);

        let ran = run(&db, &["api-key", "create", "--name", "ci", "--scope", "participants:write"]);
        ran.ok();
        let scoped = ran.last_line().to_string();
        assert!(
            scoped.starts_with("vouch_") && scoped.len() > 30,
            "{engine}: the last line is the key: {}",
            ran.stdout
        );
        assert!(!scoped.contains(char::is_whitespace), "{engine}: the key is alone on its line: `{scoped}`");
        assert_eq!(ran.stdout.matches(&scoped).count(), 1, "{engine}: the key is printed once: {}", ran.stdout);
        assert!(!ran.stderr.contains(&scoped), "{engine}: the key is not logged");

        // Without programs:read, the programs are out of reach...
        let (status, body) = get(&served, "/api/v1/programs", Some(&scoped)).await;
        assert_eq!(status, 403, "{engine}: {body}");
        assert_eq!(body["code"], "insufficient_scope", "{engine}: {body}");
        // ...while its own scope works.
        let res = http()
            .post(served.url("/api/v1/programs/per-technician/participants"))
            .bearer_auth(&scoped)
            .json(&serde_json::json!({"email": "ada@example.com", "name": "Ada", "kind": "customer"}))
            .send()
            .await
            .expect("enroll");
        assert_eq!(res.status().as_u16(), 201, "{engine}: participants:write enrolls");

        // Without --scope, the key has every scope.
        let ran = run(&db, &["api-key", "create", "--name", "everything"]);
        ran.ok();
        let full = ran.last_line().to_string();
        assert!(full.starts_with("vouch_") && full != scoped, "{engine}: {}", ran.stdout);
        let keys = store.api_keys().await.expect("keys");
        let record = keys.iter().find(|k| k.name == "everything").expect("stored");
        let mut scopes: Vec<String> = record.scopes.iter().map(ToString::to_string).collect();
        let mut all: Vec<String> = vouch_domain::api_key::Scope::all().iter().map(ToString::to_string).collect();
        scopes.sort();
        all.sort();
        assert_eq!(scopes, all, "{engine}: a key made without --scope has every scope");
        let (status, body) = get(&served, "/api/v1/programs", Some(&full)).await;
        assert_eq!(status, 200, "{engine}: {body}");
        assert_eq!(body["items"][0]["slug"], "per-technician", "{engine}: {body}");

        // Several --scope flags add up.
        let ran =
            run(&db, &["api-key", "create", "--name", "reader", "--scope", "programs:read", "--scope", "codes:read"]);
        ran.ok();
        let reader = ran.last_line().to_string();
        assert_eq!(get(&served, "/api/v1/programs", Some(&reader)).await.0, 200, "{engine}");

        // A bad scope or name is refused, and no key is stored.
        for bad in [
            vec!["api-key", "create", "--name", "bad", "--scope", "bogus"],
            vec!["api-key", "create", "--name", "bad", "--scope", "programs:delete"],
            vec!["api-key", "create", "--name", "bad", "--scope", "programs:read", "--scope", "nope:read"],
            vec!["api-key", "create", "--name", "  "],
        ] {
            let ran = run(&db, &bad);
            ran.expect_code(2);
            assert!(!ran.stdout.contains("vouch_"), "{engine}: no key printed: {}", ran.stdout);
        }
        let ran = run(&db, &["api-key", "create", "--name", "bad", "--scope", "bogus"]);
        assert!(ran.stderr.contains("bogus"), "{engine}: the bad scope is named: {}", ran.stderr);
        let keys = store.api_keys().await.expect("keys");
        assert_eq!(keys.len(), 3, "{engine}: refused keys are not stored");
        assert!(keys.iter().all(|k| k.name != "bad"), "{engine}");

        // The list shows names, never keys.
        let ran = run(&db, &["api-key", "list"]);
        ran.ok();
        for name in ["ci", "everything", "reader"] {
            assert!(ran.stdout.contains(&format!("  {name}  ")), "{engine}: `{name}` listed: {}", ran.stdout);
        }
        for key in [&scoped, &full, &reader] {
            assert!(!ran.stdout.contains(key.as_str()), "{engine}: api-key list shows a key: {}", ran.stdout);
        }

        // Revoking: the key stops working at once, the others go on.
        let id = keys.iter().find(|k| k.name == "ci").expect("ci").id.to_string();
        let ran = run(&db, &["api-key", "revoke", &id]);
        ran.ok();
        let (status, body) = get(&served, "/api/v1/programs", Some(&scoped)).await;
        assert_eq!(status, 401, "{engine}: a revoked key: {body}");
        assert_eq!(body["code"], "invalid_api_key", "{engine}: {body}");
        assert_eq!(get(&served, "/api/v1/programs", Some(&full)).await.0, 200, "{engine}: other keys still work");
        let listed = run(&db, &["api-key", "list"]);
        let line = listed.stdout.lines().find(|l| l.contains(&id)).expect("revoked key still listed");
        assert!(line.contains("revoked"), "{engine}: {line}");
        let revoked = store.api_keys().await.expect("keys");
        assert!(revoked.iter().find(|k| k.name == "ci").is_some_and(|k| k.revoked_at.is_some()), "{engine}");

        // An id that is garbage, or names no key, is invalid input.
        for bad in ["garbage", "01900000-0000-7000-8000-000000000000", ""] {
            let ran = run(&db, &["api-key", "revoke", bad]);
            ran.expect_code(2);
        }
        let after = store.api_keys().await.expect("keys");
        assert_eq!(
            after.iter().filter(|k| k.revoked_at.is_some()).count(),
            1,
            "{engine}: a failed revoke revokes nothing"
        );
        assert_eq!(get(&served, "/api/v1/programs", None).await.0, 401, "{engine}: no key, no entry");
        drop(served);
        store.close().await;
    }
}

// ---------------------------------------------------------------------------
// vouch demo, vouch serve --demo

const KINDS: [&str; 6] = ["customer", "customer_staff", "employee", "partner", "influencer", "other"];

#[tokio::test]
async fn demo_fills_an_empty_database_with_programs_participants_of_every_kind_and_weeks_of_clicks() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let ran = run(&db, &["demo"]);
        ran.ok();
        let summary = ran.stdout.lines().find(|l| l.starts_with("Demo data loaded:")).expect("a summary line");
        let numbers: Vec<i64> = summary
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("number"))
            .collect();
        let [programs, participants, clicks] = numbers[..] else { panic!("{engine}: summary `{summary}`") };
        assert_eq!(programs, 5, "{engine}: {summary}");
        assert!(participants >= 50, "{engine}: {summary}");
        assert!(clicks >= 2000, "{engine}: {summary}");
        let key = ran.last_line().to_string();
        assert!(
            key.starts_with("vouch_") && !key.contains(' '),
            "{engine}: the API key is the last line: {}",
            ran.stdout
        );
        let link = ran.stdout.split_whitespace().find(|w| w.contains("/r/")).expect("a referral link").to_string();
        let sample = link.rsplit("/r/").next().expect("code").to_string();

        let store = db.open().await;
        let stored = store.programs().await.expect("programs");
        let mut slugs: Vec<&str> = stored.iter().map(|p| p.definition.slug().as_str()).collect();
        slugs.sort();
        assert_eq!(
            slugs,
            ["agent-gift-card", "customer-credit", "double-sided", "per-technician", "qualified-lead"],
            "{engine}: the five example programs"
        );
        assert!(stored.iter().all(|p| p.version == 1), "{engine}");
        assert_eq!(store.count_participants().await.expect("count"), participants, "{engine}: as the summary says");
        assert!(participants >= 50, "{engine}");
        for kind in KINDS {
            let n = sql_number(&db, &format!("SELECT COUNT(*) FROM participants WHERE kind = '{kind}'"));
            assert!(n >= 1, "{engine}: the demo has no participant of kind {kind}");
        }
        let people = sql_number(&db, "SELECT COUNT(*) FROM clicks WHERE NOT is_bot");
        let bots = sql_number(&db, "SELECT COUNT(*) FROM clicks WHERE is_bot");
        assert_eq!(people, clicks, "{engine}: the summary counts the clicks by people");
        assert!(bots > 0, "{engine}: a few bot visits, told apart");
        let counted = sql_number(&db, "SELECT SUM(clicks) FROM code_click_stats");
        assert_eq!(counted, people, "{engine}: the per-code counters agree with the clicks");
        let days = sql_number(&db, "SELECT (MAX(occurred_at) - MIN(occurred_at)) / 86400000000 FROM clicks");
        assert!(days >= 21, "{engine}: clicks spread over weeks, not {days} days");
        let weeks = sql_number(&db, "SELECT COUNT(DISTINCT occurred_at / 604800000000) FROM clicks");
        assert!(weeks >= 4, "{engine}: clicks in {weeks} distinct weeks");
        let channels = sql_number(&db, "SELECT COUNT(DISTINCT channel) FROM clicks WHERE NOT is_bot");
        assert!(channels >= 3, "{engine}: clicks over {channels} channels");
        let codes_clicked = sql_number(&db, "SELECT COUNT(DISTINCT code) FROM code_click_stats WHERE clicks > 0");
        assert!(codes_clicked >= 50, "{engine}: {codes_clicked} codes have clicks");

        // The demo key and sample link work against a server on this database.
        let served = Served::start(&db, &[]);
        let (status, body) = get(&served, "/api/v1/programs", Some(&key)).await;
        assert_eq!(status, 200, "{engine}: {body}");
        assert_eq!(body["items"].as_array().map(Vec::len), Some(5), "{engine}");
        let (status, body) = get(&served, &format!("/api/v1/codes/{sample}/clicks"), Some(&key)).await;
        assert_eq!(status, 200, "{engine}: {body}");
        assert!(body["count"].as_i64().is_some_and(|n| n > 0), "{engine}: the sample code has clicks: {body}");
        let res = http().get(served.url(&format!("/r/{sample}"))).send().await.expect("follow link");
        assert_eq!(res.status().as_u16(), 302, "{engine}: the sample link redirects");
        drop(served);
        store.close().await;
    }
}

#[tokio::test]
async fn demo_on_a_database_with_data_adds_nothing_and_says_so() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        run(&db, &["demo"]).ok();
        let store = db.open().await;
        let before = snapshot(&db, &store).await;

        let ran = run(&db, &["demo"]);
        ran.ok();
        assert!(ran.stdout.contains("already has data"), "{engine}: {}", ran.stdout);
        assert!(ran.stdout.contains("added nothing"), "{engine}: {}", ran.stdout);
        assert!(!ran.stdout.contains("vouch_"), "{engine}: no new key: {}", ran.stdout);
        assert_eq!(snapshot(&db, &store).await, before, "{engine}: a second demo changes nothing");

        // `serve --demo` says the same, adds nothing, and serves.
        let served = Served::start(&db, &["--demo"]);
        let said = served.output().join("\n");
        assert!(said.contains("already has data") && said.contains("added nothing"), "{engine}: {said}");
        assert_eq!(get(&served, "/healthz", None).await.0, 200, "{engine}");
        drop(served);
        assert_eq!(snapshot(&db, &store).await, before, "{engine}: serve --demo changes nothing");
        store.close().await;
    }
}

#[tokio::test]
async fn demo_counts_any_program_as_data_and_adds_nothing() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        run(&db, &["program", "apply", example_path("double-sided").to_str().expect("utf-8")]).ok();
        let store = db.open().await;
        let before = snapshot(&db, &store).await;

        let served = Served::start(&db, &["--demo"]);
        let said = served.output().join("\n");
        assert!(said.contains("already has data"), "{engine}: {said}");
        drop(served);
        let ran = run(&db, &["demo"]);
        ran.ok();
        assert!(ran.stdout.contains("already has data"), "{engine}: {}", ran.stdout);
        let after = snapshot(&db, &store).await;
        assert_eq!(after, before, "{engine}");
        assert_eq!(after.0, [("double-sided".to_string(), 1)], "{engine}: only the program applied");
        assert_eq!((after.1, after.2, after.3), (0, 0, 0), "{engine}: no demo participants, clicks or keys");
        store.close().await;
    }
}

#[tokio::test]
async fn serve_demo_on_an_empty_database_loads_the_demo_and_prints_a_working_key() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let served = Served::start(&db, &["--demo"]);
        let said = served.output();
        let loaded = said.iter().any(|l| l.starts_with("Demo data loaded: 5 programs"));
        assert!(loaded, "{engine}: {said:?}");
        // The key is the last line before "Vouch is serving".
        let at = said.iter().position(|l| l.starts_with("Vouch is serving")).expect("serving line");
        let key = said[at - 1].clone();
        assert!(key.starts_with("vouch_"), "{engine}: {said:?}");
        let (status, body) = get(&served, "/api/v1/programs", Some(&key)).await;
        assert_eq!(status, 200, "{engine}: {body}");
        assert_eq!(body["items"].as_array().map(Vec::len), Some(5), "{engine}");
        // The links it shows are on this server's address.
        let link = said.iter().find(|l| l.contains("/r/")).expect("a referral link");
        assert!(link.contains(&served.addr.to_string()), "{engine}: {link}");
    }
}

// ---------------------------------------------------------------------------
// vouch serve: signals

#[tokio::test]
async fn serve_stops_gracefully_with_status_0_on_sigterm_and_sigint() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        for signal in ["TERM", "INT"] {
            // At once, as a supervisor may: the signal arrives right after the
            // server said it is serving.
            let mut served = Served::start(&db, &[]);
            served.signal(signal);
            let status = served.wait(Duration::from_secs(10));
            assert!(
                status.is_some_and(|s| s.success()),
                "{engine}: SIG{signal} right after start should end `vouch serve` with status 0, got {status:?}"
            );

            // After serving a request and following a link.
            let mut served = Served::start(&db, &[]);
            assert_eq!(get(&served, "/healthz", None).await.0, 200, "{engine}");
            let started = Instant::now();
            served.signal(signal);
            let status = served.wait(Duration::from_secs(10));
            assert!(status.is_some_and(|s| s.success()), "{engine}: SIG{signal}: {status:?}");
            assert!(started.elapsed() < Duration::from_secs(5), "{engine}: took {:?}", started.elapsed());
        }
    }
}

/// A shell supervisor signals `vouch serve` the instant it reads the "serving"
/// line (bash's `kill` is a builtin: no fork between the two). The process must
/// already be listening for the signal then, and stop with status 0 rather than
/// die of it.
#[tokio::test]
async fn serve_stops_gracefully_when_signalled_the_moment_it_says_it_is_serving() {
    const SCRIPT: &str = r#"
for i in 1 2 3 4 5 6 7 8; do
  coproc SERVER { exec "$VOUCH_BIN" "$@" serve --listen 127.0.0.1:0; }
  pid=$SERVER_PID
  IFS= read -r line <&"${SERVER[0]}"
  kill -"$SIGNAL" "$pid"
  wait "$pid"
  echo "exit $? after: $line"
done
"#;
    for db in TestDatabase::all().await {
        for signal in ["TERM", "INT"] {
            let mut cmd = Command::new("bash");
            for var in VOUCH_ENV {
                cmd.env_remove(var);
            }
            let output = cmd
                .env("VOUCH_LOG", "warn")
                .env("VOUCH_BIN", VOUCH)
                .env("SIGNAL", signal)
                .arg("-c")
                .arg(SCRIPT)
                .arg("bash")
                .args(db.cli_args())
                .current_dir(std::env::temp_dir())
                .stdin(Stdio::null())
                .output()
                .expect("run bash");
            let said = String::from_utf8_lossy(&output.stdout);
            let exits: Vec<&str> = said.lines().filter(|l| l.starts_with("exit ")).collect();
            assert_eq!(exits.len(), 8, "{}: {said}", db.engine);
            for line in exits {
                assert!(
                    line.starts_with("exit 0 after: Vouch is serving on http://"),
                    "{}: SIG{signal} right after the serving line must stop vouch with status 0 \
                     (143 or 130 means the signal killed it):\n{said}",
                    db.engine
                );
            }
        }
    }
}

#[tokio::test]
async fn serve_drains_clicks_on_sigterm() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        run(&db, &["program", "apply", example_path("per-technician").to_str().expect("utf-8")]).ok();
        let key = run(&db, &["api-key", "create", "--name", "t"]).last_line().to_string();
        let mut served = Served::start(&db, &[]);
        let res = http()
            .post(served.url("/api/v1/programs/per-technician/participants"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"email": "grace@example.com", "name": "Grace", "kind": "customer"}))
            .send()
            .await
            .expect("enroll");
        let body: serde_json::Value = res.json().await.expect("json");
        let code = body["code"].as_str().expect("code").to_string();
        for _ in 0..20 {
            let res = http().get(served.url(&format!("/r/{code}"))).send().await.expect("follow");
            assert_eq!(res.status().as_u16(), 302, "{engine}");
        }
        served.signal("TERM");
        assert!(served.wait(Duration::from_secs(10)).is_some_and(|s| s.success()), "{engine}");
        drop(served);
        let n = sql_number(&db, &format!("SELECT COUNT(*) FROM clicks WHERE code = '{code}'"));
        assert_eq!(n, 20, "{engine}: every answered click is stored after a graceful stop");
    }
}

// ---------------------------------------------------------------------------
// Invalid settings

#[tokio::test]
async fn a_database_url_that_is_not_postgres_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        vec!["--database-url", "mysql://x", "migrate"],
        vec!["--database-url", "mysql://x", "program", "apply", "whatever.toml"],
        vec!["--database-url", "mysql://x", "api-key", "list"],
        vec!["--database-url", "mysql://x", "demo"],
        vec!["--database-url", "mysql://x", "serve", "--listen", "127.0.0.1:0"],
        vec!["--database-url", "http://localhost/db", "migrate"],
    ] {
        let ran = run_in(dir.path(), &args);
        ran.expect_code(2);
        assert!(ran.stderr.contains("postgres://"), "the error says what is expected: {}", ran.stderr);
    }
    assert!(!dir.path().join("vouch-data").exists(), "no default database was made on the way");
}

#[tokio::test]
async fn a_public_url_that_is_not_an_http_url_exits_2() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        for bad in ["notaurl", "ftp://example.com/", "javascript:alert(1)", "http://"] {
            let ran = run(&db, &["serve", "--listen", "127.0.0.1:0", "--public-url", bad]);
            ran.expect_code(2);
            assert!(ran.stderr.contains("--public-url"), "{engine}, {bad}: {}", ran.stderr);
            assert!(!ran.stdout.contains("Vouch is serving"), "{engine}, {bad}: {}", ran.stdout);

            let ran = run(&db, &["demo", "--public-url", bad]);
            ran.expect_code(2);
        }
        let store = db.open().await;
        assert!(store.programs().await.expect("programs").is_empty(), "{engine}: a refused demo loads nothing");
        assert_eq!(store.count_participants().await.expect("count"), 0, "{engine}");
        store.close().await;
    }
}

#[tokio::test]
async fn unknown_commands_and_flags_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [vec!["frobnicate"], vec!["serve", "--listen", "not-an-address"], vec!["program", "apply"]] {
        run_in(dir.path(), &args).expect_code(2);
    }
}
