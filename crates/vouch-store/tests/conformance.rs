//! The storage conformance suite: every behaviour of the [`Store`], checked on
//! every engine available here (SQLite always; Postgres when
//! `VOUCH_TEST_DATABASE_URL` names a server, and always under `CI=true`).
//!
//! Each test runs the same body once per engine, on a fresh database, and names
//! the engine in its assertion messages.

use std::collections::BTreeSet;

use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::api_key::{Area, Scope};
use vouch_domain::click::{Channel, Utm};
use vouch_domain::participant::ParticipantStatus;
use vouch_domain::program::parse_program;
use vouch_domain::{
    ApiKeyId, ClickId, Email, EnrollmentId, ParticipantId, ParticipantKind, ProgramId, ProgramVersionId, ReferralCode,
};
use vouch_store::testing::TestDatabase;
use vouch_store::{
    ApiKeyRecord, ApplyOutcome, ClickStats, EnrollError, Enrolled, NewClick, NewEnrollment, Store, StoreError,
    StoredProgram,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs `test` once per engine, each time on a fresh, migrated database.
async fn for_each_engine(test: impl AsyncFn(Store, &'static str)) {
    for db in TestDatabase::all().await {
        let store = db.open().await;
        test(store.clone(), db.engine).await;
        store.close().await;
    }
}

const EXAMPLES: [(&str, &str); 5] = [
    ("agent-gift-card", include_str!("../../../examples/programs/agent-gift-card.toml")),
    ("customer-credit", include_str!("../../../examples/programs/customer-credit.toml")),
    ("double-sided", include_str!("../../../examples/programs/double-sided.toml")),
    ("per-technician", include_str!("../../../examples/programs/per-technician.toml")),
    ("qualified-lead", include_str!("../../../examples/programs/qualified-lead.toml")),
];

fn example(slug: &str) -> &'static str {
    EXAMPLES.iter().find(|(s, _)| *s == slug).map(|(_, source)| *source).expect("an example program")
}

/// A fixed instant: `secs` seconds after 2027-01-15T08:00:00Z.
fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("a valid instant")
}

fn code(raw: &str) -> ReferralCode {
    ReferralCode::parse(raw).expect("a valid code")
}

async fn apply_source(store: &Store, source: &str, now: Timestamp) -> ApplyOutcome {
    let definition = parse_program(source).expect("a valid program");
    store
        .apply_program(&definition, source, (ProgramId(Uuid::now_v7()), ProgramVersionId(Uuid::now_v7())), now)
        .await
        .expect("apply program")
}

/// Applies an example program that is not stored yet and returns what was stored.
async fn apply_example(store: &Store, slug: &str) -> StoredProgram {
    match apply_source(store, example(slug), at(0)).await {
        ApplyOutcome::Created(program) => program,
        other => panic!("first apply of {slug} should create it, got {other:?}"),
    }
}

/// The same example with another landing URL.
fn with_landing_url(slug: &str, url: &str) -> String {
    let source = example(slug);
    let line = source.lines().find(|l| l.starts_with("landing_url")).expect("a landing_url line");
    source.replace(line, &format!("landing_url = \"{url}\""))
}

fn assert_same_program(engine: &str, actual: &StoredProgram, expected: &StoredProgram) {
    let what = expected.definition.slug().as_str();
    assert_eq!(actual.id, expected.id, "{engine}: {what} id");
    assert_eq!(actual.version_id, expected.version_id, "{engine}: {what} version id");
    assert_eq!(actual.version, expected.version, "{engine}: {what} version number");
    assert_eq!(actual.definition, expected.definition, "{engine}: {what} definition");
    assert_eq!(actual.source, expected.source, "{engine}: {what} source text");
    assert_eq!(actual.applied_at, expected.applied_at, "{engine}: {what} applied_at");
}

fn enrollment(program: &StoredProgram, email: &str, kind: ParticipantKind, code_text: &str) -> NewEnrollment {
    NewEnrollment {
        program_id: program.id,
        participant_id: ParticipantId(Uuid::now_v7()),
        enrollment_id: EnrollmentId(Uuid::now_v7()),
        email: Email::parse(email).expect("a valid email"),
        name: "Ada Lovelace".into(),
        kind,
        team: Some("Analytical Engines".into()),
        company: Some("Babbage & Co".into()),
        code: code(code_text),
        vanity: true,
        now: at(100),
    }
}

async fn enroll(store: &Store, program: &StoredProgram, new: &NewEnrollment) -> Result<Enrolled, EnrollError> {
    store.enroll(new, |kind| program.definition.is_eligible(kind)).await
}

/// Enrolls a new customer and returns the outcome.
async fn enroll_customer(store: &Store, program: &StoredProgram, email: &str, code_text: &str) -> Enrolled {
    let enrolled = enroll(store, program, &enrollment(program, email, ParticipantKind::Customer, code_text))
        .await
        .unwrap_or_else(|e| panic!("{}: enroll {email}: {e}", store.engine()));
    assert!(enrolled.created, "{}: {email} should be a new enrollment", store.engine());
    enrolled
}

/// A click id that sorts like its time: `millis` in the UUIDv7 time field,
/// `seq` in the counter bits, so ids are distinct and deterministic.
fn click_id(millis: i64, seq: u64) -> ClickId {
    let mut tail = [0u8; 10];
    tail[2..].copy_from_slice(&seq.to_be_bytes());
    ClickId(uuid::Builder::from_unix_timestamp_millis(millis as u64, &tail).into_uuid())
}

/// A plain click `offset_ms` after the fixed base instant.
fn click(code: &ReferralCode, offset_ms: i64, seq: u64, is_bot: bool) -> NewClick {
    let millis = at(0).as_millisecond() + offset_ms;
    NewClick {
        id: click_id(millis, seq),
        code: code.clone(),
        occurred_at: Timestamp::from_millisecond(millis).expect("a valid instant"),
        ip_hash: Some(format!("{seq:016x}")),
        user_agent: Some(if is_bot { "Googlebot/2.1".into() } else { "Mozilla/5.0".into() }),
        referer: None,
        utm: Utm::default(),
        channel: Channel::Direct,
        is_bot,
    }
}

