//! Rewards earned beyond `won`, and caps, through the HTTP API on both engines:
//! program E's credit for a qualified lead (a staff move, a `qualified` fact, a
//! `won` that skipped `qualified`), a recurring share of each payment for N
//! months with a per-referral maximum, and caps per referral and per person per
//! year.

// Amounts are written as whole_cents: `150_00` is USD 150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_store::testing::TestDatabase;

use crate::helpers::{TestApp, apply, company_email, json_of, lead, uniq};

const QUALIFIED: &str = "qualified-lead";

/// 10% of each payment in the first 3 months, at most USD 100.00 per referral.
const REVENUE_SHARE: &str = r#"
slug = "revenue-share"
name = "10% of what they pay in their first 3 months"
currency = "USD"
timezone = "America/New_York"
landing_url = "https://example.com/r"
eligible = ["customer"]

[[rewards]]
id = "payment-share"
beneficiary = "referrer"
trigger = "payment"
kind = "cash"
percent = "10"
of = "payments"
months = 3
max_per_referral = 100_00
approval = "auto"
"#;

/// A flat USD 40.00 per won referral, at most USD 100.00 per person a calendar
/// year; and USD 10.00 a seat, at most USD 150.00 per referral.
const CAPPED: &str = r#"
slug = "capped"
name = "Capped rewards"
currency = "USD"
timezone = "America/New_York"
landing_url = "https://example.com/r"
eligible = ["customer"]

[[rewards]]
id = "flat-capped"
beneficiary = "referrer"
trigger = "won"
kind = "credit"
amount = 40_00
max_per_beneficiary = { amount = 100_00, period = "calendar_year" }
approval = "auto"

[[rewards]]
id = "seats"
beneficiary = "referrer"
trigger = "won"
kind = "cash"
per_unit = "seat"
period = "calendar_year"
tier_policy = "whole_at_start"
tiers = [ { each = 10_00 } ]
max_per_referral = 150_00
approval = "auto"
"#;

/// A flat reward above its own per-referral maximum.
const FLAT_PER_REFERRAL: &str = r#"
slug = "flat-per-referral"
name = "Flat, capped per referral"
currency = "USD"
timezone = "America/New_York"
landing_url = "https://example.com/r"
eligible = ["customer"]

[[rewards]]
id = "flat"
beneficiary = "referrer"
trigger = "qualified"
kind = "credit"
amount = 40_00
max_per_referral = 30_00
approval = "manual"
"#;

/// Sends a fact about the referral; `extra` adds fields (units, value, ...).
async fn fact(app: &TestApp, slug: &str, referral: &str, kind: &str, at: &str, extra: Value) -> Value {
    let mut body = json!({"type": kind, "program": slug, "occurred_at": at, "referral_id": referral});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&body).send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert!(status.is_success(), "{}: {kind}: {status} {text}", app.engine);
    serde_json::from_str(&text).unwrap()
}

async fn payment(app: &TestApp, slug: &str, referral: &str, event_id: &str, at: &str, minor: i64) {
    let extra = json!({"event_id": event_id, "value": {"amount_minor": minor, "currency": "USD"}});
    fact(app, slug, referral, "payment", at, extra).await;
}

async fn stage(app: &TestApp, referral: &str, to: &str) {
    let res = app.api(Method::POST, &format!("/referrals/{referral}/stage")).json(&json!({"stage": to})).send();
    json_of(app, res.await.unwrap(), StatusCode::OK).await;
}

async fn rewards_of(app: &TestApp, referral: &str) -> Vec<Value> {
    let res = app.api_get(&format!("/rewards?referral={referral}&limit=500")).await;
    let page = json_of(app, res, StatusCode::OK).await;
    let mut items = page["items"].as_array().unwrap().clone();
    // Oldest first (the list is newest first).
    items.reverse();
    items
}

async fn only_reward(app: &TestApp, referral: &str) -> Value {
    let items = rewards_of(app, referral).await;
    assert_eq!(items.len(), 1, "{}: one reward for {referral}: {items:?}", app.engine);
    items[0].clone()
}

fn usd(minor: i64) -> Value {
    json!({"amount_minor": minor, "currency": "USD"})
}

/// Program E's one credit, as a referral earns it.
fn assert_qualified_credit(e: &str, r: &Value, referrer: &str) {
    assert_eq!(r["amount"], usd(25_00), "{e}: {r}");
    assert_eq!((r["kind"].as_str(), r["status"].as_str()), (Some("credit"), Some("approved")), "{e}: {r}");
    assert_eq!((r["occurrence"].as_str(), r["rule"].as_str()), (Some("qualified"), Some("qualified-credit")), "{e}");
    assert_eq!(r["participant_id"], referrer, "{e}: {r}");
    assert_eq!(r["explanation"], "flat $25 per referral", "{e}: {r}");
}

