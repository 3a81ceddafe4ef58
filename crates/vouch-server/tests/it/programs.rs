//! Programs A–E of the design brief, each followed end to end through the HTTP
//! API with the shipped example program and its example figures: the referrer
//! enrolls, the referral is made the way the program's users make it, facts move
//! it, and the reward goes through what the program promises until it is `paid`
//! (handed to billing and applied; a gift card approved by finance and
//! fulfilled; cash held, approved when the hold ends, batched and paid out).

// Amounts are written as whole_cents: `150_00` is USD 150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_store::testing::TestDatabase;

use crate::helpers::{TestApp, company_email, csv_of, json_of, uniq};

fn usd(minor: i64) -> Value {
    json!({"amount_minor": minor, "currency": "USD"})
}

/// Posts `body` and expects 200.
async fn post_ok(app: &TestApp, path: &str, body: Value) -> Value {
    let res = app.api(Method::POST, path).json(&body).send().await.expect("send");
    json_of(app, res, StatusCode::OK).await
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    json_of(app, app.api_get(path).await, StatusCode::OK).await
}

/// A lead handed over through the portal's API; the referral counts.
async fn lead(app: &TestApp, slug: &str, code: &str) -> String {
    let body = json!({"referrer_code": code, "prospect": {"email": company_email("lead")}, "consent": true});
    let res = app.api(Method::POST, &format!("/programs/{slug}/leads")).json(&body).send().await.expect("send");
    let r = json_of(app, res, StatusCode::CREATED).await;
    assert_eq!((r["status"].as_str(), r["stage"].as_str()), (Some("active"), Some("new")), "{}: {r}", app.engine);
    r["id"].as_str().unwrap().to_string()
}

/// A fact about a referral, `extra` merged into the body; the answer.
async fn fact(app: &TestApp, slug: &str, kind: &str, referral: &str, occurred_at: &str, extra: Value) -> Value {
    let mut body = json!({"type": kind, "program": slug, "occurred_at": occurred_at, "referral_id": referral});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&body).send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert!(status.is_success(), "{}: {kind} answered {status}: {text}", app.engine);
    serde_json::from_str(&text).unwrap()
}

/// A `won` that moves the referral to `won`; the answer.
async fn won(app: &TestApp, slug: &str, referral: &str, occurred_at: &str, extra: Value) -> Value {
    let answer = fact(app, slug, "won", referral, occurred_at, extra).await;
    assert_eq!(answer["stage_after"], "won", "{}: {answer}", app.engine);
    assert_eq!(get_ok(app, &format!("/referrals/{referral}")).await["stage"], "won", "{}", app.engine);
    answer
}

async fn rewards_of(app: &TestApp, referral: &str) -> Vec<Value> {
    get_ok(app, &format!("/rewards?referral={referral}")).await["items"].as_array().unwrap().clone()
}

