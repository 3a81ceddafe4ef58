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

/// Every reward a `--scale` demo holds, page after page.
async fn all_rewards(store: &vouch_store::Store) -> Vec<vouch_store::RewardRecord> {
    let mut all: Vec<vouch_store::RewardRecord> = Vec::new();
    loop {
        let page =
            store.rewards(&vouch_store::RewardFilter::default(), all.last().map(|r| r.id), 500).await.expect("rewards");
        let done = page.len() < 500;
        all.extend(page);
        if done {
            return all;
        }
    }
}

/// `--scale` writes in bulk what the per-referral paths would have: the won
/// referrals rewarded once per rule at the programs' figures, per-technician
/// cash at the tier the referrer's year was in before it, held two months
/// after the contract date (the older holds due, the recent ones not).
#[tokio::test]
async fn demo_scale_rewards_every_won_referral_at_the_programs_figures() {
    use std::collections::HashMap;
    use vouch_domain::program::Computation;
    use vouch_domain::reward::price_units;
    use vouch_store::RewardStatus;

    for db in TestDatabase::all().await {
        let engine = db.engine;
        let stdout = demo(&db, &["demo", "--scale", "2000"]);
        assert_eq!(summary_number(&stdout, "Referrals:", "Referrals:"), 2000, "{engine}: {stdout}");
        let store = db.open().await;
        assert_eq!(store.count_referrals().await.expect("count"), 2000, "{engine}");
        let rewards = all_rewards(&store).await;
        let mut referrals = Vec::new();
        loop {
            let page = store
                .referrals(
                    &ReferralFilter::default(),
                    referrals.last().map(|r: &vouch_store::ReferralRecord| r.id),
                    500,
                )
                .await
                .expect("referrals");
            let done = page.len() < 500;
            referrals.extend(page);
            if done {
                break;
            }
        }
        assert_eq!(referrals.len(), 2000, "{engine}");
        let by_referral = |id| rewards.iter().filter(move |r: &&vouch_store::RewardRecord| r.referral_id == id);

        // Won referrals (churned ones were won first) earn once per `won` rule;
        // nobody else does, except `qualified` rules.
        let won = |r: &vouch_store::ReferralRecord| {
            r.status == Status::Active && matches!(r.stage, Stage::Won | Stage::Churned)
        };
        for r in &referrals {
            let theirs: Vec<_> = by_referral(r.id).collect();
            match r.program_slug.as_str() {
                "customer-credit" | "agent-gift-card" | "per-technician" => {
                    assert_eq!(
                        theirs.len(),
                        usize::from(won(r)),
                        "{engine}: {} {:?}: {theirs:?}",
                        r.program_slug,
                        r.stage
                    );
                }
                "double-sided" => assert_eq!(theirs.len(), 2 * usize::from(won(r)), "{engine}: {theirs:?}"),
                _ => {
                    // `qualified-lead`: once it qualified (a lost one may have, first).
                    let qualified =
                        r.status == Status::Active && matches!(r.stage, Stage::Qualified | Stage::Won | Stage::Churned);
                    assert!(theirs.len() <= 1, "{engine}: {theirs:?}");
                    assert!(!qualified || theirs.len() == 1, "{engine}: {:?}", r.stage);
                    assert!(r.status == Status::Active || theirs.is_empty(), "{engine}: {theirs:?}");
                }
            }
        }
        for (slug, minor, status) in [
            ("customer-credit", 10_000, RewardStatus::Approved),
            ("agent-gift-card", 5_000, RewardStatus::Pending),
            ("qualified-lead", 2_500, RewardStatus::Approved),
        ] {
            let these: Vec<_> =
                referrals.iter().filter(|r| r.program_slug == slug).flat_map(|r| by_referral(r.id)).collect();
            assert!(!these.is_empty(), "{engine}: {slug} rewarded some referrals");
            for reward in these {
                assert_eq!(
                    (reward.amount.amount_minor, reward.status),
                    (minor, status),
                    "{engine}: {slug}: {reward:?}"
                );
                assert!(reward.release_at.is_none(), "{engine}: {reward:?}");
            }
        }
        let welcome: Vec<_> = rewards.iter().filter(|r| r.rule_id == "welcome-credit").collect();
        assert!(!welcome.is_empty(), "{engine}");
        for w in welcome {
            assert!(
                w.participant_id.is_none() && w.amount.amount_minor > 0 && w.amount.amount_minor <= 10_000,
                "{engine}: {w:?}"
            );
        }

        // Per-technician cash: the amount the domain gives for the units, after
        // the units of the referrer's rewards with earlier contract dates in their
        // first year (later years are left out: their anchor is the domain's).
        let program = store.program("per-technician").await.expect("program");
        let rule = program.definition.rule("technician-cash").expect("rule");
        let Computation::PerUnit(per_unit) = &rule.computation else { panic!("per-unit rule") };
        let mut by_referrer: HashMap<_, Vec<(jiff::civil::Date, jiff::Timestamp, &vouch_store::RewardRecord)>> =
            HashMap::new();
        for reward in rewards.iter().filter(|r| r.rule_id == "technician-cash") {
            let referral = store.referral(reward.referral_id).await.expect("referral");
            let fact = referral
                .timeline
                .iter()
                .find(|e| e.kind == ReferralEventKind::Fact && e.data["fact"] == "won")
                .expect("a won fact");
            assert_eq!(fact.data["units"].as_i64(), reward.units, "{engine}: units as reported");
            let date: jiff::civil::Date = fact.data["contract_date"].as_str().expect("date").parse().expect("date");
            let release = reward.release_at.expect("held");
            let signed = date.to_zoned_datetime(jiff::tz::TimeZone::UTC).expect("zoned").timestamp();
            let held_for = release.duration_since(signed);
            assert!(
                (58..=63).contains(&(held_for.as_hours() / 24)),
                "{engine}: two months after the contract date: {held_for:?}"
            );
            assert_eq!(reward.status, RewardStatus::Pending, "{engine}");
            by_referrer.entry(reward.participant_id.expect("referrer")).or_default().push((
                date,
                fact.occurred_at,
                reward,
            ));
        }
        let now = jiff::Timestamp::now();
        let due = by_referrer.values().flatten().filter(|(_, _, r)| r.release_at.expect("held") <= now).count();
        let total = by_referrer.values().map(Vec::len).sum::<usize>();
        assert!(due > 0 && due < total, "{engine}: some holds due ({due} of {total})");
        let mut checked = 0;
        for list in by_referrer.values_mut() {
            list.sort_by_key(|(date, at, r)| (*date, *at, r.referral_id));
            let year_end = list[0].0.checked_add(jiff::Span::new().years(1)).expect("date");
            let mut prior = 0u32;
            for (date, _, reward) in list.iter().filter(|(d, ..)| *d < year_end) {
                let units = u32::try_from(reward.units.expect("units")).expect("units");
                let priced = price_units(&per_unit.tiers, per_unit.tier_policy, prior, units, reward.amount.currency)
                    .expect("priced");
                assert_eq!(
                    reward.amount, priced.amount,
                    "{engine}: {date}: {prior} before, {units} now: {}",
                    reward.explanation
                );
                prior += units;
                checked += 1;
            }
        }
        assert!(checked > 10, "{engine}: {checked} per-technician rewards checked");
        assert!(
            rewards
                .iter()
                .any(|r| r.rule_id == "technician-cash" && r.amount.amount_minor > 10_000 * r.units.unwrap_or(0)),
            "{engine}: some referrers reached a higher tier"
        );

        // Each reward's history starts with its creation.
        for reward in rewards.iter().step_by(37) {
            let events = store.reward_events(reward.id).await.expect("events");
            assert_eq!(events.len(), 1, "{engine}: {events:?}");
            assert_eq!(events[0].status_to, reward.status.as_str(), "{engine}");
        }
        store.close().await;
    }
}
