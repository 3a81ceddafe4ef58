// Amounts are written 100_00 (dollars_cents), as in the program files.
#![allow(clippy::inconsistent_digit_grouping)]

use super::*;

const CUSTOMER_CREDIT: &str = include_str!("../../../../examples/programs/customer-credit.toml");
const AGENT_GIFT_CARD: &str = include_str!("../../../../examples/programs/agent-gift-card.toml");
const PER_TECHNICIAN: &str = include_str!("../../../../examples/programs/per-technician.toml");
const DOUBLE_SIDED: &str = include_str!("../../../../examples/programs/double-sided.toml");
const QUALIFIED_LEAD: &str = include_str!("../../../../examples/programs/qualified-lead.toml");

const EXAMPLES: [(&str, &str); 5] = [
    ("customer-credit", CUSTOMER_CREDIT),
    ("agent-gift-card", AGENT_GIFT_CARD),
    ("per-technician", PER_TECHNICIAN),
    ("double-sided", DOUBLE_SIDED),
    ("qualified-lead", QUALIFIED_LEAD),
];

fn parse(source: &str) -> ProgramDefinition {
    parse_program(source).unwrap_or_else(|e| panic!("should parse, got:\n{e}"))
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn only_rule(p: &ProgramDefinition) -> &RewardRule {
    assert_eq!(p.rewards().len(), 1);
    &p.rewards()[0]
}

#[test]
fn every_example_parses_and_its_file_stem_is_its_slug() {
    for (stem, source) in EXAMPLES {
        let p = parse(source);
        assert_eq!(p.slug().as_str(), stem);
        assert_eq!(p.currency(), usd());
        assert_eq!(p.landing_url().host_str(), Some("example.com"));
        assert_eq!(p.join(), JoinPolicy::Open);
        assert_eq!(p.attribution_window_days(), 90);
    }
}

#[test]
fn customer_credit_gives_referrer_100_dollars_credit_per_won_referral_approved_at_once() {
    let p = parse(CUSTOMER_CREDIT);
    assert_eq!(p.eligible(), [ParticipantKind::Customer]);
    assert!(!p.is_eligible(ParticipantKind::Other));
    let rule = only_rule(&p);
    assert_eq!(
        (rule.beneficiary, rule.trigger, rule.kind, rule.approval),
        (Beneficiary::Referrer, Trigger::Won, RewardKind::Credit, Approval::Auto)
    );
    assert_eq!(rule.computation, Computation::Flat { amount_minor: 100_00 });
    assert_eq!(rule.hold, None);
}

#[test]
fn agent_gift_card_gives_50_dollar_gift_card_approved_by_finance_and_is_open_to_anyone() {
    let p = parse(AGENT_GIFT_CARD);
    assert!(ParticipantKind::ALL.into_iter().all(|k| p.is_eligible(k)));
    let rule = only_rule(&p);
    assert_eq!((rule.trigger, rule.kind, rule.approval), (Trigger::Won, RewardKind::GiftCard, Approval::Manual));
    assert_eq!(rule.computation, Computation::Flat { amount_minor: 50_00 });
}

#[test]
fn per_technician_has_the_published_tiers_and_a_two_month_hold() {
    let p = parse(PER_TECHNICIAN);
    assert_eq!(p.timezone(), "America/Chicago");
    use ParticipantKind::*;
    assert_eq!(p.eligible(), [Customer, CustomerStaff, Employee, Partner, Influencer]);
    assert!(!p.is_eligible(Other));
    let rule = only_rule(&p);
    assert_eq!((rule.trigger, rule.kind, rule.approval), (Trigger::Won, RewardKind::Cash, Approval::Auto));
    let Computation::PerUnit(per_unit) = &rule.computation else { panic!("{:?}", rule.computation) };
    assert_eq!(per_unit.unit, "technician");
    assert_eq!(per_unit.period, Period::ReferrerYear);
    assert_eq!(per_unit.tier_policy, TierPolicy::WholeAtStart);
    assert_eq!(
        per_unit.tiers,
        [
            Tier { up_to: Some(30), each_minor: 100_00 },
            Tier { up_to: Some(60), each_minor: 150_00 },
            Tier { up_to: None, each_minor: 200_00 },
        ]
    );
    let hold =
        Hold { after: HoldStart::ContractDate, months: 2, days: 0, void_on: vec![VoidOn::Churned, VoidOn::Refunded] };
    assert_eq!(rule.hold, Some(hold));
    assert_eq!(rule.caps, Caps::default(), "no cap on earnings");
    assert!(!rule.clawback);
}

#[test]
fn double_sided_rewards_both_sides_and_enrolls_converted_customers() {
    let p = parse(DOUBLE_SIDED);
    assert!(p.enroll_converted());
    let referrer = p.rule("premium-months").unwrap();
    assert_eq!((referrer.beneficiary, referrer.kind), (Beneficiary::Referrer, RewardKind::PlanUpgrade));
    assert_eq!(referrer.computation, Computation::PlanUpgrade { plan: "premium".into(), months: 3 });
    let referee = p.rule("welcome-credit").unwrap();
    assert_eq!(
        (referee.beneficiary, referee.trigger, referee.kind),
        (Beneficiary::Referee, Trigger::Won, RewardKind::Credit)
    );
    let Computation::Percentage(pc) = referee.computation else { panic!("{:?}", referee.computation) };
    assert_eq!(pc.percent.basis_points(), 20_00);
    assert_eq!(pc.of, PercentOf::ContractValue);
    assert_eq!(referee.caps.per_referral_minor, Some(100_00));
}

#[test]
fn qualified_lead_credits_25_dollars_when_a_lead_qualifies() {
    let p = parse(QUALIFIED_LEAD);
    let rule = only_rule(&p);
    assert_eq!((rule.trigger, rule.kind, rule.approval), (Trigger::Qualified, RewardKind::Credit, Approval::Auto));
    assert_eq!(rule.computation, Computation::Flat { amount_minor: 25_00 });
}

#[test]
fn only_the_double_sided_example_enrolls_converted_customers() {
    for source in [CUSTOMER_CREDIT, AGENT_GIFT_CARD, PER_TECHNICIAN, QUALIFIED_LEAD] {
        assert!(!parse(source).enroll_converted());
    }
}

#[test]
fn json_round_trip_is_exact_for_every_example() {
    for (_, source) in EXAMPLES {
        let p = parse(source);
        let json = serde_json::to_string(&p).unwrap();
        let back: ProgramDefinition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}

#[test]
fn stored_json_keeps_percentages_as_exact_strings() {
    let json = serde_json::to_value(parse(DOUBLE_SIDED)).unwrap();
    assert_eq!(json["rewards"][1]["computation"]["percent"], "20");
    assert_eq!(json["landing_url"], "https://example.com/friends");
}

#[test]
fn stored_json_with_a_bad_slug_or_url_is_refused() {
    let mut json = serde_json::to_value(parse(QUALIFIED_LEAD)).unwrap();
    json["landing_url"] = "javascript:alert(1)".into();
    assert!(serde_json::from_value::<ProgramDefinition>(json.clone()).is_err());
    json["landing_url"] = "https://example.com/".into();
    json["slug"] = "Bad Slug".into();
    assert!(serde_json::from_value::<ProgramDefinition>(json).is_err());
}

#[test]
fn diff_of_identical_versions_is_empty() {
    for (_, source) in EXAMPLES {
        assert_eq!(diff(&parse(source), &parse(source)), []);
    }
}

#[test]
fn diff_names_a_changed_tier_amount_with_old_and_new_values() {
    let old = parse(PER_TECHNICIAN);
    let new = parse(&PER_TECHNICIAN.replace("each = 150_00", "each = 175_00"));
    assert_eq!(
        diff(&old, &new),
        [Change {
            field: "rewards[technician-cash].tiers[1].each".into(),
            old: Some("USD 150.00".into()),
            new: Some("USD 175.00".into()),
        }]
    );
}

#[test]
fn diff_reports_added_and_removed_fields() {
    let old = parse(DOUBLE_SIDED);
    let new = parse(
        &DOUBLE_SIDED
            .replace("max_per_referral = 100_00", "")
            .replace("terms_url = \"https://example.com/referral-terms\"", ""),
    );
    let changes = diff(&old, &new);
    let fields: Vec<_> = changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["terms_url", "rewards[welcome-credit].max_per_referral"]);
    assert_eq!(changes[1].old.as_deref(), Some("USD 100.00"));
    assert_eq!(changes[1].new, None);
    let back = diff(&new, &old);
    assert_eq!(back[1].old, None);
    assert_eq!(back[1].new.as_deref(), Some("USD 100.00"));
}

#[test]
fn diff_matches_rules_by_id_so_reordering_them_changes_nothing() {
    let old = parse(DOUBLE_SIDED);
    let (head, rules) = DOUBLE_SIDED.split_once("[[rewards]]").unwrap();
    let (first, second) = rules.split_once("[[rewards]]").unwrap();
    let swapped = format!("{head}[[rewards]]{second}\n[[rewards]]{first}");
    assert_eq!(diff(&old, &parse(&swapped)), []);
}

#[test]
fn percent_parses_exactly_and_displays_canonically() {
    for (raw, bp, shown) in
        [("20", 2000, "20"), ("12.5", 1250, "12.5"), ("0.05", 5, "0.05"), ("100", 10000, "100"), ("7.50", 750, "7.5")]
    {
        let p = Percent::parse(raw).unwrap();
        assert_eq!((p.basis_points(), p.to_string().as_str()), (bp, shown), "{raw}");
    }
    for bad in ["0", "0.00", "100.01", "101", "12.345", "-5", "1e2", "", ".5", "5.", "1 0", "99999999999"] {
        assert!(Percent::parse(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn slug_rules_hold() {
    for good in ["ab", "per-technician", "a1", &"a".repeat(64)] {
        assert!(ProgramSlug::parse(good).is_ok(), "{good}");
    }
    for bad in ["a", "Per-Tech", "1abc", "-abc", "per_tech", "per tech", &"a".repeat(65), "émile"] {
        assert!(ProgramSlug::parse(bad).is_err(), "{bad}");
    }
}

// ---- Bad input: every problem names its field and line. ----

/// A valid program; tests break one thing in it.
const BASE: &str = r#"slug = "test-program"
name = "Test"
currency = "USD"
timezone = "UTC"
landing_url = "https://example.com/"
eligible = ["customer"]

[[rewards]]
id = "credit"
beneficiary = "referrer"
trigger = "won"
kind = "credit"
amount = 100_00
approval = "auto"
"#;

/// BASE with `from` replaced by `to` (which must be there).
fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE has no {from:?}");
    BASE.replacen(from, to, 1)
}

/// BASE with `amount = 100_00` in its rule replaced by `computation`.
fn rule_with(computation: &str) -> String {
    with("amount = 100_00", computation)
}

/// The 1-based line of `source` where `needle` first appears.
fn line_of(source: &str, needle: &str) -> usize {
    let at = source.find(needle).unwrap_or_else(|| panic!("{needle:?} not in source"));
    source[..at].matches('\n').count() + 1
}

fn errors(source: &str) -> Vec<FieldError> {
    match parse_program(source) {
        Ok(p) => panic!("should fail, parsed {p:?}"),
        Err(e) => e.errors,
    }
}

/// Asserts that parsing fails with an error at `field` on the line where `needle` is.
#[track_caller]
fn assert_error_at(source: &str, field: &str, needle: &str) -> FieldError {
    let line = line_of(source, needle);
    let errors = errors(source);
    errors
        .iter()
        .find(|e| e.field == field && e.line == Some(line))
        .cloned()
        .unwrap_or_else(|| panic!("no error at {field} line {line}; got:\n{}", ProgramErrors { errors }))
}

#[test]
fn base_program_for_these_tests_is_valid() {
    parse(BASE);
    parse(&rule_with("per_unit = \"seat\"\ntiers = [{ each = 10_00 }]"));
}

#[test]
fn unknown_top_level_field_is_named_with_its_line() {
    let e = assert_error_at(&with("name = \"Test\"", "name = \"Test\"\ncolour = \"red\""), "colour", "colour");
    assert!(e.reason.contains("unknown field `colour`"), "{}", e.reason);
    assert_eq!(e.column, Some(1));
}

#[test]
fn unknown_field_in_a_rule_and_in_a_tier_are_named_with_their_lines() {
    assert_error_at(&rule_with("amount = 100_00\nbonus = 5"), "rewards[0].bonus", "bonus");
    let source =
        rule_with("per_unit = \"seat\"\ntiers = [\n  { up_to = 5, each = 1_00 },\n  { each = 2_00, upto = 9 },\n]");
    assert_error_at(&source, "rewards[0].tiers[1].upto", "upto");
}

#[test]
fn unknown_field_in_attribution_is_named() {
    let source = with("eligible", "attribution = { window_days = 30, rul = \"first_referrer\" }\neligible");
    assert_error_at(&source, "attribution.rul", "attribution");
}

#[test]
fn wrong_types_are_reported_with_what_was_expected() {
    let e = assert_error_at(&with("name = \"Test\"", "name = 5"), "name", "name = 5");
    assert_eq!(e.reason, "expected a string, found an integer");
    assert_error_at(&with("eligible = [\"customer\"]", "eligible = \"customer\""), "eligible", "eligible");
    assert_error_at(&rule_with("amount = \"100\""), "rewards[0].amount", "amount");
    assert_error_at(&rule_with("amount = 12.50"), "rewards[0].amount", "amount");
    assert_error_at(&with("eligible", "business = \"yes\"\neligible"), "business", "business");
}

#[test]
fn zero_and_negative_amounts_are_refused() {
    assert_error_at(&rule_with("amount = 0"), "rewards[0].amount", "amount = 0");
    assert_error_at(&rule_with("amount = -5_00"), "rewards[0].amount", "amount = -5_00");
    let source = rule_with("per_unit = \"seat\"\ntiers = [{ up_to = 5, each = 1_00 }, { each = 0 }]");
    assert_error_at(&source, "rewards[0].tiers[1].each", "tiers");
}

#[test]
fn amounts_too_large_to_multiply_safely_are_refused() {
    let e = assert_error_at(&rule_with("amount = 1_000_000_000_001"), "rewards[0].amount", "amount");
    assert!(e.reason.contains("at most"), "{}", e.reason);
    parse(&rule_with("amount = 1_000_000_000_000"));
    assert_error_at(&rule_with("amount = 99_999_999_999_999_999_999"), "rewards[0].amount", "amount");
}

#[test]
fn unordered_or_overlapping_tiers_are_refused() {
    let unordered = rule_with(
        r#"per_unit = "seat"
tiers = [
  { up_to = 60, each = 1_00 },
  { up_to = 30, each = 2_00 },
  { each = 3_00 },
]"#,
    );
    let e = assert_error_at(&unordered, "rewards[0].tiers[1].up_to", "up_to = 30");
    assert!(e.reason.contains("previous tier's up_to (60)"), "{}", e.reason);
    let equal = rule_with(
        r#"per_unit = "seat"
tiers = [
  { up_to = 30, each = 1_00 },
  { up_to = 30, each = 2_00 },
  { each = 3_00 },
]"#,
    );
    assert_error_at(&equal, "rewards[0].tiers[1].up_to", "{ up_to = 30, each = 2_00 }");
}

#[test]
fn only_the_last_tier_is_open_ended_and_it_must_be() {
    let open_middle = rule_with("per_unit = \"seat\"\ntiers = [\n  { each = 1_00 },\n  { each = 2_00 },\n]");
    assert_error_at(&open_middle, "rewards[0].tiers[0]", "{ each = 1_00 }");
    let bounded_last = rule_with("per_unit = \"seat\"\ntiers = [\n  { up_to = 10, each = 1_00 },\n]");
    assert_error_at(&bounded_last, "rewards[0].tiers[0].up_to", "up_to = 10");
}

#[test]
fn per_unit_rule_without_tiers_or_with_none_is_refused() {
    let missing = rule_with("per_unit = \"seat\"");
    let e = assert_error_at(&missing, "rewards[0].tiers", "[[rewards]]");
    assert_eq!(e.reason, "missing field `tiers`");
    assert_error_at(&rule_with("per_unit = \"seat\"\ntiers = []"), "rewards[0].tiers", "tiers = []");
}

#[test]
fn unknown_currency_is_refused() {
    let e = assert_error_at(&with("\"USD\"", "\"XYZ\""), "currency", "currency");
    assert!(e.reason.contains("XYZ"), "{}", e.reason);
}

#[test]
fn unknown_time_zone_is_refused_and_known_ones_are_made_canonical() {
    assert_error_at(&with("\"UTC\"", "\"Mars/Olympus_Mons\""), "timezone", "timezone");
    assert_eq!(parse(&with("\"UTC\"", "\"america/chicago\"")).timezone(), "America/Chicago");
}

#[test]
fn landing_and_terms_urls_must_be_http_or_https() {
    assert_error_at(&with("https://example.com/", "ftp://example.com/"), "landing_url", "landing_url");
    assert_error_at(&with("https://example.com/", "not a url"), "landing_url", "landing_url");
    let terms = with("eligible", "terms_url = \"javascript:alert(1)\"\neligible");
    assert_error_at(&terms, "terms_url", "terms_url");
    assert_eq!(parse(&with("https://example.com/", "http://example.com/r")).landing_url().scheme(), "http");
}

#[test]
fn empty_eligible_list_and_unknown_kinds_are_refused() {
    assert_error_at(&with("[\"customer\"]", "[]"), "eligible", "eligible");
    let e = assert_error_at(&with("[\"customer\"]", "[\"customer\", \"robot\"]"), "eligible[1]", "eligible");
    assert!(e.reason.contains("`robot` is not one of: customer, customer_staff"), "{}", e.reason);
    assert_error_at(&with("[\"customer\"]", "[\"customer\", \"customer\"]"), "eligible[1]", "eligible");
}

#[test]
fn bad_slugs_are_refused() {
    for bad in ["Test", "1test", "t", "test_program"] {
        assert_error_at(&with("\"test-program\"", &format!("\"{bad}\"")), "slug", "slug");
    }
}

#[test]
fn percentages_out_of_range_or_too_precise_or_not_strings_are_refused() {
    for bad in ["\"0\"", "\"100.5\"", "\"12.345\"", "20", "12.5", "\"twenty\""] {
        let source = rule_with(&format!("percent = {bad}\nof = \"contract_value\""));
        assert_error_at(&source, "rewards[0].percent", "percent");
    }
    parse(&rule_with("percent = \"100\"\nof = \"contract_value\""));
}

#[test]
fn percentage_of_payments_needs_months_and_the_payment_trigger() {
    let source = rule_with("percent = \"10\"\nof = \"payments\"\nmonths = 12");
    assert_error_at(&source, "rewards[0].trigger", "trigger");
    let source = with("trigger = \"won\"", "trigger = \"payment\"")
        .replace("amount = 100_00", "percent = \"10\"\nof = \"payments\"");
    assert_error_at(&source, "rewards[0].months", "[[rewards]]");
    let fixed = source.replace("of = \"payments\"", "of = \"payments\"\nmonths = 12");
    let p = parse(&fixed);
    let Computation::Percentage(pc) = p.rewards()[0].computation else { panic!() };
    assert_eq!(pc.of, PercentOf::Payments { months: 12 });
}

#[test]
fn window_days_must_be_from_1_to_3650() {
    for bad in ["0", "3651", "-1"] {
        let source = with("eligible", &format!("attribution = {{ window_days = {bad} }}\neligible"));
        assert_error_at(&source, "attribution.window_days", "attribution");
    }
    let source = with("eligible", "attribution = { window_days = 3650 }\neligible");
    assert_eq!(parse(&source).attribution_window_days(), 3650);
}

#[test]
fn plan_upgrade_without_months_is_refused() {
    let source = with("kind = \"credit\"", "kind = \"plan_upgrade\"").replace("amount = 100_00", "plan = \"premium\"");
    let e = assert_error_at(&source, "rewards[0].months", "[[rewards]]");
    assert_eq!(e.reason, "missing field `months`");
}

#[test]
fn plan_upgrade_kind_and_plan_go_together() {
    let source = with("kind = \"credit\"", "kind = \"plan_upgrade\"");
    assert_error_at(&source, "rewards[0].kind", "kind");
    let source = rule_with("plan = \"premium\"\nmonths = 3");
    assert_error_at(&source, "rewards[0].kind", "kind");
    let source = with("kind = \"credit\"", "kind = \"plan_upgrade\"")
        .replace("amount = 100_00", "plan = \"premium\"\nmonths = 3\nmax_per_referral = 5_00");
    assert_error_at(&source, "rewards[0].max_per_referral", "max_per_referral");
}

#[test]
fn a_rule_computes_its_reward_exactly_one_way() {
    let two = rule_with("amount = 100_00\npercent = \"10\"");
    let e = assert_error_at(&two, "rewards[0].percent", "percent");
    assert!(e.reason.contains("exactly one"), "{}", e.reason);
    assert_error_at(&rule_with(""), "rewards[0]", "[[rewards]]");
    assert_error_at(&rule_with("amount = 100_00\ntiers = [{ each = 1_00 }]"), "rewards[0].tiers", "tiers");
}

#[test]
fn duplicate_rule_ids_are_refused() {
    let second = r#"
[[rewards]]
id = "credit"
beneficiary = "referee"
trigger = "won"
kind = "credit"
amount = 5_00
approval = "auto"
"#;
    let source = format!("{BASE}{second}");
    let line = source.rfind("id = \"credit\"").map(|at| source[..at].matches('\n').count() + 1);
    let errors = errors(&source);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].field.as_str(), errors[0].line), ("rewards[1].id", line));
    assert!(errors[0].reason.contains("rewards[0]"), "{}", errors[0].reason);
}

#[test]
fn missing_top_level_fields_are_named_without_a_line() {
    let errors = errors(&with("currency = \"USD\"\n", ""));
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].field.as_str(), errors[0].line), ("currency", None));
}

