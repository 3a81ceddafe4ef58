//! Rewards created when a referral is won, through the HTTP API with the shipped
//! example programs: the per-technician fee table of the design brief (every
//! cell, with prior yearly totals of 0, 31–60 and 61 and more), a repeated `won`
//! creating nothing more, the flat programs' approval modes, a `won` without
//! units waiting for staff to send them, and rewards priced in contract-date
//! order: a late `won` with an earlier contract date re-pricing a pending reward
//! and adjusting an approved one, and a voided reward's units no longer counting.

// Amounts are written as whole_cents: `150_00` is USD 150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_store::testing::TestDatabase;

use crate::helpers::{TestApp, company_email, expect_problem, json_of, uniq};

const TECH: &str = "per-technician";
const CREDIT: &str = "customer-credit";
const AGENT: &str = "agent-gift-card";

async fn lead(app: &TestApp, slug: &str, code: &str) -> (String, String) {
    let email = company_email("bob");
    let body = json!({"referrer_code": code, "prospect": {"email": email}, "consent": true});
    let res = app.api(Method::POST, &format!("/programs/{slug}/leads")).json(&body).send().await.unwrap();
    let r = json_of(app, res, StatusCode::CREATED).await;
    assert_eq!(r["status"], "active", "{}: {r}", app.engine);
    (r["id"].as_str().unwrap().to_string(), email)
}

/// A `won` for the referral, with units and a contract date when given.
async fn won(app: &TestApp, slug: &str, referral: &str, units: Option<u32>, contract_date: &str) -> Value {
    let mut body = json!({
        "type": "won", "program": slug, "occurred_at": format!("{contract_date}T15:00:00Z"),
        "referral_id": referral, "contract_date": contract_date,
    });
    if let Some(units) = units {
        body["units"] = json!(units);
    }
    let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&body).send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert!(status.is_success(), "{}: {status} {text}", app.engine);
    serde_json::from_str(&text).unwrap()
}

async fn rewards_of(app: &TestApp, referral: &str) -> Vec<Value> {
    let res = app.api_get(&format!("/rewards?referral={referral}")).await;
    let page = json_of(app, res, StatusCode::OK).await;
    page["items"].as_array().unwrap().clone()
}

async fn only_reward(app: &TestApp, referral: &str) -> Value {
    let items = rewards_of(app, referral).await;
    assert_eq!(items.len(), 1, "{}: one reward for {referral}: {items:?}", app.engine);
    items[0].clone()
}

/// The fee table: prior yearly total → (units, amount in whole dollars) for every column.
const UNITS: [u32; 5] = [10, 15, 16, 40, 50];
const ROWS: [(u32, [i64; 5]); 6] = [
    (0, [1_000, 1_500, 1_600, 4_000, 5_000]),
    (31, [1_500, 2_250, 2_400, 6_000, 7_500]),
    (35, [1_500, 2_250, 2_400, 6_000, 7_500]),
    (60, [1_500, 2_250, 2_400, 6_000, 7_500]),
    (61, [2_000, 3_000, 3_200, 8_000, 10_000]),
    (100, [2_000, 3_000, 3_200, 8_000, 10_000]),
];

