//! What referrers hear, as they asked: stage-update emails for staff moves and
//! for facts, following each referrer's preference; a program's own wording of
//! its emails; and the review signal of a prospect clicking from the referrer's
//! own address. Mail goes through a real SMTP server started by the test.

use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_server::ServerConfig;
use vouch_server::demo::EXAMPLE_PROGRAMS;
use vouch_server::mail::{Mailer, deliver_due};
use vouch_store::testing::TestDatabase;

use crate::helpers::{BROWSER_UA, PUBLIC_URL, TestApp, company_email, email, json_of};
use crate::smtp::{Received, SmtpServer};

const AGENT: &str = "agent-gift-card";

/// A test app delivering to `smtp` only when the test calls `deliver`.
async fn app_with(db: TestDatabase, smtp: &SmtpServer) -> TestApp {
    let url = smtp.url();
    TestApp::spawn_with(db, |c| {
        c.smtp_url = Some(url);
        c.mail_interval = None;
    })
    .await
}

/// Delivers everything due, answering the messages that arrived during the pass.
async fn deliver(app: &TestApp, smtp: &SmtpServer) -> Vec<Received> {
    let mut config = ServerConfig::new(url::Url::parse(PUBLIC_URL).expect("public URL"));
    config.smtp_url = Some(smtp.url());
    config.mailbox_dir = app.mailbox.path().to_path_buf();
    let before = smtp.messages().len();
    let report = deliver_due(&app.store, &Mailer::from_config(&config), Timestamp::now()).await.expect("deliver");
    assert_eq!(report.dead() + report.retried(), 0, "{}: every message goes through: {report:?}", app.engine);
    smtp.messages().split_off(before)
}

/// A lead of `code` for `prospect` (named "Bob Prospect"); answers the referral's id.
async fn lead(app: &TestApp, code: &str, prospect: &str) -> String {
    let body = json!({"referrer_code": code, "prospect": {"email": prospect, "name": "Bob Prospect"}, "consent": true});
    let res = app.api(Method::POST, &format!("/programs/{AGENT}/leads")).json(&body).send().await.unwrap();
    let r = json_of(app, res, StatusCode::CREATED).await;
    assert_eq!(r["status"], "active", "{}: {r}", app.engine);
    r["id"].as_str().unwrap().to_string()
}

async fn event(app: &TestApp, body: &Value) -> Value {
    let res = app
        .api(Method::POST, "/events")
        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
        .json(body)
        .send()
        .await
        .expect("send event");
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert!(status.is_success(), "{}: {status}: {text}", app.engine);
    serde_json::from_str(&text).expect("JSON")
}

fn won(prospect: &str, event_id: &str, at: &str) -> Value {
    json!({"type": "won", "program": AGENT, "occurred_at": at, "event_id": event_id,
        "prospect": {"email": prospect}, "units": 1, "contract_date": "2026-03-02"})
}

async fn move_stage(app: &TestApp, referral: &str, stage: &str) {
    let res =
        app.api(Method::POST, &format!("/referrals/{referral}/stage")).json(&json!({"stage": stage})).send().await;
    json_of(app, res.unwrap(), StatusCode::OK).await;
}

async fn prefer(app: &TestApp, participant: &str, value: &Value) -> reqwest::Response {
    app.api(Method::PATCH, &format!("/participants/{participant}"))
        .json(&json!({"notify_stage_updates": value}))
        .send()
        .await
        .expect("PATCH participant")
}

async fn preference(app: &TestApp, participant: &str) -> Value {
    let body = json_of(app, app.api_get(&format!("/participants/{participant}")).await, StatusCode::OK).await;
    body["notify_stage_updates"].clone()
}

fn subjects(messages: &[Received]) -> Vec<String> {
    messages.iter().map(|m| m.header("Subject").unwrap_or_default()).collect()
}

