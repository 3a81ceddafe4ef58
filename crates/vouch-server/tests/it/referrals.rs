//! Referrals through the API, with the shipped example programs: leads and
//! their attribution (accepted, each rejection reason, review), the race of two
//! referrers for one prospect, bad input (pointed at, nothing stored), the
//! pipeline's staff moves, overrides and reviews in the timeline, and the list.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_store::testing::TestDatabase;

use crate::helpers::{TestApp, company_email, expect_problem, json_of, pointers, uniq};

/// Open to every kind of participant, business (company domains count).
const AGENT: &str = "agent-gift-card";

/// Enrolls a customer in `slug` and returns their code.
async fn referrer(app: &TestApp, slug: &str, email: &str) -> String {
    app.enroll(slug, email, "customer").await.code
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.api(Method::POST, path).json(body).send().await.expect("send POST")
}

fn lead_body(code: &str, email: &str) -> Value {
    json!({"referrer_code": code, "prospect": {"email": email, "name": "Bob Prospect"}, "consent": true})
}

/// Posts a lead that must be taken (201) and returns the referral.
async fn lead(app: &TestApp, slug: &str, code: &str, email: &str) -> Value {
    let res = post(app, &format!("/programs/{slug}/leads"), &lead_body(code, email)).await;
    json_of(app, res, StatusCode::CREATED).await
}

async fn get_referral(app: &TestApp, id: &str) -> Value {
    let res = app.api_get(&format!("/referrals/{id}")).await;
    json_of(app, res, StatusCode::OK).await
}

fn kinds(referral: &Value) -> Vec<String> {
    referral["timeline"].as_array().expect("a timeline").iter().map(|e| e["kind"].as_str().unwrap().into()).collect()
}

fn id(referral: &Value) -> String {
    referral["id"].as_str().expect("an id").to_string()
}

async fn count(app: &TestApp) -> i64 {
    app.store.count_referrals().await.expect("count referrals")
}

// ------------------------------------------------------------------- attribution

#[tokio::test]
async fn a_lead_is_taken_active_at_new_with_its_consent_decision_and_timeline() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane")).await;
        let prospect = company_email("bob");
        let body = json!({
            "referrer_code": code.to_lowercase(),
            "prospect": {"email": prospect, "name": "Bob Prospect", "company": "Globex", "phone": "+1 (555) 010-0199"},
            "note": "Met at the trade fair; wants a demo in May.",
            "consent": true,
        });
        let res = post(&app, &format!("/programs/{AGENT}/leads"), &body).await;
        let r = json_of(&app, res, StatusCode::CREATED).await;
        assert_eq!(r["status"], "active", "{e}: {r}");
        assert_eq!(r["stage"], "new", "{e}: {r}");
        assert_eq!(r["rejection_reason"], Value::Null, "{e}: {r}");
        assert_eq!(r["source"], "lead", "{e}");
        assert_eq!(r["program"], AGENT, "{e}");
        assert_eq!(r["program_version"], 1, "{e}");
        assert_eq!(r["referrer"]["code"], code, "{e}");
        assert_eq!(r["prospect"]["email"], prospect, "{e}");
        assert_eq!(r["prospect"]["company"], "Globex", "{e}");
        assert_eq!(r["note"], "Met at the trade fair; wants a demo in May.", "{e}");
        assert!(r["consent"]["text"].as_str().is_some_and(|t| t.contains("agreed to be contacted")), "{e}: {r}");
        assert!(r["consent"]["at"].as_str().is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()), "{e}: {r}");
        assert_eq!(r["attribution"]["decision"], "active", "{e}: {r}");
        assert!(r["attribution"]["explanation"].as_str().unwrap().starts_with("Active (first referrer wins)"), "{e}");
        assert_eq!(kinds(&r), ["created", "decision"], "{e}");
        assert_eq!(r["timeline"][0]["actor"], "api-key:tests", "{e}");
        // Read back: the same referral.
        let again = get_referral(&app, &id(&r)).await;
        assert_eq!(again, r, "{e}");
        // The consent wording a form showed is stored as given.
        let custom = json!({"referrer_code": code, "prospect": {"email": company_email("carol")}, "consent": true,
            "consent_text": "Carol said we may call her."});
        let res = post(&app, &format!("/programs/{AGENT}/leads"), &custom).await;
        let r = json_of(&app, res, StatusCode::CREATED).await;
        assert_eq!(r["consent"]["text"], "Carol said we may call her.", "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_lead_for_an_existing_customer_is_stored_rejected_existing_customer() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane")).await;
        let known = company_email("known");
        let u = uniq();
        let res = post(
            &app,
            "/customers",
            &json!({"items": [{"email": known.to_uppercase()}, {"domain": format!("initech-{u}.example")}]}),
        )
        .await;
        json_of(&app, res, StatusCode::OK).await;
        for prospect in [known.clone(), format!("peter@initech-{u}.example")] {
            let r = lead(&app, AGENT, &code, &prospect).await;
            assert_eq!(r["status"], "rejected", "{e}: {prospect}: {r}");
            assert_eq!(r["rejection_reason"], "existing_customer", "{e}: {prospect}");
            assert_eq!(r["attribution"]["decision"], "existing_customer", "{e}");
            assert!(r["explanation"].as_str().unwrap().contains("customer registry"), "{e}: {r}");
        }
        // Stored all the same, and listed.
        let res = app.api_get("/referrals?status=rejected").await;
        let page = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 2, "{e}: {page}");
        app.stop().await;
    }
}

