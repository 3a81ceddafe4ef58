//! Email through the outbox, delivered to a real SMTP server started by each
//! test (`smtp.rs`), or without one into the development mailbox.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::json;
use vouch_server::ServerConfig;
use vouch_server::mail::{DeliveryOutcome, MAX_ATTEMPTS, Mailer, deliver_due};
use vouch_store::OutboxStatus;
use vouch_store::testing::TestDatabase;

use crate::helpers::{PUBLIC_URL, TestApp, email, eventually};
use crate::smtp::{Received, SmtpServer};

/// A test app delivering to `smtp`, with no background worker: the test drives
/// delivery with `deliver_due` at the instants it chooses.
async fn app_driven(db: TestDatabase, smtp: &SmtpServer) -> TestApp {
    let url = smtp.url();
    TestApp::spawn_with(db, |c| {
        c.smtp_url = Some(url);
        c.mail_interval = None;
    })
    .await
}

/// The mailer the app has, for driving `deliver_due` from the test.
fn mailer(app: &TestApp, smtp: Option<&SmtpServer>) -> Mailer {
    let mut config = ServerConfig::new(url::Url::parse(PUBLIC_URL).expect("public URL"));
    config.smtp_url = smtp.map(SmtpServer::url);
    config.mailbox_dir = app.mailbox.path().to_path_buf();
    Mailer::from_config(&config)
}

fn the_only(engine: &str, messages: Vec<Received>) -> Received {
    assert_eq!(messages.len(), 1, "{engine}: exactly one message arrived: {messages:#?}");
    messages.into_iter().next().expect("one message")
}