#[test]
fn program_without_rewards_is_refused() {
    let (head, _) = BASE.split_once("[[rewards]]").unwrap();
    let errors = errors(head);
    assert_eq!((errors[0].field.as_str(), errors[0].line), ("rewards", None));
    let source = format!("rewards = []\n{head}");
    assert_error_at(&source, "rewards", "rewards = []");
}

#[test]
fn hold_needs_a_start_and_a_length() {
    let source = with("approval", "hold = { after = \"contract_date\" }\napproval");
    assert_error_at(&source, "rewards[0].hold", "hold");
    let source = with("approval", "hold = { after = \"signature\", months = 2 }\napproval");
    assert_error_at(&source, "rewards[0].hold.after", "hold");
    let source = with("approval", "hold = { after = \"won\", days = 14, void_on = [\"lost\"] }\napproval");
    assert_error_at(&source, "rewards[0].hold.void_on[0]", "hold");
    let p = parse(&with("approval", "hold = { after = \"won\", days = 14 }\napproval"));
    assert_eq!(
        p.rewards()[0].hold.as_ref().unwrap().void_on,
        [VoidOn::Churned, VoidOn::Refunded],
        "voids on both by default"
    );
}

#[test]
fn per_unit_rule_must_trigger_on_won() {
    let source = with("trigger = \"won\"", "trigger = \"qualified\"")
        .replace("amount = 100_00", "per_unit = \"seat\"\ntiers = [{ each = 1_00 }]");
    assert_error_at(&source, "rewards[0].trigger", "trigger");
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let source = with("name = \"Test\"", "name = Test");
    let errors = errors(&source);
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].field.as_str(), errors[0].line, errors[0].column), ("", Some(2), Some(8)));
    assert!(errors[0].to_string().starts_with("line 2, column 8: "), "{}", errors[0]);
}