#[tokio::test]
async fn second_referrer_of_same_prospect_is_rejected_already_referred_pointing_to_the_holder() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let first = referrer(&app, AGENT, &company_email("first")).await;
        let second = referrer(&app, AGENT, &company_email("second")).await;
        let prospect = format!("Bob.Smith.{}@gmail.com", uniq());
        let holder = lead(&app, AGENT, &first, &prospect).await;
        assert_eq!(holder["status"], "active", "{e}");
        // The same person however they type their Gmail address.
        let respelled = prospect.replace('.', "").replace("gmailcom", "googlemail.com").to_uppercase();
        let late = lead(&app, AGENT, &second, &respelled).await;
        assert_eq!(late["status"], "rejected", "{e}: {late}");
        assert_eq!(late["rejection_reason"], "already_referred", "{e}");
        assert_eq!(late["holder_referral_id"], holder["id"], "{e}");
        assert_eq!(late["attribution"]["holder"], holder["id"], "{e}");
        // The same referrer again is also `already_referred`: one holder per prospect.
        let again = lead(&app, AGENT, &first, &prospect).await;
        assert_eq!(again["rejection_reason"], "already_referred", "{e}");
        // Another program is another race.
        let other = referrer(&app, "per-technician", &company_email("third")).await;
        let elsewhere = lead(&app, "per-technician", &other, &prospect).await;
        assert_eq!(elsewhere["status"], "active", "{e}: {elsewhere}");
        app.stop().await;
    }
}

#[tokio::test]
async fn referring_yourself_is_self_referral_however_you_spell_your_gmail_address() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let u = uniq();
        let code = referrer(&app, AGENT, &format!("Jane.Doe.{u}@gmail.com")).await;
        for prospect in [format!("janedoe{u}+leads@GMAIL.com"), format!("J.A.N.E.doe{u}@googlemail.com")] {
            let r = lead(&app, AGENT, &code, &prospect).await;
            assert_eq!(r["status"], "rejected", "{e}: {prospect}: {r}");
            assert_eq!(r["rejection_reason"], "self_referral", "{e}: {prospect}");
        }
        // Dots matter elsewhere: at another provider this is someone else.
        let code = referrer(&app, AGENT, &format!("jane.doe.{u}@outlook.com")).await;
        let r = lead(&app, AGENT, &code, &format!("JANE.DOE.{u}+x@Outlook.com")).await;
        assert_eq!(r["rejection_reason"], "self_referral", "{e}: {r}");
        let r = lead(&app, AGENT, &code, &format!("janedoe{u}@outlook.com")).await;
        assert_eq!(r["status"], "active", "{e}: {r}");
        // A colleague at the referrer's company domain, in a business program.
        let own = company_email("boss");
        let domain = own.split('@').nth(1).unwrap().to_string();
        let code = referrer(&app, AGENT, &own).await;
        let r = lead(&app, AGENT, &code, &format!("colleague@{domain}")).await;
        assert_eq!(r["rejection_reason"], "self_referral", "{e}: {r}");
        app.stop().await;
    }
}

