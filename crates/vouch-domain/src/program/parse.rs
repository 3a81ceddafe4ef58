//! Reading a program file.
//!
//! The TOML is walked by hand instead of deserialized with serde: serde stops at
//! the first problem, and a program manager fixing a file wants all of them at
//! once, each with its field path and line.

use std::fmt::Display;
use std::ops::{Range, RangeInclusive};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::*;

type Value<'i> = Spanned<DeValue<'i>>;

pub fn parse_program(source: &str) -> Result<ProgramDefinition, ProgramErrors> {
    let mut r = Reader { source, errors: Vec::new() };
    match DeTable::parse(source) {
        Ok(doc) => match program(&mut r, doc.get_ref()) {
            Some(program) if r.errors.is_empty() => return Ok(program),
            _ => debug_assert!(!r.errors.is_empty(), "a field was dropped without an error"),
        },
        Err(e) => r.error("", e.span(), e.message().trim_end()),
    }
    r.errors.sort_by_key(|e| (e.line, e.column));
    Err(ProgramErrors { errors: r.errors })
}

#[rustfmt::skip]
const PROGRAM_KEYS: &[&str] = &[
    "slug", "name", "description", "currency", "timezone", "landing_url", "terms_url", "eligible",
    "join", "business", "attribution", "review", "enroll_converted", "rewards", "emails",
];
#[rustfmt::skip]
const RULE_KEYS: &[&str] = &[
    "id", "beneficiary", "trigger", "kind", "approval", "clawback", "hold", "max_per_referral",
    "max_per_beneficiary", "amount", "per_unit", "period", "tier_policy", "tiers", "percent", "of",
    "months", "plan",
];
/// The keys that say how a rule computes its reward; a rule has exactly one.
const WAYS: [&str; 4] = ["amount", "per_unit", "percent", "plan"];
/// Keys that belong to some ways only.
const DETAILS: [&str; 5] = ["period", "tier_policy", "tiers", "of", "months"];

fn program(r: &mut Reader, map: &DeTable) -> Option<ProgramDefinition> {
    let t = Table { path: String::new(), map, span: None };
    t.reject_unknown(r, PROGRAM_KEYS);
    let slug = t.read(r, "slug", Required, parsed(|s| ProgramSlug::parse(s).map_err(|e| format!("`{s}` {e}"))));
    let name = t.read(r, "name", Required, words);
    let description = t.read(r, "description", Optional, words);
    let currency = t.read(r, "currency", Required, parsed(Currency::parse));
    let timezone = t.read(r, "timezone", Required, time_zone);
    let landing_url = t.read(r, "landing_url", Required, parsed(HttpUrl::parse));
    let terms_url = t.read(r, "terms_url", Optional, parsed(HttpUrl::parse));
    let eligible = t.read(r, "eligible", Required, eligible);
    let join = t.read(r, "join", Optional, choice).unwrap_or(JoinPolicy::Open);
    let business = t.read(r, "business", Optional, boolean).unwrap_or(false);
    let enroll_converted = t.read(r, "enroll_converted", Optional, boolean).unwrap_or(false);

    let d = Attribution::default();
    let attribution = t.table(r, "attribution", Optional, &["window_days", "rule"]).map(|a| Attribution {
        window_days: a.read(r, "window_days", Optional, within(1..=3650)).unwrap_or(d.window_days),
        rule: a.read(r, "rule", Optional, choice).unwrap_or(d.rule),
    });
    let d = ReviewPolicy::default();
    let review = t.table(r, "review", Optional, &["burst_leads", "burst_window_minutes"]).map(|v| ReviewPolicy {
        burst_leads: v.read(r, "burst_leads", Optional, within(2..=10_000)).unwrap_or(d.burst_leads),
        burst_window_minutes: v
            .read(r, "burst_window_minutes", Optional, within(1..=7 * 24 * 60))
            .unwrap_or(d.burst_window_minutes),
    });
    let rewards = t.read(r, "rewards", Required, rules);
    let emails = t.read(r, "emails", Optional, emails).unwrap_or_default();

    Some(ProgramDefinition {
        slug: slug?,
        name: name?,
        description,
        currency: currency?,
        timezone: timezone?,
        landing_url: landing_url?,
        terms_url,
        eligible: eligible?,
        join,
        business,
        attribution: attribution.unwrap_or_default(),
        review: review.unwrap_or_default(),
        enroll_converted,
        rewards: rewards?,
        emails,
    })
}