/// What the counters of `code` should say after `clicks`.
fn expected_stats(clicks: &[NewClick], code: &ReferralCode) -> ClickStats {
    let of_code = || clicks.iter().filter(|c| &c.code == code);
    ClickStats {
        clicks: of_code().filter(|c| !c.is_bot).count() as i64,
        bot_visits: of_code().filter(|c| c.is_bot).count() as i64,
        last_click_at: of_code().filter(|c| !c.is_bot).map(|c| c.occurred_at).max(),
    }
}

/// Reads every page of a code's clicks, checking each page's order as it goes.
async fn all_pages(store: &Store, code: &ReferralCode, limit: u32, include_bots: bool) -> Vec<NewClick> {
    let engine = store.engine();
    let mut out: Vec<NewClick> = Vec::new();
    let mut before = None;
    loop {
        let page = store.clicks(code, before, limit, include_bots).await.expect("clicks page");
        assert!(page.len() <= limit as usize, "{engine}: a page holds at most `limit` clicks");
        assert!(page.windows(2).all(|w| w[0].id > w[1].id), "{engine}: a page is newest first");
        if let (Some(last), Some(first)) = (out.last(), page.first()) {
            assert!(last.id > first.id, "{engine}: a page starts after the previous page ends");
        }
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        let full = page.len() == limit as usize;
        out.extend(page);
        if !full {
            break;
        }
    }
    out
}

fn api_key(name: &str, created_at: Timestamp, scopes: Vec<Scope>) -> ApiKeyRecord {
    ApiKeyRecord {
        id: ApiKeyId(Uuid::now_v7()),
        name: name.into(),
        prefix: format!("vk_{}", &name[..3]),
        scopes,
        created_at,
        revoked_at: None,
    }
}

// ---------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------