#[tokio::test]
async fn referring_someone_on_your_own_team_is_same_team() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let team = format!("Acme Sales {}", uniq());
        let me = company_email("me");
        let code = app
            .enroll_with(AGENT, &json!({"email": me, "name": "Me", "kind": "customer_staff", "team": team}))
            .await
            .code;
        let mate = company_email("mate");
        app.enroll_with(
            AGENT,
            &json!({"email": mate, "name": "Mate", "kind": "customer_staff", "team": team.to_uppercase()}),
        )
        .await;
        let r = lead(&app, AGENT, &code, &mate).await;
        assert_eq!(r["status"], "rejected", "{e}: {r}");
        assert_eq!(r["rejection_reason"], "same_team", "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_lead_at_a_disposable_domain_is_in_review_and_holds_the_prospect() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane")).await;
        let prospect = format!("throwaway-{}@mailinator.com", uniq());
        let r = lead(&app, AGENT, &code, &prospect).await;
        assert_eq!(r["status"], "in_review", "{e}: {r}");
        assert_eq!(r["review_signals"], json!(["disposable_email"]), "{e}");
        assert_eq!(r["rejection_reason"], Value::Null, "{e}");
        let other = referrer(&app, AGENT, &company_email("other")).await;
        let late = lead(&app, AGENT, &other, &prospect).await;
        assert_eq!(late["rejection_reason"], "already_referred", "{e}: {late}");
        assert_eq!(late["holder_referral_id"], r["id"], "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_burst_of_leads_from_one_referrer_is_flagged_and_a_suspended_referrer_is_ineligible() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        // per-technician flags the 10th lead within an hour.
        let code = referrer(&app, "per-technician", &company_email("busy")).await;
        for n in 1..=10 {
            let r = lead(&app, "per-technician", &code, &company_email("burst")).await;
            if n < 10 {
                assert_eq!(r["status"], "active", "{e}: lead {n}: {r}");
            } else {
                assert_eq!(r["status"], "in_review", "{e}: lead {n}: {r}");
                assert_eq!(r["review_signals"], json!(["burst"]), "{e}");
            }
        }
        let suspended = app.enroll(AGENT, &company_email("sus"), "customer").await;
        let res = app.api_post(&format!("/participants/{}/suspend", suspended.participant_id)).await;
        assert_eq!(res.status(), StatusCode::OK, "{e}");
        let r = lead(&app, AGENT, &suspended.code, &company_email("bob")).await;
        assert_eq!(r["status"], "rejected", "{e}: {r}");
        assert_eq!(r["rejection_reason"], "ineligible", "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn two_referrers_submitting_the_same_prospect_at_once_end_with_exactly_one_holder() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        for round in 0..20 {
            let a = referrer(&app, AGENT, &company_email("racea")).await;
            let b = referrer(&app, AGENT, &company_email("raceb")).await;
            let prospect = company_email("contested");
            let path = format!("/programs/{AGENT}/leads");
            let send = |code: &str| {
                let req = app.api(Method::POST, &path).json(&lead_body(code, &prospect));
                tokio::spawn(async move { req.send().await })
            };
            let (ra, rb) = (send(&a), send(&b));
            let (ra, rb) = (ra.await.unwrap().unwrap(), rb.await.unwrap().unwrap());
            let ra = json_of(&app, ra, StatusCode::CREATED).await;
            let rb = json_of(&app, rb, StatusCode::CREATED).await;
            let holders: Vec<&Value> = [&ra, &rb].into_iter().filter(|r| r["status"] == "active").collect();
            let rejected: Vec<&Value> = [&ra, &rb].into_iter().filter(|r| r["status"] == "rejected").collect();
            assert_eq!((holders.len(), rejected.len()), (1, 1), "{e} round {round}: {ra} {rb}");
            assert_eq!(rejected[0]["rejection_reason"], "already_referred", "{e} round {round}");
            assert_eq!(rejected[0]["holder_referral_id"], holders[0]["id"], "{e} round {round}");
            // As stored, not only as answered.
            let stored = get_referral(&app, &id(rejected[0])).await;
            assert_eq!(stored["rejection_reason"], "already_referred", "{e} round {round}");
        }
        let res = app.api_get(&format!("/referrals?program={AGENT}&status=active&limit=500")).await;
        let active = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(active["items"].as_array().unwrap().len(), 20, "{e}");
        app.stop().await;
    }
}

// --------------------------------------------------------------------- bad input

