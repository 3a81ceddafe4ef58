//! Referrals in the store, on every engine available here (SQLite always;
//! Postgres when `VOUCH_TEST_DATABASE_URL` names a server): what attribution is
//! shown, what is stored, the one-holder rule under races, the timeline, staff
//! actions and the list.

use uuid::Uuid;
use vouch_domain::ReferralCode;
use vouch_domain::customer::{CustomerEntry, CustomerId, CustomerSource, KnownBy};
use vouch_domain::referral::{
    Decision, NotAttributable, NotAttributableReason, ReferralId, RejectionReason, Stage, Status,
};
use vouch_store::{
    AttributionFacts, CreateReferralError, NewCustomer, ReferralActionError, ReferralEventKind, ReferralFilter,
    ReviewDecision, StoreError,
};

mod common;

use common::*;

#[tokio::test]
async fn a_referral_is_stored_with_what_attribution_saw_and_its_first_events() {
    for_each_engine(async |store, engine| {
        let p = program(&store, "agent-gift-card").await;
        let code = referrer(&store, &p, "jane@acme.example", "JANE1").await;
        store
            .add_customers(
                &[NewCustomer {
                    id: CustomerId(Uuid::now_v7()),
                    entry: CustomerEntry::parse(Some("Known@Globex.example"), None, None).unwrap(),
                    source: CustomerSource::Import,
                }],
                at(2),
            )
            .await
            .unwrap();
        let first = create(&store, &p, &code, "bob@initech.example").await;
        let seen = std::sync::Mutex::new(Vec::new());
        let new = new_referral(&p, &code, "known@globex.example", at(20));
        let second = store
            .create_referral(&new, |facts| {
                seen.lock().unwrap().push(facts.clone());
                decide(&p, at(20))(facts)
            })
            .await
            .unwrap();
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 1, "{engine}");
        assert_eq!(seen[0].registry_match, Some(KnownBy::Email), "{engine}");
        assert_eq!(seen[0].recent_leads, 1, "{engine}: the first lead is recent");
        assert_eq!(seen[0].holder, None, "{engine}");
        assert_eq!(seen[0].referrer.email.as_str(), "jane@acme.example", "{engine}");
        assert!(seen[0].referrer.code_active, "{engine}");
        assert_eq!(second.rejection_reason, Some(RejectionReason::ExistingCustomer), "{engine}");

        let stored = store.referral(first.id).await.unwrap();
        assert_eq!(stored, first, "{engine}");
        assert_eq!((stored.status, stored.stage), (Status::Active, Stage::New), "{engine}");
        assert_eq!(stored.program_version_id, p.version_id, "{engine}");
        assert_eq!(stored.note.as_deref(), Some("a note"), "{engine}");
        let kinds: Vec<_> = stored.timeline.iter().map(|e| (e.seq, e.kind, e.actor.as_str())).collect();
        assert_eq!(
            kinds,
            [(1, ReferralEventKind::Created, "tester"), (2, ReferralEventKind::Decision, "vouch")],
            "{engine}"
        );
        assert_eq!(stored.timeline[1].data["status"], "active", "{engine}");
    })
    .await;
}

#[tokio::test]
async fn an_unknown_code_or_no_claim_stores_nothing() {
    for_each_engine(async |store, engine| {
        let p = program(&store, "agent-gift-card").await;
        let other = program(&store, "per-technician").await;
        let elsewhere = referrer(&store, &other, "tom@tech.example", "TOM1").await;
        let code = referrer(&store, &p, "jane@acme.example", "JANE1").await;
        let unknown = ReferralCode::parse("NOBODY1").unwrap();
        for c in [&unknown, &elsewhere] {
            let new = new_referral(&p, c, "bob@initech.example", at(10));
            let err = store.create_referral(&new, decide(&p, at(10))).await.unwrap_err();
            assert!(matches!(err, CreateReferralError::UnknownCode(_)), "{engine}: {err:?}");
        }
        let new = new_referral(&p, &code, "bob@initech.example", at(10));
        let err = store
            .create_referral(&new, |_| {
                Err(NotAttributable { reason: NotAttributableReason::CodeRevoked, explanation: "revoked".into() })
            })
            .await
            .unwrap_err();
        assert!(matches!(err, CreateReferralError::NotAttributable(_)), "{engine}: {err:?}");
        assert_eq!(store.count_referrals().await.unwrap(), 0, "{engine}");
    })
    .await;
}