#[tokio::test]
async fn a_won_fact_mails_the_referrer_once_even_when_the_fact_comes_again() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::start().await;
        let app = app_with(db, &smtp).await;
        let e = app.engine;
        let referrer = company_email("ref");
        let code = app.enroll(AGENT, &referrer, "partner").await.code;
        let prospect = company_email("bob");
        lead(&app, &code, &prospect).await;
        let first = deliver(&app, &smtp).await;
        assert_eq!(first.len(), 2, "{e}: the welcome and the lead received: {:?}", subjects(&first));

        let fact = won(&prospect, &format!("won-{prospect}"), "2026-03-02T10:00:00Z");
        let answer = event(&app, &fact).await;
        assert_eq!(answer["stage_after"], "won", "{e}: {answer}");
        // The same fact again (its event id), and a second `won` of another id: no transition.
        event(&app, &fact).await;
        event(&app, &won(&prospect, &format!("won-again-{prospect}"), "2026-03-03T10:00:00Z")).await;

        let arrived = deliver(&app, &smtp).await;
        assert_eq!(arrived.len(), 1, "{e}: one stage update: {:?}", subjects(&arrived));
        let m = &arrived[0];
        assert_eq!(m.to, vec![referrer.clone()], "{e}");
        assert_eq!(m.header("Subject").unwrap_or_default(), "Your referral of Bob Prospect: won", "{e}");
        let text = m.part("text/plain").unwrap_or_default();
        assert!(text.contains("they became a customer"), "{e}: {text}");
        assert!(deliver(&app, &smtp).await.is_empty(), "{e}: nothing more");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_referrer_who_wants_none_hears_nothing_and_one_who_wants_won_only_hears_only_the_won() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::start().await;
        let app = app_with(db, &smtp).await;
        let e = app.engine;
        let (quiet, winner, all) = (company_email("quiet"), company_email("winner"), company_email("all"));
        let mut referrals = Vec::new();
        for who in [&quiet, &winner, &all] {
            let enrolled = app.enroll(AGENT, who, "partner").await;
            assert_eq!(preference(&app, &enrolled.participant_id).await, "all", "{e}: the default");
            let prospect = company_email("prospect");
            let id = lead(&app, &enrolled.code, &prospect).await;
            referrals.push((enrolled.participant_id, id, prospect));
        }
        for ((participant, _, _), wanted) in referrals.iter().zip(["none", "won_only"]) {
            let body = json_of(&app, prefer(&app, participant, &json!(wanted)).await, StatusCode::OK).await;
            assert_eq!(body["notify_stage_updates"], wanted, "{e}: the answer shows it");
            assert_eq!(preference(&app, participant).await, wanted, "{e}: and it is kept");
        }
        deliver(&app, &smtp).await;

        for (i, (_, id, prospect)) in referrals.iter().enumerate() {
            move_stage(&app, id, "contacted").await;
            event(&app, &won(prospect, &format!("won-{i}-{prospect}"), "2026-03-02T10:00:00Z")).await;
        }
        let arrived = deliver(&app, &smtp).await;
        let to = |who: &str| {
            let mut s: Vec<String> =
                arrived.iter().filter(|m| m.to == [who]).map(|m| m.header("Subject").unwrap_or_default()).collect();
            s.sort();
            s
        };
        assert!(to(&quiet).is_empty(), "{e}: `none` mails nothing: {:?}", to(&quiet));
        assert_eq!(to(&winner), ["Your referral of Bob Prospect: won"], "{e}: `won_only`");
        assert_eq!(
            to(&all),
            ["Your referral of Bob Prospect: contacted", "Your referral of Bob Prospect: won"],
            "{e}: `all`, the staff move and the fact"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_bad_preference_is_refused_with_its_field_and_changes_nothing() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let participant = app.enroll(AGENT, &email("ada"), "partner").await.participant_id;
        prefer(&app, &participant, &json!("won_only")).await;
        for bad in [json!("weekly"), json!("WON_ONLY"), json!("")] {
            let problem = json_of(&app, prefer(&app, &participant, &bad).await, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(problem["code"], "invalid_field", "{e}: {problem}");
            assert_eq!(problem["errors"][0]["pointer"], "/notify_stage_updates", "{e}: {problem}");
            assert!(problem["detail"].as_str().unwrap().contains("all, won_only, none"), "{e}: {problem}");
            assert_eq!(preference(&app, &participant).await, "won_only", "{e}: unchanged after {bad}");
        }
        let unknown = uuid::Uuid::now_v7();
        let res = prefer(&app, &unknown.to_string(), &json!("none")).await;
        let problem = json_of(&app, res, StatusCode::NOT_FOUND).await;
        assert_eq!(problem["code"], "not_found", "{e}: {problem}");
        app.stop().await;
    }
}

/// The customer-credit example under another slug, with `emails` appended.
fn worded_program(slug: &str, emails: &str) -> String {
    let (_, source) = EXAMPLE_PROGRAMS.iter().find(|(s, _)| *s == "customer-credit").expect("customer-credit");
    let source = source.replacen("slug = \"customer-credit\"", &format!("slug = \"{slug}\""), 1);
    assert!(source.contains(slug), "the slug line was replaced");
    format!("{source}\n{emails}\n")
}

