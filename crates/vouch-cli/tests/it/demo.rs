//! `vouch demo`'s referrals: made through attribution, at every stage, rejected
//! for each reason, some in review; `--scale N` makes N; a second demo adds
//! nothing. On SQLite and on Postgres.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use serde_json::Value;
use vouch_domain::referral::{Stage, Status};
use vouch_store::testing::TestDatabase;
use vouch_store::{ReferralEventKind, ReferralFilter};

use crate::{Server, VOUCH, client};

const STAGES: [&str; 6] = ["new", "contacted", "qualified", "won", "lost", "churned"];
const REASONS: [&str; 5] = ["existing_customer", "already_referred", "self_referral", "same_team", "ineligible"];

/// `vouch DB_ARGS... ARGS...` to completion; answers its stdout after checking it succeeded.
fn demo(db: &TestDatabase, args: &[&str]) -> String {
    let mut cmd = Command::new(VOUCH);
    for var in ["VOUCH_DATA", "VOUCH_DATABASE_URL", "VOUCH_CONFIG", "VOUCH_LISTEN", "VOUCH_PUBLIC_URL"] {
        cmd.env_remove(var);
    }
    let output = cmd
        .env("VOUCH_LOG", "warn")
        .args(db.cli_args())
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run vouch");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{}: vouch {args:?} failed\n--- stdout:\n{stdout}\n--- stderr:\n{}",
        db.engine,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Every referral the API lists for `query`, page after page.
async fn list(server: &Server, key: &str, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url("/api/v1/referrals?limit=500");
        if !query.is_empty() {
            url.push_str(&format!("&{query}"));
        }
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let res = client().get(url).bearer_auth(key).send().await.expect("list referrals");
        assert_eq!(res.status().as_u16(), 200, "GET /api/v1/referrals?{query}");
        let body: Value = res.json().await.expect("json");
        items.extend(body["items"].as_array().expect("items").iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return items,
        }
    }
}

/// The number after `label` on the summary line that starts with it.
fn summary_number(stdout: &str, line_start: &str, label: &str) -> usize {
    let line = stdout.lines().find(|l| l.trim_start().starts_with(line_start)).unwrap_or_else(|| {
        panic!("no line starting with `{line_start}` in\n{stdout}");
    });
    let after = line.split(label).nth(1).unwrap_or_else(|| panic!("no `{label}` in `{line}`"));
    after.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()).expect("a number").parse().expect("number")
}

