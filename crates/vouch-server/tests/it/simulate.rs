//! Forecasting through the HTTP API: simulating the version in force reproduces
//! the recorded ledger (per referral and rule, each reward with its re-price
//! adjustments), a draft with other tiers pays the expected other totals, a
//! simulation file that does not validate is refused with its problems and
//! changes nothing, and the liability report sums what is still owed by month
//! and by method.

// Amounts are written as whole_cents: `150_00` is USD 150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_store::testing::TestDatabase;

use crate::helpers::{TestApp, company_email, expect_problem, json_of, lead, pointers, uniq};

const TECH: &str = "per-technician";
const DOUBLE: &str = "double-sided";

fn shipped(slug: &str) -> String {
    let path = format!("{}/../../examples/programs/{slug}.toml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn event(app: &TestApp, body: Value) {
    let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&body).send().await.unwrap();
    let status = res.status();
    assert!(status.is_success(), "{}: {status} {}", app.engine, res.text().await.unwrap_or_default());
}

async fn won(app: &TestApp, referral: &str, units: u32, contract_date: &str) {
    let body = json!({
        "type": "won", "program": TECH, "occurred_at": format!("{contract_date}T15:00:00Z"),
        "referral_id": referral, "contract_date": contract_date, "units": units,
    });
    event(app, body).await;
}

async fn won_with_value(app: &TestApp, referral: &str, day: &str, value_minor: i64) {
    let body = json!({
        "type": "won", "program": DOUBLE, "occurred_at": format!("{day}T15:00:00Z"), "referral_id": referral,
        "value": {"amount_minor": value_minor, "currency": "USD"},
    });
    event(app, body).await;
}

async fn rewards_of(app: &TestApp, referral: &str) -> Vec<Value> {
    let res = app.api_get(&format!("/rewards?referral={referral}")).await;
    json_of(app, res, StatusCode::OK).await["items"].as_array().unwrap().clone()
}

/// What a reward comes to: its amount and its adjustment entries.
fn comes_to(r: &Value) -> i64 {
    let adjusted: i64 =
        r["adjustments"].as_array().unwrap().iter().map(|a| a["amount"]["amount_minor"].as_i64().unwrap()).sum();
    r["amount"]["amount_minor"].as_i64().unwrap() + adjusted
}

async fn simulate(app: &TestApp, slug: &str, program: &str, since: &str, until: &str) -> reqwest::Response {
    let body = json!({"program": program, "since": since, "until": until});
    app.api(Method::POST, &format!("/programs/{slug}/simulate")).json(&body).send().await.unwrap()
}

/// (referral, rule, beneficiary) → amount, of one side of a simulation.
fn by_rule(rewards: &Value) -> BTreeMap<(String, String, String), i64> {
    rewards
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = (
                r["referral_id"].as_str().unwrap().to_string(),
                r["rule"].as_str().unwrap().to_string(),
                r["beneficiary"].as_str().unwrap().to_string(),
            );
            (key, r["amount"]["amount_minor"].as_i64().unwrap())
        })
        .collect()
}

async fn approve(app: &TestApp, reward: &Value) {
    let res = app.api(Method::POST, &format!("/rewards/{}/approve", reward["id"].as_str().unwrap())).json(&json!({}));
    assert_eq!(json_of(app, res.send().await.unwrap(), StatusCode::OK).await["status"], "approved", "{}", app.engine);
}