#[test]
fn both_engines_have_the_same_migrations() {
    let list = |engine: &str| -> Vec<String> {
        let dir = format!("{}/migrations/{engine}", env!("CARGO_MANIFEST_DIR"));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {dir}: {e}"))
            .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let sqlite = list("sqlite");
    let postgres = list("postgres");
    assert!(!sqlite.is_empty(), "there are migrations");
    assert!(sqlite.iter().all(|n| n.ends_with(".sql")), "migrations are .sql files: {sqlite:?}");
    assert_eq!(sqlite, postgres, "migrations/sqlite and migrations/postgres list the same files");
}

#[tokio::test]
async fn reopening_a_database_reruns_migrations_harmlessly_and_keeps_the_data() {
    for db in TestDatabase::all().await {
        let engine = db.engine;
        let store = db.open().await;
        let program = apply_example(&store, "customer-credit").await;
        let ada = enroll_customer(&store, &program, "ada@example.com", "ADA1").await;
        store.setting_or_insert("ip_hash_key", "secret").await.expect("setting");
        let epoch = store.cache_epoch().await.expect("epoch");
        store.close().await;

        let store = db.open().await;
        store.migrate().await.unwrap_or_else(|e| panic!("{engine}: migrating a migrated database: {e}"));
        assert_same_program(engine, &store.program("customer-credit").await.expect("program"), &program);
        assert_eq!(store.count_participants().await.expect("count"), 1, "{engine}: participants kept");
        let record = store.participant(ada.participant_id).await.expect("participant kept");
        assert_eq!(record.enrollments[0].codes[0].code, ada.code, "{engine}: code kept");
        assert_eq!(store.setting_or_insert("ip_hash_key", "other").await.unwrap(), "secret", "{engine}: setting kept");
        assert_eq!(store.cache_epoch().await.expect("epoch"), epoch, "{engine}: cache epoch not reset");
        store.close().await;
    }
}

// ---------------------------------------------------------------------------
// Programs
// ---------------------------------------------------------------------------

#[tokio::test]
async fn applying_a_new_program_creates_version_one() {
    for_each_engine(async |store, engine| {
        assert!(!store.has_programs().await.unwrap(), "{engine}: a fresh database has no programs");
        let source = example("double-sided");
        let created = match apply_source(&store, source, at(5)).await {
            ApplyOutcome::Created(p) => p,
            other => panic!("{engine}: expected Created, got {other:?}"),
        };
        assert_eq!(created.version, 1, "{engine}: first version is 1");
        assert_eq!(created.source, source, "{engine}: the source text is kept");
        assert_eq!(created.applied_at, at(5), "{engine}: applied_at is the given time");
        let read = store.program("double-sided").await.expect("program");
        assert_same_program(engine, &read, &created);
        assert_eq!(read.definition.landing_url().as_str(), "https://example.com/friends", "{engine}");
        assert!(store.has_programs().await.unwrap(), "{engine}: has programs after apply");
    })
    .await;
}

#[tokio::test]
async fn applying_the_same_definition_again_is_unchanged_and_adds_no_version() {
    for_each_engine(async |store, engine| {
        let v1 = apply_example(&store, "customer-credit").await;
        let again = apply_source(&store, example("customer-credit"), at(60)).await;
        let ApplyOutcome::Unchanged(current) = again else {
            panic!("{engine}: expected Unchanged, got {again:?}");
        };
        assert_same_program(engine, &current, &v1);
        assert_same_program(engine, &store.program("customer-credit").await.unwrap(), &v1);
    })
    .await;
}

#[tokio::test]
async fn a_changed_definition_makes_a_new_version_and_leaves_the_old_one_as_it_was() {
    for_each_engine(async |store, engine| {
        let v1 = apply_example(&store, "customer-credit").await;
        let edited = with_landing_url("customer-credit", "https://example.com/welcome-v2");
        let outcome = apply_source(&store, &edited, at(3600)).await;
        let ApplyOutcome::Updated { previous, current } = outcome else {
            panic!("{engine}: expected Updated, got {outcome:?}");
        };
        assert_same_program(engine, &previous, &v1);
        assert_eq!(current.id, v1.id, "{engine}: same program");
        assert_ne!(current.version_id, v1.version_id, "{engine}: a new version row");
        assert_eq!(current.version, 2, "{engine}: the edit is version 2");
        assert_eq!(current.source, edited, "{engine}: the new source is kept");
        assert_eq!(current.applied_at, at(3600), "{engine}");
        assert_eq!(current.definition.landing_url().as_str(), "https://example.com/welcome-v2", "{engine}");

        let read = store.program("customer-credit").await.unwrap();
        assert_same_program(engine, &read, &current);

        // Going back to the first text is an edit too: version 3, and version 2
        // is reported exactly as it was stored.
        let back = apply_source(&store, example("customer-credit"), at(7200)).await;
        let ApplyOutcome::Updated { previous, current: v3 } = back else {
            panic!("{engine}: expected Updated, got {back:?}");
        };
        assert_same_program(engine, &previous, &read);
        assert_eq!(v3.version, 3, "{engine}: reverting makes version 3");
        assert_eq!(v3.definition, v1.definition, "{engine}: version 3 says what version 1 said");
        assert_eq!(store.programs().await.unwrap().len(), 1, "{engine}: still one program");
    })
    .await;
}

#[tokio::test]
async fn programs_lists_all_five_examples_with_their_current_versions() {
    for_each_engine(async |store, engine| {
        for (slug, _) in EXAMPLES {
            apply_example(&store, slug).await;
        }
        apply_source(&store, &with_landing_url("per-technician", "https://example.com/tech"), at(10)).await;
        let programs = store.programs().await.expect("programs");
        let slugs: Vec<&str> = programs.iter().map(|p| p.definition.slug().as_str()).collect();
        let expected: Vec<&str> = EXAMPLES.iter().map(|(s, _)| *s).collect();
        assert_eq!(slugs, expected, "{engine}: every example, by slug");
        for p in &programs {
            let slug = p.definition.slug().as_str();
            let (want_version, want_source) = match slug {
                "per-technician" => (2, with_landing_url(slug, "https://example.com/tech")),
                _ => (1, example(slug).to_string()),
            };
            assert_eq!(p.version, want_version, "{engine}: version of {slug}");
            assert_eq!(p.source, want_source, "{engine}: source of {slug}");
            assert_eq!(p.definition, parse_program(&want_source).unwrap(), "{engine}: definition of {slug}");
        }
    })
    .await;
}

#[tokio::test]
async fn an_unknown_program_is_not_found() {
    for_each_engine(async |store, engine| {
        apply_example(&store, "customer-credit").await;
        let err = store.program("nope").await.expect_err("no such program");
        assert!(matches!(err, StoreError::NotFound), "{engine}: expected NotFound, got {err:?}");
    })
    .await;
}

#[tokio::test]
async fn applying_a_program_bumps_the_cache_epoch() {
    for_each_engine(async |store, engine| {
        let e0 = store.cache_epoch().await.unwrap();
        apply_example(&store, "qualified-lead").await;
        let e1 = store.cache_epoch().await.unwrap();
        assert!(e1 > e0, "{engine}: creating a program bumps the epoch ({e0} -> {e1})");
        apply_source(&store, &with_landing_url("qualified-lead", "https://example.com/demo2"), at(1)).await;
        let e2 = store.cache_epoch().await.unwrap();
        assert!(e2 > e1, "{engine}: a new version bumps the epoch ({e1} -> {e2})");
    })
    .await;
}

// ---------------------------------------------------------------------------
// Enrollment
// ---------------------------------------------------------------------------

#[tokio::test]
async fn enrolling_creates_a_participant_an_enrollment_and_a_code() {
    for_each_engine(async |store, engine| {
        let program = apply_example(&store, "customer-credit").await;
        let new = enrollment(&program, "Ada@Example.com", ParticipantKind::Customer, "ada-2027");
        let enrolled = enroll(&store, &program, &new).await.expect("enroll");
        assert_eq!(
            enrolled,
            Enrolled {
                created: true,
                participant_id: new.participant_id,
                enrollment_id: new.enrollment_id,
                code: code("ADA-2027"),
            },
            "{engine}"
        );
        assert_eq!(store.count_participants().await.unwrap(), 1, "{engine}");

        let record = store.participant(new.participant_id).await.expect("participant");
        assert_eq!(record.email, "Ada@Example.com", "{engine}: the address as typed");
        assert_eq!(record.name, "Ada Lovelace", "{engine}");
        assert_eq!(record.kind, ParticipantKind::Customer, "{engine}");
        assert_eq!(record.team.as_deref(), Some("Analytical Engines"), "{engine}");
        assert_eq!(record.company.as_deref(), Some("Babbage & Co"), "{engine}");
        assert_eq!(record.status, ParticipantStatus::Active, "{engine}");
        assert_eq!(record.created_at, at(100), "{engine}");
        assert_eq!(record.suspended_at, None, "{engine}");
        assert_eq!(record.enrollments.len(), 1, "{engine}: one enrollment");
        let e = &record.enrollments[0];
        assert_eq!(e.id, new.enrollment_id, "{engine}");
        assert_eq!(e.program_slug, "customer-credit", "{engine}");
        assert_eq!(e.created_at, at(100), "{engine}");
        assert_eq!(e.codes.len(), 1, "{engine}: one code");
        let c = &e.codes[0];
        assert_eq!(c.code, code("ADA-2027"), "{engine}");
        assert!(c.vanity && c.active, "{engine}: an active vanity code");
        assert_eq!((c.created_at, c.revoked_at), (at(100), None), "{engine}");
        assert_eq!((c.clicks, c.bot_visits), (0, 0), "{engine}: no clicks yet");

        let unknown = store.participant(ParticipantId(Uuid::now_v7())).await.expect_err("unknown participant");
        assert!(matches!(unknown, StoreError::NotFound), "{engine}: got {unknown:?}");
    })
    .await;
}

#[tokio::test]
async fn enrolling_the_same_email_in_another_case_returns_the_existing_enrollment() {
    for_each_engine(async |store, engine| {
        let program = apply_example(&store, "customer-credit").await;
        let first = enroll_customer(&store, &program, "ada@example.com", "ADA1").await;
        let again = enrollment(&program, "ADA@EXAMPLE.COM", ParticipantKind::Customer, "OTHER1");
        let second = enroll(&store, &program, &again).await.expect("enroll again");
        assert_eq!(second, Enrolled { created: false, ..first.clone() }, "{engine}: the same ids and code");
        assert_eq!(store.count_participants().await.unwrap(), 1, "{engine}: still one participant");
        let record = store.participant(first.participant_id).await.unwrap();
        assert_eq!(record.email, "ada@example.com", "{engine}: the first address is kept");
        assert_eq!(record.enrollments.len(), 1, "{engine}: still one enrollment");
        assert_eq!(record.enrollments[0].codes.len(), 1, "{engine}: the new code was not stored");
        assert!(store.code_target(&code("OTHER1")).await.unwrap().is_none(), "{engine}: OTHER1 leads nowhere");
    })
    .await;
}

#[tokio::test]
async fn the_same_person_in_a_second_program_gets_a_second_enrollment_and_code() {
    for_each_engine(async |store, engine| {
        let credit = apply_example(&store, "customer-credit").await;
        let double = apply_example(&store, "double-sided").await;
        let first = enroll_customer(&store, &credit, "ada@example.com", "ADA1").await;
        let second =
            enroll(&store, &double, &enrollment(&double, "Ada@example.com", ParticipantKind::Customer, "ADA2"))
                .await
                .expect("enroll in a second program");
        assert!(second.created, "{engine}: a new enrollment");
        assert_eq!(second.participant_id, first.participant_id, "{engine}: the same participant");
        assert_ne!(second.enrollment_id, first.enrollment_id, "{engine}: another enrollment");
        assert_eq!(second.code, code("ADA2"), "{engine}: another code");
        assert_eq!(store.count_participants().await.unwrap(), 1, "{engine}");

        let record = store.participant(first.participant_id).await.unwrap();
        let summary: BTreeSet<(String, String)> = record
            .enrollments
            .iter()
            .map(|e| (e.program_slug.clone(), e.codes.iter().map(|c| c.code.to_string()).collect()))
            .collect();
        let expected = BTreeSet::from([
            ("customer-credit".to_string(), "ADA1".to_string()),
            ("double-sided".to_string(), "ADA2".to_string()),
        ]);
        assert_eq!(summary, expected, "{engine}: both enrollments with their codes");
    })
    .await;
}

#[tokio::test]
async fn two_simultaneous_enrollments_of_one_person_end_with_one_enrollment() {
    for_each_engine(async |store, engine| {
        let credit = apply_example(&store, "customer-credit").await;
        let double = apply_example(&store, "double-sided").await;
        // A new person (a double-submitted join form) ...
        let a = enrollment(&credit, "ada@example.com", ParticipantKind::Customer, "ADA-A");
        let b = enrollment(&credit, "Ada@Example.com", ParticipantKind::Customer, "ADA-B");
        let (ra, rb) = tokio::join!(enroll(&store, &credit, &a), enroll(&store, &credit, &b));
        let (ra, rb) = (ra.unwrap_or_else(|e| panic!("{engine}: {e}")), rb.unwrap_or_else(|e| panic!("{engine}: {e}")));
        assert_eq!(u8::from(ra.created) + u8::from(rb.created), 1, "{engine}: exactly one created: {ra:?} {rb:?}");
        assert_eq!((ra.enrollment_id, &ra.code), (rb.enrollment_id, &rb.code), "{engine}: both see one enrollment");

        // ... and a known person joining a second program twice at once.
        let a = enrollment(&double, "ada@example.com", ParticipantKind::Customer, "ADA-C");
        let b = enrollment(&double, "ada@example.com", ParticipantKind::Customer, "ADA-D");
        let (ra, rb) = tokio::join!(enroll(&store, &double, &a), enroll(&store, &double, &b));
        let (ra, rb) = (ra.unwrap_or_else(|e| panic!("{engine}: {e}")), rb.unwrap_or_else(|e| panic!("{engine}: {e}")));
        assert_eq!(u8::from(ra.created) + u8::from(rb.created), 1, "{engine}: exactly one created: {ra:?} {rb:?}");
        assert_eq!((ra.enrollment_id, &ra.code), (rb.enrollment_id, &rb.code), "{engine}: both see one enrollment");

        assert_eq!(store.count_participants().await.unwrap(), 1, "{engine}: one participant");
        let record = store.participant(ra.participant_id).await.unwrap();
        assert_eq!(record.enrollments.len(), 2, "{engine}: one enrollment per program");
        assert!(record.enrollments.iter().all(|e| e.codes.len() == 1), "{engine}: one code per enrollment");
    })
    .await;
}

#[tokio::test]
async fn a_code_taken_in_any_program_is_refused_and_nothing_is_stored() {
    for_each_engine(async |store, engine| {
        let credit = apply_example(&store, "customer-credit").await;
        let double = apply_example(&store, "double-sided").await;
        let ada = enroll_customer(&store, &credit, "ada@example.com", "TAKEN").await;

        // A new person, in another program, asking for the code (in another case).
        let bob = enrollment(&double, "bob@example.com", ParticipantKind::Customer, "taken");
        let err = enroll(&store, &double, &bob).await.expect_err("code taken");
        assert!(matches!(err, EnrollError::CodeTaken), "{engine}: expected CodeTaken, got {err:?}");
        assert_eq!(store.count_participants().await.unwrap(), 1, "{engine}: Bob was not stored");
        let err = store.participant(bob.participant_id).await.expect_err("Bob unknown");
        assert!(matches!(err, StoreError::NotFound), "{engine}: got {err:?}");

        // A known person, in a new program, asking for a taken code.
        let ada_again = enrollment(&double, "ada@example.com", ParticipantKind::Customer, "TAKEN");
        let err = enroll(&store, &double, &ada_again).await.expect_err("code taken");
        assert!(matches!(err, EnrollError::CodeTaken), "{engine}: expected CodeTaken, got {err:?}");
        let record = store.participant(ada.participant_id).await.unwrap();
        assert_eq!(record.enrollments.len(), 1, "{engine}: no half-made enrollment");

        // The code still leads to Ada's program, and retrying with a free code works.
        let target = store.code_target(&code("TAKEN")).await.unwrap().expect("code target");
        assert_eq!(target.landing_url, "https://example.com/welcome", "{engine}");
        let retry = NewEnrollment { code: code("ADA-DOUBLE"), ..ada_again };
        let enrolled = enroll(&store, &double, &retry).await.expect("retry with a free code");
        assert!(enrolled.created, "{engine}: the retry enrolls");
        assert_eq!(enrolled.code, code("ADA-DOUBLE"), "{engine}");
        let bob_retry = NewEnrollment { code: code("BOB1"), ..bob };
        assert!(enroll(&store, &double, &bob_retry).await.expect("Bob retries").created, "{engine}");
        assert_eq!(store.count_participants().await.unwrap(), 2, "{engine}");
    })
    .await;
}

#[tokio::test]
async fn an_ineligible_kind_is_refused_and_nothing_is_stored() {
    for_each_engine(async |store, engine| {
        let credit = apply_example(&store, "customer-credit").await; // customers only
        let partner = enrollment(&credit, "pat@partner.example", ParticipantKind::Partner, "PAT1");
        let err = enroll(&store, &credit, &partner).await.expect_err("partners may not join");
        assert!(
            matches!(err, EnrollError::Ineligible(ParticipantKind::Partner)),
            "{engine}: expected Ineligible(partner), got {err:?}"
        );
        assert_eq!(store.count_participants().await.unwrap(), 0, "{engine}: nobody stored");
        assert!(store.code_target(&code("PAT1")).await.unwrap().is_none(), "{engine}: no code stored");

        // A known participant is judged by their stored kind, not the one claimed now.
        let gift = apply_example(&store, "agent-gift-card").await; // every kind
        let pat = enrollment(&gift, "pat@partner.example", ParticipantKind::Partner, "PARTNER1");
        let pat = enroll(&store, &gift, &pat).await.expect("a partner joins the agent program");
        let claims_customer = enrollment(&credit, "pat@partner.example", ParticipantKind::Customer, "PAT2");
        let err = enroll(&store, &credit, &claims_customer).await.expect_err("still a partner");
        assert!(matches!(err, EnrollError::Ineligible(ParticipantKind::Partner)), "{engine}: got {err:?}");
        assert_eq!(store.participant(pat.participant_id).await.unwrap().enrollments.len(), 1, "{engine}");
    })
    .await;
}

#[tokio::test]
async fn a_suspended_participant_cannot_enroll() {
    for_each_engine(async |store, engine| {
        let credit = apply_example(&store, "customer-credit").await;
        let double = apply_example(&store, "double-sided").await;
        let ada = enroll_customer(&store, &credit, "ada@example.com", "ADA1").await;
        let suspended = store.suspend_participant(ada.participant_id, at(500)).await.expect("suspend");
        assert_eq!(suspended.status, ParticipantStatus::Suspended, "{engine}");
        assert_eq!(suspended.suspended_at, Some(at(500)), "{engine}");

        let err = enroll(&store, &double, &enrollment(&double, "ADA@example.com", ParticipantKind::Customer, "ADA2"))
            .await
            .expect_err("suspended");
        assert!(matches!(err, EnrollError::Suspended), "{engine}: expected Suspended, got {err:?}");
        let record = store.participant(ada.participant_id).await.unwrap();
        assert_eq!(record.enrollments.len(), 1, "{engine}: no new enrollment");
        assert!(store.code_target(&code("ADA2")).await.unwrap().is_none(), "{engine}: no new code");

        // Suspending again keeps the first time.
        let again = store.suspend_participant(ada.participant_id, at(900)).await.expect("suspend again");
        assert_eq!(again.suspended_at, Some(at(500)), "{engine}: the first suspension time is kept");
    })
    .await;
}

#[tokio::test]
async fn a_participant_shows_click_counts_per_code() {
    for_each_engine(async |store, engine| {
        let credit = apply_example(&store, "customer-credit").await;
        let double = apply_example(&store, "double-sided").await;
        let ada = enroll_customer(&store, &credit, "ada@example.com", "ADA1").await;
        enroll(&store, &double, &enrollment(&double, "ada@example.com", ParticipantKind::Customer, "ADA2"))
            .await
            .expect("second enrollment");
        let ada1 = code("ADA1");
        let ada2 = code("ADA2");
        let clicks = vec![
            click(&ada1, 1, 1, false),
            click(&ada1, 2, 2, false),
            click(&ada1, 3, 3, true),
            click(&ada2, 4, 4, false),
        ];
        store.insert_clicks(&clicks).await.expect("insert clicks");
        let record = store.participant(ada.participant_id).await.unwrap();
        let counts: BTreeSet<(String, i64, i64)> = record
            .enrollments
            .iter()
            .flat_map(|e| e.codes.iter().map(|c| (c.code.to_string(), c.clicks, c.bot_visits)))
            .collect();
        let expected = BTreeSet::from([("ADA1".to_string(), 2, 1), ("ADA2".to_string(), 1, 0)]);
        assert_eq!(counts, expected, "{engine}: people and bots per code");
    })
    .await;
}

// ---------------------------------------------------------------------------
// Codes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_code_leads_to_the_landing_url_of_the_current_version() {
    for_each_engine(async |store, engine| {
        let program = apply_example(&store, "customer-credit").await;
        let ada = enroll_customer(&store, &program, "ada@example.com", "ADA1").await;
        let target = store.code_target(&ada.code).await.unwrap().expect("a target");
        assert_eq!(target.landing_url, "https://example.com/welcome", "{engine}");
        assert!(target.attributes, "{engine}: an active code attributes");
        // Codes are case-insensitive.
        assert_eq!(store.code_target(&code("ada1")).await.unwrap(), Some(target), "{engine}");

        apply_source(&store, &with_landing_url("customer-credit", "https://example.com/new-landing"), at(10)).await;
        let target = store.code_target(&ada.code).await.unwrap().expect("a target");
        assert_eq!(target.landing_url, "https://example.com/new-landing", "{engine}: follows the new version");

        assert_eq!(store.code_target(&code("NOSUCHCODE")).await.unwrap(), None, "{engine}: unknown code");
    })
    .await;
}