#[tokio::test]
async fn a_programs_own_wording_is_what_arrives_over_smtp() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::start().await;
        let app = app_with(db, &smtp).await;
        let e = app.engine;
        let source = worded_program(
            "worded",
            "[emails.welcome]\nsubject = \"{name}, your {program} link\"\n\
             text = \"Hi {name}! Share {link} with friends.\"\n\
             html = \"<h1>Hi {name}</h1><p><a href=\\\"{link}\\\">{link}</a></p>\"\n\
             [emails.invite]\ntext = \"{referrer} wrote: {message}\\nJoin: {link}\\nNo more: {unsubscribe_link}\"\n\
             html = \"<blockquote>{message}</blockquote><a href=\\\"{unsubscribe_link}\\\">no more</a>\"\n",
        );
        let definition = vouch_domain::program::parse_program(&source).unwrap_or_else(|err| panic!("{err}"));
        let ids = (vouch_domain::ProgramId(uuid::Uuid::now_v7()), vouch_domain::ProgramVersionId(uuid::Uuid::now_v7()));
        app.store.apply_program(&definition, &source, ids, Timestamp::now()).await.expect("apply");
        let to = email("ada");
        let enrolled =
            app.enroll_with("worded", &json!({"email": to, "name": "Ada <b>Lovelace</b>", "kind": "customer"})).await;
        let arrived = deliver(&app, &smtp).await;
        assert_eq!(arrived.len(), 1, "{e}");
        let m = &arrived[0];
        let link = format!("{PUBLIC_URL}/r/{}", enrolled.code);
        let subject = m.header("Subject").unwrap_or_default();
        assert!(subject.starts_with("Ada <b>Lovelace</b>, your "), "{e}: {subject}");
        let text = m.part("text/plain").unwrap_or_default();
        assert_eq!(text.trim_end(), format!("Hi Ada <b>Lovelace</b>! Share {link} with friends."), "{e}");
        let html = m.part("text/html").unwrap_or_default();
        assert!(html.starts_with("<h1>Hi Ada &#60;b&#62;Lovelace&#60;/b&#62;</h1>"), "{e}: escaped in HTML: {html}");
        assert!(html.contains(&format!(r#"<a href="{link}">{link}</a>"#)), "{e}: {html}");
        // An invite: the message as written in text, escaped in HTML, the links filled in.
        let prospect = company_email("bob");
        let body =
            json!({"referrer_code": enrolled.code, "email": prospect, "message": "<script>alert(1)</script> hi"});
        let res = app.api(Method::POST, "/programs/worded/invites").json(&body).send().await.unwrap();
        json_of(&app, res, StatusCode::CREATED).await;
        let arrived = deliver(&app, &smtp).await;
        assert_eq!(arrived.len(), 1, "{e}");
        let text = arrived[0].part("text/plain").unwrap_or_default();
        assert!(text.starts_with("Ada <b>Lovelace</b> wrote: <script>alert(1)</script> hi"), "{e}: {text:?}");
        assert!(text.contains(&format!("Join: {link}")), "{e}: {text}");
        assert!(text.contains(&format!("No more: {PUBLIC_URL}/unsubscribe/")), "{e}: {text}");
        let html = arrived[0].part("text/html").unwrap_or_default();
        assert!(
            html.starts_with("<blockquote>&#60;script&#62;alert(1)&#60;/script&#62; hi</blockquote>"),
            "{e}: {html}"
        );
        assert!(html.contains(&format!(r#"<a href="{PUBLIC_URL}/unsubscribe/"#)), "{e}: {html}");
        // Another program's welcome keeps the built-in wording.
        app.enroll("customer-credit", &email("grace"), "customer").await;
        let built_in = deliver(&app, &smtp).await;
        let subject = built_in[0].header("Subject").unwrap_or_default();
        assert!(subject.starts_with("Welcome to "), "{e}: {subject}");
        app.stop().await;
    }
}

/// Follows `/r/{code}` from `source` (a loopback address), answering the click id.
async fn click_from(app: &TestApp, source: [u8; 4], code: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::from(source))
        .build()
        .expect("client");
    let res = client
        .get(app.url(&format!("/r/{code}")))
        .header(reqwest::header::USER_AGENT, BROWSER_UA)
        .send()
        .await
        .expect("follow the link");
    let location = res.headers().get(reqwest::header::LOCATION).expect("a redirect").to_str().unwrap().to_string();
    let location = url::Url::parse(&location).expect("a URL");
    location.query_pairs().find(|(k, _)| k == "vclid").map(|(_, v)| v.into_owned()).expect("a click id")
}

#[tokio::test]
async fn a_signup_from_a_click_at_the_referrers_own_address_is_held_for_review() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        // The referrer enrolls from 127.0.0.1 (the test client's address).
        let enrolled = app.enroll(AGENT, &company_email("ref"), "partner").await;
        let cases = [([127, 0, 0, 1], "in_review", vec!["same_ip_as_referrer"]), ([127, 0, 0, 2], "active", vec![])];
        for (source, status, signals) in cases {
            let vclid = click_from(&app, source, &enrolled.code).await;
            let body = json!({"type": "signup", "program": AGENT, "occurred_at": "2026-03-01T10:00:00Z",
                "prospect": {"email": company_email("prospect")}, "click_id": vclid});
            let answer = event(&app, &body).await;
            assert_eq!(answer["referral_created"], true, "{e}: {answer}");
            let id = answer["referral_id"].as_str().expect("a referral");
            let r = json_of(&app, app.api_get(&format!("/referrals/{id}")).await, StatusCode::OK).await;
            assert_eq!(r["status"], status, "{e}: a click from {source:?}: {r}");
            assert_eq!(r["review_signals"], json!(signals), "{e}: {r}");
        }
        app.stop().await;
    }
}
