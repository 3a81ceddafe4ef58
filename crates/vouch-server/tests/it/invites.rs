//! Invites through the API, with the shipped example programs: the email that
//! arrives (through the test SMTP server) with the referrer's message as text,
//! their link and an unsubscribe link; unsubscribing refuses later invites;
//! rejections stored and sending nothing; bad input; the per-referrer limit.
//! Also the referrer's own mail: a lead received, and stage updates.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_store::testing::TestDatabase;
use vouch_store::{MailPayload, OutboxItem};

use crate::helpers::{PUBLIC_URL, TestApp, company_email, eventually, expect_problem, json_of, pointers};
use crate::smtp::{Received, SmtpServer};

/// Open to every kind of participant, business (company domains count).
const AGENT: &str = "agent-gift-card";

async fn referrer(app: &TestApp, slug: &str, email: &str, name: &str) -> String {
    app.enroll_with(slug, &json!({"email": email, "name": name, "kind": "customer"})).await.code
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.api(Method::POST, path).json(body).send().await.expect("send POST")
}

async fn invite_raw(app: &TestApp, slug: &str, body: &Value) -> reqwest::Response {
    post(app, &format!("/programs/{slug}/invites"), body).await
}

/// An invite that must be taken (201): the referral.
async fn invite(app: &TestApp, code: &str, email: &str, message: Option<&str>) -> Value {
    let res = invite_raw(app, AGENT, &json!({"referrer_code": code, "email": email, "message": message})).await;
    json_of(app, res, StatusCode::CREATED).await
}

/// The emails in the outbox (any status), as payloads.
async fn outbox_mail(app: &TestApp) -> Vec<MailPayload> {
    let items: Vec<OutboxItem> = app.store.outbox_items(None).await.expect("outbox");
    items.iter().filter_map(|i| i.mail()).map(|m| m.expect("a mail payload")).collect()
}

async fn mail_of(app: &TestApp, template: &str) -> Vec<MailPayload> {
    outbox_mail(app).await.into_iter().filter(|m| m.template() == template).collect()
}

async fn spawn_with_smtp(db: TestDatabase, smtp: &SmtpServer) -> TestApp {
    let url = smtp.url();
    TestApp::spawn_with(db, |c| {
        c.smtp_url = Some(url);
        c.mail_interval = Some(Duration::from_millis(50));
    })
    .await
}

fn to(smtp: &SmtpServer, address: &str) -> Vec<Received> {
    smtp.messages().into_iter().filter(|m| m.to.iter().any(|t| t == address)).collect()
}

async fn arrives(smtp: &SmtpServer, address: &str, n: usize) -> Vec<Received> {
    let arrived = eventually(Duration::from_secs(10), || async { to(smtp, address).len() >= n }).await;
    assert!(arrived, "{n} message(s) to {address} arrive: {:#?}", smtp.messages());
    to(smtp, address)
}