/// `[emails.<kind>]` tables: the program's wording of each message kind.
fn emails(r: &mut Reader, f: &str, v: &Value) -> Option<EmailTemplates> {
    let DeValue::Table(map) = v.get_ref() else {
        wrong_type(r, f, v, "a table");
        return None;
    };
    let before = r.errors.len();
    let mut out = EmailTemplates::new();
    for (key, value) in map.iter() {
        let name: &str = key.get_ref();
        let path = format!("{f}.{name}");
        let Some(kind) = MessageKind::parse(name) else {
            let reason = format!("unknown message kind `{name}`; expected one of: {}", names::<MessageKind>());
            r.error(&path, Some(key.span()), reason);
            continue;
        };
        let Some(t) = Table::open(r, path, value, &["subject", "text", "html"]) else { continue };
        let part = |r: &mut Reader, key: &str| t.read(r, key, Optional, |r, f, v| template(r, f, v, kind, key));
        let template = EmailTemplate { subject: part(r, "subject"), text: part(r, "text"), html: part(r, "html") };
        if template == EmailTemplate::default() && t.map.is_empty() {
            r.error(&t.path, t.span.clone(), "reword at least one of: subject, text, html");
        }
        out.insert(kind, template);
    }
    (r.errors.len() == before).then_some(out)
}

/// One part of a message: known placeholders only, a one-line subject, and an
/// invite body that keeps its unsubscribe link.
fn template(r: &mut Reader, f: &str, v: &Value, kind: MessageKind, part: &str) -> Option<String> {
    let raw = text(r, f, v)?;
    if raw.trim().is_empty() {
        r.error(f, Some(v.span()), "must not be empty (leave the field out for the built-in wording)");
        return None;
    }
    match check_template(kind, raw) {
        Ok(()) => {}
        Err(TemplateError::UnknownPlaceholder(name)) => {
            // Point at the placeholder itself when the file spells it as read.
            let span = v.span();
            let at = r.source.get(span.clone()).and_then(|s| s.find(&format!("{{{name}"))).map(|i| span.start + i);
            let reason = format!(
                "unknown placeholder `{{{name}}}`; a {} message has: {}",
                kind.as_str(),
                kind.placeholders().iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", ")
            );
            r.error(f, Some(at.map_or(span, |at| at..at + 1)), reason);
            return None;
        }
        Err(TemplateError::Unbalanced) => {
            r.error(f, Some(v.span()), "a `{` or `}` is unpaired; write `{{` and `}}` for a literal brace");
            return None;
        }
    }
    if part == "subject" && raw.contains(['\n', '\r']) {
        r.error(f, Some(v.span()), "a subject is one line");
        return None;
    }
    if kind == MessageKind::Invite && part != "subject" && !uses_placeholder(raw, "unsubscribe_link") {
        r.error(f, Some(v.span()), "an invite must carry its `{unsubscribe_link}`");
        return None;
    }
    Some(raw.to_owned())
}

fn rules(r: &mut Reader, f: &str, v: &Value) -> Option<Vec<RewardRule>> {
    let items = array(r, f, v)?;
    if items.is_empty() {
        r.error(f, Some(v.span()), "a program needs at least one reward rule ([[rewards]])");
        return None;
    }
    let mut ids = Vec::new();
    let rules: Vec<_> = items
        .iter()
        .enumerate()
        .map(|(i, item)| Table::open(r, format!("{f}[{i}]"), item, RULE_KEYS).and_then(|t| rule(r, &t, &mut ids)))
        .collect();
    rules.into_iter().collect()
}

