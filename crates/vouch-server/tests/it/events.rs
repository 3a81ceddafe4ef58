//! Facts through `POST /api/v1/events`, with the shipped example programs: the
//! stage derived from facts, duplicates (Idempotency-Key, `event_id`, the same
//! fact again), referrals made by a `signup` with a code or click id, facts about
//! prospects nobody holds (into the registry, with the reason), bad input
//! (pointed at, nothing stored), the viral loop, exactly once under 100
//! concurrent deliveries, and delivery order not mattering.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_store::testing::TestDatabase;

use crate::helpers::{TestApp, company_email, expect_problem, json_of, pointers, uniq};

const AGENT: &str = "agent-gift-card";
const DOUBLE: &str = "double-sided";
const PROGRAMS: [&str; 5] = ["customer-credit", "agent-gift-card", "per-technician", "double-sided", "qualified-lead"];

async fn referrer(app: &TestApp, slug: &str) -> String {
    app.enroll(slug, &company_email("ref"), "customer").await.code
}

async fn lead(app: &TestApp, slug: &str, code: &str, email: &str) -> String {
    let body = json!({"referrer_code": code, "prospect": {"email": email, "name": "Bob Prospect"}, "consent": true});
    let res = app.api(Method::POST, &format!("/programs/{slug}/leads")).json(&body).send().await.unwrap();
    let r = json_of(app, res, StatusCode::CREATED).await;
    assert_eq!(r["status"], "active", "{}: {r}", app.engine);
    r["id"].as_str().unwrap().to_string()
}

async fn send(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.api(Method::POST, "/events").header("Idempotency-Key", key).json(body).send().await.expect("send event")
}

/// Posts an event under a fresh Idempotency-Key, expecting `status`.
async fn event(app: &TestApp, body: &Value, status: StatusCode) -> Value {
    let res = send(app, &uniq(), body).await;
    json_of(app, res, status).await
}

fn fact(kind: &str, slug: &str, email: &str, at: &str) -> Value {
    json!({"type": kind, "program": slug, "occurred_at": at, "prospect": {"email": email}})
}

async fn referral(app: &TestApp, id: &str) -> Value {
    let res = app.api_get(&format!("/referrals/{id}")).await;
    json_of(app, res, StatusCode::OK).await
}

/// Stage changes to `to` in the referral's timeline.
fn transitions_to(r: &Value, to: &str) -> usize {
    r["timeline"].as_array().unwrap().iter().filter(|e| e["kind"] == "stage" && e["stage_to"] == to).count()
}

/// Welcome emails queued to `email`.
async fn welcomes_to(app: &TestApp, email: &str) -> usize {
    let items = app.store.outbox_items(None).await.unwrap();
    items.iter().filter(|i| i.payload["template"] == "welcome" && i.payload["to"] == email).count()
}

async fn facts(app: &TestApp) -> i64 {
    app.store.count_facts().await.unwrap()
}

// ------------------------------------------------------------------- the basics