#[tokio::test]
async fn simulating_the_version_in_force_reproduces_the_recorded_ledger() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        // Per technician: one referrer's wons arrive out of order across the
        // 30-technician boundary (a late won re-prices a pending reward and
        // adjusts an approved one), a second referrer crosses into the top
        // tier, a third stays in the first.
        let ann = app.enroll(TECH, &company_email("ann"), "customer").await;
        let ben = app.enroll(TECH, &company_email("ben"), "customer").await;
        let cid = app.enroll(TECH, &company_email("cid"), "customer").await;
        let mut tech = Vec::new();
        for _ in 0..4 {
            tech.push(lead(&app, TECH, &ann.code).await);
        }
        won(&app, &tech[0], 10, "2026-03-01").await;
        won(&app, &tech[1], 25, "2026-05-01").await;
        won(&app, &tech[2], 5, "2026-06-01").await;
        approve(&app, &rewards_of(&app, &tech[1]).await[0]).await;
        won(&app, &tech[3], 30, "2026-04-01").await;
        let (b1, b2) = (lead(&app, TECH, &ben.code).await, lead(&app, TECH, &ben.code).await);
        won(&app, &b1, 50, "2026-02-01").await;
        won(&app, &b2, 20, "2026-02-15").await;
        let c1 = lead(&app, TECH, &cid.code).await;
        won(&app, &c1, 7, "2026-07-20").await;
        // Double-sided: a plan upgrade for the referrer, a capped and an
        // uncapped credit for the referees.
        let dan = app.enroll(DOUBLE, &company_email("dan"), "customer").await;
        let (d1, d2) = (lead(&app, DOUBLE, &dan.code).await, lead(&app, DOUBLE, &dan.code).await);
        won_with_value(&app, &d1, "2026-04-10", 120_000).await;
        won_with_value(&app, &d2, "2026-06-10", 30_000).await;

        // The ledger: per (referral, rule, beneficiary), what each reward comes to.
        let mut ledger: BTreeMap<&str, BTreeMap<(String, String, String), i64>> = BTreeMap::new();
        let mut adjusted = 0;
        for (slug, ids) in
            [(TECH, vec![&tech[0], &tech[1], &tech[2], &tech[3], &b1, &b2, &c1]), (DOUBLE, vec![&d1, &d2])]
        {
            for id in ids {
                for r in rewards_of(&app, id).await {
                    adjusted += r["adjustments"].as_array().unwrap().len();
                    let key =
                        (id.to_string(), r["rule"].as_str().unwrap().into(), r["beneficiary"].as_str().unwrap().into());
                    ledger.entry(slug).or_default().insert(key, comes_to(&r));
                }
            }
        }
        assert_eq!(adjusted, 1, "{e}: the approved reward was adjusted once");
        let ann_rule = |id: &str| (id.to_string(), "technician-cash".to_string(), "referrer".to_string());
        // In order: 10 (Mar), 30 (Apr), 25 (May) at $150, 5 (Jun) at $200.
        let t = &ledger[TECH];
        assert_eq!(
            [t[&ann_rule(&tech[0])], t[&ann_rule(&tech[3])], t[&ann_rule(&tech[1])], t[&ann_rule(&tech[2])]],
            [1_000_00, 3_000_00, 3_750_00, 1_000_00],
            "{e}: {t:?}"
        );

        for slug in [TECH, DOUBLE] {
            let res = simulate(&app, slug, &shipped(slug), "2026-01-01", "2026-12-31").await;
            let sim = json_of(&app, res, StatusCode::OK).await;
            assert_eq!(by_rule(&sim["current_rewards"]), ledger[slug], "{e}: {slug}: the version in force replayed");
            assert_eq!(by_rule(&sim["draft_rewards"]), ledger[slug], "{e}: {slug}: the same file as a draft");
            let total: i64 = ledger[slug].values().sum();
            assert_eq!(
                sim["total"],
                json!({
                    "current": {"amount_minor": total, "currency": "USD"},
                    "draft": {"amount_minor": total, "currency": "USD"},
                    "difference": {"amount_minor": 0, "currency": "USD"},
                }),
                "{e}: {slug}"
            );
        }
        // The simulation changed nothing.
        let after: i64 = rewards_of(&app, &tech[1]).await.iter().map(comes_to).sum();
        assert_eq!(after, 3_750_00, "{e}");
        let res = app.api_get(&format!("/programs/{TECH}")).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await["version"], 1, "{e}: no version was stored");
        app.stop().await;
    }
}

