//! The outbox on both engines: rows written in the transaction of the change that
//! causes them, claimed by one worker at a time, retried, given up on.

use std::collections::HashSet;

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;
use vouch_domain::program::parse_program;
use vouch_domain::{Email, EnrollmentId, ParticipantId, ParticipantKind, ProgramId, ProgramVersionId, ReferralCode};
use vouch_store::testing::TestDatabase;
use vouch_store::{
    ApplyOutcome, EnrollError, Enrolled, MailPayload, NewEnrollment, OutboxRetry, OutboxStatus, Store, StoredProgram,
};

async fn for_each_engine(test: impl AsyncFn(Store, &'static str)) {
    for db in TestDatabase::all().await {
        let store = db.open().await;
        test(store.clone(), db.engine).await;
        store.close().await;
    }
}

/// `secs` seconds after 2027-01-15T08:00:00Z.
fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("a valid instant")
}

const LEASE: SignedDuration = SignedDuration::from_secs(300);

async fn apply_example(store: &Store, slug: &str) -> StoredProgram {
    let path = format!("{}/../../examples/programs/{slug}.toml", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(path).expect("example program");
    let definition = parse_program(&source).expect("a valid program");
    let ids = (ProgramId(Uuid::now_v7()), ProgramVersionId(Uuid::now_v7()));
    match store.apply_program(&definition, &source, ids, at(0)).await.expect("apply") {
        ApplyOutcome::Created(p) => p,
        other => panic!("expected {slug} to be created, got {other:?}"),
    }
}

fn enrollment(program: &StoredProgram, email: &str, name: &str, kind: ParticipantKind, code: &str) -> NewEnrollment {
    NewEnrollment {
        program_id: program.id,
        participant_id: ParticipantId(Uuid::now_v7()),
        enrollment_id: EnrollmentId(Uuid::now_v7()),
        email: Email::parse(email).expect("a valid email"),
        name: name.into(),
        kind,
        team: None,
        company: None,
        code: ReferralCode::parse(code).expect("a valid code"),
        vanity: true,
        now: at(100),
    }
}

async fn enroll(store: &Store, program: &StoredProgram, new: &NewEnrollment) -> Result<Enrolled, EnrollError> {
    store.enroll(new, |kind| program.definition.is_eligible(kind)).await
}

async fn welcomes(store: &Store) -> Vec<MailPayload> {
    store
        .outbox_items(None)
        .await
        .expect("outbox items")
        .iter()
        .map(|i| i.mail().expect("an email row").expect("a mail payload"))
        .collect()
}

#[tokio::test]
async fn a_new_participant_gets_one_welcome_row_and_a_rolled_back_enrollment_none() {
    for_each_engine(async |store, engine| {
        let credit = apply_example(&store, "customer-credit").await; // customers only
        let double = apply_example(&store, "double-sided").await;
        let ada = enrollment(&credit, "Ada@Example.com", "Ada <b>Lovelace</b>", ParticipantKind::Customer, "ADA1");
        assert!(enroll(&store, &credit, &ada).await.expect("enroll Ada").created, "{engine}");
        let expected = MailPayload::Welcome {
            to: "Ada@Example.com".into(),
            name: "Ada <b>Lovelace</b>".into(),
            program: "customer-credit".into(),
            code: "ADA1".into(),
        };
        assert_eq!(welcomes(&store).await, vec![expected.clone()], "{engine}: one welcome for Ada");
        let items = store.outbox_items(Some(OutboxStatus::Pending)).await.unwrap();
        assert_eq!(items[0].kind, "email", "{engine}");
        assert_eq!(items[0].attempts, 0, "{engine}");
        assert_eq!(items[0].next_attempt_at, at(100), "{engine}: due at once");
        assert_eq!(items[0].id, ada.enrollment_id.0, "{engine}: named after the enrollment");

        // The same email again, in any case, and in a second program: no new participant, no welcome.
        let again = enrollment(&credit, "ada@example.com", "Ada", ParticipantKind::Customer, "ADA2");
        assert!(!enroll(&store, &credit, &again).await.unwrap().created, "{engine}");
        let second = enrollment(&double, "ada@example.com", "Ada", ParticipantKind::Customer, "ADA3");
        assert!(enroll(&store, &double, &second).await.unwrap().created, "{engine}");
        assert_eq!(welcomes(&store).await.len(), 1, "{engine}: still one welcome");

        // A new person whose enrollment rolls back: code taken, then ineligible.
        let bob = enrollment(&double, "bob@example.com", "Bob", ParticipantKind::Customer, "ada1");
        assert!(matches!(enroll(&store, &double, &bob).await, Err(EnrollError::CodeTaken)), "{engine}");
        let pat = enrollment(&credit, "pat@partner.example", "Pat", ParticipantKind::Partner, "PAT1");
        assert!(matches!(enroll(&store, &credit, &pat).await, Err(EnrollError::Ineligible(_))), "{engine}");
        assert_eq!(welcomes(&store).await, vec![expected], "{engine}: nothing for rolled-back enrollments");

        // Bob's retry with a free code commits, and with it his welcome.
        let bob = NewEnrollment { code: ReferralCode::parse("BOB1").unwrap(), ..bob };
        assert!(enroll(&store, &double, &bob).await.unwrap().created, "{engine}");
        let all = welcomes(&store).await;
        assert_eq!(all.len(), 2, "{engine}");
        assert_eq!(
            all[1],
            MailPayload::Welcome {
                to: "bob@example.com".into(),
                name: "Bob".into(),
                program: "double-sided".into(),
                code: "BOB1".into()
            },
            "{engine}"
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_claimers_never_take_the_same_row() {
    for_each_engine(async |store, engine| {
        let program = apply_example(&store, "agent-gift-card").await;
        const ROWS: usize = 60;
        for i in 0..ROWS {
            let new =
                enrollment(&program, &format!("p{i}@example.com"), "P", ParticipantKind::Customer, &format!("P{i}"));
            enroll(&store, &program, &new).await.expect("enroll");
        }
        let mut workers = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim_due_outbox(at(200), 3, LEASE).await.expect("claim");
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|i| i.id));
                    tokio::task::yield_now().await;
                }
            }));
        }
        let mut seen = HashSet::new();
        let mut total = 0;
        for w in workers {
            for id in w.await.expect("worker") {
                total += 1;
                assert!(seen.insert(id), "{engine}: row {id} claimed twice");
            }
        }
        assert_eq!(total, ROWS, "{engine}: every row claimed once");
        // Claimed rows are leased: nobody gets them again before the lease ends...
        assert!(store.claim_due_outbox(at(200 + 299), 100, LEASE).await.unwrap().is_empty(), "{engine}");
        // ...and an abandoned claim comes back after it, counting a second attempt.
        let again = store.claim_due_outbox(at(200 + 300), 100, LEASE).await.unwrap();
        assert_eq!(again.len(), ROWS, "{engine}: abandoned claims are due again after the lease");
        assert!(again.iter().all(|i| i.attempts == 2), "{engine}");
    })
    .await;
}