#[tokio::test]
async fn a_won_fact_moves_a_referral_at_new_to_won_and_its_event_id_makes_a_repeat_a_duplicate() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT).await;
        let prospect = company_email("bob");
        let id = lead(&app, AGENT, &code, &prospect).await;
        let mut body = fact("won", AGENT, &prospect, "2026-03-01T10:00:00Z");
        body["event_id"] = json!("deal-1");
        body["units"] = json!(3);
        body["value"] = json!({"amount_minor": 120000, "currency": "USD"});
        body["contract_date"] = json!("2026-03-01");
        let first = event(&app, &body, StatusCode::CREATED).await;
        assert_eq!(first["referral_id"], id.as_str(), "{e}: {first}");
        assert_eq!((first["stage_before"].as_str(), first["stage_after"].as_str()), (Some("new"), Some("won")), "{e}");
        assert_eq!(first["changed"], true, "{e}");
        assert!(first["explanation"].as_str().unwrap().contains("from `new` to `won`"), "{e}: {first}");

        // The same fact under another key: a duplicate naming the original.
        let again = event(&app, &body, StatusCode::OK).await;
        assert_eq!(again["changed"], false, "{e}: {again}");
        assert_eq!(again["duplicate_of"], first["fact_id"], "{e}: {again}");
        assert_eq!(again["referral_id"], id.as_str(), "{e}");
        assert_eq!(facts(&app).await, 1, "{e}");

        let r = referral(&app, &id).await;
        assert_eq!(r["stage"], "won", "{e}");
        assert_eq!(transitions_to(&r, "won"), 1, "{e}");
        let fact_entry = r["timeline"].as_array().unwrap().iter().find(|t| t["kind"] == "fact").unwrap().clone();
        assert_eq!(fact_entry["data"]["fact"], "won", "{e}");
        assert_eq!(fact_entry["occurred_at"], "2026-03-01T10:00:00Z", "{e}");
        // A staff move after a fact-derived win is judged from `won`.
        let res = app.api(Method::POST, &format!("/referrals/{id}/stage")).json(&json!({"stage": "churned"})).send();
        let moved = json_of(&app, res.await.unwrap(), StatusCode::OK).await;
        assert_eq!(moved["stage"], "churned", "{e}: {moved}");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_event_without_idempotency_key_is_refused_and_nothing_is_stored() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let res = app
            .api(Method::POST, "/events")
            .json(&fact("won", AGENT, &company_email("x"), "2026-03-01T10:00:00Z"))
            .send()
            .await
            .unwrap();
        expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_required").await;
        assert_eq!(facts(&app).await, 0, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_events_get_a_specific_problem_at_the_field_and_change_nothing() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT).await;
        let prospect = company_email("bob");
        let id = lead(&app, AGENT, &code, &prospect).await;
        let ok = fact("won", AGENT, &prospect, "2026-03-01T10:00:00Z");
        let with = |field: &str, value: Value| {
            let mut b = ok.clone();
            b[field] = value;
            b
        };
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("unknown type", with("type", json!("closed")), "unknown_type", "/type"),
            ("unknown program", with("program", json!("nope")), "unknown_program", "/program"),
            ("not RFC 3339", with("occurred_at", json!("yesterday")), "invalid_time", "/occurred_at"),
            ("a date is not a time", with("occurred_at", json!("2026-03-01")), "invalid_time", "/occurred_at"),
            ("malformed email", with("prospect", json!({"email": "bob@"})), "invalid_email", "/prospect/email"),
            ("negative units", with("units", json!(-3)), "invalid_units", "/units"),
            (
                "another currency",
                with("value", json!({"amount_minor": 100, "currency": "EUR"})),
                "currency_mismatch",
                "/value/currency",
            ),
            ("payment without event_id", with("type", json!("payment")), "event_id_required", "/event_id"),
            ("bad contract date", with("contract_date", json!("2026-02-30")), "invalid_date", "/contract_date"),
            ("bad date format", with("contract_date", json!("01/03/2026")), "invalid_date", "/contract_date"),
            ("no prospect", with("prospect", json!({})), "missing_prospect", "/prospect"),
            ("bad referral id", with("referral_id", json!("r-1")), "unknown_referral", "/referral_id"),
            (
                "unknown referral id",
                with("referral_id", json!(uuid::Uuid::now_v7().to_string())),
                "unknown_referral",
                "/referral_id",
            ),
        ];
        let referrals = app.store.count_referrals().await.unwrap();
        let customers = app.store.count_customers().await.unwrap();
        for (what, body, code, pointer) in cases {
            let res = send(&app, &uniq(), &body).await;
            let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, code).await;
            assert_eq!(pointers(&problem), vec![pointer.to_string()], "{e}: {what}: {problem}");
        }
        assert_eq!(facts(&app).await, 0, "{e}: nothing stored");
        assert_eq!(app.store.count_referrals().await.unwrap(), referrals, "{e}");
        assert_eq!(app.store.count_customers().await.unwrap(), customers, "{e}");
        assert_eq!(referral(&app, &id).await["stage"], "new", "{e}");
        app.stop().await;
    }
}

// ------------------------------------------------------------- who it is about

#[tokio::test]
async fn a_signup_with_a_code_or_a_click_id_makes_a_referral_for_an_unheld_prospect() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT).await;

        let prospect = company_email("coded");
        let mut body = fact("signup", AGENT, &prospect, "2026-03-01T10:00:00Z");
        body["referral_code"] = json!(code);
        let answer = event(&app, &body, StatusCode::CREATED).await;
        assert_eq!(answer["referral_created"], true, "{e}: {answer}");
        let r = referral(&app, answer["referral_id"].as_str().unwrap()).await;
        assert_eq!((r["source"].as_str(), r["status"].as_str()), (Some("signup_with_code"), Some("active")), "{e}");
        // A second signup for the same prospect finds the referral instead.
        let again = event(&app, &fact("signup", AGENT, &prospect, "2026-03-02T10:00:00Z"), StatusCode::CREATED).await;
        assert_eq!(again["referral_id"], answer["referral_id"], "{e}: {again}");
        assert_eq!(again["referral_created"], false, "{e}");

        let visit = app.visit(&code).await;
        let vclid = visit.vclid().expect("a click id");
        let prospect = company_email("clicked");
        let mut body = fact("signup", AGENT, &prospect, "2026-03-01T10:00:00Z");
        body["click_id"] = json!(vclid);
        let answer = event(&app, &body, StatusCode::CREATED).await;
        let r = referral(&app, answer["referral_id"].as_str().expect("a referral")).await;
        assert_eq!(r["source"], "signup_with_click", "{e}: {r}");
        app.stop().await;
    }
}

