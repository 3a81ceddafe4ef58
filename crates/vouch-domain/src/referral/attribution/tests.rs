use uuid::Uuid;

use super::*;
use crate::referral::ReviewSignal::*;

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

const NOW: &str = "2026-06-01T12:00:00Z";
const REFERRER: u128 = 1;
const HOLDER: u128 = 0xAB;

/// A lead that every rule lets through: each case below changes only what it tests.
fn clean() -> AttributionInput {
    AttributionInput {
        rules: Rules {
            business: true,
            eligible: ParticipantKind::ALL.to_vec(),
            window_days: 90,
            burst_leads: 10,
            burst_window_minutes: 60,
        },
        referrer: Referrer {
            participant: ParticipantId(Uuid::from_u128(REFERRER)),
            email: email("jane.doe@acme.com"),
            kind: ParticipantKind::Customer,
            team: Some("Acme Sales".into()),
            company_domain: Some("acme.com".into()),
            status: ParticipantStatus::Active,
            code_active: true,
        },
        prospect: Prospect { email: Some(email("bob@globex.com")), external_id: None, participant: None, team: None },
        source: Source::Lead,
        now: at(NOW),
        in_registry: false,
        holder: None,
        referrer_ip_hashes: vec!["ip-of-referrer".into()],
        recent_leads: 0,
    }
}

fn click(at_: &str, ip: &str) -> Source {
    Source::SignupWithClick { click_at: at(at_), click_ip_hash: Some(ip.into()) }
}

fn held(status: Status) -> Option<Holder> {
    Some(Holder { referral: ReferralId(Uuid::from_u128(HOLDER)), status })
}