#[tokio::test]
async fn concurrent_referrals_of_one_prospect_leave_exactly_one_holder() {
    for_each_engine(async |store, engine| {
        let p = program(&store, "agent-gift-card").await;
        for round in 0..10 {
            let mut codes = Vec::new();
            for i in 0..4 {
                codes.push(
                    referrer(&store, &p, &format!("r{round}x{i}@co{round}x{i}.example"), &format!("RC{round}X{i}"))
                        .await,
                );
            }
            let prospect = format!("contested{round}@prospect.example");
            let tasks: Vec<_> = codes
                .iter()
                .map(|c| {
                    let (store, p, new) = (store.clone(), p.clone(), new_referral(&p, c, &prospect, at(10)));
                    tokio::spawn(async move { store.create_referral(&new, decide(&p, at(10))).await })
                })
                .collect();
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap().expect("every submission is stored"));
            }
            let holders: Vec<_> = results.iter().filter(|r| r.status.holds_prospect()).collect();
            assert_eq!(holders.len(), 1, "{engine} round {round}: {results:?}");
            for r in results.iter().filter(|r| !r.status.holds_prospect()) {
                assert_eq!(r.rejection_reason, Some(RejectionReason::AlreadyReferred), "{engine} round {round}");
                assert_eq!(r.holder, Some(holders[0].id), "{engine} round {round}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_decision_that_ignores_the_holder_still_cannot_make_two_holders() {
    for_each_engine(async |store, engine| {
        let p = program(&store, "agent-gift-card").await;
        let a = referrer(&store, &p, "a@a.example", "AAA1").await;
        let b = referrer(&store, &p, "b@b.example", "BBB1").await;
        create(&store, &p, &a, "bob@initech.example").await;
        let always_active = |_: &AttributionFacts| {
            Ok(Decision {
                status: Status::Active,
                rejection_reason: None,
                review_signals: Vec::new(),
                holder: None,
                explanation: "careless".into(),
            })
        };
        // Another spelling of the same address: the same person key.
        let new = new_referral(&p, &b, "BOB@initech.example", at(10));
        let err = store.create_referral(&new, always_active).await.unwrap_err();
        assert!(
            matches!(&err, CreateReferralError::Store(StoreError::Conflict { .. })),
            "{engine}: the unique index is the last line: {err:?}"
        );
        assert_eq!(store.count_referrals().await.unwrap(), 1, "{engine}");
    })
    .await;
}

#[tokio::test]
async fn staff_actions_are_judged_by_the_current_state_and_land_in_the_timeline() {
    for_each_engine(async |store, engine| {
        let p = program(&store, "agent-gift-card").await;
        let a = referrer(&store, &p, "a@a.example", "AAA1").await;
        let b = referrer(&store, &p, "b@b.example", "BBB1").await;
        let held = create(&store, &p, &a, "bob@initech.example").await;
        let late = create(&store, &p, &b, "bob@initech.example").await;
        assert_eq!(late.holder, Some(held.id), "{engine}");

        // Stage moves.
        let moved = store.move_stage(held.id, Stage::Qualified, "sam", Some("demo booked"), at(30)).await.unwrap();
        assert_eq!(moved.stage, Stage::Qualified, "{engine}");
        let err = store.move_stage(held.id, Stage::Contacted, "sam", None, at(31)).await.unwrap_err();
        assert!(matches!(err, ReferralActionError::Stage(_)), "{engine}: {err:?}");
        let err = store.move_stage(ReferralId(Uuid::now_v7()), Stage::Won, "sam", None, at(31)).await.unwrap_err();
        assert!(matches!(err, ReferralActionError::NotFound), "{engine}: {err:?}");

        // An override while another referral holds the prospect is refused, naming it.
        let err = store.override_rejection(late.id, "why not", "boss", at(40)).await.unwrap_err();
        assert!(matches!(err, ReferralActionError::ProspectHeld(Some(h)) if h == held.id), "{engine}: {err:?}");
        let err = store.override_rejection(held.id, "why not", "boss", at(40)).await.unwrap_err();
        assert!(matches!(err, ReferralActionError::NotRejected(Status::Active)), "{engine}: {err:?}");
        let err = store.review(held.id, ReviewDecision::Accept, "ok", "boss", at(40)).await.unwrap_err();
        assert!(matches!(err, ReferralActionError::NotInReview(Status::Active)), "{engine}: {err:?}");

        // Assignment.
        let assigned = store.assign_referral(held.id, Some("sam"), "boss", at(50)).await.unwrap();
        assert_eq!(assigned.assignee.as_deref(), Some("sam"), "{engine}");
        let again = store.assign_referral(held.id, Some("sam"), "boss", at(51)).await.unwrap();
        assert_eq!(again.timeline.len(), assigned.timeline.len(), "{engine}: an unchanged assignee adds no event");
        let kinds: Vec<_> = assigned.timeline.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                ReferralEventKind::Created,
                ReferralEventKind::Decision,
                ReferralEventKind::Stage,
                ReferralEventKind::Assign
            ],
            "{engine}"
        );
        assert_eq!(assigned.timeline[2].stage_from, Some(Stage::New), "{engine}");
        assert_eq!(assigned.timeline[2].note.as_deref(), Some("demo booked"), "{engine}");

        // Listing by assignee, stage and referrer.
        let by = |f: ReferralFilter| {
            let store = store.clone();
            async move { store.referrals(&f, None, 100).await.unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>() }
        };
        assert_eq!(by(ReferralFilter { assignee: Some("sam".into()), ..Default::default() }).await, [held.id]);
        assert_eq!(by(ReferralFilter { stage: Some(Stage::New), ..Default::default() }).await, [late.id]);
        assert_eq!(
            by(ReferralFilter { participant: Some(late.participant_id), ..Default::default() }).await,
            [late.id]
        );
        assert_eq!(by(ReferralFilter::default()).await, [late.id, held.id], "{engine}: newest first");
    })
    .await;
}