#[tokio::test]
async fn an_invite_arrives_with_the_message_as_text_and_unsubscribing_refuses_the_next_invite() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::start().await;
        let app = spawn_with_smtp(db, &smtp).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("ada"), "Ada Referrer").await;
        let friend = company_email("bob");
        let message = "Hi Bob, <b>try</b> this! <script>alert(1)</script>\nIt saved us hours & more.";
        let r = invite(&app, &code, &friend, Some(message)).await;
        assert_eq!(r["source"], "invite", "{e}: {r}");
        assert_eq!(r["status"], "active", "{e}: {r}");
        assert_eq!(r["prospect"]["email"], friend.as_str(), "{e}");

        let m = arrives(&smtp, &friend, 1).await.remove(0);
        let subject = m.header("Subject").unwrap_or_default();
        assert!(subject.contains("Ada Referrer"), "{e}: the referrer named in the subject: {subject}");
        // Lines end in CRLF on the wire.
        let text =
            m.part("text/plain").unwrap_or_else(|| panic!("{e}: a text part in {}", m.data)).replace("\r\n", "\n");
        let html = m.part("text/html").unwrap_or_else(|| panic!("{e}: an HTML part in {}", m.data));
        assert!(text.contains(message), "{e}: the message verbatim in the text part: {text}");
        assert!(!html.contains("<script>") && !html.contains("<b>try"), "{e}: no markup from the message: {html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{e}: the script shown as text: {html}"
        );
        assert!(html.contains("&#60;b&#62;try") || html.contains("&lt;b&gt;try"), "{e}: {html}");
        let link = format!("{PUBLIC_URL}/r/{code}");
        assert!(text.contains(&link) && html.contains(&format!(r#"href="{link}""#)), "{e}: the attributing link");
        let unsubscribe = text
            .split_whitespace()
            .find(|w| w.starts_with(&format!("{PUBLIC_URL}/unsubscribe/")))
            .unwrap_or_else(|| panic!("{e}: an unsubscribe link in {text}"))
            .to_string();
        assert!(html.contains(&format!(r#"href="{unsubscribe}""#)), "{e}: the unsubscribe link in the HTML: {html}");

        // Follow it: a confirmation page with a form, then the POST.
        let path = unsubscribe.trim_start_matches(PUBLIC_URL).to_string();
        let page = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{e}");
        let page = page.text().await.unwrap();
        assert!(page.contains(r#"<form method="post""#), "{e}: a form to confirm: {page}");
        assert!(!page.contains("<script"), "{e}: no JavaScript needed");
        let referrals_before = app.store.count_referrals().await.unwrap();
        for _ in 0..2 {
            let done = app.client.post(app.url(&path)).send().await.unwrap();
            assert_eq!(done.status(), StatusCode::OK, "{e}: unsubscribing (again) is fine");
            assert!(done.text().await.unwrap().contains("Unsubscribed"), "{e}");
        }

        // Any later invite to the address, by anyone, in any case, is refused.
        let other = referrer(&app, AGENT, &company_email("cy"), "Cy").await;
        for (by, address) in [(&code, friend.clone()), (&other, friend.to_uppercase())] {
            let res = invite_raw(&app, AGENT, &json!({"referrer_code": by, "email": address})).await;
            let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "email_suppressed").await;
            assert_eq!(pointers(&p), vec!["/email"], "{e}: {p}");
        }
        assert_eq!(app.store.count_referrals().await.unwrap(), referrals_before, "{e}: nothing stored");
        assert_eq!(mail_of(&app, "invite").await.len(), 1, "{e}: nothing more sent");

        // A forged or damaged token names nobody.
        let forged = format!("{}00", &path[..path.len() - 2]);
        let res = app.client.get(app.url(&forged)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{e}");
        let res = app.client.post(app.url("/unsubscribe/not-a-token")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_invites_are_refused_at_their_field_and_store_nothing() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("jane"), "Jane").await;
        let revoked = referrer(&app, AGENT, &company_email("gone"), "Gone").await;
        assert_eq!(app.api_post(&format!("/codes/{revoked}/revoke")).await.status(), StatusCode::OK, "{e}");
        let elsewhere = referrer(&app, "per-technician", &company_email("elsewhere"), "Else").await;
        let ok = company_email("bob");
        let long = "x".repeat(1001);
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("unknown code", json!({"referrer_code": "NOSUCHCODE", "email": ok}), "unknown_code", "/referrer_code"),
            ("malformed code", json!({"referrer_code": "!!", "email": ok}), "unknown_code", "/referrer_code"),
            (
                "code of another program",
                json!({"referrer_code": elsewhere, "email": ok}),
                "unknown_code",
                "/referrer_code",
            ),
            ("revoked code", json!({"referrer_code": revoked, "email": ok}), "code_revoked", "/referrer_code"),
            ("malformed email", json!({"referrer_code": code, "email": "bob@"}), "invalid_field", "/email"),
            ("long message", json!({"referrer_code": code, "email": ok, "message": long}), "invalid_field", "/message"),
        ];
        for (what, body, problem, pointer) in cases {
            let res = invite_raw(&app, AGENT, &body).await;
            let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, problem).await;
            assert_eq!(pointers(&p), vec![pointer.to_string()], "{e}: {what}: {p}");
        }
        let res = invite_raw(&app, "no-such-program", &json!({"referrer_code": code, "email": ok})).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{e}");
        // A message of exactly 1,000 characters is fine.
        invite(&app, &code, &ok, Some(&"y".repeat(1000))).await;
        assert_eq!(app.store.count_referrals().await.unwrap(), 1, "{e}: only the good invite stored");
        assert_eq!(mail_of(&app, "invite").await.len(), 1, "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn rejected_invites_are_stored_with_their_reason_and_send_nothing() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let jane_email = company_email("jane");
        let jane = referrer(&app, AGENT, &jane_email, "Jane").await;
        let other = referrer(&app, AGENT, &company_email("omar"), "Omar").await;
        let known = company_email("known");
        json_of(&app, post(&app, "/customers", &json!({"items": [{"email": known}]})).await, StatusCode::OK).await;
        let held = company_email("held");
        let first = invite(&app, &other, &held, None).await;
        assert_eq!(first["status"], "active", "{e}: {first}");

        for (prospect, reason) in [
            (jane_email.clone(), "self_referral"),
            (known.clone(), "existing_customer"),
            (held.clone(), "already_referred"),
        ] {
            let r = invite(&app, &jane, &prospect, Some("hello")).await;
            assert_eq!(r["source"], "invite", "{e}");
            assert_eq!(r["status"], "rejected", "{e}: {prospect}: {r}");
            assert_eq!(r["rejection_reason"], reason, "{e}: {r}");
        }
        let invites = mail_of(&app, "invite").await;
        assert_eq!(invites.len(), 1, "{e}: only the accepted invite is mailed: {invites:?}");
        assert_eq!(invites[0].to(), held, "{e}");
        let listed = json_of(&app, app.api_get("/referrals?source=invite").await, StatusCode::OK).await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 4, "{e}: rejections listed too");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_referrer_may_send_twenty_invites_a_day() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("busy"), "Busy").await;
        for i in 0..20 {
            let r = invite(&app, &code, &company_email(&format!("f{i}")), None).await;
            assert_ne!(r["status"], "rejected", "{e}: {r}");
        }
        let res = invite_raw(&app, AGENT, &json!({"referrer_code": code, "email": company_email("one-more")})).await;
        expect_problem(e, res, StatusCode::TOO_MANY_REQUESTS, "invite_rate_limited").await;
        assert_eq!(app.store.count_referrals().await.unwrap(), 20, "{e}: the refused invite stored nothing");
        assert_eq!(mail_of(&app, "invite").await.len(), 20, "{e}");
        // Another referrer has their own allowance.
        let other = referrer(&app, AGENT, &company_email("calm"), "Calm").await;
        invite(&app, &other, &company_email("friend"), None).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn the_referrer_hears_of_an_accepted_lead_and_of_each_stage_move() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::start().await;
        let app = spawn_with_smtp(db, &smtp).await;
        let e = app.engine;
        let jane_email = company_email("jane");
        let code = referrer(&app, AGENT, &jane_email, "Jane Referrer").await;
        let body = json!({"referrer_code": code, "prospect": {"email": company_email("bob"), "name": "Bob <Prospect>"},
            "consent": true});
        let r = json_of(&app, post(&app, &format!("/programs/{AGENT}/leads"), &body).await, StatusCode::CREATED).await;
        assert_eq!(r["status"], "active", "{e}: {r}");
        // A rejected lead (self-referral) tells no one.
        let own = json!({"referrer_code": code, "prospect": {"email": jane_email}, "consent": true});
        let rejected =
            json_of(&app, post(&app, &format!("/programs/{AGENT}/leads"), &own).await, StatusCode::CREATED).await;
        assert_eq!(rejected["status"], "rejected", "{e}");

        // The welcome, then the lead received.
        let got = arrives(&smtp, &jane_email, 2).await;
        let lead =
            got.iter().find(|m| m.header("Subject").unwrap_or_default().contains("arrived")).unwrap_or_else(|| {
                panic!("{e}: a lead-received email among {got:#?}");
            });
        let html = lead.part("text/html").unwrap_or_default();
        assert!(lead.part("text/plain").unwrap_or_default().contains("Bob <Prospect>"), "{e}");
        assert!(!html.contains("Bob <Prospect>") && html.contains("Bob &"), "{e}: escaped in HTML: {html}");

        let id = r["id"].as_str().unwrap();
        let moved = post(&app, &format!("/referrals/{id}/stage"), &json!({"stage": "contacted"})).await;
        assert_eq!(moved.status(), StatusCode::OK, "{e}");
        let got = arrives(&smtp, &jane_email, 3).await;
        let update = got.iter().find(|m| m.header("Subject").unwrap_or_default().contains("contacted"));
        let update = update.unwrap_or_else(|| panic!("{e}: a stage update among {got:#?}"));
        assert!(update.part("text/plain").unwrap_or_default().contains("our team has contacted them"), "{e}");
        // A refused move sends nothing.
        let refused = post(&app, &format!("/referrals/{id}/stage"), &json!({"stage": "churned"})).await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        // Staff moving a rejected referral tell no one.
        let rid = rejected["id"].as_str().unwrap();
        post(&app, &format!("/referrals/{rid}/stage"), &json!({"stage": "lost"})).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(to(&smtp, &jane_email).len(), 3, "{e}: welcome, lead received, one stage update");
        let templates: Vec<&str> = outbox_mail(&app).await.iter().map(MailPayload::template).collect();
        assert_eq!(
            templates.iter().filter(|t| **t == "lead_received").count(),
            1,
            "{e}: one lead-received row: {templates:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn an_invite_still_waiting_when_its_address_unsubscribes_is_not_sent() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::start().await;
        let url = smtp.url();
        let app = TestApp::spawn_with(db, |c| {
            c.smtp_url = Some(url);
            c.mail_interval = None;
        })
        .await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("ada"), "Ada").await;
        let friend = company_email("bob");
        invite(&app, &code, &friend, Some("hi")).await;
        let email = vouch_domain::Email::parse(&friend).unwrap();
        app.store.suppress_email(&email, "unsubscribed", jiff::Timestamp::now()).await.unwrap();
        let mut config = vouch_server::ServerConfig::new(url::Url::parse(PUBLIC_URL).unwrap());
        config.smtp_url = Some(smtp.url());
        let mailer = vouch_server::mail::Mailer::from_config(&config);
        let report = vouch_server::mail::deliver_due(&app.store, &mailer, jiff::Timestamp::now()).await.unwrap();
        assert!(to(&smtp, &friend).is_empty(), "{e}: nothing sent to the unsubscribed address");
        let invite_row = report.entries.iter().find(|d| d.template == "invite").expect("the invite was looked at");
        assert!(
            matches!(&invite_row.outcome, vouch_server::mail::DeliveryOutcome::Dead { error } if error.contains("unsubscribed")),
            "{e}: {invite_row:?}"
        );
        assert_eq!(report.delivered(), 1, "{e}: the welcome still goes: {report:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn concurrent_invites_cannot_squeeze_past_the_allowance() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.engine;
        let code = referrer(&app, AGENT, &company_email("rush"), "Rush").await;
        let answers = futures::future::join_all((0..30).map(|i| {
            let body = json!({"referrer_code": code, "email": company_email(&format!("r{i}"))});
            let app = &app;
            async move { invite_raw(app, AGENT, &body).await.status() }
        }))
        .await;
        let created = answers.iter().filter(|s| **s == StatusCode::CREATED).count();
        let limited = answers.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
        assert_eq!((created, limited), (20, 10), "{e}: {answers:?}");
        assert_eq!(app.store.count_referrals().await.unwrap(), 20, "{e}");
        app.stop().await;
    }
}
