//! `vouch program simulate`: the real binary replaying a ledger built through
//! the API under a draft, printing the version in force beside it per month
//! and per referrer, storing nothing; and an invalid file refused with exit 2.

use std::process::{Command, Stdio};

use serde_json::json;
use vouch_store::testing::TestDatabase;

use crate::{Server, api_key, apply, client, enroll, example};

const TECH: &str = "per-technician";

fn uniq() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_string()
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `vouch DB_ARGS... ARGS...`, with nothing from the developer's shell.
fn run(db: &TestDatabase, args: &[&str]) -> Ran {
    let mut cmd = Command::new(crate::VOUCH);
    for var in ["VOUCH_DATA", "VOUCH_DATABASE_URL", "VOUCH_CONFIG"] {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(db.cli_args())
        .args(args)
        .env("VOUCH_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run vouch");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn post(server: &Server, key: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let res = client()
        .post(server.url(&format!("/api/v1{path}")))
        .bearer_auth(key)
        .header("Idempotency-Key", uniq())
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = res.status();
    let text = res.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).expect("json")
}

/// A lead for `code` won with `units` on `contract_date`.
async fn won(server: &Server, key: &str, code: &str, units: u32, contract_date: &str) {
    let u = uniq();
    let prospect = json!({"email": format!("lead.{u}@lead-{u}.example")});
    let lead = json!({"referrer_code": code, "prospect": prospect, "consent": true});
    let referral = post(server, key, &format!("/programs/{TECH}/leads"), lead).await;
    let event = json!({
        "type": "won", "program": TECH, "occurred_at": format!("{contract_date}T15:00:00Z"),
        "referral_id": referral["id"], "contract_date": contract_date, "units": units,
    });
    post(server, key, "/events", event).await;
}

/// The cells of the first stdout line that starts with `first`.
fn cells(stdout: &str, first: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no line for {first}:\n{stdout}"));
    line.split_whitespace().map(str::to_owned).collect()
}

#[tokio::test]
async fn program_simulate_prints_both_versions_per_month_and_referrer_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let store = db.open().await;
        apply(&store, &example(TECH)).await;
        let key = api_key(&store).await;
        let server = Server::start(&db.cli_args());
        let u = uniq();
        let (ann, ben) = (format!("ann.{u}@ann-{u}.example"), format!("ben.{u}@ben-{u}.example"));
        let ann_code = enroll(&server, &key, TECH, &ann).await;
        let ben_code = enroll(&server, &key, TECH, &ben).await;
        won(&server, &key, &ann_code, 20, "2026-03-01").await;
        won(&server, &key, &ann_code, 25, "2026-05-01").await;
        won(&server, &key, &ben_code, 8, "2026-05-20").await;
        drop(server);

        // The first tier ends at 10 instead of 30: Ann's 25 follow 20 and earn $150 each.
        let draft = example(TECH).replace("{ up_to = 30, each = 100_00 }", "{ up_to = 10, each = 100_00 }");
        let path = dir.path().join(format!("draft-{engine}.toml"));
        std::fs::write(&path, &draft).expect("write");
        let shown = path.to_str().expect("utf-8");
        let ran = run(&db, &["program", "simulate", shown, "--since", "2026-01-01", "--until", "2026-12-31"]);
        assert_eq!(ran.code, Some(0), "{engine}: {}\n{}", ran.stdout, ran.stderr);
        let out = &ran.stdout;
        assert_eq!(cells(out, "month"), ["month", "current", "draft", "difference"], "{engine}:\n{out}");
        assert_eq!(cells(out, "2026-03"), ["2026-03", "$2,000", "$2,000", "$0"], "{engine}:\n{out}");
        assert_eq!(cells(out, "2026-05"), ["2026-05", "$3,300", "$4,550", "+$1,250"], "{engine}:\n{out}");
        assert_eq!(cells(out, &ann), [ann.as_str(), "$4,500", "$5,750", "+$1,250"], "{engine}:\n{out}");
        assert_eq!(cells(out, &ben), [ben.as_str(), "$800", "$800", "$0"], "{engine}:\n{out}");
        assert_eq!(cells(out, "total"), ["total", "$5,300", "$6,550", "+$1,250"], "{engine}:\n{out}");

        // The draft was not stored.
        assert_eq!(store.program(TECH).await.expect("program").version, 1, "{engine}");
        store.close().await;
    }
}

#[tokio::test]
async fn program_simulate_refuses_a_file_that_does_not_validate_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let store = db.open().await;
        apply(&store, &example(TECH)).await;

        let bad = example(TECH).replace("{ each = 200_00 }", "{ each = -200_00 }");
        let line = bad.lines().position(|l| l.contains("-200_00")).expect("the edit") + 1;
        let path = dir.path().join(format!("bad-{engine}.toml"));
        std::fs::write(&path, &bad).expect("write");
        let shown = path.to_str().expect("utf-8");
        let ran = run(&db, &["program", "simulate", shown, "--since", "2026-01-01"]);
        assert_eq!(ran.code, Some(2), "{engine}: {}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stderr.contains(&format!("{shown}:{line}:")), "{engine}: file and line:\n{}", ran.stderr);
        assert!(ran.stderr.contains("`rewards[0].tiers[2].each`"), "{engine}: the field:\n{}", ran.stderr);
        assert!(ran.stderr.contains("Nothing was simulated."), "{engine}:\n{}", ran.stderr);
        assert!(ran.stdout.is_empty(), "{engine}: nothing on stdout: {}", ran.stdout);

        // A valid file for a program that does not exist, and a date that is not one.
        let other = example(TECH).replace("slug = \"per-technician\"", "slug = \"not-applied\"");
        let path = dir.path().join(format!("other-{engine}.toml"));
        std::fs::write(&path, &other).expect("write");
        let ran = run(&db, &["program", "simulate", path.to_str().expect("utf-8"), "--since", "2026-01-01"]);
        assert_eq!(ran.code, Some(2), "{engine}: {}", ran.stderr);
        assert!(ran.stderr.contains("no program `not-applied`"), "{engine}: {}", ran.stderr);
        let ran = run(&db, &["program", "simulate", shown, "--since", "2026-02-30"]);
        assert_eq!(ran.code, Some(2), "{engine}: {}", ran.stderr);

        // Nothing changed.
        let programs = store.programs().await.expect("programs");
        assert_eq!(programs.len(), 1, "{engine}");
        assert_eq!(programs[0].version, 1, "{engine}");
        store.close().await;
    }
}