#[tokio::test]
async fn bad_leads_are_refused_with_a_problem_naming_the_field_and_store_nothing() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane")).await;
        let revoked = referrer(&app, AGENT, &company_email("gone")).await;
        let res = app.api_post(&format!("/codes/{revoked}/revoke")).await;
        assert_eq!(res.status(), StatusCode::OK, "{e}");
        let elsewhere = referrer(&app, "per-technician", &company_email("elsewhere")).await;
        let ok = company_email("bob");
        let long = "x".repeat(2001);
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("no consent", json!({"referrer_code": code, "prospect": {"email": ok}}), "invalid_field", "/consent"),
            (
                "consent refused",
                json!({"referrer_code": code, "prospect": {"email": ok}, "consent": false}),
                "invalid_field",
                "/consent",
            ),
            ("malformed email", lead_body(&code, "bob@@example"), "invalid_field", "/prospect/email"),
            ("email without domain dot", lead_body(&code, "bob@localhost"), "invalid_field", "/prospect/email"),
            (
                "missing email",
                json!({"referrer_code": code, "prospect": {"name": "Bob"}, "consent": true}),
                "invalid_field",
                "/prospect/email",
            ),
            (
                "oversized note",
                json!({"referrer_code": code, "prospect": {"email": ok}, "consent": true, "note": long}),
                "invalid_field",
                "/note",
            ),
            ("unknown code", lead_body("NOSUCHCODE1", &ok), "unknown_code", "/referrer_code"),
            ("malformed code", lead_body("not a code!", &ok), "unknown_code", "/referrer_code"),
            ("code of another program", lead_body(&elsewhere, &ok), "unknown_code", "/referrer_code"),
            ("revoked code", lead_body(&revoked, &ok), "code_revoked", "/referrer_code"),
            (
                "unknown field",
                json!({"referrer_code": code, "prospect": {"email": ok}, "consent": true, "units": 3}),
                "invalid_field",
                "",
            ),
        ];
        for (what, body, problem_code, pointer) in cases {
            let res = post(&app, &format!("/programs/{AGENT}/leads"), &body).await;
            let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, problem_code).await;
            if !pointer.is_empty() {
                assert!(pointers(&problem).iter().any(|p| p == pointer), "{e}: {what}: {problem}");
            }
            assert_eq!(count(&app).await, 0, "{e}: {what} stored a referral");
        }
        // Several problems at once are all named.
        let res = post(
            &app,
            &format!("/programs/{AGENT}/leads"),
            &json!({"referrer_code": code,
            "prospect": {"email": "nope"}, "note": "y".repeat(2001)}),
        )
        .await;
        let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(pointers(&problem), ["/prospect/email", "/note", "/consent"], "{e}: {problem}");
        // An unknown program is 404.
        let res = post(&app, "/programs/no-such-program/leads", &lead_body(&code, &ok)).await;
        expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(count(&app).await, 0, "{e}");
        // A note of exactly 2,000 characters is fine.
        let body = json!({"referrer_code": code, "prospect": {"email": ok}, "consent": true, "note": "z".repeat(2000)});
        let res = post(&app, &format!("/programs/{AGENT}/leads"), &body).await;
        json_of(&app, res, StatusCode::CREATED).await;
        assert_eq!(count(&app).await, 1, "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn staff_create_referrals_without_consent_or_review_signals() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane")).await;
        let prospect = format!("staff-entered-{}@mailinator.com", uniq());
        let body =
            json!({"program": AGENT, "referrer_code": code, "prospect": {"email": prospect}, "note": "phoned in"});
        let res = post(&app, "/referrals", &body).await;
        let r = json_of(&app, res, StatusCode::CREATED).await;
        assert_eq!(r["source"], "staff", "{e}");
        assert_eq!(r["status"], "active", "{e}: staff have looked at it: {r}");
        assert_eq!(r["consent"], Value::Null, "{e}");
        let res = post(
            &app,
            "/referrals",
            &json!({"program": "nope", "referrer_code": code, "prospect": {"email": prospect}}),
        )
        .await;
        let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "unknown_program").await;
        assert_eq!(pointers(&problem), ["/program"], "{e}");
        assert_eq!(count(&app).await, 1, "{e}");
        app.stop().await;
    }
}

// ----------------------------------------------------------------- staff actions

async fn move_to(app: &TestApp, id: &str, stage: &str, note: Option<&str>) -> reqwest::Response {
    post(app, &format!("/referrals/{id}/stage"), &json!({"stage": stage, "note": note})).await
}