#[test]
fn all_errors_are_reported_at_once_in_file_order() {
    let source = with("\"USD\"", "\"XYZ\"")
        .replace("\"UTC\"", "\"Nowhere/Town\"")
        .replace("amount = 100_00", "amount = 0\ncolour = \"red\"");
    let errors = errors(&source);
    let found: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.line.unwrap())).collect();
    assert_eq!(
        found,
        [
            ("currency", line_of(&source, "currency")),
            ("timezone", line_of(&source, "timezone")),
            ("rewards[0].amount", line_of(&source, "amount")),
            ("rewards[0].colour", line_of(&source, "colour")),
        ]
    );
    let shown = ProgramErrors { errors }.to_string();
    assert_eq!(shown.lines().count(), 4, "{shown}");
}

// ---- Email wording ----

fn with_emails(tables: &str) -> String {
    format!("{BASE}\n{tables}\n")
}

#[test]
fn a_program_may_reword_its_emails_and_the_wording_survives_storage() {
    let source = with_emails(
        "[emails.welcome]\nsubject = \"Hi {name}: your {program} link\"\n\
         text = \"\"\"\nHello {name},\nshare {link}.\n\"\"\"\n\
         [emails.invite]\nhtml = \"<p>{referrer} says: {message}</p><a href='{unsubscribe_link}'>stop</a>\"\n",
    );
    let p = parse(&source);
    let welcome = p.email(MessageKind::Welcome).expect("welcome reworded");
    assert_eq!(welcome.subject.as_deref(), Some("Hi {name}: your {program} link"));
    assert_eq!(welcome.text.as_deref(), Some("Hello {name},\nshare {link}.\n"));
    assert_eq!(welcome.html, None);
    assert!(p.email(MessageKind::Invite).is_some_and(|i| i.html.is_some() && i.subject.is_none()));
    assert_eq!(p.email(MessageKind::StageUpdate), None);
    let stored = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<ProgramDefinition>(&stored).unwrap(), p);
    // A version stored before emails existed reads back with none.
    let plain = parse(BASE);
    let old = serde_json::to_string(&plain).unwrap();
    assert!(!old.contains("emails"), "{old}");
    assert!(serde_json::from_str::<ProgramDefinition>(&old).unwrap().emails().is_empty());
}