#[tokio::test]
async fn a_revoked_code_stops_attributing_and_keeps_its_first_revocation_time() {
    for_each_engine(async |store, engine| {
        let program = apply_example(&store, "customer-credit").await;
        let ada = enroll_customer(&store, &program, "ada@example.com", "ADA1").await;
        let bob = enroll_customer(&store, &program, "bob@example.com", "BOB1").await;
        let e0 = store.cache_epoch().await.unwrap();

        let revoked = store.revoke_code(&ada.code, at(1000)).await.expect("revoke");
        assert!(!revoked.active, "{engine}: revoked code is inactive");
        assert_eq!(revoked.revoked_at, Some(at(1000)), "{engine}");
        let e1 = store.cache_epoch().await.unwrap();
        assert!(e1 > e0, "{engine}: revoking bumps the cache epoch ({e0} -> {e1})");

        let target = store.code_target(&ada.code).await.unwrap().expect("still a target");
        assert_eq!(target.landing_url, "https://example.com/welcome", "{engine}: the visitor still lands");
        assert!(!target.attributes, "{engine}: a revoked code attributes nothing");
        assert!(store.code_target(&bob.code).await.unwrap().unwrap().attributes, "{engine}: other codes unaffected");

        let again = store.revoke_code(&ada.code, at(2000)).await.expect("revoke again");
        assert_eq!(again.revoked_at, Some(at(1000)), "{engine}: the first revocation time is kept");
        let record = store.participant(ada.participant_id).await.unwrap();
        assert_eq!(record.enrollments[0].codes[0].revoked_at, Some(at(1000)), "{engine}");
        assert!(!record.enrollments[0].codes[0].active, "{engine}");
    })
    .await;
}