#[tokio::test]
async fn staff_move_referrals_along_the_pipeline_and_forbidden_moves_are_refused() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane")).await;
        let r = lead(&app, AGENT, &code, &company_email("bob")).await;
        let rid = id(&r);
        let res = move_to(&app, &rid, "contacted", Some("left a voicemail")).await;
        let moved = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(moved["stage"], "contacted", "{e}");
        let last = moved["timeline"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["kind"], "stage", "{e}");
        assert_eq!((last["stage_from"].as_str(), last["stage_to"].as_str()), (Some("new"), Some("contacted")), "{e}");
        assert_eq!(last["actor"], "api-key:tests", "{e}");
        assert_eq!(last["note"], "left a voicemail", "{e}");

        // Backwards is refused, naming what is allowed; nothing changes.
        let res = move_to(&app, &rid, "new", None).await;
        let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "stage_not_allowed").await;
        assert_eq!(pointers(&problem), ["/stage"], "{e}");
        assert!(problem["detail"].as_str().unwrap().contains("`contacted`"), "{e}: {problem}");
        let res = move_to(&app, &rid, "contacted", None).await;
        expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "stage_unchanged").await;
        let res = move_to(&app, &rid, "churned", None).await;
        expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "stage_not_allowed").await;
        let res = move_to(&app, &rid, "signed", None).await;
        let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(pointers(&problem), ["/stage"], "{e}");
        let res =
            post(&app, &format!("/referrals/{rid}/stage"), &json!({"stage": "won", "note": "n".repeat(2001)})).await;
        let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(pointers(&problem), ["/note"], "{e}");
        assert_eq!(kinds(&get_referral(&app, &rid).await), ["created", "decision", "stage"], "{e}");

        // Skipping ahead to won is allowed; from won only churned.
        let won = json_of(&app, move_to(&app, &rid, "won", None).await, StatusCode::OK).await;
        assert_eq!(won["stage"], "won", "{e}");
        let res = move_to(&app, &rid, "lost", None).await;
        expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "stage_not_allowed").await;
        let churned = json_of(&app, move_to(&app, &rid, "churned", None).await, StatusCode::OK).await;
        assert_eq!(churned["stage"], "churned", "{e}");

        // Lost and reopened.
        let other = id(&lead(&app, AGENT, &code, &company_email("carl")).await);
        let lost = json_of(&app, move_to(&app, &other, "lost", None).await, StatusCode::OK).await;
        assert_eq!(lost["stage"], "lost", "{e}");
        let reopened = json_of(&app, move_to(&app, &other, "new", None).await, StatusCode::OK).await;
        assert_eq!(reopened["stage"], "new", "{e}");

        // Unknown referrals.
        let res = move_to(&app, &uuid::Uuid::now_v7().to_string(), "won", None).await;
        expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
        let res = move_to(&app, "not-an-id", "won", None).await;
        expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn an_override_turns_a_rejection_active_and_is_audited_in_the_timeline() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane")).await;
        let known = company_email("known");
        json_of(&app, post(&app, "/customers", &json!({"items": [{"email": known}]})).await, StatusCode::OK).await;
        let r = lead(&app, AGENT, &code, &known).await;
        assert_eq!(r["rejection_reason"], "existing_customer", "{e}");
        let rid = id(&r);
        // A reason is needed.
        let res = post(&app, &format!("/referrals/{rid}/override"), &json!({"reason": "  "})).await;
        let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(pointers(&problem), ["/reason"], "{e}");

        let res = post(&app, &format!("/referrals/{rid}/override"), &json!({"reason": "churned two years ago"})).await;
        let o = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(o["status"], "active", "{e}: {o}");
        assert_eq!(o["rejection_reason"], Value::Null, "{e}");
        assert!(o["explanation"].as_str().unwrap().contains("churned two years ago"), "{e}: {o}");
        // The original decision is still shown, and the override sits in the timeline.
        assert_eq!(o["attribution"]["decision"], "existing_customer", "{e}");
        let last = o["timeline"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["kind"], "override", "{e}");
        assert_eq!(last["actor"], "api-key:tests", "{e}");
        assert_eq!(last["note"], "churned two years ago", "{e}");
        assert_eq!(last["data"]["from_reason"], "existing_customer", "{e}");
        // Only a rejection can be overridden.
        let res = post(&app, &format!("/referrals/{rid}/override"), &json!({"reason": "again"})).await;
        expect_problem(e, res, StatusCode::CONFLICT, "not_rejected").await;

        // The overridden referral now holds the prospect...
        let other = referrer(&app, AGENT, &company_email("other")).await;
        let late = lead(&app, AGENT, &other, &known).await;
        assert_eq!(late["rejection_reason"], "existing_customer", "{e}: registry comes first: {late}");
        // ...so overriding a second rejection for them would make two holders.
        let res = post(&app, &format!("/referrals/{}/override", id(&late)), &json!({"reason": "try"})).await;
        let problem = expect_problem(e, res, StatusCode::CONFLICT, "prospect_held").await;
        assert!(problem["detail"].as_str().unwrap().contains(&rid), "{e}: {problem}");
        assert_eq!(get_referral(&app, &id(&late)).await["status"], "rejected", "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_review_decision_accepts_or_rejects_a_flagged_referral_and_is_audited() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane")).await;
        let flagged = |n: u32| format!("flag{n}-{}@mailinator.com", uniq());
        let a = id(&lead(&app, AGENT, &code, &flagged(1)).await);
        let b = id(&lead(&app, AGENT, &code, &flagged(2)).await);

        let res = post(&app, &format!("/referrals/{a}/review"), &json!({"decision": "maybe", "reason": "x"})).await;
        let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(pointers(&problem), ["/decision"], "{e}");

        let res =
            post(&app, &format!("/referrals/{a}/review"), &json!({"decision": "accept", "reason": "called them"}))
                .await;
        let accepted = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(accepted["status"], "active", "{e}: {accepted}");
        let last = accepted["timeline"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["kind"].as_str(), last["data"]["decision"].as_str()), (Some("review"), Some("accept")), "{e}");
        assert_eq!(last["actor"], "api-key:tests", "{e}");
        assert_eq!(last["note"], "called them", "{e}");

        let res =
            post(&app, &format!("/referrals/{b}/review"), &json!({"decision": "reject", "reason": "fake lead"})).await;
        let rejected = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(rejected["status"], "rejected", "{e}");
        assert_eq!(rejected["rejection_reason"], "staff", "{e}");
        assert_eq!(kinds(&rejected), ["created", "decision", "review"], "{e}");

        // Only a referral in review can be decided.
        let res = post(&app, &format!("/referrals/{a}/review"), &json!({"decision": "reject", "reason": "x"})).await;
        expect_problem(e, res, StatusCode::CONFLICT, "not_in_review").await;
        app.stop().await;
    }
}