#[tokio::test]
async fn demo_grows_referrals_at_every_stage_rejected_for_each_reason_and_some_in_review() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let stdout = demo(&db, &["demo"]);
        let key = stdout.lines().last().expect("the key is the last line").to_string();
        assert!(key.starts_with("vouch_"), "{engine}: {stdout}");
        let total = summary_number(&stdout, "Referrals:", "Referrals:");
        assert_eq!(total, 300, "{engine}: a few hundred referrals by default: {stdout}");
        assert!(summary_number(&stdout, "Customer registry:", "registry:") >= 24, "{engine}: {stdout}");

        let server = Server::start(&db.cli_args());
        let all = list(&server, &key, "").await;
        assert_eq!(all.len(), total, "{engine}: the API lists as many as the summary says");

        // Every stage, each count as the summary printed it.
        for stage in STAGES {
            let active = list(&server, &key, &format!("stage={stage}&status=active")).await;
            assert!(!active.is_empty(), "{engine}: no active referral at `{stage}`");
            let at_stage = list(&server, &key, &format!("stage={stage}")).await;
            assert!(at_stage.iter().all(|r| r["stage"] == stage), "{engine}");
            assert_eq!(
                at_stage.len(),
                summary_number(&stdout, "by stage:", &format!(" {stage} ")),
                "{engine}: {stage}"
            );
        }

        // A rejection for each reason, explained, none of them worked by sales.
        let rejected = list(&server, &key, "status=rejected").await;
        let reasons: BTreeSet<&str> = rejected.iter().filter_map(|r| r["rejection_reason"].as_str()).collect();
        for reason in REASONS {
            assert!(reasons.contains(reason), "{engine}: no referral rejected for `{reason}`: {reasons:?}");
        }
        for r in &rejected {
            assert_eq!(r["stage"], "new", "{engine}: a rejected referral is not worked: {r}");
            assert!(r["explanation"].as_str().is_some_and(|e| e.starts_with("Rejected (")), "{engine}: {r}");
        }
        assert_eq!(rejected.len(), summary_number(&stdout, "by status:", " rejected "), "{engine}");

        // Some in review, for a disposable address and for a burst of leads.
        let review = list(&server, &key, "status=in_review").await;
        let signals: BTreeSet<&str> = review
            .iter()
            .flat_map(|r| r["review_signals"].as_array().expect("signals"))
            .filter_map(Value::as_str)
            .collect();
        assert!(signals.contains("disposable_email") && signals.contains("burst"), "{engine}: {signals:?}");
        drop(server);

        // Staff (`demo`) moved them, backdated over weeks; some have a sales rep.
        let store = db.open().await;
        let filter = ReferralFilter { stage: Some(Stage::Churned), status: Some(Status::Active), ..Default::default() };
        let churned = store.referrals(&filter, None, 1).await.expect("referrals");
        let churned = store.referral(churned[0].id).await.expect("referral");
        let moves: Vec<_> =
            churned.timeline.iter().filter(|e| e.kind == ReferralEventKind::Stage).map(|e| e.stage_to).collect();
        assert_eq!(moves.last(), Some(&Some(Stage::Churned)), "{engine}: {moves:?}");
        assert!(moves.contains(&Some(Stage::Won)), "{engine}: churned after won: {moves:?}");
        for e in churned.timeline.iter().filter(|e| e.kind == ReferralEventKind::Stage) {
            assert_eq!(e.actor, "demo", "{engine}");
            assert!(e.occurred_at >= churned.created_at, "{engine}: moves after creation");
        }
        let now = jiff::Timestamp::now();
        let weeks_ago = now.checked_sub(jiff::SignedDuration::from_hours(21 * 24)).expect("time");
        let old = ReferralFilter { created_to: Some(weeks_ago), ..Default::default() };
        assert!(!store.referrals(&old, None, 1).await.expect("old").is_empty(), "{engine}: referrals weeks old");
        let recent = ReferralFilter { created_from: Some(weeks_ago), ..Default::default() };
        assert!(!store.referrals(&recent, None, 1).await.expect("recent").is_empty(), "{engine}: recent ones too");
        let assigned = all.iter().filter(|r| r["assignee"].is_string()).count();
        assert!(assigned > 0 && assigned < total, "{engine}: a few assigned to sales reps: {assigned}");
        assert!(store.count_customers().await.expect("customers") >= 24, "{engine}: a registry of a few dozen");
        store.close().await;
    }
}

#[tokio::test]
async fn demo_scale_makes_that_many_referrals_and_a_second_demo_adds_nothing() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let stdout = demo(&db, &["demo", "--scale", "500"]);
        assert_eq!(summary_number(&stdout, "Referrals:", "Referrals:"), 500, "{engine}: {stdout}");
        assert!(!stdout.contains("not generate"), "{engine}: no note about missing referrals: {stdout}");
        let store = db.open().await;
        assert_eq!(store.count_referrals().await.expect("count"), 500, "{engine}");
        let customers = store.count_customers().await.expect("customers");

        let again = demo(&db, &["demo", "--scale", "500"]);
        assert!(again.contains("already has data") && again.contains("added nothing"), "{engine}: {again}");
        assert_eq!(store.count_referrals().await.expect("count"), 500, "{engine}: a second demo adds nothing");
        assert_eq!(store.count_customers().await.expect("customers"), customers, "{engine}");
        store.close().await;
    }
}