#[tokio::test]
async fn enrolling_a_new_participant_delivers_one_welcome_email_through_smtp() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::start().await;
        let url = smtp.url();
        let app = TestApp::spawn_with(db, |c| {
            c.smtp_url = Some(url);
            c.mail_interval = Some(Duration::from_millis(50));
        })
        .await;
        let engine = app.engine;
        let to = email("ada");
        let enrolled =
            app.enroll_with("customer-credit", &json!({"email": to, "name": "Ada Lovelace", "kind": "customer"})).await;
        assert!(
            eventually(Duration::from_secs(10), || async { !smtp.messages().is_empty() }).await,
            "{engine}: the welcome email arrives"
        );
        // Enrolling the same email again sends nothing more.
        app.enroll_with("customer-credit", &json!({"email": to, "name": "Ada Lovelace", "kind": "customer"})).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = the_only(engine, smtp.messages());

        assert_eq!(m.to, vec![to.clone()], "{engine}: envelope recipient");
        assert_eq!(m.from, "no-reply@localhost", "{engine}: envelope sender");
        let subject = m.header("Subject").unwrap_or_default();
        assert!(subject.contains("Refer a company, get $100 off"), "{engine}: the program's name in {subject}");
        assert!(m.header("To").unwrap_or_default().contains(&to), "{engine}");
        let link = format!("{PUBLIC_URL}/r/{}", enrolled.code);
        assert_eq!(enrolled.link, link, "{engine}");
        let text = m.part("text/plain").unwrap_or_else(|| panic!("{engine}: a text part in {}", m.data));
        let html = m.part("text/html").unwrap_or_else(|| panic!("{engine}: an HTML part in {}", m.data));
        assert!(text.contains("Hello Ada Lovelace"), "{engine}: {text}");
        assert!(text.contains(&link), "{engine}: the link in the text: {text}");
        assert!(text.contains("Refer a company, get $100 off"), "{engine}: {text}");
        assert!(html.contains(&format!(r#"<a href="{link}">{link}</a>"#)), "{engine}: the link in the HTML: {html}");

        let delivered = app.store.outbox_items(Some(OutboxStatus::Delivered)).await.unwrap();
        assert_eq!(delivered.len(), 1, "{engine}: the outbox row is delivered");
        assert_eq!(delivered[0].attempts, 1, "{engine}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_refusing_server_gets_retries_with_growing_backoff_and_the_message_arrives_once() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::refusing(3).await;
        let app = app_driven(db, &smtp).await;
        let engine = app.engine;
        let mailer = mailer(&app, Some(&smtp));
        app.enroll("agent-gift-card", &email("bob"), "partner").await;

        let mut now = Timestamp::now();
        let mut last_wait = SignedDuration::ZERO;
        for attempt in 1..=3 {
            let report = deliver_due(&app.store, &mailer, now).await.expect("deliver");
            assert_eq!(report.entries.len(), 1, "{engine}: attempt {attempt}: {report:?}");
            let entry = &report.entries[0];
            assert_eq!(entry.attempt, attempt, "{engine}");
            let DeliveryOutcome::Retry { at, error } = &entry.outcome else {
                panic!("{engine}: attempt {attempt} should be retried: {entry:?}")
            };
            assert!(error.contains("451"), "{engine}: the server's answer is kept: {error}");
            // 30 s doubling per attempt, ±20%.
            let wait = at.duration_since(now);
            let base = 30.0 * 2f64.powi(attempt as i32 - 1);
            let secs = wait.as_secs_f64();
            assert!(secs >= base * 0.8 - 0.001 && secs <= base * 1.2 + 0.001, "{engine}: wait {secs}s after {attempt}");
            assert!(wait > last_wait, "{engine}: the backoff grows");
            last_wait = wait;
            // Nothing happens before the row is due again.
            let early = deliver_due(&app.store, &mailer, at.checked_sub(SignedDuration::from_secs(1)).unwrap()).await;
            assert!(early.expect("deliver").is_empty(), "{engine}: nothing is due before {at}");
            assert!(smtp.messages().is_empty(), "{engine}");
            now = *at;
        }
        assert_eq!(smtp.refused(), 3, "{engine}");
        let report = deliver_due(&app.store, &mailer, now).await.expect("deliver");
        assert_eq!(report.delivered(), 1, "{engine}: the fourth attempt goes through: {report:?}");
        let later = now.checked_add(SignedDuration::from_hours(48)).unwrap();
        assert!(deliver_due(&app.store, &mailer, later).await.unwrap().is_empty(), "{engine}: nothing left");
        the_only(engine, smtp.messages());
        let delivered = app.store.outbox_items(Some(OutboxStatus::Delivered)).await.unwrap();
        assert_eq!(delivered.len(), 1, "{engine}");
        assert_eq!(delivered[0].attempts, 4, "{engine}");
        app.stop().await;
    }
}

#[tokio::test]
async fn after_the_attempt_cap_the_message_is_dead_and_stays_visible() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::refusing(usize::MAX).await;
        let app = app_driven(db, &smtp).await;
        let engine = app.engine;
        let mailer = mailer(&app, Some(&smtp));
        app.enroll("agent-gift-card", &email("carol"), "partner").await;

        let mut now = Timestamp::now();
        for attempt in 1..=MAX_ATTEMPTS {
            let report = deliver_due(&app.store, &mailer, now).await.expect("deliver");
            assert_eq!(report.entries.len(), 1, "{engine}: attempt {attempt}");
            match &report.entries[0].outcome {
                DeliveryOutcome::Retry { at, .. } if attempt < MAX_ATTEMPTS => now = *at,
                DeliveryOutcome::Dead { error } if attempt == MAX_ATTEMPTS => {
                    assert!(error.contains("gave up after 8 attempts"), "{engine}: {error}");
                    assert!(error.contains("451"), "{engine}: {error}");
                }
                other => panic!("{engine}: attempt {attempt}: unexpected {other:?}"),
            }
        }
        assert_eq!(smtp.refused(), MAX_ATTEMPTS as usize, "{engine}");
        let later = now.checked_add(SignedDuration::from_hours(480)).unwrap();
        assert!(deliver_due(&app.store, &mailer, later).await.unwrap().is_empty(), "{engine}: dead is final");
        let dead = app.store.outbox_items(Some(OutboxStatus::Dead)).await.unwrap();
        assert_eq!(dead.len(), 1, "{engine}: the dead message is visible");
        assert_eq!(dead[0].attempts, MAX_ATTEMPTS, "{engine}");
        assert!(dead[0].last_error.as_deref().unwrap_or_default().contains("451"), "{engine}: {dead:?}");
        assert!(smtp.messages().is_empty(), "{engine}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_permanent_refusal_makes_the_message_dead_at_once() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::rejecting().await;
        let app = app_driven(db, &smtp).await;
        let engine = app.engine;
        let mailer = mailer(&app, Some(&smtp));
        app.enroll("agent-gift-card", &email("dan"), "partner").await;
        let report = deliver_due(&app.store, &mailer, Timestamp::now()).await.expect("deliver");
        assert_eq!(report.dead(), 1, "{engine}: a 5xx is not retried: {report:?}");
        let dead = app.store.outbox_items(Some(OutboxStatus::Dead)).await.unwrap();
        assert!(dead[0].last_error.as_deref().unwrap_or_default().contains("550"), "{engine}: {dead:?}");
        assert_eq!(smtp.refused(), 1, "{engine}");
        app.stop().await;
    }
}

#[tokio::test]
async fn without_smtp_the_message_lands_as_an_eml_file_listed_at_dev_mailbox() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn_with(db, |c| c.mail_interval = None).await;
        let engine = app.engine;
        let res = app.client.get(app.url("/dev/mailbox")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{engine}");
        assert!(res.text().await.unwrap().contains("No messages yet"), "{engine}");

        let to = email("erin");
        let enrolled =
            app.enroll_with("double-sided", &json!({"email": to, "name": "Erin Example", "kind": "customer"})).await;
        let report = deliver_due(&app.store, &mailer(&app, None), Timestamp::now()).await.expect("deliver");
        assert_eq!(report.delivered(), 1, "{engine}: {report:?}");

        let files: Vec<String> = std::fs::read_dir(app.mailbox.path())
            .expect("the mailbox folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 1, "{engine}: one file and no leftovers: {files:?}");
        let file = &files[0];
        assert!(file.ends_with(".eml"), "{engine}: {file}");
        let raw = std::fs::read_to_string(app.mailbox.path().join(file)).expect("read the .eml");
        let m = Received { from: String::new(), to: Vec::new(), data: raw };
        assert!(m.header("To").unwrap_or_default().contains(&to), "{engine}");
        let link = format!("{PUBLIC_URL}/r/{}", enrolled.code);
        assert!(m.part("text/plain").unwrap_or_default().contains(&link), "{engine}: {}", m.data);
        assert!(m.part("text/html").unwrap_or_default().contains(&link), "{engine}: {}", m.data);

        let res = app.client.get(app.url("/dev/mailbox")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{engine}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{engine}");
        let page = res.text().await.unwrap();
        assert!(page.contains(file.as_str()), "{engine}: the file is listed: {page}");
        assert!(page.contains("Welcome to Give 20%, get Premium"), "{engine}: its subject is shown: {page}");
        assert!(page.contains(&to), "{engine}: its recipient is shown: {page}");

        let res = app.client.get(app.url(&format!("/dev/mailbox/{file}"))).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{engine}");
        assert!(res.text().await.unwrap().contains(&link), "{engine}: the raw message");
        for bad in ["/dev/mailbox/..%2Fvouch.db", "/dev/mailbox/nothing-here.eml"] {
            let res = app.client.get(app.url(bad)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{engine}: {bad}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn the_dev_mailbox_does_not_exist_when_smtp_is_configured() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::start().await;
        let app = app_driven(db, &smtp).await;
        let res = app.client.get(app.url("/dev/mailbox")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_name_with_markup_shows_as_text_in_the_html_never_as_markup() {
    for db in TestDatabase::all().await {
        let smtp = SmtpServer::start().await;
        let app = app_driven(db, &smtp).await;
        let engine = app.engine;
        let name = r#"<script>alert("x")</script> & <b>Mallory</b>"#;
        app.enroll_with("agent-gift-card", &json!({"email": email("mallory"), "name": name, "kind": "partner"})).await;
        let report = deliver_due(&app.store, &mailer(&app, Some(&smtp)), Timestamp::now()).await.expect("deliver");
        assert_eq!(report.delivered(), 1, "{engine}: {report:?}");
        let m = the_only(engine, smtp.messages());
        let html = m.part("text/html").expect("an HTML part");
        assert!(!html.contains("<script>") && !html.contains("<b>"), "{engine}: markup from a name: {html}");
        let shown =
            html.replace("&#60;", "&lt;").replace("&#62;", "&gt;").replace("&#38;", "&amp;").replace("&#34;", "&quot;");
        assert!(
            shown.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;Mallory&lt;/b&gt;"),
            "{engine}: the name, escaped: {html}"
        );
        let text = m.part("text/plain").expect("a text part");
        assert!(text.contains(&format!("Hello {name},")), "{engine}: the text part shows the name as typed: {text}");
        app.stop().await;
    }
}