// ---------------------------------------------------------------------- the list

async fn list(app: &TestApp, query: &str) -> Value {
    let res = app.api_get(&format!("/referrals{query}")).await;
    json_of(app, res, StatusCode::OK).await
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(id).collect()
}

#[tokio::test]
async fn referrals_are_listed_newest_first_with_filters_and_cursor_pages() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let jane_email = company_email("jane");
        let jane = app.enroll(AGENT, &jane_email, "customer").await;
        let max = referrer(&app, AGENT, &company_email("max")).await;
        let tech = referrer(&app, "per-technician", &company_email("tech")).await;
        let mut all = Vec::new();
        for _ in 0..3 {
            all.push(id(&lead(&app, AGENT, &jane.code, &company_email("p")).await));
        }
        all.push(id(&lead(&app, AGENT, &max, &company_email("q")).await));
        all.push(id(&lead(&app, "per-technician", &tech, &company_email("r")).await));
        let staff = json_of(
            &app,
            post(
                &app,
                "/referrals",
                &json!({"program": AGENT, "referrer_code": max, "prospect": {"email": company_email("s")}}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        all.push(id(&staff));
        // Jane herself, referred by Max: another person, so active.
        let jane_as_prospect = lead(&app, AGENT, &max, &jane_email).await;
        all.push(id(&jane_as_prospect));
        all.reverse(); // newest first

        let everything = list(&app, "?limit=500").await;
        assert_eq!(ids(&everything), all, "{e}");
        assert_eq!(everything["next_cursor"], Value::Null, "{e}");
        assert!(everything["items"][0].get("timeline").is_none(), "{e}: lists carry no timelines");

        // Pages of two, newest first, without gaps or duplicates.
        let mut paged = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("?limit=2&cursor={c}"),
                None => "?limit=2".to_string(),
            };
            let page = list(&app, &q).await;
            paged.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
            assert!(paged.len() <= all.len(), "{e}: paging does not end");
        }
        assert_eq!(paged, all, "{e}");

        assert_eq!(ids(&list(&app, "?program=per-technician").await), [all[2].clone()], "{e}");
        assert_eq!(ids(&list(&app, &format!("?referrer={}", jane.participant_id)).await).len(), 3, "{e}");
        assert_eq!(ids(&list(&app, "?source=staff").await), [id(&staff)], "{e}");
        // Stage and assignee.
        let worked = all[3].clone();
        json_of(&app, move_to(&app, &worked, "qualified", None).await, StatusCode::OK).await;
        assert_eq!(ids(&list(&app, "?stage=qualified").await), std::slice::from_ref(&worked), "{e}");
        let res =
            app.api(Method::PATCH, &format!("/referrals/{worked}")).json(&json!({"assignee": "sam@sales"})).send();
        let assigned = json_of(&app, res.await.unwrap(), StatusCode::OK).await;
        assert_eq!(assigned["assignee"], "sam@sales", "{e}");
        assert_eq!(kinds(&assigned).last().map(String::as_str), Some("assign"), "{e}");
        assert_eq!(ids(&list(&app, "?assignee=sam@sales").await), std::slice::from_ref(&worked), "{e}");
        let res = app.api(Method::PATCH, &format!("/referrals/{worked}")).json(&json!({"assignee": null})).send();
        let unassigned = json_of(&app, res.await.unwrap(), StatusCode::OK).await;
        assert_eq!(unassigned["assignee"], Value::Null, "{e}");
        assert!(ids(&list(&app, "?assignee=sam@sales").await).is_empty(), "{e}");
        // Status, dates and combinations.
        assert_eq!(ids(&list(&app, "?status=active&program=agent-gift-card").await).len(), all.len() - 1, "{e}");
        assert!(ids(&list(&app, "?status=rejected").await).is_empty(), "{e}");
        assert_eq!(ids(&list(&app, "?created_from=2000-01-01T00:00:00Z&created_to=2999-01-01T00:00:00Z").await), all);
        assert!(ids(&list(&app, "?created_from=2999-01-01T00:00:00Z").await).is_empty(), "{e}");

        // Bad filters name the parameter.
        for (query, pointer) in [
            ("?stage=signed", "/stage"),
            ("?status=maybe", "/status"),
            ("?source=fax", "/source"),
            ("?program=nope", "/program"),
            ("?referrer=bob", "/referrer"),
            ("?created_from=yesterday", "/created_from"),
            ("?limit=0", "/limit"),
            ("?cursor=zzz", "/cursor"),
        ] {
            let res = app.api_get(&format!("/referrals{query}")).await;
            let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query").await;
            assert_eq!(pointers(&problem), [pointer], "{e}: {query}");
        }
        let res = app.api_get("/referrals?colour=red").await;
        expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query").await;
        let res = app.api_get(&format!("/referrals/{}", uuid::Uuid::now_v7())).await;
        expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
        app.stop().await;
    }
}