/// `ids` holds the ids of the rules read so far, with their paths, to catch duplicates.
fn rule(r: &mut Reader, t: &Table, ids: &mut Vec<(RuleId, String)>) -> Option<RewardRule> {
    let id = t.read(r, "id", Required, parsed(|s| RuleId::parse(s).map_err(|e| format!("`{s}` {e}"))));
    if let Some(id) = &id {
        match ids.iter().find(|(seen, _)| seen == id) {
            Some((_, first)) => r.error(
                &t.field("id"),
                t.value_span("id"),
                format!("`{id}` is already the id of {first}; ids must be unique"),
            ),
            None => ids.push((id.clone(), t.path.clone())),
        }
    }
    let beneficiary = t.read(r, "beneficiary", Required, choice);
    let trigger = t.read(r, "trigger", Required, choice);
    let kind = t.read(r, "kind", Required, choice);
    let approval = t.read(r, "approval", Required, choice);
    let clawback = t.read(r, "clawback", Optional, boolean).unwrap_or(false);
    let hold = t.table(r, "hold", Optional, &["after", "months", "days", "void_on"]).and_then(|h| hold(r, &h));
    let computation = computation(r, t, kind, trigger);
    let caps = caps(r, t, computation.as_ref());
    Some(RewardRule {
        id: id?,
        beneficiary: beneficiary?,
        trigger: trigger?,
        kind: kind?,
        computation: computation?,
        hold,
        approval: approval?,
        caps,
        clawback,
    })
}

fn computation(r: &mut Reader, t: &Table, kind: Option<RewardKind>, trigger: Option<Trigger>) -> Option<Computation> {
    let given: Vec<&str> = WAYS.into_iter().filter(|k| t.has(k)).collect();
    let way = match given.as_slice() {
        [way] => *way,
        // Reading it as a plan reports exactly what is missing: `plan`, `months`.
        [] if kind == Some(RewardKind::PlanUpgrade) => "plan",
        [] => {
            let reason = "say what the reward is worth: `amount`, `per_unit` with `tiers`, `percent`, or `plan`";
            r.error(&t.path, t.span.clone(), reason);
            return None;
        }
        [first, rest @ ..] => {
            for k in rest {
                let reason = format!("`{k}` and `{first}` are two ways to compute a reward; a rule has exactly one");
                r.error(&t.field(k), t.key_span(k), reason);
            }
            return None;
        }
    };
    match kind {
        Some(RewardKind::PlanUpgrade) if way != "plan" => {
            let reason = format!("a plan_upgrade reward is given by `plan` and `months`, not `{way}`");
            r.error(&t.field("kind"), t.value_span("kind"), reason)
        }
        Some(k) if way == "plan" && k != RewardKind::PlanUpgrade => {
            r.error(&t.field("kind"), t.value_span("kind"), "a reward given by `plan` has kind = \"plan_upgrade\"")
        }
        _ => {}
    }
    let (computation, uses): (_, &[&str]) = match way {
        "amount" => (t.read(r, "amount", Required, money).map(|amount_minor| Computation::Flat { amount_minor }), &[]),
        "per_unit" => (per_unit(r, t), &["period", "tier_policy", "tiers"]),
        "percent" => (percentage(r, t), &["of", "months"]),
        _ => (plan(r, t), &["months"]),
    };
    for k in DETAILS.into_iter().filter(|k| !uses.contains(k) && t.has(k)) {
        r.error(&t.field(k), t.key_span(k), format!("`{k}` does not apply to a reward given by `{way}`"));
    }

    let needs = match &computation {
        Some(Computation::PerUnit(_)) => Some((Trigger::Won, "units are reported with `won`")),
        Some(Computation::Percentage(p)) => Some(match p.of {
            PercentOf::ContractValue => (Trigger::Won, "the contract value is reported with `won`"),
            PercentOf::Payments { .. } => (Trigger::Payment, "each payment is reported as a `payment`"),
        }),
        _ => None,
    };
    if let (Some((want, why)), Some(got)) = (needs, trigger)
        && want != got
    {
        r.error(&t.field("trigger"), t.value_span("trigger"), format!("{why}: set trigger = \"{}\"", want.as_str()));
    }
    computation
}