#[tokio::test]
async fn a_failed_row_comes_back_after_its_backoff_and_a_delivered_one_never() {
    for_each_engine(async |store, engine| {
        let program = apply_example(&store, "agent-gift-card").await;
        let new = enrollment(&program, "ada@example.com", "Ada", ParticipantKind::Customer, "ADA1");
        enroll(&store, &program, &new).await.unwrap();
        assert!(store.claim_due_outbox(at(99), 10, LEASE).await.unwrap().is_empty(), "{engine}: not due yet");

        let first = store.claim_due_outbox(at(100), 10, LEASE).await.unwrap();
        assert_eq!(first.len(), 1, "{engine}");
        assert_eq!(first[0].attempts, 1, "{engine}: claiming counts the attempt");
        assert!(store.outbox_failed(first[0].id, "451 try later", OutboxRetry::At(at(160))).await.unwrap());
        assert_eq!(store.next_outbox_attempt().await.unwrap(), Some(at(160)), "{engine}");
        let pending = store.outbox_items(Some(OutboxStatus::Pending)).await.unwrap();
        assert_eq!(pending[0].last_error.as_deref(), Some("451 try later"), "{engine}");

        assert!(store.claim_due_outbox(at(159), 10, LEASE).await.unwrap().is_empty(), "{engine}: backing off");
        let second = store.claim_due_outbox(at(160), 10, LEASE).await.unwrap();
        assert_eq!(second.len(), 1, "{engine}: back after the backoff");
        assert_eq!(second[0].attempts, 2, "{engine}");
        assert!(store.outbox_delivered(second[0].id, at(161)).await.unwrap(), "{engine}");
        assert!(!store.outbox_delivered(second[0].id, at(162)).await.unwrap(), "{engine}: only once");

        let delivered = store.outbox_items(Some(OutboxStatus::Delivered)).await.unwrap();
        assert_eq!(delivered.len(), 1, "{engine}");
        assert_eq!(delivered[0].delivered_at, Some(at(161)), "{engine}");
        assert_eq!(delivered[0].last_error, None, "{engine}");
        assert!(store.claim_due_outbox(at(100_000), 10, LEASE).await.unwrap().is_empty(), "{engine}");
        assert_eq!(store.next_outbox_attempt().await.unwrap(), None, "{engine}");
    })
    .await;
}