#[tokio::test]
async fn enrolling_again_after_every_code_was_revoked_gives_a_new_working_code() {
    for_each_engine(async |store, engine| {
        let program = apply_example(&store, "customer-credit").await;
        let ada = enroll_customer(&store, &program, "ada@example.com", "ADA1").await;
        store.revoke_code(&ada.code, at(1000)).await.expect("revoke");

        let again =
            enroll(&store, &program, &enrollment(&program, "ada@example.com", ParticipantKind::Customer, "ADA2"))
                .await
                .expect("enroll again");
        assert!(!again.created, "{engine}: the same enrollment");
        assert_eq!((again.participant_id, again.enrollment_id), (ada.participant_id, ada.enrollment_id), "{engine}");
        assert_eq!(again.code, code("ADA2"), "{engine}: a new code, not the revoked one");
        assert!(store.code_target(&again.code).await.unwrap().expect("a target").attributes, "{engine}");
        assert!(!store.code_target(&ada.code).await.unwrap().expect("a target").attributes, "{engine}: still revoked");

        // With a working code, enrolling again answers it and mints nothing.
        let third =
            enroll(&store, &program, &enrollment(&program, "ada@example.com", ParticipantKind::Customer, "ADA3"))
                .await
                .expect("enroll a third time");
        assert_eq!(third.code, code("ADA2"), "{engine}");
        assert_eq!(store.code_target(&code("ADA3")).await.unwrap(), None, "{engine}: nothing minted");
        let record = store.participant(ada.participant_id).await.unwrap();
        assert_eq!(record.enrollments[0].codes.len(), 2, "{engine}");
    })
    .await;
}

