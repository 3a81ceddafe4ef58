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

/// A referral of the example program `slug`, made and won straight through the
/// store: with `units` and a `contract_date` (the `won` happening that day), or
/// without them (happening now).
async fn won_through_store(
    store: &Store,
    slug: &str,
    units: Option<i64>,
    contract_date: Option<&str>,
) -> vouch_domain::referral::ReferralId {
    use vouch_domain::referral::{AttributionInput, FactKind, ReferralId, Rules, Source, attribute};
    use vouch_store::{FactProspect, NewFact, NewProspect, NewReferral};

    crate::apply(store, &crate::example(slug)).await;
    let program = store.program(slug).await.expect("program");
    let u = &Uuid::now_v7().simple().to_string()[20..];
    let now = Timestamp::now();
    let new = NewEnrollment {
        program_id: program.id,
        participant_id: ParticipantId(Uuid::now_v7()),
        enrollment_id: EnrollmentId(Uuid::now_v7()),
        email: Email::parse(&format!("referrer-{u}@example.org")).expect("email"),
        name: "Test Referrer".into(),
        kind: ParticipantKind::Customer,
        team: None,
        company: None,
        code: ReferralCode::parse(&format!("TEST{u}")).expect("code"),
        vanity: true,
        now,
    };
    let code = store.enroll(&new, |k| program.definition.is_eligible(k)).await.expect("enroll").code;
    let referral = NewReferral {
        id: ReferralId(Uuid::now_v7()),
        program_id: program.id,
        program_version_id: program.version_id,
        code,
        source: Source::Lead,
        prospect: NewProspect {
            email: Some(Email::parse(&format!("bob@prospect-{u}.example")).expect("email")),
            ..NewProspect::default()
        },
        consent: None,
        note: None,
        actor: "tests".into(),
        now,
        recent_since: now,
        registry_domain: None,
    };
    let rules = Rules::from_program(&program.definition);
    let created = store
        .create_referral(&referral, |facts| {
            attribute(&AttributionInput {
                rules: rules.clone(),
                referrer: facts.referrer.clone(),
                prospect: facts.prospect.clone(),
                source: Source::Lead,
                now,
                in_registry: facts.registry_match.is_some(),
                holder: facts.holder,
                referrer_ip_hashes: Vec::new(),
                recent_leads: facts.recent_leads,
            })
        })
        .await
        .expect("create referral");
    let occurred_at = match contract_date {
        Some(day) => format!("{day}T15:00:00Z").parse().expect("instant"),
        None => now,
    };
    let won = NewFact {
        id: Uuid::now_v7(),
        program_id: program.id,
        kind: FactKind::Won,
        occurred_at,
        event_id: None,
        referral_id: Some(created.id),
        prospect: FactProspect::default(),
        units,
        value: None,
        contract_date: contract_date.map(str::to_string),
        raw: serde_json::json!({}),
        actor: "tests".into(),
        now,
    };
    store.record_fact(&won, None).await.expect("record won");
    created.id
}

#[tokio::test]
async fn jobs_run_releases_a_due_hold_once() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let store = db.open().await;
        // Contract date + 2 months is long past on the wall clock.
        let referral = won_through_store(&store, "per-technician", Some(10), Some("2025-01-10")).await;
        let filter = vouch_store::RewardFilter { referral: Some(referral), ..Default::default() };
        let reward = store.rewards(&filter, None, 10).await.expect("rewards").remove(0);
        assert_eq!(reward.status, vouch_store::RewardStatus::Pending, "{engine}");
        let mailbox = tempfile::tempdir().expect("temp dir");
        let mailbox = mailbox.path().display().to_string();

        let ran = jobs_run(&db, &["--mailbox", &mailbox]).await;
        assert_eq!(ran.code, Some(0), "{engine}: {}\n{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout.contains(&format!("Released reward {} (referral {referral}): approved: ", reward.id)),
            "{engine}: {}",
            ran.stdout
        );
        assert!(ran.stdout.contains("Holds: 1 approved, 0 awaiting approval, 0 voided."), "{engine}: {}", ran.stdout);
        let after = store.rewards(&filter, None, 10).await.expect("rewards").remove(0);
        assert_eq!(after.status, vouch_store::RewardStatus::Approved, "{engine}");
        assert_eq!(after.amount, reward.amount, "{engine}");

        // Released once: a second run finds no hold due.
        let again = jobs_run(&db, &["--mailbox", &mailbox]).await;
        assert_eq!(again.code, Some(0), "{engine}: {}\n{}", again.stdout, again.stderr);
        assert!(!again.stdout.contains("Released reward"), "{engine}: {}", again.stdout);
        assert_eq!(store.reward_events(reward.id).await.expect("events").len(), 2, "{engine}: made, then released");
        store.close().await;
    }
}

/// A referral of the customer-credit program (USD 100.00 invoice credit,
/// approved at once) won; its reward's id.
async fn won_customer_credit(store: &Store) -> Uuid {
    let referral = won_through_store(store, "customer-credit", None, None).await;
    let filter = vouch_store::RewardFilter { referral: Some(referral), ..Default::default() };
    let reward = store.rewards(&filter, None, 10).await.expect("rewards").remove(0);
    assert_eq!(reward.status, vouch_store::RewardStatus::Approved, "{}", store.engine());
    reward.id
}

#[tokio::test]
async fn jobs_run_hands_an_approved_credit_to_billing_once() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let store = db.open().await;
        let reward = won_customer_credit(&store).await;
        let mailbox = tempfile::tempdir().expect("temp dir");
        let mailbox = mailbox.path().display().to_string();

        for run in 0..2 {
            let ran = jobs_run(&db, &["--mailbox", &mailbox]).await;
            assert_eq!(ran.code, Some(0), "{engine}: {}\n{}", ran.stdout, ran.stderr);
            let said = ran.stdout.contains("Handed 1 credit(s) and plan upgrade(s) to billing");
            assert_eq!(said, run == 0, "{engine}: run {run}: {}", ran.stdout);
        }
        let billing: Vec<_> =
            store.outbox_items(None).await.expect("outbox").into_iter().filter(|i| i.kind == "billing").collect();
        assert_eq!(billing.len(), 1, "{engine}: {billing:?}");
        assert_eq!(billing[0].payload["reward_id"], reward.to_string(), "{engine}");
        // Delivering the outbox left it for billing's deliverer.
        assert_eq!((billing[0].status, billing[0].attempts), (OutboxStatus::Pending, 0), "{engine}");
        store.close().await;
    }
}
