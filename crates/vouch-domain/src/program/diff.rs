//! What an edit of a program changes, field by field: the output of
//! `vouch program apply --dry-run`.
//!
//! Both versions are flattened to `(field path, readable value)` pairs in file
//! order and compared. Rules are keyed by id (`rewards[welcome-credit].percent`),
//! not by position, so moving a rule around the file changes nothing.

use super::*;

/// One field that differs. `old` is `None` for a field the new version adds,
/// `new` is `None` for one it drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".to_owned());
        write!(f, "{}: {} -> {}", self.field, show(&self.old), show(&self.new))
    }
}

/// Empty when the two versions mean the same thing.
pub fn diff(old: &ProgramDefinition, new: &ProgramDefinition) -> Vec<Change> {
    let (old, new) = (fields(old), fields(new));
    let lookup =
        |fields: &[(String, String)], field: &str| fields.iter().find(|(f, _)| f == field).map(|(_, v)| v.clone());
    let mut changes = Vec::new();
    for (field, value) in &old {
        let now = lookup(&new, field);
        if now.as_ref() != Some(value) {
            changes.push(Change { field: field.clone(), old: Some(value.clone()), new: now });
        }
    }
    for (field, value) in &new {
        if lookup(&old, field).is_none() {
            changes.push(Change { field: field.clone(), old: None, new: Some(value.clone()) });
        }
    }
    changes
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn put(&mut self, field: impl Into<String>, value: impl ToString) {
        self.0.push((field.into(), value.to_string()));
    }
}

fn list<T: Named>(items: &[T]) -> String {
    if items.is_empty() {
        return "(none)".to_owned();
    }
    items.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
}

fn fields(p: &ProgramDefinition) -> Vec<(String, String)> {
    let money = |minor: i64| p.currency.format(minor);
    let mut out = Fields::default();
    out.put("slug", &p.slug);
    out.put("name", &p.name);
    if let Some(d) = &p.description {
        out.put("description", d);
    }
    out.put("currency", p.currency.code());
    out.put("timezone", &p.timezone);
    out.put("landing_url", &p.landing_url.0);
    if let Some(u) = &p.terms_url {
        out.put("terms_url", &u.0);
    }
    out.put("eligible", list(&p.eligible));
    out.put("join", p.join.as_str());
    out.put("business", p.business);
    out.put("attribution.window_days", p.attribution.window_days);
    out.put("attribution.rule", p.attribution.rule.as_str());
    out.put("review.burst_leads", p.review.burst_leads);
    out.put("review.burst_window_minutes", p.review.burst_window_minutes);
    out.put("enroll_converted", p.enroll_converted);

    for rule in &p.rewards {
        let at = |key: &str| format!("rewards[{}].{key}", rule.id);
        out.put(at("beneficiary"), rule.beneficiary.as_str());
        out.put(at("trigger"), rule.trigger.as_str());
        out.put(at("kind"), rule.kind.as_str());
        match &rule.computation {
            Computation::Flat { amount_minor } => out.put(at("amount"), money(*amount_minor)),
            Computation::PerUnit(u) => {
                out.put(at("per_unit"), &u.unit);
                out.put(at("period"), u.period.as_str());
                out.put(at("tier_policy"), u.tier_policy.as_str());
                for (i, tier) in u.tiers.iter().enumerate() {
                    if let Some(up_to) = tier.up_to {
                        out.put(at(&format!("tiers[{i}].up_to")), up_to);
                    }
                    out.put(at(&format!("tiers[{i}].each")), money(tier.each_minor));
                }
            }
            Computation::Percentage(pc) => {
                out.put(at("percent"), format!("{}%", pc.percent));
                match pc.of {
                    PercentOf::ContractValue => out.put(at("of"), "contract_value"),
                    PercentOf::Payments { months } => {
                        out.put(at("of"), "payments");
                        out.put(at("months"), months);
                    }
                }
            }
            Computation::PlanUpgrade { plan, months } => {
                out.put(at("plan"), plan);
                out.put(at("months"), months);
            }
        }
        out.put(at("approval"), rule.approval.as_str());
        out.put(at("clawback"), rule.clawback);
        if let Some(h) = &rule.hold {
            out.put(at("hold.after"), h.after.as_str());
            out.put(at("hold.months"), h.months);
            out.put(at("hold.days"), h.days);
            out.put(at("hold.void_on"), list(&h.void_on));
        }
        if let Some(max) = rule.caps.per_referral_minor {
            out.put(at("max_per_referral"), money(max));
        }
        if let Some(cap) = rule.caps.per_beneficiary {
            out.put(at("max_per_beneficiary.amount"), money(cap.amount_minor));
            out.put(at("max_per_beneficiary.period"), cap.period.as_str());
        }
    }
    for (kind, t) in &p.emails {
        for (part, text) in [("subject", &t.subject), ("text", &t.text), ("html", &t.html)] {
            if let Some(text) = text {
                out.put(format!("emails.{}.{part}", kind.as_str()), text.escape_debug());
            }
        }
    }
    out.0
}