fn per_unit(r: &mut Reader, t: &Table) -> Option<Computation> {
    let unit = t.read(r, "per_unit", Required, words);
    let period = t.read(r, "period", Optional, choice).unwrap_or(Period::ReferrerYear);
    let tier_policy = t.read(r, "tier_policy", Optional, choice).unwrap_or(TierPolicy::WholeAtStart);
    let tiers = t.read(r, "tiers", Required, tiers);
    Some(Computation::PerUnit(PerUnit { unit: unit?, period, tier_policy, tiers: tiers? }))
}

fn tiers(r: &mut Reader, f: &str, v: &Value) -> Option<Vec<Tier>> {
    let items = array(r, f, v)?;
    if items.is_empty() {
        r.error(f, Some(v.span()), "give at least one tier, like [{ each = 100_00 }]");
        return None;
    }
    let before = r.errors.len();
    let mut tiers = Vec::new();
    let mut previous: Option<u32> = None;
    for (i, item) in items.iter().enumerate() {
        let Some(t) = Table::open(r, format!("{f}[{i}]"), item, &["up_to", "each"]) else { continue };
        let up_to = t.read(r, "up_to", Optional, within(1..=1_000_000));
        let each = t.read(r, "each", Required, money);
        let last = i + 1 == items.len();
        if !last && !t.has("up_to") {
            r.error(&t.path, t.span.clone(), "only the last tier may leave out `up_to`");
        }
        if last && t.has("up_to") {
            let reason = "the last tier has no `up_to`: it covers everything above the tier before it";
            r.error(&t.field("up_to"), t.value_span("up_to"), reason);
        }
        if let (Some(previous), Some(bound)) = (previous, up_to)
            && bound <= previous
        {
            let reason =
                format!("must be more than the previous tier's up_to ({previous}): tiers go upwards without overlap");
            r.error(&t.field("up_to"), t.value_span("up_to"), reason);
        }
        previous = up_to.or(previous);
        tiers.push(Tier { up_to, each_minor: each.unwrap_or_default() });
    }
    (r.errors.len() == before).then_some(tiers)
}

fn percentage(r: &mut Reader, t: &Table) -> Option<Computation> {
    let percent = t.read(r, "percent", Required, percent);
    let of = t.read(r, "of", Required, |r, f, v| match text(r, f, v)? {
        base @ ("contract_value" | "payments") => Some(base),
        other => {
            r.error(f, Some(v.span()), format!("`{other}` is not one of: contract_value, payments"));
            None
        }
    });
    let of = match of {
        Some("payments") => t.read(r, "months", Required, within(1..=120)).map(|months| PercentOf::Payments { months }),
        Some(_) if t.has("months") => {
            r.error(&t.field("months"), t.key_span("months"), "`months` applies only to of = \"payments\"");
            None
        }
        Some(_) => Some(PercentOf::ContractValue),
        None => None,
    };
    Some(Computation::Percentage(Percentage { percent: percent?, of: of? }))
}

fn plan(r: &mut Reader, t: &Table) -> Option<Computation> {
    let plan = t.read(r, "plan", Required, words);
    let months = t.read(r, "months", Required, within(1..=120));
    Some(Computation::PlanUpgrade { plan: plan?, months: months? })
}

fn hold(r: &mut Reader, t: &Table) -> Option<Hold> {
    let before = r.errors.len();
    let after = t.read(r, "after", Required, choice);
    let months = t.read(r, "months", Optional, within(0..=120)).unwrap_or(0);
    let days = t.read(r, "days", Optional, within(0..=3650)).unwrap_or(0);
    let void_on = t.read(r, "void_on", Optional, choices).unwrap_or_else(|| VoidOn::ALL.to_vec());
    if r.errors.len() == before && months == 0 && days == 0 {
        r.error(&t.path, t.span.clone(), "a hold lasts at least a day: give `months` or `days`");
    }
    Some(Hold { after: after?, months, days, void_on })
}

fn caps(r: &mut Reader, t: &Table, computation: Option<&Computation>) -> Caps {
    if matches!(computation, Some(Computation::PlanUpgrade { .. })) {
        for k in ["max_per_referral", "max_per_beneficiary"].into_iter().filter(|k| t.has(k)) {
            r.error(
                &t.field(k),
                t.key_span(k),
                format!("a plan upgrade is counted in months, not money: it takes no `{k}`"),
            );
        }
    }
    let per_referral_minor = t.read(r, "max_per_referral", Optional, money);
    let per_beneficiary = t.table(r, "max_per_beneficiary", Optional, &["amount", "period"]).and_then(|c| {
        let amount_minor = c.read(r, "amount", Required, money);
        let period = c.read(r, "period", Required, choice);
        Some(PeriodCap { amount_minor: amount_minor?, period: period? })
    });
    Caps { per_referral_minor, per_beneficiary }
}