#[tokio::test]
async fn program_e_pays_once_when_staff_qualify_a_lead_and_not_again_on_won() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let referrer = app.enroll(QUALIFIED, &company_email("ref"), "customer").await;
        let id = lead(&app, QUALIFIED, &referrer.code).await;
        stage(&app, &id, "contacted").await;
        assert!(rewards_of(&app, &id).await.is_empty(), "{e}: nothing before the lead qualifies");
        stage(&app, &id, "qualified").await;
        let credit = only_reward(&app, &id).await;
        assert_qualified_credit(e, &credit, &referrer.participant_id);
        stage(&app, &id, "won").await;
        fact(&app, QUALIFIED, &id, "won", "2026-03-14T15:00:00Z", json!({})).await;
        assert_eq!(only_reward(&app, &id).await, credit, "{e}: a won earns nothing more");
        app.stop().await;
    }
}

#[tokio::test]
async fn program_e_pays_once_for_a_qualified_fact_and_for_a_lead_that_jumps_to_won() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let referrer_email = company_email("ref");
        let referrer = app.enroll(QUALIFIED, &referrer_email, "customer").await;
        let id = lead(&app, QUALIFIED, &referrer.code).await;
        fact(&app, QUALIFIED, &id, "qualified", "2026-03-01T15:00:00Z", json!({})).await;
        let credit = only_reward(&app, &id).await;
        assert_qualified_credit(e, &credit, &referrer.participant_id);
        // The same fact again, another qualified later, then the won: still one credit.
        fact(&app, QUALIFIED, &id, "qualified", "2026-03-01T15:00:00Z", json!({})).await;
        fact(&app, QUALIFIED, &id, "qualified", "2026-03-05T15:00:00Z", json!({})).await;
        fact(&app, QUALIFIED, &id, "won", "2026-03-14T15:00:00Z", json!({})).await;
        assert_eq!(only_reward(&app, &id).await, credit, "{e}");

        // A lead won without ever being marked qualified qualified all the same.
        let jumped = lead(&app, QUALIFIED, &referrer.code).await;
        fact(&app, QUALIFIED, &jumped, "won", "2026-03-20T15:00:00Z", json!({})).await;
        assert_qualified_credit(e, &only_reward(&app, &jumped).await, &referrer.participant_id);
        fact(&app, QUALIFIED, &jumped, "won", "2026-03-21T15:00:00Z", json!({})).await;
        assert_eq!(rewards_of(&app, &jumped).await.len(), 1, "{e}");

        // A lead that never qualified earns nothing.
        let lost = lead(&app, QUALIFIED, &referrer.code).await;
        stage(&app, &lost, "lost").await;
        assert!(rewards_of(&app, &lost).await.is_empty(), "{e}");

        // Only referrals that count earn: one rejected (a colleague at the
        // referrer's own company, in this business program) earns nothing.
        let domain = referrer_email.split('@').nth(1).unwrap();
        let body = json!({"referrer_code": referrer.code, "prospect": {"email": format!("colleague@{domain}")}, "consent": true});
        let res = app.api(Method::POST, &format!("/programs/{QUALIFIED}/leads")).json(&body).send().await.unwrap();
        let rejected = json_of(&app, res, StatusCode::CREATED).await;
        assert_eq!(rejected["status"], "rejected", "{e}: {rejected}");
        let rejected = rejected["id"].as_str().unwrap();
        fact(&app, QUALIFIED, rejected, "qualified", "2026-03-01T15:00:00Z", json!({})).await;
        fact(&app, QUALIFIED, rejected, "won", "2026-03-02T15:00:00Z", json!({})).await;
        assert!(rewards_of(&app, rejected).await.is_empty(), "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_share_of_each_payment_is_paid_for_n_months_up_to_the_referral_maximum() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        apply(&app, REVENUE_SHARE).await;
        let slug = "revenue-share";
        let referrer = app.enroll(slug, &company_email("ref"), "customer").await;
        let id = lead(&app, slug, &referrer.code).await;
        let inv = |n: u32| format!("inv-{id}-{n}");
        // A payment before the won is paid for when the won arrives.
        payment(&app, slug, &id, &inv(1), "2026-01-20T15:00:00Z", 300_00).await;
        assert!(rewards_of(&app, &id).await.is_empty(), "{e}: not won yet");
        fact(&app, slug, &id, "won", "2026-01-15T15:00:00Z", json!({"contract_date": "2026-01-15"})).await;
        assert_eq!(rewards_of(&app, &id).await.len(), 1, "{e}");
        payment(&app, slug, &id, &inv(2), "2026-02-20T15:00:00Z", 300_00).await;
        // The same invoice again (another Idempotency-Key): no second reward.
        payment(&app, slug, &id, &inv(2), "2026-02-20T15:00:00Z", 300_00).await;
        payment(&app, slug, &id, &inv(3), "2026-03-20T15:00:00Z", 305_05).await;
        payment(&app, slug, &id, &inv(4), "2026-04-10T15:00:00Z", 300_00).await;
        // Three months after the first payment (20 January) the share ends.
        payment(&app, slug, &id, &inv(5), "2026-04-25T15:00:00Z", 300_00).await;
        let items = rewards_of(&app, &id).await;
        let amounts: Vec<i64> = items.iter().map(|r| r["amount"]["amount_minor"].as_i64().unwrap()).collect();
        assert_eq!(amounts, [30_00, 30_00, 30_51, 9_49], "{e}: {items:?}");
        assert_eq!(amounts.iter().sum::<i64>(), 100_00, "{e}: the referral's maximum");
        assert!(items.iter().all(|r| r["status"] == "approved" && r["kind"] == "cash"), "{e}: {items:?}");
        assert_eq!(items[0]["explanation"], "10% of the $300 payment = $30", "{e}");
        assert_eq!(items[2]["explanation"], "10% of the $305.05 payment = $30.51 (rounded half up)", "{e}");
        assert_eq!(
            items[3]["explanation"],
            "10% of the $300 payment = $30, capped at $9.49: the rest of the $100 maximum per referral ($90.51 \
             earned before)",
            "{e}"
        );
        // Each reward names the payment that earned it.
        let occurrences: std::collections::HashSet<&str> =
            items.iter().map(|r| r["occurrence"].as_str().unwrap()).collect();
        assert_eq!(occurrences.len(), 4, "{e}: {items:?}");

        // Another referral: a payment once the maximum is reached earns a zero reward that says why.
        let other = lead(&app, slug, &referrer.code).await;
        fact(&app, slug, &other, "won", "2026-05-01T15:00:00Z", json!({})).await;
        payment(&app, slug, &other, &format!("big-{other}"), "2026-05-02T15:00:00Z", 2_000_00).await;
        payment(&app, slug, &other, &format!("next-{other}"), "2026-05-03T15:00:00Z", 50_00).await;
        let items = rewards_of(&app, &other).await;
        assert_eq!(items.len(), 2, "{e}: {items:?}");
        assert_eq!(items[0]["amount"], usd(100_00), "{e}");
        assert_eq!(
            items[0]["explanation"],
            "10% of the $2,000 payment = $200, capped at the $100 maximum per referral"
        );
        assert_eq!(items[1]["amount"], usd(0), "{e}");
        assert_eq!(
            items[1]["explanation"],
            "10% of the $50 payment = $5, reduced to $0: the $100 maximum per referral was reached",
            "{e}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn caps_per_person_per_year_and_per_referral_reduce_rewards_to_what_is_left() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        apply(&app, CAPPED).await;
        apply(&app, FLAT_PER_REFERRAL).await;
        let slug = "capped";
        let referrer = app.enroll(slug, &company_email("ref"), "customer").await;
        let flat_of = |items: Vec<Value>| items.into_iter().find(|r| r["rule"] == "flat-capped").unwrap();
        let mut earned = Vec::new();
        for (date, units) in
            [("2026-02-01", 1), ("2026-03-01", 20), ("2026-04-01", 1), ("2026-05-01", 1), ("2027-01-10", 1)]
        {
            let id = lead(&app, slug, &referrer.code).await;
            let extra = json!({"contract_date": date, "units": units});
            fact(&app, slug, &id, "won", &format!("{date}T15:00:00Z"), extra).await;
            let items = rewards_of(&app, &id).await;
            assert_eq!(items.len(), 2, "{e}: {items:?}");
            let seats = items.iter().find(|r| r["rule"] == "seats").unwrap().clone();
            earned.push((flat_of(items), seats));
        }
        let flat: Vec<i64> = earned.iter().map(|(f, _)| f["amount"]["amount_minor"].as_i64().unwrap()).collect();
        // USD 100.00 a calendar year: 40 + 40 + 20 + 0, and 40 again in 2027.
        assert_eq!(flat, [40_00, 40_00, 20_00, 0, 40_00], "{e}");
        assert_eq!(
            earned[2].0["explanation"],
            "flat $40 per referral, capped at $20: the rest of the $100 maximum per person in 2026 ($80 earned before)",
            "{e}"
        );
        assert_eq!(
            earned[3].0["explanation"],
            "flat $40 per referral, reduced to $0: the $100 maximum per person in 2026 was reached",
            "{e}"
        );
        assert_eq!(earned[3].0["status"], "approved", "{e}: a zero reward is stored like any other");
        assert_eq!(earned[4].0["explanation"], "flat $40 per referral", "{e}");
        // 20 seats × $10 = $200, at most $150 per referral; the others are under it.
        let seats: Vec<i64> = earned.iter().map(|(_, s)| s["amount"]["amount_minor"].as_i64().unwrap()).collect();
        assert_eq!(seats, [10_00, 150_00, 10_00, 10_00, 10_00], "{e}");
        assert_eq!(
            earned[1].1["explanation"],
            "20 seats × $10 (tier 0+: 1 seat in 2026 before this referral) = $200, capped at the $150 maximum per \
             referral",
            "{e}"
        );

        // A flat reward above its own per-referral maximum.
        let other = app.enroll("flat-per-referral", &company_email("ref"), "customer").await;
        let id = lead(&app, "flat-per-referral", &other.code).await;
        stage(&app, &id, "contacted").await;
        stage(&app, &id, "qualified").await;
        let r = only_reward(&app, &id).await;
        assert_eq!((&r["amount"], r["status"].as_str()), (&usd(30_00), Some("pending")), "{e}: {r}");
        assert_eq!(r["explanation"], "flat $40 per referral, capped at the $30 maximum per referral", "{e}");
        app.stop().await;
    }
}