#[tokio::test]
async fn a_suspended_participants_codes_stop_attributing_everywhere() {
    for_each_engine(async |store, engine| {
        let credit = apply_example(&store, "customer-credit").await;
        let double = apply_example(&store, "double-sided").await;
        let ada = enroll_customer(&store, &credit, "ada@example.com", "ADA1").await;
        enroll(&store, &double, &enrollment(&double, "ada@example.com", ParticipantKind::Customer, "ADA2"))
            .await
            .expect("second enrollment");
        let bob = enroll_customer(&store, &credit, "bob@example.com", "BOB1").await;
        let e0 = store.cache_epoch().await.unwrap();

        store.suspend_participant(ada.participant_id, at(50)).await.expect("suspend");
        let e1 = store.cache_epoch().await.unwrap();
        assert!(e1 > e0, "{engine}: suspending bumps the cache epoch ({e0} -> {e1})");
        for (c, url) in [("ADA1", "https://example.com/welcome"), ("ADA2", "https://example.com/friends")] {
            let target = store.code_target(&code(c)).await.unwrap().expect("still a target");
            assert_eq!(target.landing_url, url, "{engine}: {c} still lands");
            assert!(!target.attributes, "{engine}: {c} of a suspended participant attributes nothing");
        }
        assert!(store.code_target(&bob.code).await.unwrap().unwrap().attributes, "{engine}: Bob unaffected");
    })
    .await;
}

#[tokio::test]
async fn revoking_or_suspending_something_unknown_is_not_found() {
    for_each_engine(async |store, engine| {
        apply_example(&store, "customer-credit").await;
        let e0 = store.cache_epoch().await.unwrap();
        let err = store.revoke_code(&code("NOSUCHCODE"), at(1)).await.expect_err("unknown code");
        assert!(matches!(err, StoreError::NotFound), "{engine}: revoke: got {err:?}");
        let err = store.suspend_participant(ParticipantId(Uuid::now_v7()), at(1)).await.expect_err("unknown");
        assert!(matches!(err, StoreError::NotFound), "{engine}: suspend: got {err:?}");
        let err = store.code(&code("NOSUCHCODE")).await.expect_err("unknown code");
        assert!(matches!(err, StoreError::NotFound), "{engine}: code: got {err:?}");
        assert_eq!(store.cache_epoch().await.unwrap(), e0, "{engine}: nothing changed, epoch kept");
    })
    .await;
}

// ---------------------------------------------------------------------------
// Clicks
// ---------------------------------------------------------------------------

/// Three participants' codes in one program, to count clicks on.
async fn three_codes(store: &Store) -> [ReferralCode; 3] {
    let program = apply_example(store, "agent-gift-card").await;
    let mut codes = Vec::new();
    for (email, c) in [("a@example.com", "CODEA"), ("b@example.com", "CODEB"), ("c@example.com", "CODEC")] {
        codes.push(enroll_customer(store, &program, email, c).await.code);
    }
    codes.try_into().expect("three codes")
}

/// `n` clicks from index `from`, one second apart, round-robin over `codes`;
/// every tenth is a bot, and the last three (one per code) are bots too, so a
/// code's newest visit is a bot's.
fn batch(codes: &[ReferralCode; 3], from: u64, n: u64) -> Vec<NewClick> {
    (from..from + n)
        .map(|i| {
            let is_bot = i % 10 == 7 || i + 3 >= from + n;
            click(&codes[(i % 3) as usize], i as i64 * 1000, i, is_bot)
        })
        .collect()
}