/// Staff moves a referral along (no fact), through `stages`.
async fn move_to(app: &TestApp, referral: &str, stages: &[&str]) {
    for stage in stages {
        let res = app.api(Method::POST, &format!("/referrals/{referral}/stage")).json(&json!({"stage": stage}));
        json_of(app, res.send().await.unwrap(), StatusCode::OK).await;
    }
}

#[tokio::test]
async fn the_flat_programs_replay_to_their_ledger_whether_facts_or_staff_moved_them() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        // A: one won by a fact, one moved to won by staff; B: a gift card;
        // E: one lead qualified by a fact, one by staff, one never qualified.
        let a = app.enroll("customer-credit", &company_email("ann"), "customer").await;
        let (a1, a2) = (lead(&app, "customer-credit", &a.code).await, lead(&app, "customer-credit", &a.code).await);
        event(
            &app,
            json!({"type": "won", "program": "customer-credit", "occurred_at": "2026-02-03T10:00:00Z",
            "referral_id": a1}),
        )
        .await;
        move_to(&app, &a2, &["contacted", "won"]).await;
        let b = app.enroll("agent-gift-card", &company_email("ben"), "customer").await;
        let b1 = lead(&app, "agent-gift-card", &b.code).await;
        event(
            &app,
            json!({"type": "won", "program": "agent-gift-card", "occurred_at": "2026-04-03T10:00:00Z",
            "referral_id": b1}),
        )
        .await;
        let q = app.enroll("qualified-lead", &company_email("cy"), "customer").await;
        let qs = [
            lead(&app, "qualified-lead", &q.code).await,
            lead(&app, "qualified-lead", &q.code).await,
            lead(&app, "qualified-lead", &q.code).await,
        ];
        event(
            &app,
            json!({"type": "qualified", "program": "qualified-lead", "occurred_at": "2026-05-03T10:00:00Z",
            "referral_id": qs[0]}),
        )
        .await;
        move_to(&app, &qs[1], &["contacted", "qualified"]).await;
        move_to(&app, &qs[2], &["contacted"]).await;

        for (slug, ids, expected) in [
            ("customer-credit", vec![&a1, &a2], 200_00),
            ("agent-gift-card", vec![&b1], 50_00),
            ("qualified-lead", qs.iter().collect(), 50_00),
        ] {
            let mut ledger = BTreeMap::new();
            for id in ids {
                for r in rewards_of(&app, id).await {
                    let key =
                        (id.to_string(), r["rule"].as_str().unwrap().into(), r["beneficiary"].as_str().unwrap().into());
                    ledger.insert(key, comes_to(&r));
                }
            }
            assert_eq!(ledger.values().sum::<i64>(), expected, "{e}: {slug}: {ledger:?}");
            let res = simulate(&app, slug, &shipped(slug), "2026-01-01", "2099-12-31").await;
            let sim = json_of(&app, res, StatusCode::OK).await;
            assert_eq!(by_rule(&sim["current_rewards"]), ledger, "{e}: {slug}: {sim}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_draft_with_other_tiers_shows_what_it_would_have_paid() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let (ann_email, ben_email) = (company_email("ann"), company_email("ben"));
        let ann = app.enroll(TECH, &ann_email, "customer").await;
        let ben = app.enroll(TECH, &ben_email, "customer").await;
        let (a1, a2, b1) =
            (lead(&app, TECH, &ann.code).await, lead(&app, TECH, &ann.code).await, lead(&app, TECH, &ben.code).await);
        won(&app, &a1, 20, "2026-03-01").await;
        won(&app, &a2, 25, "2026-05-01").await;
        won(&app, &b1, 8, "2026-05-20").await;
        // The first tier ends at 10 instead of 30: Ann's 25 follow 20 and earn $150 each.
        let draft = shipped(TECH).replace("{ up_to = 30, each = 100_00 }", "{ up_to = 10, each = 100_00 }");
        assert_ne!(draft, shipped(TECH));
        let res = simulate(&app, TECH, &draft, "2026-01-01", "2026-12-31").await;
        let sim = json_of(&app, res, StatusCode::OK).await;
        let usd = |minor: i64| json!({"amount_minor": minor, "currency": "USD"});
        let line = |key: Option<&str>, current: i64, draft: i64| {
            let mut l = json!({"current": usd(current), "draft": usd(draft), "difference": usd(draft - current)});
            if let Some(key) = key {
                l["key"] = json!(key);
            }
            l
        };
        assert_eq!(sim["total"], line(None, 5_300_00, 6_550_00), "{e}: {sim}");
        assert_eq!(
            sim["by_month"],
            json!([line(Some("2026-03"), 2_000_00, 2_000_00), line(Some("2026-05"), 3_300_00, 4_550_00)]),
            "{e}"
        );
        let people: BTreeMap<String, (i64, i64, i64)> = sim["by_referrer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let m = |k: &str| l[k]["amount_minor"].as_i64().unwrap();
                (l["email"].as_str().unwrap().to_string(), (m("current"), m("draft"), m("difference")))
            })
            .collect();
        assert_eq!(
            people,
            BTreeMap::from([(ann_email, (4_500_00, 5_750_00, 1_250_00)), (ben_email, (800_00, 800_00, 0))]),
            "{e}"
        );
        // A period that leaves out March: Ann's May referral still counts the 20 before it.
        let res = simulate(&app, TECH, &draft, "2026-04-01", "2026-12-31").await;
        let sim = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(sim["total"], line(None, 3_300_00, 4_550_00), "{e}: {sim}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_simulation_file_that_does_not_validate_is_refused_and_changes_nothing() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let ann = app.enroll(TECH, &company_email("ann"), "customer").await;
        let a1 = lead(&app, TECH, &ann.code).await;
        won(&app, &a1, 20, "2026-03-01").await;
        let before = rewards_of(&app, &a1).await;

        let bad = shipped(TECH).replace("{ each = 200_00 }", "{ each = \"lots\" }");
        let res = simulate(&app, TECH, &bad, "2026-01-01", "2026-12-31").await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_program").await;
        assert_eq!(pointers(&p), ["/program"], "{e}: {p}");
        let detail = p["errors"][0]["detail"].as_str().unwrap();
        let line = bad.lines().position(|l| l.contains("\"lots\"")).unwrap() + 1;
        assert!(detail.starts_with(&format!("line {line}, column ")), "{e}: {detail}");
        assert!(detail.contains("rewards[0].tiers[2].each"), "{e}: {detail}");

        let other = shipped(TECH).replace("slug = \"per-technician\"", "slug = \"per-tech-draft\"");
        let res = simulate(&app, TECH, &other, "2026-01-01", "2026-12-31").await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "program_slug_mismatch").await;
        assert_eq!(pointers(&p), ["/program"], "{e}: {p}");

        let res = simulate(&app, TECH, &shipped(TECH), "2026-13-01", "2026-12-31").await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(pointers(&p), ["/since"], "{e}: {p}");

        let res = simulate(&app, TECH, &shipped(TECH), "2026-06-01", "2026-05-31").await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_period").await;
        assert_eq!(pointers(&p), ["/until"], "{e}: {p}");

        let euros = shipped(TECH).replace("currency = \"USD\"", "currency = \"EUR\"");
        let res = simulate(&app, TECH, &euros, "2026-01-01", "2026-12-31").await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "simulation_currency_changed").await;
        assert_eq!(pointers(&p), ["/program"], "{e}: {p}");

        // Nothing changed: the same rewards, the same version.
        assert_eq!(rewards_of(&app, &a1).await, before, "{e}");
        let res = app.api_get(&format!("/programs/{TECH}")).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await["version"], 1, "{e}");
        app.stop().await;
    }
}