// ---- Reading values. Each reader records its own error and returns None. ----

struct Reader<'s> {
    source: &'s str,
    errors: Vec<FieldError>,
}

impl Reader<'_> {
    fn error(&mut self, field: &str, span: Option<Range<usize>>, reason: impl Into<String>) {
        let (line, column) = span.map(|s| line_col(self.source, s.start)).unzip();
        self.errors.push(FieldError { field: field.to_owned(), line, column, reason: reason.into() });
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

#[derive(Clone, Copy, PartialEq)]
enum Need {
    Required,
    Optional,
}
use Need::{Optional, Required};

/// A TOML table and where it sits: its field path, and its span (none for the
/// whole document, where "line 1" would point at nothing in particular).
struct Table<'a, 'i> {
    path: String,
    map: &'a DeTable<'i>,
    span: Option<Range<usize>>,
}

impl<'a, 'i> Table<'a, 'i> {
    fn open(r: &mut Reader, path: String, value: &'a Value<'i>, known: &[&str]) -> Option<Self> {
        let DeValue::Table(map) = value.get_ref() else {
            wrong_type(r, &path, value, "a table");
            return None;
        };
        let table = Table { path, map, span: Some(value.span()) };
        table.reject_unknown(r, known);
        Some(table)
    }

    fn reject_unknown(&self, r: &mut Reader, known: &[&str]) {
        for key in self.map.keys() {
            let name: &str = key.get_ref();
            if !known.contains(&name) {
                let reason = format!("unknown field `{name}`; expected one of: {}", known.join(", "));
                r.error(&self.field(name), Some(key.span()), reason);
            }
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.map.get_key_value(key).map(|(k, _)| k.span())
    }

    fn value_span(&self, key: &str) -> Option<Range<usize>> {
        self.map.get(key).map(|v| v.span())
    }

    fn read<T>(
        &self,
        r: &mut Reader,
        key: &str,
        need: Need,
        read: impl FnOnce(&mut Reader, &str, &'a Value<'i>) -> Option<T>,
    ) -> Option<T> {
        match self.map.get(key) {
            Some(value) => read(r, &self.field(key), value),
            None => {
                if need == Required {
                    r.error(&self.field(key), self.span.clone(), format!("missing field `{key}`"));
                }
                None
            }
        }
    }

    fn table(&self, r: &mut Reader, key: &str, need: Need, known: &[&str]) -> Option<Table<'a, 'i>> {
        self.read(r, key, need, |r, f, v| Table::open(r, f.to_owned(), v, known))
    }
}

fn wrong_type(r: &mut Reader, f: &str, v: &Value, expected: &str) {
    let found = v.get_ref().type_str();
    let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    r.error(f, Some(v.span()), format!("expected {expected}, found {article} {found}"));
}

fn text<'a>(r: &mut Reader, f: &str, v: &'a Value) -> Option<&'a str> {
    match v.get_ref() {
        DeValue::String(s) => Some(s),
        _ => {
            wrong_type(r, f, v, "a string");
            None
        }
    }
}

fn words(r: &mut Reader, f: &str, v: &Value) -> Option<String> {
    let s = text(r, f, v)?.trim();
    if s.is_empty() {
        r.error(f, Some(v.span()), "must not be empty");
        return None;
    }
    Some(s.to_owned())
}

fn boolean(r: &mut Reader, f: &str, v: &Value) -> Option<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        _ => {
            wrong_type(r, f, v, "true or false");
            None
        }
    }
}