#[tokio::test]
async fn a_large_batch_counts_people_and_bots_separately() {
    for_each_engine(async |store, engine| {
        let codes = three_codes(&store).await;
        let first = batch(&codes, 0, 2500);
        store.insert_clicks(&first).await.expect("insert 2,500 clicks");
        for c in &codes {
            let stats = store.click_stats(c).await.unwrap();
            let want = expected_stats(&first, c);
            assert_eq!(stats, want, "{engine}: counters of {c}");
            assert!(stats.clicks > 700 && stats.bot_visits > 70, "{engine}: a sizeable batch for {c}: {stats:?}");
            let newest = first.iter().filter(|k| &k.code == c).map(|k| k.occurred_at).max();
            assert!(stats.last_click_at < newest, "{engine}: the newest visit of {c} is a bot's and not counted");
        }

        let second = batch(&codes, 2500, 30);
        store.insert_clicks(&second).await.expect("insert a second batch");
        let both: Vec<NewClick> = first.iter().chain(&second).cloned().collect();
        for c in &codes {
            assert_eq!(
                store.click_stats(c).await.unwrap(),
                expected_stats(&both, c),
                "{engine}: counters of {c} add up"
            );
        }

        // A late batch of older visits adds to the counts but does not move the
        // last click back in time.
        let late: Vec<NewClick> = (0..3).map(|i| click(&codes[i], -5000, 10_000 + i as u64, false)).collect();
        store.insert_clicks(&late).await.expect("insert a late batch");
        let all: Vec<NewClick> = both.iter().chain(&late).cloned().collect();
        for c in &codes {
            assert_eq!(store.click_stats(c).await.unwrap(), expected_stats(&all, c), "{engine}: after the late batch");
        }
        // A batch of bots alone leaves the last human click where it was.
        let bots: Vec<NewClick> = (0..3).map(|i| click(&codes[i], 9_000_000, 20_000 + i as u64, true)).collect();
        store.insert_clicks(&bots).await.expect("insert bots");
        let all: Vec<NewClick> = all.iter().chain(&bots).cloned().collect();
        for c in &codes {
            assert_eq!(store.click_stats(c).await.unwrap(), expected_stats(&all, c), "{engine}: after bots only");
        }

        assert_eq!(store.click_stats(&code("UNCLICKED")).await.unwrap(), ClickStats::default(), "{engine}");
        store.insert_clicks(&[]).await.expect("an empty batch is fine");
    })
    .await;
}

#[tokio::test]
async fn clicks_page_newest_first_without_gaps_or_duplicates() {
    for_each_engine(async |store, engine| {
        let codes = three_codes(&store).await;
        let clicks = batch(&codes, 0, 2500);
        store.insert_clicks(&clicks).await.expect("insert clicks");
        for c in &codes {
            let mut want_people: Vec<ClickId> =
                clicks.iter().filter(|k| &k.code == c && !k.is_bot).map(|k| k.id).collect();
            want_people.sort_by(|a, b| b.cmp(a));
            let people = all_pages(&store, c, 97, false).await;
            assert!(people.iter().all(|k| !k.is_bot), "{engine}: bots are left out unless asked for");
            assert!(people.iter().all(|k| &k.code == c), "{engine}: only clicks of {c}");
            let got: Vec<ClickId> = people.iter().map(|k| k.id).collect();
            assert_eq!(got, want_people, "{engine}: every human click of {c} once, newest first");
            assert!(
                people.windows(2).all(|w| w[0].occurred_at > w[1].occurred_at),
                "{engine}: newest first by time too"
            );

            let mut want_all: Vec<ClickId> = clicks.iter().filter(|k| &k.code == c).map(|k| k.id).collect();
            want_all.sort_by(|a, b| b.cmp(a));
            let everything = all_pages(&store, c, 250, true).await;
            let got: Vec<ClickId> = everything.iter().map(|k| k.id).collect();
            assert_eq!(got, want_all, "{engine}: with bots, every click of {c} once");
            assert!(everything[0].is_bot, "{engine}: the newest visit of {c} is the bot's");
        }
        let first_page = store.clicks(&codes[0], None, 5, false).await.unwrap();
        assert_eq!(first_page.len(), 5, "{engine}: limit is respected");
        let unknown = store.clicks(&code("UNCLICKED"), None, 10, true).await.unwrap();
        assert!(unknown.is_empty(), "{engine}: a code without clicks has an empty page");
    })
    .await;
}

#[tokio::test]
async fn stored_click_ids_are_exactly_the_inserted_ones() {
    for_each_engine(async |store, engine| {
        let codes = three_codes(&store).await;
        let clicks = batch(&codes, 0, 1200);
        store.insert_clicks(&clicks).await.expect("insert clicks");
        for c in &codes {
            let stored: BTreeSet<ClickId> = store.stored_click_ids(c).await.unwrap().into_iter().collect();
            let inserted: BTreeSet<ClickId> = clicks.iter().filter(|k| &k.code == c).map(|k| k.id).collect();
            assert_eq!(stored, inserted, "{engine}: ids of {c}, bots included");
            assert_eq!(store.stored_click_ids(c).await.unwrap().len(), inserted.len(), "{engine}: no duplicates");
        }
        assert!(store.stored_click_ids(&code("UNCLICKED")).await.unwrap().is_empty(), "{engine}");
    })
    .await;
}

#[tokio::test]
async fn every_click_field_round_trips_exactly() {
    for_each_engine(async |store, engine| {
        let codes = three_codes(&store).await;
        let c = &codes[0];
        let occurred_at = Timestamp::from_microsecond(at(30).as_microsecond() + 123_456).unwrap();
        let full = NewClick {
            id: click_id(occurred_at.as_millisecond(), 1),
            code: c.clone(),
            occurred_at,
            ip_hash: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) «Überbrowser» 🚀 'quoted' \"double\"".into()),
            referer: Some("https://news.example.org/a?b=1&c=%20d#frag".into()),
            utm: Utm {
                source: Some("newsletter".into()),
                medium: Some("e-mail".into()),
                campaign: Some("spring 2027 — 20% off".into()),
                term: Some("o'reilly; DROP TABLE clicks".into()),
                content: Some("héader-link".into()),
            },
            channel: Channel::Email,
            is_bot: false,
        };
        let bare = NewClick {
            id: click_id(at(20).as_millisecond(), 2),
            code: c.clone(),
            occurred_at: at(20),
            ip_hash: None,
            user_agent: None,
            referer: None,
            utm: Utm::default(),
            channel: Channel::Other,
            is_bot: true,
        };
        let social = NewClick {
            id: click_id(at(10).as_millisecond(), 3),
            occurred_at: at(10),
            channel: Channel::Social,
            referer: Some("https://t.co/x".into()),
            is_bot: false,
            ..bare.clone()
        };
        store.insert_clicks(&[social.clone(), full.clone(), bare.clone()]).await.expect("insert");
        let read = store.clicks(c, None, 10, true).await.unwrap();
        assert_eq!(read, vec![full.clone(), bare, social.clone()], "{engine}: clicks read back as written");
        let people = store.clicks(c, None, 10, false).await.unwrap();
        assert_eq!(people, vec![full, social], "{engine}: the same, without the bot");
    })
    .await;
}