#[tokio::test]
async fn the_per_technician_fee_table_is_reproduced_through_the_api() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        for (prior, amounts) in ROWS {
            for (units, amount) in UNITS.into_iter().zip(amounts) {
                let referrer = app.enroll(TECH, &company_email("ref"), "customer").await;
                // The prior yearly total: an earlier won referral in the same year.
                if prior > 0 {
                    let (earlier, _) = lead(&app, TECH, &referrer.code).await;
                    won(&app, TECH, &earlier, Some(prior), "2026-01-10").await;
                    assert_eq!(only_reward(&app, &earlier).await["units"], prior, "{e}");
                }
                let (id, _) = lead(&app, TECH, &referrer.code).await;
                won(&app, TECH, &id, Some(units), "2026-03-14").await;
                let r = only_reward(&app, &id).await;
                let cell = format!("{e}: prior {prior}, {units} technicians: {r}");
                assert_eq!(r["amount"], json!({"amount_minor": amount * 100, "currency": "USD"}), "{cell}");
                assert_eq!(r["beneficiary"], "referrer", "{cell}");
                assert_eq!(r["participant_id"], referrer.participant_id.as_str(), "{cell}");
                assert_eq!(r["kind"], "cash", "{cell}");
                assert_eq!(r["status"], "pending", "{cell}");
                // Contract date + 2 months, at the start of that day in Chicago (CDT).
                assert_eq!(r["release_at"], "2026-05-14T05:00:00Z", "{cell}");
                if (prior, units) == (35, 16) {
                    assert_eq!(
                        r["explanation"],
                        "16 technicians × $150 (tier 31–60: 35 technicians in your year from 10 Jan 2026 \
                         before this referral) = $2,400",
                        "{cell}"
                    );
                }
                // One reward, by id too.
                let res = app.api_get(&format!("/rewards/{}", r["id"].as_str().unwrap())).await;
                assert_eq!(json_of(&app, res, StatusCode::OK).await, r, "{cell}");
            }
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_repeated_won_creates_no_second_reward() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let referrer = app.enroll(TECH, &company_email("ref"), "customer").await;
        let (id, _) = lead(&app, TECH, &referrer.code).await;
        won(&app, TECH, &id, Some(10), "2026-03-14").await;
        let first = only_reward(&app, &id).await;
        // The same fact again (a duplicate), and another won later with other units.
        won(&app, TECH, &id, Some(10), "2026-03-14").await;
        won(&app, TECH, &id, Some(20), "2026-03-20").await;
        assert_eq!(only_reward(&app, &id).await, first, "{e}");
        assert_eq!(first["amount"]["amount_minor"], 100_000, "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn flat_rewards_follow_the_programs_approval_mode() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        // Program A: USD 100.00 invoice credit, approved at once.
        let referrer = app.enroll(CREDIT, &company_email("ref"), "customer").await;
        let (id, _) = lead(&app, CREDIT, &referrer.code).await;
        won(&app, CREDIT, &id, None, "2026-03-14").await;
        let r = only_reward(&app, &id).await;
        assert_eq!(r["amount"], json!({"amount_minor": 10_000, "currency": "USD"}), "{e}: {r}");
        assert_eq!((r["kind"].as_str(), r["status"].as_str()), (Some("credit"), Some("approved")), "{e}: {r}");
        assert_eq!(r["release_at"], Value::Null, "{e}: {r}");
        assert_eq!(r["explanation"], "flat $100 per referral", "{e}: {r}");

        // Program B: USD 50.00 gift card, pending until finance approves it.
        let agent = app.enroll(AGENT, &company_email("agent"), "other").await;
        let (id, _) = lead(&app, AGENT, &agent.code).await;
        won(&app, AGENT, &id, None, "2026-03-14").await;
        let r = only_reward(&app, &id).await;
        assert_eq!(r["amount"], json!({"amount_minor": 5_000, "currency": "USD"}), "{e}: {r}");
        assert_eq!((r["kind"].as_str(), r["status"].as_str()), (Some("gift_card"), Some("pending")), "{e}: {r}");
        assert_eq!(r["release_at"], Value::Null, "{e}: {r}");

        // Filters: by participant and status.
        let res = app.api_get(&format!("/rewards?participant={}&status=pending", agent.participant_id)).await;
        let page = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{e}: {page}");
        let res = app.api_get(&format!("/rewards?participant={}&status=pending", referrer.participant_id)).await;
        let page = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(page["items"], json!([]), "{e}: {page}");
        let res = app.api_get("/rewards?status=owed").await;
        expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query").await;
        let res = app.api_get(&format!("/rewards/{}", uuid::Uuid::now_v7())).await;
        expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_won_without_units_waits_for_staff_to_send_them() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let referrer = app.enroll(TECH, &company_email("ref"), "customer").await;
        let (id, _) = lead(&app, TECH, &referrer.code).await;
        won(&app, TECH, &id, None, "2026-03-14").await;
        assert!(rewards_of(&app, &id).await.is_empty(), "{e}: nothing computed without units");
        let res = app.api_get(&format!("/referrals/{id}")).await;
        let r = json_of(&app, res, StatusCode::OK).await;
        assert_eq!((r["stage"].as_str(), &r["units_missing"]), (Some("won"), &json!(true)), "{e}: {r}");

        let res = app.api(Method::PATCH, &format!("/referrals/{id}")).json(&json!({"units": 16})).send().await.unwrap();
        let r = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(r["units_missing"], false, "{e}: {r}");
        let reward = only_reward(&app, &id).await;
        assert_eq!(reward["amount"], json!({"amount_minor": 160_000, "currency": "USD"}), "{e}: {reward}");
        assert_eq!(reward["units"], 16, "{e}: {reward}");
        assert_eq!(reward["status"], "pending", "{e}: {reward}");

        // Units are taken only while they are missing.
        let res = app.api(Method::PATCH, &format!("/referrals/{id}")).json(&json!({"units": 20})).send().await.unwrap();
        expect_problem(e, res, StatusCode::CONFLICT, "units_not_missing").await;
        assert_eq!(only_reward(&app, &id).await, reward, "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_double_sided_won_rewards_both_sides() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let referrer = app.enroll("double-sided", &company_email("ref"), "customer").await;
        let (id, _) = lead(&app, "double-sided", &referrer.code).await;
        let body = json!({
            "type": "won", "program": "double-sided", "occurred_at": "2026-03-14T15:00:00Z", "referral_id": id,
            "value": {"amount_minor": 120_000, "currency": "USD"},
        });
        let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&body).send().await.unwrap();
        let answer = json_of(&app, res, StatusCode::CREATED).await;
        let items = rewards_of(&app, &id).await;
        assert_eq!(items.len(), 2, "{e}: {items:?}");
        let upgrade = items.iter().find(|r| r["beneficiary"] == "referrer").unwrap();
        assert_eq!((upgrade["kind"].as_str(), upgrade["status"].as_str()), (Some("plan_upgrade"), Some("approved")));
        assert_eq!((upgrade["plan"].as_str(), upgrade["months"].as_i64()), (Some("premium"), Some(3)), "{e}");
        let credit = items.iter().find(|r| r["beneficiary"] == "referee").unwrap();
        assert_eq!(credit["amount"], json!({"amount_minor": 10_000, "currency": "USD"}), "{e}: {credit}");
        // The new customer, enrolled by the viral loop, is the credit's beneficiary.
        let newcomer = &answer["enrolled"]["participant_id"];
        assert!(newcomer.is_string(), "{e}: {answer}");
        assert_eq!(&credit["participant_id"], newcomer, "{e}: {credit}");
        assert_eq!(
            credit["explanation"], "20% of the $1,200 contract value = $240, capped at the $100 maximum per referral",
            "{e}: {credit}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_staff_move_to_won_counts_like_a_won_fact() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let referrer = app.enroll(CREDIT, &company_email("ref"), "customer").await;
        let (id, _) = lead(&app, CREDIT, &referrer.code).await;
        for stage in ["contacted", "qualified", "won"] {
            let res = app.api(Method::POST, &format!("/referrals/{id}/stage")).json(&json!({"stage": stage})).send();
            json_of(&app, res.await.unwrap(), StatusCode::OK).await;
        }
        let r = only_reward(&app, &id).await;
        assert_eq!(r["amount"], json!({"amount_minor": 10_000, "currency": "USD"}), "{e}: {r}");
        assert_eq!(r["status"], "approved", "{e}: {r}");
        app.stop().await;
    }
}

/// The referrer's rewards for the referrals in `ids`, by referral.
async fn amounts(app: &TestApp, ids: &[&str]) -> Vec<i64> {
    let mut out = Vec::new();
    for id in ids {
        out.push(only_reward(app, id).await["amount"]["amount_minor"].as_i64().unwrap());
    }
    out
}

/// What a reward comes to: its amount and its adjustment entries.
fn comes_to(r: &Value) -> i64 {
    let adjusted: i64 =
        r["adjustments"].as_array().unwrap().iter().map(|a| a["amount"]["amount_minor"].as_i64().unwrap()).sum();
    r["amount"]["amount_minor"].as_i64().unwrap() + adjusted
}

/// Design brief, program C: 10 technicians (contract 1 March), then 25 (1 May),
/// then a late `won` of 30 dated 1 April. In order, the 25 follow 40 in the
/// year: $150 each, not $100.
async fn late_won_case(app: &TestApp, approve_second: bool) -> (String, String, String) {
    let e = app.engine;
    let referrer = app.enroll(TECH, &company_email("ref"), "customer").await;
    let (first, _) = lead(app, TECH, &referrer.code).await;
    let (second, _) = lead(app, TECH, &referrer.code).await;
    let (late, _) = lead(app, TECH, &referrer.code).await;
    won(app, TECH, &first, Some(10), "2026-03-01").await;
    won(app, TECH, &second, Some(25), "2026-05-01").await;
    assert_eq!(amounts(app, &[&first, &second]).await, [1_000_00, 2_500_00], "{e}");
    if approve_second {
        let r = only_reward(app, &second).await;
        let res =
            app.api(Method::POST, &format!("/rewards/{}/approve", r["id"].as_str().unwrap())).json(&json!({})).send();
        assert_eq!(json_of(app, res.await.unwrap(), StatusCode::OK).await["status"], "approved", "{e}");
    }
    won(app, TECH, &late, Some(30), "2026-04-01").await;
    (first, second, late)
}

#[tokio::test]
async fn a_late_won_with_an_earlier_contract_date_reprices_a_pending_reward() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let (first, second, late) = late_won_case(&app, false).await;
        assert_eq!(amounts(&app, &[&first, &late, &second]).await, [1_000_00, 3_000_00, 3_750_00], "{e}");
        let r = only_reward(&app, &second).await;
        assert_eq!((r["status"].as_str(), &r["adjustments"]), (Some("pending"), &json!([])), "{e}: {r}");
        assert_eq!(
            r["explanation"],
            "25 technicians × $150 (tier 31–60: 40 technicians in your year from 1 Mar 2026 before this referral) \
             = $3,750",
            "{e}"
        );
        // The reward's history records the re-price with the old and new amount.
        let history = app.store.reward_events(r["id"].as_str().unwrap().parse().unwrap()).await.unwrap();
        let last = history.last().unwrap();
        assert_eq!((last.status_from.as_deref(), last.status_to.as_str()), (Some("pending"), "pending"), "{e}");
        let reason = last.reason.as_deref().unwrap_or_default();
        assert!(reason.starts_with("re-priced from $2,500 to $3,750 (+$1,250)"), "{e}: {reason}");

        // The same late won again, and another won for it: nothing moves.
        won(&app, TECH, &late, Some(30), "2026-04-01").await;
        won(&app, TECH, &late, Some(30), "2026-04-02").await;
        assert_eq!(only_reward(&app, &second).await, r, "{e}");
        assert_eq!(
            app.store.reward_events(r["id"].as_str().unwrap().parse().unwrap()).await.unwrap().len(),
            history.len()
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_late_won_adjusts_an_approved_reward_instead_of_editing_it() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let (first, second, late) = late_won_case(&app, true).await;
        let r = only_reward(&app, &second).await;
        assert_eq!(
            (r["status"].as_str(), &r["amount"]),
            (Some("approved"), &json!({"amount_minor": 250_000, "currency": "USD"}))
        );
        let adjustments = r["adjustments"].as_array().unwrap();
        assert_eq!(adjustments.len(), 1, "{e}: {r}");
        let a = &adjustments[0];
        assert_eq!(
            (a["kind"].as_str(), &a["amount"]),
            (Some("reprice"), &json!({"amount_minor": 125_000, "currency": "USD"}))
        );
        assert_eq!(a["cause"], late.as_str(), "{e}: the late referral caused it");
        assert!(
            a["explanation"].as_str().unwrap().starts_with("re-priced from $2,500 to $3,750 (+$1,250)"),
            "{e}: {a}"
        );
        // The balance ends where in-order delivery puts it: 1,000 + 3,000 + 3,750.
        let mut total = 0;
        for id in [&first, &second, &late] {
            total += comes_to(&only_reward(&app, id).await);
        }
        assert_eq!(total, 7_750_00, "{e}");
        // A repeat adds nothing.
        won(&app, TECH, &late, Some(30), "2026-04-02").await;
        assert_eq!(only_reward(&app, &second).await["adjustments"].as_array().unwrap().len(), 1, "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_voided_rewards_units_no_longer_count() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let referrer = app.enroll(TECH, &company_email("ref"), "customer").await;
        let (big, _) = lead(&app, TECH, &referrer.code).await;
        let (small, _) = lead(&app, TECH, &referrer.code).await;
        won(&app, TECH, &big, Some(40), "2026-01-10").await;
        won(&app, TECH, &small, Some(10), "2026-03-01").await;
        assert_eq!(amounts(&app, &[&big, &small]).await, [4_000_00, 1_500_00], "{e}: 10 after 40 at $150");
        let voided = only_reward(&app, &big).await;
        let res = app
            .api(Method::POST, &format!("/rewards/{}/void", voided["id"].as_str().unwrap()))
            .json(&json!({"reason": "the deal fell through"}))
            .send();
        assert_eq!(json_of(&app, res.await.unwrap(), StatusCode::OK).await["status"], "voided", "{e}");
        // The 10 now start the year, and the next referral counts only them.
        let r = only_reward(&app, &small).await;
        assert_eq!(r["amount"]["amount_minor"], 1_000_00, "{e}: {r}");
        assert_eq!(
            r["explanation"],
            "10 technicians × $100 (tier 0–30: no technicians in your year from 1 Mar 2026 before this referral) = $1,000",
            "{e}"
        );
        let (next, _) = lead(&app, TECH, &referrer.code).await;
        won(&app, TECH, &next, Some(25), "2026-04-01").await;
        assert_eq!(amounts(&app, &[&small, &next]).await, [1_000_00, 2_500_00], "{e}: 25 after 10 at $100");
        app.stop().await;
    }
}

/// Applies a version of the per-technician program whose rates are each
/// `raise` whole cents higher than the shipped ones.
async fn raise_technician_rates(app: &TestApp, raise: i64) {
    let source = vouch_server::demo::EXAMPLE_PROGRAMS.iter().find(|(s, _)| *s == TECH).unwrap().1;
    let mut edited = source.to_string();
    // The example writes whole dollars and cents apart: `each = 100_00`.
    let written = |minor: i64| format!("each = {}_{:02}", minor / 100, minor % 100);
    for rate in [100_00, 150_00, 200_00] {
        let (from, to) = (written(rate), written(rate + raise));
        assert!(edited.contains(&from), "the example states {from}");
        edited = edited.replacen(&from, &to, 1);
    }
    crate::helpers::apply(app, &edited).await;
}

/// The program raises its rates by $20 between two referrals. A late `won`
/// with the earliest contract date then re-prices the referrer's year: the
/// reward made under the first version keeps its $100 rate, the one made
/// under the second is priced at the second version's tier 31–60 ($170), not
/// at the rates of the version the late referral belongs to.
#[tokio::test]
async fn a_repriced_reward_keeps_the_rates_of_the_version_it_was_made_under() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let referrer = app.enroll(TECH, &company_email("ref"), "customer").await;
        let (march, _) = lead(&app, TECH, &referrer.code).await;
        won(&app, TECH, &march, Some(20), "2026-03-01").await;
        raise_technician_rates(&app, 20_00).await;
        let (august, _) = lead(&app, TECH, &referrer.code).await;
        let (late, _) = lead(&app, TECH, &referrer.code).await;
        won(&app, TECH, &august, Some(16), "2026-08-01").await;
        assert_eq!(amounts(&app, &[&march, &august]).await, [20 * 100_00, 16 * 120_00], "{e}");

        won(&app, TECH, &late, Some(15), "2026-02-01").await;
        let rewards =
            [only_reward(&app, &march).await, only_reward(&app, &august).await, only_reward(&app, &late).await];
        let came_to: Vec<i64> = rewards.iter().map(comes_to).collect();
        assert_eq!(came_to, [20 * 100_00, 16 * 170_00, 15 * 120_00], "{e}: {rewards:?}");
        assert!(
            rewards[1]["explanation"].as_str().unwrap_or_default().contains("16 technicians × $170"),
            "{e}: {}",
            rewards[1]
        );
        app.stop().await;
    }
}