fn integer(r: &mut Reader, f: &str, v: &Value) -> Option<i64> {
    match v.get_ref() {
        DeValue::Integer(i) => {
            let n = i64::from_str_radix(i.as_str(), i.radix()).ok();
            if n.is_none() {
                r.error(f, Some(v.span()), "is too large a number");
            }
            n
        }
        DeValue::Float(_) => {
            let reason = "expected a whole number (money is in minor units: 12.50 is written 12_50)";
            r.error(f, Some(v.span()), reason);
            None
        }
        _ => {
            wrong_type(r, f, v, "an integer");
            None
        }
    }
}

fn within(range: RangeInclusive<u32>) -> impl FnOnce(&mut Reader, &str, &Value) -> Option<u32> {
    move |r, f, v| {
        let n = integer(r, f, v)?;
        let n = u32::try_from(n).ok().filter(|n| range.contains(n));
        if n.is_none() {
            r.error(f, Some(v.span()), format!("must be from {} to {}", range.start(), range.end()));
        }
        n
    }
}

/// An amount of money in minor units.
fn money(r: &mut Reader, f: &str, v: &Value) -> Option<i64> {
    let n = integer(r, f, v)?;
    let reason = if n <= 0 {
        "must be more than zero (in minor units: 100_00 is 100.00)".to_owned()
    } else if n > MAX_AMOUNT_MINOR {
        format!("must be at most {MAX_AMOUNT_MINOR} minor units")
    } else {
        return Some(n);
    };
    r.error(f, Some(v.span()), reason);
    None
}

fn percent(r: &mut Reader, f: &str, v: &Value) -> Option<Percent> {
    if let DeValue::Integer(_) | DeValue::Float(_) = v.get_ref() {
        let written = r.source.get(v.span()).unwrap_or_default().to_owned();
        r.error(f, Some(v.span()), format!("write the percentage as a string, like \"{written}\", so it stays exact"));
        return None;
    }
    parsed(Percent::parse)(r, f, v)
}

fn parsed<T, E: Display>(
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> impl FnOnce(&mut Reader, &str, &Value) -> Option<T> {
    move |r, f, v| {
        let raw = text(r, f, v)?;
        parse(raw).map_err(|e| r.error(f, Some(v.span()), e.to_string())).ok()
    }
}

fn time_zone(r: &mut Reader, f: &str, v: &Value) -> Option<String> {
    let name = text(r, f, v)?;
    match jiff::tz::TimeZone::get(name) {
        Ok(tz) => Some(tz.iana_name().unwrap_or(name).to_owned()),
        Err(_) => {
            let reason =
                format!("`{name}` is not in the IANA time zone database (like \"America/Chicago\" or \"UTC\")");
            r.error(f, Some(v.span()), reason);
            None
        }
    }
}

fn array<'a, 'i>(r: &mut Reader, f: &str, v: &'a Value<'i>) -> Option<&'a [Value<'i>]> {
    match v.get_ref() {
        DeValue::Array(items) => Some(items),
        _ => {
            wrong_type(r, f, v, "a list");
            None
        }
    }
}

fn choice<T: Named>(r: &mut Reader, f: &str, v: &Value) -> Option<T> {
    let word = text(r, f, v)?;
    let found = T::ALL.iter().copied().find(|c| c.name() == word);
    if found.is_none() {
        r.error(f, Some(v.span()), format!("`{word}` is not one of: {}", names::<T>()));
    }
    found
}

fn choices<T: Named>(r: &mut Reader, f: &str, v: &Value) -> Option<Vec<T>> {
    let items = array(r, f, v)?;
    let before = r.errors.len();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("{f}[{i}]");
        match choice::<T>(r, &field, item) {
            Some(c) if out.contains(&c) => {
                r.error(&field, Some(item.span()), format!("`{}` is listed twice", c.name()))
            }
            Some(c) => out.push(c),
            None => {}
        }
    }
    (r.errors.len() == before).then_some(out)
}

fn eligible(r: &mut Reader, f: &str, v: &Value) -> Option<Vec<ParticipantKind>> {
    let kinds = choices(r, f, v)?;
    if kinds.is_empty() {
        let reason = format!("list at least one kind of participant: {}", names::<ParticipantKind>());
        r.error(f, Some(v.span()), reason);
        return None;
    }
    Some(kinds)
}

fn names<T: Named>() -> String {
    T::ALL.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}