// ------------------------------------------------------------- versions and keys

#[tokio::test]
async fn a_referral_keeps_the_program_version_in_force_when_it_was_created() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane")).await;
        let before = lead(&app, AGENT, &code, &company_email("early")).await;
        app.set_landing_url(AGENT, "https://example.com/agents-v2").await;
        let after = lead(&app, AGENT, &code, &company_email("late")).await;
        assert_eq!((before["program_version"].as_i64(), after["program_version"].as_i64()), (Some(1), Some(2)), "{e}");
        assert_eq!(get_referral(&app, &id(&before)).await["program_version"], 1, "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_lead_repeated_with_its_idempotency_key_is_stored_once() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane")).await;
        let body = lead_body(&code, &company_email("bob"));
        let mut answers = Vec::new();
        for _ in 0..2 {
            let res = app
                .api(Method::POST, &format!("/programs/{AGENT}/leads"))
                .header("Idempotency-Key", "lead-bob-1")
                .json(&body)
                .send()
                .await
                .unwrap();
            answers.push(json_of(&app, res, StatusCode::CREATED).await);
        }
        assert_eq!(answers[0], answers[1], "{e}: the repeat answers what the first did");
        assert_eq!(answers[0]["status"], "active", "{e}: not `already_referred` by itself");
        assert_eq!(count(&app).await, 1, "{e}");
        app.stop().await;
    }
}