fn month_of(d: jiff::civil::Date) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

#[tokio::test]
async fn the_liability_report_sums_what_is_owed_by_release_month_and_method() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        // Contract dates from today, so the holds end in the future whenever this runs.
        let today = jiff::tz::TimeZone::get("America/Chicago").unwrap().to_datetime(jiff::Timestamp::now()).date();
        let later = today.checked_add(jiff::Span::new().months(1)).unwrap();
        let ann = app.enroll(TECH, &company_email("ann"), "customer").await;
        let (t1, t2, t3) =
            (lead(&app, TECH, &ann.code).await, lead(&app, TECH, &ann.code).await, lead(&app, TECH, &ann.code).await);
        won(&app, &t1, 10, &today.to_string()).await;
        won(&app, &t2, 5, &later.to_string()).await;
        won(&app, &t3, 3, &later.to_string()).await;
        // A voided reward owes nothing.
        let voided = &rewards_of(&app, &t3).await[0];
        let res = app
            .api(Method::POST, &format!("/rewards/{}/void", voided["id"].as_str().unwrap()))
            .json(&json!({"reason": "the deal fell through"}))
            .send();
        json_of(&app, res.await.unwrap(), StatusCode::OK).await;
        // Holds that have ended are owed now: Dee's 10 (March) and her late 30
        // (April) are pending, her 25 (May) approved and adjusted by the late
        // won from $2,500 to $3,750.
        let dee = app.enroll(TECH, &company_email("dee"), "customer").await;
        let (d1, d2, d3) =
            (lead(&app, TECH, &dee.code).await, lead(&app, TECH, &dee.code).await, lead(&app, TECH, &dee.code).await);
        won(&app, &d1, 10, "2026-03-01").await;
        won(&app, &d2, 25, "2026-05-01").await;
        approve(&app, &rewards_of(&app, &d2).await[0]).await;
        won(&app, &d3, 30, "2026-04-01").await;
        assert_eq!(comes_to(&rewards_of(&app, &d2).await[0]), 3_750_00, "{e}");
        // A credit approved at once and a gift card awaiting finance: owed now.
        let bob = app.enroll("customer-credit", &company_email("bob"), "customer").await;
        let c1 = lead(&app, "customer-credit", &bob.code).await;
        event(&app, json!({"type": "won", "program": "customer-credit", "occurred_at": "2026-03-01T15:00:00Z", "referral_id": c1})).await;
        let cy = app.enroll("agent-gift-card", &company_email("cy"), "customer").await;
        let g1 = lead(&app, "agent-gift-card", &cy.code).await;
        event(&app, json!({"type": "won", "program": "agent-gift-card", "occurred_at": "2026-03-01T15:00:00Z", "referral_id": g1})).await;

        let usd = |minor: i64| json!({"amount_minor": minor, "currency": "USD"});
        let line = |key: Option<&str>, pending: i64, approved: i64| {
            let mut l = json!({"pending": usd(pending), "approved": usd(approved), "adjustments": usd(0),
                "total": usd(pending + approved)});
            if let Some(key) = key {
                l["key"] = json!(key);
            }
            l
        };
        let two_months = |d: jiff::civil::Date| month_of(d.checked_add(jiff::Span::new().months(2)).unwrap());
        let res = app.api_get("/reports/liability").await;
        let report = json_of(&app, res, StatusCode::OK).await;
        let mut months = BTreeMap::new();
        months.insert(two_months(today), 1_000_00);
        *months.entry(two_months(later)).or_insert(0) += 500_00;
        let mut expected = vec![line(Some("now"), 4_050_00, 3_850_00)];
        expected.extend(months.iter().map(|(m, minor)| line(Some(m), *minor, 0)));
        assert_eq!(report["by_month"], json!(expected), "{e}: {report}");
        assert_eq!(
            report["by_method"],
            json!([
                line(Some("cash"), 5_500_00, 3_750_00),
                line(Some("credit"), 0, 100_00),
                line(Some("gift_card"), 50_00, 0)
            ]),
            "{e}"
        );
        assert_eq!(report["totals"], json!([line(None, 5_550_00, 3_850_00)]), "{e}");

        // One program.
        let res = app.api_get("/reports/liability?program=customer-credit").await;
        let report = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(report["totals"], json!([line(None, 0, 100_00)]), "{e}");
        let res = app.api_get("/reports/liability?program=nope").await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "unknown_program").await;
        assert_eq!(pointers(&p), ["/program"], "{e}");
        app.stop().await;
    }
}