#[tokio::test]
async fn a_dead_row_stays_visible_and_is_never_claimed_again() {
    for_each_engine(async |store, engine| {
        let program = apply_example(&store, "agent-gift-card").await;
        let new = enrollment(&program, "ada@example.com", "Ada", ParticipantKind::Customer, "ADA1");
        enroll(&store, &program, &new).await.unwrap();
        let mut now = 100;
        for attempt in 1..=3 {
            let claimed = store.claim_due_outbox(at(now), 10, LEASE).await.unwrap();
            assert_eq!(claimed.len(), 1, "{engine}: attempt {attempt}");
            assert_eq!(claimed[0].attempts, attempt, "{engine}");
            let next = if attempt < 3 { OutboxRetry::At(at(now + 30)) } else { OutboxRetry::Dead };
            assert!(store.outbox_failed(claimed[0].id, &format!("refused {attempt}"), next).await.unwrap());
            now += 30;
        }
        let dead = store.outbox_items(Some(OutboxStatus::Dead)).await.unwrap();
        assert_eq!(dead.len(), 1, "{engine}: the dead row is visible");
        assert_eq!(dead[0].attempts, 3, "{engine}");
        assert_eq!(dead[0].last_error.as_deref(), Some("refused 3"), "{engine}");
        assert!(store.outbox_items(Some(OutboxStatus::Pending)).await.unwrap().is_empty(), "{engine}");
        assert!(store.claim_due_outbox(at(1_000_000), 10, LEASE).await.unwrap().is_empty(), "{engine}");
        assert!(!store.outbox_failed(dead[0].id, "again", OutboxRetry::At(at(0))).await.unwrap(), "{engine}");
    })
    .await;
}

#[tokio::test]
async fn a_suppressed_address_is_recognised_in_any_case() {
    for_each_engine(async |store, engine| {
        let ada = Email::parse("Ada@Example.com").unwrap();
        assert!(!store.is_suppressed(&ada).await.unwrap(), "{engine}");
        store.suppress_email(&ada, "unsubscribed", at(1)).await.unwrap();
        store.suppress_email(&ada, "again", at(2)).await.unwrap();
        assert!(store.is_suppressed(&Email::parse("ada@example.com").unwrap()).await.unwrap(), "{engine}");
        assert!(!store.is_suppressed(&Email::parse("bob@example.com").unwrap()).await.unwrap(), "{engine}");
    })
    .await;
}