#[tokio::test]
async fn facts_about_unheld_prospects_are_accepted_into_the_registry_with_the_reason() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT).await;
        let unknown_code = company_email("unknown-code");
        let unknown_click = company_email("unknown-click");
        let nobody = company_email("nobody");
        let cases = [
            (unknown_code.clone(), json!({"referral_code": "NOSUCHCODE"}), "NOSUCHCODE"),
            (
                unknown_click.clone(),
                json!({"click_id": format!("{code}.0193a0b0c0d0e0f00000000000000000")}),
                "names no click",
            ),
            (nobody.clone(), json!({}), "holds this prospect"),
        ];
        for (email, extra, says) in &cases {
            let mut body = fact(
                if extra.as_object().unwrap().is_empty() { "won" } else { "signup" },
                AGENT,
                email,
                "2026-03-01T10:00:00Z",
            );
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            let before = app.store.count_referrals().await.unwrap();
            let answer = event(&app, &body, StatusCode::CREATED).await;
            assert_eq!(answer["referral_id"], Value::Null, "{e}: {answer}");
            let explanation = answer["explanation"].as_str().unwrap();
            assert!(explanation.contains(says) && explanation.contains("customer registry"), "{e}: {explanation}");
            assert_eq!(app.store.count_referrals().await.unwrap(), before, "{e}");
        }
        // They are customers now: a lead for one of them is `existing_customer`.
        let body = json!({"referrer_code": code, "prospect": {"email": nobody}, "consent": true});
        let res = app.api(Method::POST, &format!("/programs/{AGENT}/leads")).json(&body).send().await.unwrap();
        let r = json_of(&app, res, StatusCode::CREATED).await;
        assert_eq!(r["rejection_reason"], "existing_customer", "{e}: {r}");
        assert_eq!(facts(&app).await, 3, "{e}");
        app.stop().await;
    }
}

// ------------------------------------------------------------------ viral loop

#[tokio::test]
async fn a_won_referral_in_a_double_sided_program_enrolls_the_new_customer_with_a_welcome_email() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, DOUBLE).await;
        let prospect = company_email("convert");
        lead(&app, DOUBLE, &code, &prospect).await;
        let answer = event(&app, &fact("won", DOUBLE, &prospect, "2026-03-01T10:00:00Z"), StatusCode::CREATED).await;
        let enrolled = &answer["enrolled"];
        let new_code = enrolled["code"].as_str().unwrap_or_else(|| panic!("{e}: enrolled: {answer}"));
        assert!(enrolled["link"].as_str().unwrap().ends_with(&format!("/r/{new_code}")), "{e}: {answer}");
        let res = app.api_get(&format!("/participants/{}", enrolled["participant_id"].as_str().unwrap())).await;
        let p = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(p["kind"], "customer", "{e}: {p}");
        assert!(p.to_string().contains(new_code), "{e}: their code is listed: {p}");
        assert_eq!(welcomes_to(&app, &prospect).await, 1, "{e}");
        // Their link works at once.
        assert_eq!(app.visit(new_code).await.status, StatusCode::FOUND, "{e}");

        // Elsewhere nothing happens.
        let code = referrer(&app, AGENT).await;
        let prospect = company_email("plain");
        lead(&app, AGENT, &code, &prospect).await;
        let answer = event(&app, &fact("won", AGENT, &prospect, "2026-03-01T10:00:00Z"), StatusCode::CREATED).await;
        assert_eq!(answer["enrolled"], Value::Null, "{e}: {answer}");
        assert_eq!(welcomes_to(&app, &prospect).await, 0, "{e}");
        app.stop().await;
    }
}

// ------------------------------------------------------------- exactly once

/// 100 deliveries of a `won` at once, each built by `body(i)` and sent with
/// `key(i)`: one transition to `won`, one welcome email.
async fn hundred_at_once(app: &TestApp, what: &str, key: impl Fn(usize) -> String, body: impl Fn(&str) -> Value) {
    let e = app.engine;
    let code = referrer(app, DOUBLE).await;
    let prospect = company_email("race");
    let id = lead(app, DOUBLE, &code, &prospect).await;
    let body = body(&prospect);
    let sends = (0..100).map(|i| {
        let key = key(i);
        let body = body.clone();
        async move { send(app, &key, &body).await }
    });
    let answers = futures::future::join_all(sends).await;
    let mut changed = 0;
    for res in answers {
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{e}: {what}: {status} {v}");
        if v["changed"] == true && v["stage_after"] == "won" {
            changed += 1;
        }
    }
    let r = referral(app, &id).await;
    assert_eq!(r["stage"], "won", "{e}: {what}");
    assert_eq!(transitions_to(&r, "won"), 1, "{e}: {what}: one transition to won");
    assert_eq!(welcomes_to(app, &prospect).await, 1, "{e}: {what}: one welcome email");
    assert!(changed >= 1, "{e}: {what}: some answer reports the change");
}