#[test]
fn an_unknown_placeholder_is_refused_on_its_line() {
    let source = with_emails("[emails.welcome]\ntext = \"\"\"\nHello {name},\nyour code is {code}.\n\"\"\"\n");
    let e = assert_error_at(&source, "emails.welcome.text", "{code}");
    assert!(e.reason.contains("unknown placeholder `{code}`"), "{}", e.reason);
    assert!(e.reason.contains("{name}, {link}"), "{}", e.reason);
}

#[test]
fn an_unknown_message_kind_and_an_unknown_part_are_refused_on_their_lines() {
    let e = assert_error_at(&with_emails("[emails.reminder]\nsubject = \"x\""), "emails.reminder", "reminder");
    assert!(e.reason.contains("unknown message kind `reminder`"), "{}", e.reason);
    assert!(e.reason.contains("invite, lead_received, stage_update, welcome"), "{}", e.reason);
    assert_error_at(&with_emails("[emails.welcome]\nfooter = \"x\""), "emails.welcome.footer", "footer");
}

#[test]
fn unpaired_braces_multi_line_subjects_and_invites_without_unsubscribe_are_refused() {
    let e = assert_error_at(&with_emails("[emails.welcome]\nsubject = \"Hi {name\""), "emails.welcome.subject", "Hi");
    assert!(e.reason.contains("unpaired"), "{}", e.reason);
    let e = assert_error_at(&with_emails("[emails.welcome]\nsubject = \"Hi\\nthere\""), "emails.welcome.subject", "Hi");
    assert!(e.reason.contains("one line"), "{}", e.reason);
    let e = assert_error_at(&with_emails("[emails.invite]\ntext = \"Join us: {link}\""), "emails.invite.text", "Join");
    assert!(e.reason.contains("{unsubscribe_link}"), "{}", e.reason);
    // The subject of an invite needs no unsubscribe link; an empty table rewords nothing.
    parse(&with_emails("[emails.invite]\nsubject = \"{referrer} invites you\""));
    assert_error_at(&with_emails("[emails.welcome]\n"), "emails.welcome", "[emails.welcome]");
}

#[test]
fn rewording_an_email_shows_in_the_diff_part_by_part() {
    let old = parse(BASE);
    let new = parse(&with_emails("[emails.welcome]\nsubject = \"Hi {name}\""));
    let changes = diff(&old, &new);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].to_string(), "emails.welcome.subject: (not set) -> Hi {name}");
    assert!(diff(&new, &new).is_empty());
}