async fn only_reward(app: &TestApp, referral: &str) -> Value {
    let items = rewards_of(app, referral).await;
    assert_eq!(items.len(), 1, "{}: one reward for {referral}: {items:?}", app.engine);
    items[0].clone()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

async fn status_of(app: &TestApp, reward: &str) -> String {
    get_ok(app, &format!("/rewards/{reward}")).await["status"].as_str().unwrap().to_string()
}

/// The participant's USD balance: (pending, approved, paid) in minor units.
async fn balance(app: &TestApp, participant: &str) -> (i64, i64, i64) {
    let p = get_ok(app, &format!("/participants/{participant}")).await;
    let usd = p["rewards"].as_array().unwrap().iter().find(|b| b["currency"] == "USD");
    let usd = usd.unwrap_or_else(|| panic!("{}: a USD balance: {p}", app.engine));
    assert_eq!(usd["adjustments_minor"], 0, "{}: {p}", app.engine);
    let n = |k: &str| usd[k].as_i64().unwrap();
    (n("pending_minor"), n("approved_minor"), n("paid_minor"))
}

/// Hands approved credits and upgrades to billing (twice, as two replicas
/// might) and returns the one billing instruction written for `reward`.
async fn billing_instruction(app: &TestApp, reward: &str) -> Value {
    let now = jiff::Timestamp::now();
    vouch_server::fulfilment::hand_over_all(&app.store, now).await.expect("hand over");
    vouch_server::fulfilment::hand_over_all(&app.store, now).await.expect("hand over again");
    let rows: Vec<Value> = app
        .store
        .outbox_items(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.kind == "billing" && i.payload["reward_id"] == reward)
        .map(|i| i.payload)
        .collect();
    assert_eq!(rows.len(), 1, "{}: handed to billing exactly once: {rows:?}", app.engine);
    rows[0].clone()
}

/// Billing reports the credit or upgrade applied: the reward is paid.
async fn applied(app: &TestApp, reward: &str, reference: &str) {
    let done = post_ok(app, &format!("/rewards/{reward}/applied"), json!({"reference": reference})).await;
    assert_eq!(done["status"], "paid", "{}: {done}", app.engine);
    assert_eq!(status_of(app, reward).await, "paid", "{}", app.engine);
}

#[tokio::test]
async fn program_a_pays_a_100_dollar_invoice_credit_applied_by_billing() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let slug = "customer-credit";
        let referrer = app.enroll(slug, &company_email("ref"), "customer").await;
        let referral = lead(&app, slug, &referrer.code).await;
        won(&app, slug, &referral, "2026-03-14T15:00:00Z", json!({"contract_date": "2026-03-14"})).await;

        let credit = only_reward(&app, &referral).await;
        assert_eq!(credit["amount"], usd(100_00), "{e}: {credit}");
        assert_eq!(
            (credit["kind"].as_str(), credit["status"].as_str(), credit["beneficiary"].as_str()),
            (Some("credit"), Some("approved"), Some("referrer")),
            "{e}: approved at once: {credit}"
        );
        assert_eq!(credit["participant_id"], referrer.participant_id.as_str(), "{e}");
        assert_eq!(credit["explanation"], "flat $100 per referral", "{e}");
        assert_eq!(balance(&app, &referrer.participant_id).await, (0, 100_00, 0), "{e}");

        let id = id_of(&credit);
        let handed = billing_instruction(&app, &id).await;
        assert_eq!(handed["type"], "credit", "{e}: {handed}");
        assert_eq!(handed["amount"], usd(100_00), "{e}: {handed}");
        assert_eq!(handed["recipient"]["participant_id"], referrer.participant_id.as_str(), "{e}: {handed}");
        assert_eq!(status_of(&app, &id).await, "approved", "{e}: handed over, not yet applied");

        applied(&app, &id, "INV-2026-0042").await;
        assert_eq!(balance(&app, &referrer.participant_id).await, (0, 0, 100_00), "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn program_b_pays_a_50_dollar_gift_card_once_finance_approves_and_the_card_is_sent() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let slug = "agent-gift-card";
        // Open to anyone, not only customers.
        let agent = app.enroll(slug, &company_email("agent"), "other").await;
        let referral = lead(&app, slug, &agent.code).await;
        won(&app, slug, &referral, "2026-03-14T15:00:00Z", json!({"contract_date": "2026-03-14"})).await;

        let card = only_reward(&app, &referral).await;
        let id = id_of(&card);
        assert_eq!(card["amount"], usd(50_00), "{e}: {card}");
        assert_eq!((card["kind"].as_str(), card["status"].as_str()), (Some("gift_card"), Some("pending")), "{e}");
        assert_eq!(card["release_at"], Value::Null, "{e}: no hold, only finance: {card}");
        assert_eq!(card["explanation"], "flat $50 per referral", "{e}");
        // Releasing due holds does not approve what finance must approve.
        vouch_server::holds::release_all_due(&app.store, jiff::Timestamp::now()).await.expect("release");
        assert_eq!(status_of(&app, &id).await, "pending", "{e}");
        assert_eq!(get_ok(&app, "/fulfilment/gift-cards").await["items"], json!([]), "{e}: not due before approval");
        assert_eq!(balance(&app, &agent.participant_id).await, (50_00, 0, 0), "{e}");

        let approved = post_ok(&app, &format!("/rewards/{id}/approve"), json!({"note": "deal confirmed"})).await;
        assert_eq!((approved["status"].as_str(), &approved["amount"]), (Some("approved"), &usd(50_00)), "{e}");

        let queue = get_ok(&app, "/fulfilment/gift-cards").await;
        let items = queue["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{e}: {queue}");
        assert_eq!((items[0]["reward_id"].as_str(), &items[0]["amount"]), (Some(id.as_str()), &usd(50_00)), "{e}");
        assert_eq!(items[0]["participant_id"], agent.participant_id.as_str(), "{e}");
        let rows = csv_of(&app, "/fulfilment/gift-cards?format=csv").await;
        assert_eq!(rows.len(), 1, "{e}: {rows:?}");
        let row = &rows[0];
        assert_eq!(
            (row["reward_id"].as_str(), row["program"].as_str(), row["amount"].as_str(), row["currency"].as_str()),
            (id.as_str(), slug, "50.00", "USD"),
            "{e}"
        );

        let done = post_ok(&app, &format!("/rewards/{id}/fulfil"), json!({"card_reference": "GC-7781"})).await;
        assert_eq!((done["status"].as_str(), &done["amount"]), (Some("paid"), &usd(50_00)), "{e}: {done}");
        assert_eq!(status_of(&app, &id).await, "paid", "{e}");
        assert_eq!(get_ok(&app, "/fulfilment/gift-cards").await["items"], json!([]), "{e}: fulfilled, off the queue");
        assert_eq!(balance(&app, &agent.participant_id).await, (0, 0, 50_00), "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn program_c_pays_16_technicians_at_150_dollars_after_the_two_month_hold_in_a_payout_batch() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let slug = "per-technician";
        let referrer = app.enroll(slug, &company_email("ref"), "customer").await;
        let details =
            json!({"method": "bank_transfer", "iban": "DE89 3704 0044 0532 0130 00", "account_holder": "Ada Lovelace"});
        let path = format!("/participants/{}/payout-details", referrer.participant_id);
        let res = app.api(Method::PUT, &path).json(&details).send().await.unwrap();
        json_of(&app, res, StatusCode::OK).await;

        // Earlier in the referrer's year: 20 + 15 technicians, a prior total of 35.
        for (units, date) in [(20, "2026-01-10"), (15, "2026-02-02")] {
            let earlier = lead(&app, slug, &referrer.code).await;
            let extra = json!({"units": units, "contract_date": date});
            won(&app, slug, &earlier, &format!("{date}T15:00:00Z"), extra).await;
        }
        let referral = lead(&app, slug, &referrer.code).await;
        let extra = json!({"units": 16, "contract_date": "2026-03-14"});
        won(&app, slug, &referral, "2026-03-14T15:00:00Z", extra).await;

        let cash = only_reward(&app, &referral).await;
        let id = id_of(&cash);
        assert_eq!(cash["amount"], usd(2_400_00), "{e}: 16 × $150: {cash}");
        assert_eq!((cash["kind"].as_str(), cash["status"].as_str()), (Some("cash"), Some("pending")), "{e}");
        assert_eq!(cash["units"], 16, "{e}");
        assert_eq!(
            cash["explanation"],
            "16 technicians × $150 (tier 31–60: 35 technicians in your year from 10 Jan 2026 before this referral) \
             = $2,400",
            "{e}"
        );
        // Two calendar months after the contract date, at the start of that day in Chicago.
        assert_eq!(cash["release_at"], "2026-05-14T05:00:00Z", "{e}");

        // A moment before the hold ends it is still held; after it, approved by itself.
        let just_before: jiff::Timestamp = "2026-05-14T04:59:59Z".parse().unwrap();
        vouch_server::holds::release_all_due(&app.store, just_before).await.expect("release");
        assert_eq!(status_of(&app, &id).await, "pending", "{e}: the hold has not ended");
        vouch_server::holds::release_all_due(&app.store, jiff::Timestamp::now()).await.expect("release");
        let approved = get_ok(&app, &format!("/rewards/{id}")).await;
        assert_eq!((approved["status"].as_str(), &approved["amount"]), (Some("approved"), &usd(2_400_00)), "{e}");

        let res = app.api(Method::POST, "/payouts").json(&json!({"reward_ids": [id]})).send().await.unwrap();
        let batch = json_of(&app, res, StatusCode::CREATED).await;
        let batch_id = id_of(&batch);
        assert_eq!((batch["method"].as_str(), &batch["total"]), (Some("bank_transfer"), &usd(2_400_00)), "{e}");
        let items = batch["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{e}: {batch}");
        assert_eq!(items[0]["participant_id"], referrer.participant_id.as_str(), "{e}");
        assert_eq!((&items[0]["amount"], &items[0]["reward_ids"]), (&usd(2_400_00), &json!([id])), "{e}");

        let rows = csv_of(&app, &format!("/payouts/{batch_id}/export")).await;
        assert_eq!(rows.len(), 1, "{e}: {rows:?}");
        let row = &rows[0];
        assert_eq!(
            (row["destination"].as_str(), row["amount_minor"].as_str(), row["amount"].as_str()),
            ("DE89370400440532013000", "240000", "2400.00"),
            "{e}"
        );
        assert_eq!((row["currency"].as_str(), row["reward_ids"].as_str()), ("USD", id.as_str()), "{e}");

        let paid =
            post_ok(&app, &format!("/payouts/{batch_id}/paid"), json!({"external_reference": "ACH-2026-118"})).await;
        assert_eq!(
            (paid["status"].as_str(), paid["external_reference"].as_str()),
            (Some("paid"), Some("ACH-2026-118")),
            "{e}: {paid}"
        );
        assert_eq!(status_of(&app, &id).await, "paid", "{e}");
        // The earlier referrals' rewards are approved, not in this batch: 20 × $100 + 15 × $100.
        assert_eq!(balance(&app, &referrer.participant_id).await, (0, 3_500_00, 2_400_00), "{e}");

        // The report's year is the UTC year the reward was paid in.
        let year = &paid["paid_at"].as_str().expect("paid_at")[..4];
        let report = csv_of(&app, &format!("/reports/payees?year={year}")).await;
        let mine: Vec<_> = report.iter().filter(|r| r["participant_id"] == referrer.participant_id).collect();
        assert_eq!(mine.len(), 1, "{e}: {report:?}");
        assert_eq!(
            (
                mine[0]["currency"].as_str(),
                mine[0]["paid_minor"].as_str(),
                mine[0]["paid"].as_str(),
                mine[0]["rewards"].as_str()
            ),
            ("USD", "240000", "2400.00", "1"),
            "{e}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn program_d_upgrades_the_referrer_credits_the_new_customer_capped_and_enrolls_them() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let slug = "double-sided";
        let referrer = app.enroll(slug, &company_email("ref"), "customer").await;
        // The friend follows the link and signs up with the code the landing page kept.
        let friend = company_email("friend");
        let body = json!({"type": "signup", "program": slug, "occurred_at": "2026-03-01T10:00:00Z",
            "prospect": {"email": friend}, "referral_code": referrer.code});
        let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&body).send().await.unwrap();
        let signup = json_of(&app, res, StatusCode::CREATED).await;
        assert_eq!(signup["referral_created"], true, "{e}: {signup}");
        let referral = signup["referral_id"].as_str().unwrap().to_string();

        // 20% of USD 800.00 is 160.00: the USD 100.00 cap bites.
        let extra = json!({"value": usd(800_00), "contract_date": "2026-03-14"});
        let answer = won(&app, slug, &referral, "2026-03-14T15:00:00Z", extra).await;

        let rewards = rewards_of(&app, &referral).await;
        assert_eq!(rewards.len(), 2, "{e}: {rewards:?}");
        let side = |who: &str| rewards.iter().find(|r| r["beneficiary"] == who).unwrap().clone();
        let (upgrade, credit) = (side("referrer"), side("referee"));
        assert_eq!(
            (
                upgrade["kind"].as_str(),
                upgrade["status"].as_str(),
                upgrade["plan"].as_str(),
                upgrade["months"].as_i64()
            ),
            (Some("plan_upgrade"), Some("approved"), Some("premium"), Some(3)),
            "{e}: {upgrade}"
        );
        assert_eq!(upgrade["participant_id"], referrer.participant_id.as_str(), "{e}");
        assert_eq!(upgrade["explanation"], "3 months of the premium plan", "{e}");
        assert_eq!((credit["kind"].as_str(), credit["status"].as_str()), (Some("credit"), Some("approved")), "{e}");
        assert_eq!(credit["amount"], usd(100_00), "{e}: {credit}");
        assert_eq!(
            credit["explanation"], "20% of the $800 contract value = $160, capped at the $100 maximum per referral",
            "{e}"
        );

        // The new customer is a referrer at once, with a working link of their own.
        let enrolled = &answer["enrolled"];
        let code = enrolled["code"].as_str().unwrap_or_else(|| panic!("{e}: enrolled: {answer}"));
        assert_ne!(code, referrer.code, "{e}");
        assert!(enrolled["link"].as_str().unwrap().ends_with(&format!("/r/{code}")), "{e}: {answer}");
        let convert = get_ok(&app, &format!("/participants/{}", enrolled["participant_id"].as_str().unwrap())).await;
        assert_eq!(convert["email"], friend.as_str(), "{e}: {convert}");
        assert!(convert.to_string().contains(code), "{e}: their code is listed: {convert}");
        assert_eq!(app.visit(code).await.status, StatusCode::FOUND, "{e}");
        // Their first-invoice credit is theirs: it names them, and their balance shows it.
        let newcomer = enrolled["participant_id"].as_str().unwrap().to_string();
        assert_eq!(credit["participant_id"], newcomer.as_str(), "{e}: {credit}");

        let (upgrade_id, credit_id) = (id_of(&upgrade), id_of(&credit));
        let handed = billing_instruction(&app, &upgrade_id).await;
        assert_eq!(
            (handed["type"].as_str(), handed["plan"].as_str(), handed["months"].as_i64()),
            (Some("plan_upgrade"), Some("premium"), Some(3)),
            "{e}: {handed}"
        );
        assert_eq!(handed["recipient"]["participant_id"], referrer.participant_id.as_str(), "{e}: {handed}");
        let handed = billing_instruction(&app, &credit_id).await;
        assert_eq!((handed["type"].as_str(), handed["beneficiary"].as_str()), (Some("credit"), Some("referee")), "{e}");
        assert_eq!(handed["amount"], usd(100_00), "{e}: {handed}");
        assert_eq!(handed["recipient"]["email"], friend.as_str(), "{e}: the new customer: {handed}");

        applied(&app, &upgrade_id, "SUB-premium-3m").await;
        applied(&app, &credit_id, "INV-first").await;
        let paid = get_ok(&app, &format!("/rewards?participant={}&status=paid", referrer.participant_id)).await;
        let paid: Vec<_> = paid["items"].as_array().unwrap().iter().map(id_of).collect();
        assert_eq!(paid, [upgrade_id], "{e}: the referrer sees their upgrade paid");
        assert_eq!(balance(&app, &newcomer).await, (0, 0, 100_00), "{e}: the new customer sees their credit paid");
        app.stop().await;
    }
}

#[tokio::test]
async fn program_e_pays_25_dollars_once_for_a_qualified_lead_and_nothing_more_when_won() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let slug = "qualified-lead";
        let referrer = app.enroll(slug, &company_email("ref"), "customer").await;
        let referral = lead(&app, slug, &referrer.code).await;
        let answer = fact(&app, slug, "qualified", &referral, "2026-03-02T16:00:00Z", json!({})).await;
        assert_eq!(answer["stage_after"], "qualified", "{e}: {answer}");

        let credit = only_reward(&app, &referral).await;
        let id = id_of(&credit);
        assert_eq!(credit["amount"], usd(25_00), "{e}: {credit}");
        assert_eq!((credit["kind"].as_str(), credit["status"].as_str()), (Some("credit"), Some("approved")), "{e}");
        assert_eq!(credit["explanation"], "flat $25 per referral", "{e}");
        assert_eq!(balance(&app, &referrer.participant_id).await, (0, 25_00, 0), "{e}");

        // The deal closes later: the one credit stays the only one.
        won(&app, slug, &referral, "2026-04-20T15:00:00Z", json!({"contract_date": "2026-04-20"})).await;
        assert_eq!(only_reward(&app, &referral).await, credit, "{e}: a won pays nothing more");

        let handed = billing_instruction(&app, &id).await;
        assert_eq!((handed["type"].as_str(), &handed["amount"]), (Some("credit"), &usd(25_00)), "{e}: {handed}");
        applied(&app, &id, "INV-2026-0007").await;
        assert_eq!(balance(&app, &referrer.participant_id).await, (0, 0, 25_00), "{e}");
        assert_eq!(rewards_of(&app, &referral).await.len(), 1, "{e}");
        app.stop().await;
    }
}