#[derive(Debug, PartialEq)]
enum Expect {
    Active,
    Review(&'static [ReviewSignal]),
    Rejected(RejectionReason),
    NoClaim(NotAttributableReason),
}

use Expect::*;
use NotAttributableReason::*;
use RejectionReason::*;

fn outcome(input: &AttributionInput) -> Expect {
    match attribute(input) {
        Err(no) => NoClaim(no.reason),
        Ok(d) => match d.status {
            Status::Active => Active,
            Status::InReview => Review(Vec::leak(d.review_signals)),
            Status::Rejected => Rejected(d.rejection_reason.unwrap()),
        },
    }
}

type Case = (&'static str, fn(&mut AttributionInput), Expect);

fn run(cases: &[Case]) {
    for (what, change, expected) in cases {
        let mut input = clean();
        change(&mut input);
        assert_eq!(outcome(&input), *expected, "{what}");
    }
}

#[test]
fn each_rule_decides_as_published() {
    run(&[
        ("a clean lead is active", |_| {}, Active),
        // No claim
        ("a revoked code attributes nothing", |i| i.referrer.code_active = false, NoClaim(CodeRevoked)),
        (
            "a click older than the window attributes nothing",
            |i| i.source = click("2026-03-03T11:59:59Z", "ip-x"),
            NoClaim(ClickExpired),
        ),
        (
            "a click exactly at the window's edge still counts",
            |i| i.source = click("2026-03-03T12:00:00Z", "ip-x"),
            Active,
        ),
        ("a sign-up with a code needs no click", |i| i.source = Source::SignupWithCode, Active),
        ("an invite is attributed at submission", |i| i.source = Source::Invite, Active),
        // Ineligible
        (
            "a suspended referrer is ineligible",
            |i| i.referrer.status = ParticipantStatus::Suspended,
            Rejected(Ineligible),
        ),
        (
            "a referrer of a kind the program excludes is ineligible",
            |i| i.rules.eligible = vec![ParticipantKind::Employee],
            Rejected(Ineligible),
        ),
        // Self-referral
        (
            "the prospect being the referrer's participant is a self-referral",
            |i| {
                i.prospect.email = None;
                i.prospect.participant = Some(i.referrer.participant);
            },
            Rejected(SelfReferral),
        ),
        (
            "the referrer's own gmail address with dots and a tag is a self-referral",
            |i| {
                i.referrer.email = email("jane.doe@gmail.com");
                i.prospect.email = Some(email("JaneDoe+deal@googlemail.com"));
            },
            Rejected(SelfReferral),
        ),
        (
            "a dot is significant outside the providers that ignore it",
            |i| {
                i.rules.business = false;
                i.prospect.email = Some(email("janedoe@acme.com"));
            },
            Active,
        ),
        (
            "a prospect on the referrer's team, however spelled, is same_team",
            |i| i.prospect.team = Some("  acme sales ".into()),
            Rejected(SameTeam),
        ),
        ("a prospect on another team is fine", |i| i.prospect.team = Some("Globex".into()), Active),
        (
            "a prospect at the company domain in a business program is a self-referral",
            |i| i.prospect.email = Some(email("boss@ACME.com")),
            Rejected(SelfReferral),
        ),
        (
            "the referrer's email domain is their company domain when none is stated",
            |i| {
                i.referrer.company_domain = None;
                i.prospect.email = Some(email("boss@acme.com"));
            },
            Rejected(SelfReferral),
        ),
        (
            "a stated company domain is compared without case or a leading @",
            |i| {
                i.referrer.email = email("jane@gmail.com");
                i.referrer.company_domain = Some(" @Acme.COM ".into());
                i.prospect.email = Some(email("boss@acme.com"));
            },
            Rejected(SelfReferral),
        ),
        (
            "the company domain does not count outside business programs",
            |i| {
                i.rules.business = false;
                i.prospect.email = Some(email("boss@acme.com"));
            },
            Active,
        ),
        (
            "free mail is never a company domain",
            |i| {
                i.referrer.email = email("jane@gmail.com");
                i.referrer.company_domain = Some("gmail.com".into());
                i.prospect.email = Some(email("bob@gmail.com"));
            },
            Active,
        ),
        // Registry and holder
        (
            "a prospect in the customer registry is an existing customer",
            |i| i.in_registry = true,
            Rejected(ExistingCustomer),
        ),
        (
            "a prospect held by an active referral is already referred",
            |i| i.holder = held(Status::Active),
            Rejected(AlreadyReferred),
        ),
        (
            "a referral in review still holds its prospect",
            |i| i.holder = held(Status::InReview),
            Rejected(AlreadyReferred),
        ),
        ("a rejected referral holds nothing", |i| i.holder = held(Status::Rejected), Active),
        // Review signals
        (
            "a click from the referrer's own IP hash is reviewed",
            |i| i.source = click("2026-05-30T00:00:00Z", "ip-of-referrer"),
            Review(&[SameIpAsReferrer]),
        ),
        ("a click from another IP hash is fine", |i| i.source = click("2026-05-30T00:00:00Z", "ip-other"), Active),
        (
            "an unknown referrer IP flags nothing",
            |i| {
                i.referrer_ip_hashes.clear();
                i.source = click("2026-05-30T00:00:00Z", "ip-of-referrer");
            },
            Active,
        ),
        (
            "a disposable email domain is reviewed",
            |i| i.prospect.email = Some(email("bob@mailinator.com")),
            Review(&[DisposableEmail]),
        ),
        ("the lead reaching the burst threshold is reviewed", |i| i.recent_leads = 9, Review(&[Burst])),
        ("the lead before the burst threshold is fine", |i| i.recent_leads = 8, Active),
        (
            "sign-ups are not leads and make no burst",
            |i| {
                i.recent_leads = 50;
                i.source = Source::SignupWithCode;
            },
            Active,
        ),
        (
            "a referral staff entered is not flagged",
            |i| {
                i.source = Source::Staff;
                i.recent_leads = 50;
                i.prospect.email = Some(email("bob@yopmail.com"));
            },
            Active,
        ),
        (
            "every signal that applies is listed",
            |i| {
                i.source = click("2026-05-30T00:00:00Z", "ip-of-referrer");
                i.prospect.email = Some(email("bob@guerrillamail.com"));
            },
            Review(&[SameIpAsReferrer, DisposableEmail]),
        ),
        (
            "a prospect known only by external id is judged without email rules",
            |i| {
                i.prospect.email = None;
                i.prospect.external_id = Some("cus_123".into());
            },
            Active,
        ),
    ]);
}

/// Several rules apply at once; the earlier one in `attribute`'s documented order wins.
#[test]
fn rules_apply_in_their_documented_order() {
    fn everything(i: &mut AttributionInput) {
        i.referrer.status = ParticipantStatus::Suspended;
        i.prospect.team = Some("Acme Sales".into());
        i.prospect.email = Some(email("jane.doe@acme.com"));
        i.in_registry = true;
        i.holder = held(Status::Active);
        i.recent_leads = 99;
    }
    run(&[
        (
            "a revoked code beats every rule about the prospect",
            |i| {
                everything(i);
                i.referrer.code_active = false;
            },
            NoClaim(CodeRevoked),
        ),
        (
            "an expired click beats every rule about the prospect",
            |i| {
                everything(i);
                i.source = click("2025-01-01T00:00:00Z", "ip-of-referrer");
            },
            NoClaim(ClickExpired),
        ),
        ("ineligible beats self-referral, registry and holder", everything, Rejected(Ineligible)),
        (
            "self-referral beats same team, registry and holder",
            |i| {
                everything(i);
                i.referrer.status = ParticipantStatus::Active;
            },
            Rejected(SelfReferral),
        ),
        (
            "same team beats the company domain, registry and holder",
            |i| {
                everything(i);
                i.referrer.status = ParticipantStatus::Active;
                i.prospect.email = Some(email("colleague@acme.com"));
            },
            Rejected(SameTeam),
        ),
        (
            "the company domain beats registry and holder",
            |i| {
                everything(i);
                i.referrer.status = ParticipantStatus::Active;
                i.prospect.email = Some(email("colleague@acme.com"));
                i.prospect.team = None;
            },
            Rejected(SelfReferral),
        ),
        (
            "the registry beats the holder",
            |i| {
                everything(i);
                i.referrer.status = ParticipantStatus::Active;
                i.prospect.email = Some(email("bob@globex.com"));
                i.prospect.team = None;
            },
            Rejected(ExistingCustomer),
        ),
        (
            "the holder beats review signals",
            |i| {
                everything(i);
                i.referrer.status = ParticipantStatus::Active;
                i.prospect.email = Some(email("bob@yopmail.com"));
                i.prospect.team = None;
                i.in_registry = false;
            },
            Rejected(AlreadyReferred),
        ),
        (
            "review signals beat active",
            |i| {
                i.prospect.email = Some(email("bob@yopmail.com"));
                i.recent_leads = 99;
            },
            Review(&[DisposableEmail, Burst]),
        ),
    ]);
}

#[test]
fn already_referred_points_to_the_holder() {
    let mut input = clean();
    input.holder = held(Status::InReview);
    let d = attribute(&input).unwrap();
    assert_eq!(d.holder, Some(ReferralId(Uuid::from_u128(HOLDER))));
    assert_eq!(
        d.explanation,
        "Rejected (already_referred): referral 00000000-0000-0000-0000-0000000000ab already holds this prospect in \
         the program (it is in review, and holds the prospect until decided), and the first referrer wins."
    );
}

#[test]
fn explanations_are_one_sentence_naming_the_rule() {
    let d = attribute(&clean()).unwrap();
    assert_eq!(
        d.explanation,
        "Active (first referrer wins): the prospect was submitted as a lead by the referrer, is not in the customer \
         registry, and no other referral holds them."
    );

    let mut input = clean();
    input.source = click("2026-05-29T12:00:00Z", "ip-other");
    assert_eq!(
        attribute(&input).unwrap().explanation,
        "Active (first referrer wins): the prospect signed up 3 days after clicking the referrer's link, within the \
         program's 90-day attribution window, is not in the customer registry, and no other referral holds them."
    );

    let mut input = clean();
    input.prospect.email = Some(email("bob@yopmail.com"));
    input.recent_leads = 9;
    let d = attribute(&input).unwrap();
    assert_eq!(
        d.explanation,
        "In review (disposable_email, burst): the prospect's email domain `yopmail.com` is a disposable-address \
         service; this is lead 10 from the referrer within 60 minutes, and the program flags 10 or more; the referral \
         holds the prospect until staff decide."
    );

    let mut input = clean();
    input.source = click("2026-01-01T12:00:00Z", "ip-other");
    let no = attribute(&input).unwrap_err();
    assert_eq!(no.code(), "click_expired");
    assert_eq!(
        no.to_string(),
        "No referral: the prospect clicked the referrer's link 151 days before signing up, outside the program's \
         90-day attribution window."
    );
}

/// Whatever decides, the decision is self-consistent and its sentence names its code.
#[test]
fn every_decision_is_consistent_and_explained() {
    let changes: &[fn(&mut AttributionInput)] = &[
        |_| {},
        |i| i.referrer.status = ParticipantStatus::Suspended,
        |i| i.rules.eligible.clear(),
        |i| i.prospect.email = Some(i.referrer.email.clone()),
        |i| i.prospect.team = i.referrer.team.clone(),
        |i| i.prospect.email = Some(email("x@acme.com")),
        |i| i.in_registry = true,
        |i| i.holder = held(Status::Active),
        |i| i.recent_leads = 10,
        |i| i.prospect.email = Some(email("x@10minutemail.com")),
    ];
    for change in changes {
        let mut input = clean();
        change(&mut input);
        let d = attribute(&input).unwrap();
        assert_eq!(d.rejection_reason.is_some(), d.status == Status::Rejected, "{d:?}");
        assert_eq!(!d.review_signals.is_empty(), d.status == Status::InReview, "{d:?}");
        assert_eq!(d.holder.is_some(), d.rejection_reason == Some(AlreadyReferred), "{d:?}");
        let names_rule = match d.status {
            Status::Active => d.explanation.starts_with("Active ("),
            Status::InReview => d.review_signals.iter().all(|s| d.explanation.contains(s.as_str())),
            Status::Rejected => d.explanation.starts_with(&format!("Rejected ({}): ", d.code())),
        };
        assert!(names_rule, "{d:?}");
        assert!(d.explanation.ends_with('.') && d.explanation.matches(". ").count() == 0, "{}", d.explanation);
    }
}

#[test]
fn sources_are_named_as_the_store_records_them() {
    let names: Vec<_> = [Source::Lead, Source::Invite, Source::SignupWithCode, click(NOW, "ip"), Source::Staff]
        .iter()
        .map(Source::as_str)
        .collect();
    assert_eq!(names, ["lead", "invite", "signup_with_code", "signup_with_click", "staff"]);
    let json = serde_json::to_value(click("2026-05-30T00:00:00Z", "h")).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "signup_with_click", "click_at": "2026-05-30T00:00:00Z", "click_ip_hash": "h"})
    );
}

#[test]
fn rules_are_read_from_the_program() {
    let program =
        crate::program::parse_program(include_str!("../../../../../examples/programs/customer-credit.toml")).unwrap();
    let rules = Rules::from_program(&program);
    assert_eq!(rules.eligible, [ParticipantKind::Customer]);
    assert!(rules.business);
    assert_eq!(rules.window_days, 90);
    assert_eq!((rules.burst_leads, rules.burst_window_minutes), (10, 60));
}