#[tokio::test]
async fn a_hundred_concurrent_identical_won_events_under_one_key_win_once() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let key = uniq();
        hundred_at_once(&app, "one key", |_| key.clone(), |p| fact("won", DOUBLE, p, "2026-03-01T10:00:00Z")).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_hundred_concurrent_won_events_with_one_event_id_win_once() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        hundred_at_once(
            &app,
            "one event_id",
            |i| format!("k-{i}-{}", uniq()),
            |p| {
                let mut b = fact("won", DOUBLE, p, "2026-03-01T10:00:00Z");
                b["event_id"] = json!("deal-42");
                b
            },
        )
        .await;
        assert_eq!(facts(&app).await, 1, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_hundred_concurrent_won_events_without_event_id_for_one_referral_win_once() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        hundred_at_once(
            &app,
            "no event_id",
            |i| format!("k-{i}-{}", uniq()),
            |p| fact("won", DOUBLE, p, "2026-03-01T10:00:00Z"),
        )
        .await;
        app.stop().await;
    }
}

// ------------------------------------------------------------------- ordering

/// SplitMix64, for shuffles from fixed seeds.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// What delivery order must not change: the stage, where the last change led,
/// and the facts held. (The stages passed through on the way depend on arrival.)
async fn state_of(app: &TestApp, id: &str) -> (String, Option<String>, usize, String) {
    let r = referral(app, id).await;
    let timeline = r["timeline"].as_array().unwrap();
    let last_to = timeline.iter().rev().find(|e| e["kind"] == "stage").map(|e| e["stage_to"].to_string());
    let mut facts: Vec<String> = timeline
        .iter()
        .filter(|e| e["kind"] == "fact")
        .map(|e| format!("{} {}", e["data"]["fact"], e["occurred_at"]))
        .collect();
    facts.sort();
    (r["stage"].as_str().unwrap().to_string(), last_to, facts.len(), facts.join(", "))
}

#[tokio::test]
async fn every_example_program_ends_in_the_same_state_whatever_the_delivery_order() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        for (n, slug) in PROGRAMS.iter().enumerate() {
            let churns = *slug == "per-technician";
            let sequence = |email: &str| {
                let mut s = vec![
                    fact("signup", slug, email, "2026-01-05T09:00:00Z"),
                    fact("qualified", slug, email, "2026-01-12T09:00:00Z"),
                    {
                        let mut b = fact("won", slug, email, "2026-02-01T09:00:00Z");
                        b["units"] = json!(12);
                        b["contract_date"] = json!("2026-02-01");
                        b["value"] = json!({"amount_minor": 500000, "currency": "USD"});
                        b
                    },
                    {
                        let mut b = fact("payment", slug, email, "2026-02-15T09:00:00Z");
                        b["event_id"] = json!(format!("inv-{email}"));
                        b["value"] = json!({"amount_minor": 100000, "currency": "USD"});
                        b
                    },
                ];
                if churns {
                    s.push(fact("churned", slug, email, "2026-03-20T09:00:00Z"));
                }
                s
            };
            let mut outcomes = Vec::new();
            let mut rng = SplitMix(0xC0FFEE + n as u64);
            for order in ["in order", "reversed", "shuffled", "shuffled again"] {
                let code = referrer(&app, slug).await;
                let prospect = company_email("order");
                let id = lead(&app, slug, &code, &prospect).await;
                let mut events = sequence(&prospect);
                match order {
                    "in order" => {}
                    "reversed" => events.reverse(),
                    _ => rng.shuffle(&mut events),
                }
                for body in &events {
                    let answer = event(&app, body, StatusCode::CREATED).await;
                    assert_eq!(answer["referral_id"], id.as_str(), "{e}: {slug} {order}: {answer}");
                }
                // A repeated delivery changes nothing.
                let again = event(&app, &events[0], StatusCode::OK).await;
                assert_eq!(again["changed"], false, "{e}: {slug} {order}");
                outcomes.push((order, state_of(&app, &id).await));
            }
            let expected = (if churns { "churned" } else { "won" }).to_string();
            for (order, outcome) in &outcomes {
                assert_eq!(outcome, &outcomes[0].1, "{e}: {slug}: {order} ends where in-order delivery does");
                assert_eq!(outcome.0, expected, "{e}: {slug} {order}");
            }
        }
        app.stop().await;
    }
}
