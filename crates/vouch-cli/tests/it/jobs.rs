//! `vouch jobs run`: the real binary delivering the outbox to a real SMTP server
//! started by the test (the server crate's test SMTP server, shared by path).

use std::path::Path;
use std::process::Stdio;

use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::{Email, EnrollmentId, ParticipantId, ParticipantKind, ReferralCode};
use vouch_store::testing::TestDatabase;
use vouch_store::{NewEnrollment, OutboxStatus, Store};

#[allow(dead_code)]
#[path = "../../../vouch-server/tests/it/smtp.rs"]
mod smtp;

use smtp::SmtpServer;

const PUBLIC_URL: &str = "https://refer.example.test";

/// Settings a developer's shell may carry, which must not leak into the tests.
const VOUCH_ENV: [&str; 9] = [
    "VOUCH_DATA",
    "VOUCH_DATABASE_URL",
    "VOUCH_CONFIG",
    "VOUCH_LISTEN",
    "VOUCH_PUBLIC_URL",
    "VOUCH_LOG",
    "VOUCH_SMTP_URL",
    "VOUCH_MAIL_FROM",
    "VOUCH_MAILBOX",
];

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `vouch DB_ARGS... jobs run ARGS...`, without blocking the runtime that
/// serves the test SMTP server.
async fn jobs_run(db: &TestDatabase, args: &[&str]) -> Ran {
    let mut cmd = tokio::process::Command::new(crate::VOUCH);
    for var in VOUCH_ENV {
        cmd.env_remove(var);
    }
    let output = cmd
        .env("VOUCH_LOG", "warn")
        .args(db.cli_args())
        .args(["jobs", "run", "--public-url", PUBLIC_URL])
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run vouch jobs run");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Enrolls a new participant straight through the store: a welcome email waits.
async fn new_participant(store: &Store, local: &str) -> (String, String) {
    let program = store.program("agent-gift-card").await.expect("program");
    let address = format!("{local}-{}@example.org", &Uuid::now_v7().simple().to_string()[20..]);
    let code = format!("{}{}", local.to_ascii_uppercase(), &Uuid::now_v7().simple().to_string()[24..]);
    let new = NewEnrollment {
        program_id: program.id,
        participant_id: ParticipantId(Uuid::now_v7()),
        enrollment_id: EnrollmentId(Uuid::now_v7()),
        email: Email::parse(&address).expect("email"),
        name: "Test Referrer".into(),
        kind: ParticipantKind::Partner,
        team: None,
        company: None,
        code: ReferralCode::parse(&code).expect("code"),
        vanity: true,
        now: Timestamp::now(),
    };
    let enrolled = store.enroll(&new, |k| program.definition.is_eligible(k)).await.expect("enroll");
    (address, enrolled.code.to_string())
}

async fn setup() -> Vec<(TestDatabase, Store)> {
    let mut all = Vec::new();
    for db in TestDatabase::all().await {
        let store = db.open().await;
        crate::apply(&store, &crate::example("agent-gift-card")).await;
        all.push((db, store));
    }
    all
}

fn eml_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn jobs_run_delivers_pending_mail_through_smtp_and_exits_0() {
    for (db, store) in setup().await {
        let engine = db.engine;
        let (address, code) = new_participant(&store, "ada").await;
        let smtp = SmtpServer::start().await;

        let ran = jobs_run(&db, &["--smtp-url", &smtp.url()]).await;
        assert_eq!(ran.code, Some(0), "{engine}: {}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stdout.contains("Delivered welcome to a…@example.org (attempt 1)."), "{engine}: {}", ran.stdout);
        assert!(ran.stdout.contains("Outbox: 1 delivered, 0 to retry later, 0 dead."), "{engine}: {}", ran.stdout);
        assert!(!ran.stdout.contains(&address), "{engine}: no whole address in the output: {}", ran.stdout);

        let messages = smtp.messages();
        assert_eq!(messages.len(), 1, "{engine}: {messages:#?}");
        assert_eq!(messages[0].to, vec![address.clone()], "{engine}");
        let text = messages[0].part("text/plain").expect("a text part");
        assert!(text.contains(&format!("{PUBLIC_URL}/r/{code}")), "{engine}: the link: {text}");

        // Nothing is due any more: a second run does nothing and says so.
        let again = jobs_run(&db, &["--smtp-url", &smtp.url()]).await;
        assert_eq!(again.code, Some(0), "{engine}: {}\n{}", again.stdout, again.stderr);
        assert!(again.stdout.contains("No job was due."), "{engine}: {}", again.stdout);
        assert_eq!(smtp.messages().len(), 1, "{engine}: delivered once");
        assert_eq!(store.outbox_items(Some(OutboxStatus::Delivered)).await.unwrap().len(), 1, "{engine}");
        store.close().await;
    }
}

#[tokio::test]
async fn jobs_run_exits_0_when_a_retry_may_mend_and_1_when_none_will() {
    for (db, store) in setup().await {
        let engine = db.engine;
        new_participant(&store, "bob").await;
        let busy = SmtpServer::refusing(usize::MAX).await;
        let ran = jobs_run(&db, &["--smtp-url", &busy.url()]).await;
        assert_eq!(ran.code, Some(0), "{engine}: a 451 is worth a retry: {}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stdout.contains("Will retry welcome to b…@example.org at "), "{engine}: {}", ran.stdout);
        assert!(ran.stdout.contains("451"), "{engine}: {}", ran.stdout);
        assert!(ran.stdout.contains("Outbox: 0 delivered, 1 to retry later, 0 dead."), "{engine}: {}", ran.stdout);
        let pending = store.outbox_items(Some(OutboxStatus::Pending)).await.unwrap();
        assert_eq!(pending.len(), 1, "{engine}");
        assert_eq!(pending[0].attempts, 1, "{engine}");

        new_participant(&store, "carol").await;
        let hostile = SmtpServer::rejecting().await;
        let ran = jobs_run(&db, &["--smtp-url", &hostile.url()]).await;
        assert_eq!(ran.code, Some(1), "{engine}: a 550 is final: {}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stdout.contains("Gave up on welcome to c…@example.org"), "{engine}: {}", ran.stdout);
        assert!(ran.stderr.contains("dead"), "{engine}: {}", ran.stderr);
        let dead = store.outbox_items(Some(OutboxStatus::Dead)).await.unwrap();
        assert_eq!(dead.len(), 1, "{engine}: {dead:?}");
        // Bob's message is not due yet: it was left alone.
        assert_eq!(store.outbox_items(Some(OutboxStatus::Pending)).await.unwrap().len(), 1, "{engine}");
        store.close().await;
    }
}

#[tokio::test]
async fn jobs_run_without_smtp_writes_eml_files_to_the_mailbox() {
    for (db, store) in setup().await {
        let engine = db.engine;
        let (_, code) = new_participant(&store, "erin").await;
        let chosen = tempfile::tempdir().expect("temp dir");
        // SQLite: the data folder's mailbox/ by default; Postgres: --mailbox.
        let (dir, ran) = match db.data_dir() {
            Some(data) => (data.join("mailbox"), jobs_run(&db, &[]).await),
            None => {
                let flag = chosen.path().display().to_string();
                (chosen.path().to_path_buf(), jobs_run(&db, &["--mailbox", &flag]).await)
            }
        };
        assert_eq!(ran.code, Some(0), "{engine}: {}\n{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout.contains(&format!("messages were written to {}", dir.display())),
            "{engine}: {}",
            ran.stdout
        );
        let files = eml_files(&dir);
        assert_eq!(files.len(), 1, "{engine}: {files:?}");
        let raw = std::fs::read_to_string(dir.join(&files[0])).expect("read .eml");
        let m = smtp::Received { from: String::new(), to: Vec::new(), data: raw };
        assert!(m.part("text/html").unwrap_or_default().contains(&format!("{PUBLIC_URL}/r/{code}")), "{engine}");
        store.close().await;
    }
}

#[tokio::test]
async fn jobs_run_refuses_an_unusable_smtp_url_with_exit_2() {
    let db = TestDatabase::sqlite().await;
    let ran = jobs_run(&db, &["--smtp-url", "ftp://mail.example.org"]).await;
    assert_eq!(ran.code, Some(2), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("SMTP URL"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("ftp://mail.example.org"), "the URL may hold a password: {}", ran.stderr);
}