#[tokio::test]
async fn concurrent_batches_on_the_same_codes_both_land() {
    for_each_engine(async |store, engine| {
        let codes = three_codes(&store).await;
        let a = batch(&codes, 0, 1500);
        let b = batch(&codes, 100_000, 1500);
        let (ra, rb) = tokio::join!(store.insert_clicks(&a), store.insert_clicks(&b));
        ra.unwrap_or_else(|e| panic!("{engine}: first batch: {e}"));
        rb.unwrap_or_else(|e| panic!("{engine}: second batch: {e}"));
        let both: Vec<NewClick> = a.iter().chain(&b).cloned().collect();
        for c in &codes {
            assert_eq!(store.click_stats(c).await.unwrap(), expected_stats(&both, c), "{engine}: counters of {c}");
            let stored = store.stored_click_ids(c).await.unwrap().len();
            assert_eq!(stored, both.iter().filter(|k| &k.code == c).count(), "{engine}: every click of {c} stored");
        }

        // And again, through clones of the handle on separate tasks.
        let c1 = batch(&codes, 200_000, 600);
        let c2 = batch(&codes, 300_000, 600);
        let (s1, s2) = (store.clone(), store.clone());
        let (k1, k2) = (c1.clone(), c2.clone());
        let t1 = tokio::spawn(async move { s1.insert_clicks(&k1).await });
        let t2 = tokio::spawn(async move { s2.insert_clicks(&k2).await });
        t1.await.expect("task").unwrap_or_else(|e| panic!("{engine}: task batch: {e}"));
        t2.await.expect("task").unwrap_or_else(|e| panic!("{engine}: task batch: {e}"));
        let all: Vec<NewClick> = both.iter().chain(&c1).chain(&c2).cloned().collect();
        for c in &codes {
            assert_eq!(store.click_stats(c).await.unwrap(), expected_stats(&all, c), "{engine}: counters of {c}");
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_api_key_is_found_by_its_hash_until_revoked() {
    for_each_engine(async |store, engine| {
        let first = api_key("deploy", at(1), vec![Scope::read(Area::Programs), Scope::write(Area::Events)]);
        let second = api_key("everything", at(2), Scope::all());
        store.create_api_key(&first, "hash-one").await.expect("create");
        store.create_api_key(&second, "hash-two").await.expect("create");

        assert_eq!(store.api_key_by_hash("hash-one").await.unwrap(), Some(first.clone()), "{engine}");
        assert_eq!(store.api_key_by_hash("hash-two").await.unwrap(), Some(second.clone()), "{engine}");
        assert_eq!(store.api_key_by_hash("hash-three").await.unwrap(), None, "{engine}: unknown hash");
        assert_eq!(store.api_keys().await.unwrap(), vec![first.clone(), second.clone()], "{engine}: oldest first");

        store.revoke_api_key(first.id, at(10)).await.expect("revoke");
        assert_eq!(store.api_key_by_hash("hash-one").await.unwrap(), None, "{engine}: a revoked key is not found");
        assert_eq!(store.api_key_by_hash("hash-two").await.unwrap(), Some(second.clone()), "{engine}");
        let revoked = ApiKeyRecord { revoked_at: Some(at(10)), ..first.clone() };
        assert_eq!(store.api_keys().await.unwrap(), vec![revoked.clone(), second.clone()], "{engine}: still listed");

        store.revoke_api_key(first.id, at(20)).await.expect("revoking again is harmless");
        assert_eq!(store.api_keys().await.unwrap()[0].revoked_at, Some(at(10)), "{engine}: first time kept");
    })
    .await;
}

#[tokio::test]
async fn revoking_an_unknown_api_key_is_not_found() {
    for_each_engine(async |store, engine| {
        let err = store.revoke_api_key(ApiKeyId(Uuid::now_v7()), at(1)).await.expect_err("unknown key");
        assert!(matches!(err, StoreError::NotFound), "{engine}: got {err:?}");
    })
    .await;
}

#[tokio::test]
async fn a_duplicate_api_key_hash_is_a_conflict() {
    for_each_engine(async |store, engine| {
        let first = api_key("one", at(1), Scope::all());
        store.create_api_key(&first, "same-hash").await.expect("create");
        let err = store.create_api_key(&api_key("two", at(2), Scope::all()), "same-hash").await.expect_err("dup");
        assert!(matches!(err, StoreError::Conflict { .. }), "{engine}: expected Conflict, got {err:?}");
        assert!(err.is_conflict_on("api_keys"), "{engine}: the conflict names the api_keys table: {err:?}");
        assert_eq!(store.api_keys().await.unwrap(), vec![first.clone()], "{engine}: the second key was not stored");
        assert_eq!(store.api_key_by_hash("same-hash").await.unwrap(), Some(first), "{engine}");
    })
    .await;
}

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_setting_keeps_the_first_value_ever_stored() {
    for_each_engine(async |store, engine| {
        assert_eq!(store.setting_or_insert("ip_hash_key", "first").await.unwrap(), "first", "{engine}");
        assert_eq!(store.setting_or_insert("ip_hash_key", "second").await.unwrap(), "first", "{engine}");
        assert_eq!(store.setting_or_insert("other", "x").await.unwrap(), "x", "{engine}: keys are separate");

        // Two callers racing for an unset key agree on one value.
        let (a, b) = tokio::join!(store.setting_or_insert("raced", "a"), store.setting_or_insert("raced", "b"));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b, "{engine}: both callers get the same value");
        assert!(a == "a" || a == "b", "{engine}: one of the offered values: {a}");
        assert_eq!(store.setting_or_insert("raced", "c").await.unwrap(), a, "{engine}: and it stays");
    })
    .await;
}
