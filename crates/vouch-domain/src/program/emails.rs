//! A program's own wording for the emails Vouch sends on its behalf.
//!
//! A program file may override, per message kind, the subject, the plain-text
//! body and the HTML body (any of the three; the others stay built in). Text is
//! written with `{placeholder}`s from a small set per kind; `{{` and `}}` are
//! literal braces. Everything is checked when the file is applied, so a message
//! never fails to render at delivery.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Named;

/// The kinds of email a program can reword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Invite,
    LeadReceived,
    StageUpdate,
    Welcome,
}

impl Named for MessageKind {
    const ALL: &'static [Self] = &[Self::Invite, Self::LeadReceived, Self::StageUpdate, Self::Welcome];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::LeadReceived => "lead_received",
            Self::StageUpdate => "stage_update",
            Self::Welcome => "welcome",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        <Self as Named>::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// The placeholders a message of this kind fills in.
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            Self::Invite => &["program", "referrer", "message", "link", "unsubscribe_link"],
            Self::LeadReceived => &["program", "name", "prospect"],
            Self::StageUpdate => &["program", "name", "prospect", "stage", "stage_news"],
            Self::Welcome => &["program", "name", "link"],
        }
    }
}

/// The parts of one message a program rewords (`None`: the built-in wording).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// A program's email overrides, by message kind.
pub type EmailTemplates = BTreeMap<MessageKind, EmailTemplate>;

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    /// An escaped brace.
    Brace(char),
    Placeholder(&'a str),
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `{name}` with a name the message kind does not fill in.
    UnknownPlaceholder(String),
    /// A `{` without its `}`, or a lone `}`.
    Unbalanced,
}

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        if at > 0 {
            out.push(Piece::Literal(&rest[..at]));
        }
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push(Piece::Brace('{'));
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push(Piece::Brace('}'));
            rest = after;
        } else if tail.starts_with('}') {
            return Err(TemplateError::Unbalanced);
        } else {
            let close = tail.find('}').ok_or(TemplateError::Unbalanced)?;
            out.push(Piece::Placeholder(tail[1..close].trim()));
            rest = &tail[close + 1..];
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Literal(rest));
    }
    Ok(out)
}

/// Checks a template of a message of `kind`: balanced braces, known placeholders.
pub fn check_template(kind: MessageKind, template: &str) -> Result<(), TemplateError> {
    for piece in pieces(template)? {
        if let Piece::Placeholder(name) = piece
            && !kind.placeholders().contains(&name)
        {
            return Err(TemplateError::UnknownPlaceholder(name.to_owned()));
        }
    }
    Ok(())
}

/// Whether the template uses the placeholder `name`.
pub fn uses_placeholder(template: &str, name: &str) -> bool {
    pieces(template).is_ok_and(|p| p.contains(&Piece::Placeholder(name)))
}

/// Fills in a template checked by [`check_template`]: each placeholder's value
/// passes through `escape` (HTML-escaping for an HTML body, nothing for text);
/// the template's own text is kept as written. A placeholder without a value
/// renders empty, and a template that does not parse renders as written.
pub fn fill(template: &str, values: &[(&str, &str)], escape: &dyn Fn(&str) -> String) -> String {
    let Ok(pieces) = pieces(template) else {
        return template.to_owned();
    };
    let mut out = String::with_capacity(template.len());
    for piece in pieces {
        match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Brace(c) => out.push(c),
            Piece::Placeholder(name) => {
                if let Some((_, value)) = values.iter().find(|(n, _)| *n == name) {
                    out.push_str(&escape(value));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn placeholders_are_filled_and_doubled_braces_are_literal() {
        let t = "Hi {name}, {{not a placeholder}} from { program }.";
        assert_eq!(check_template(MessageKind::Welcome, t), Ok(()));
        let out = fill(t, &[("name", "Ada"), ("program", "Credit")], &plain);
        assert_eq!(out, "Hi Ada, {not a placeholder} from Credit.");
    }

    #[test]
    fn a_placeholder_of_another_kind_is_unknown() {
        assert_eq!(
            check_template(MessageKind::Welcome, "{prospect}"),
            Err(TemplateError::UnknownPlaceholder("prospect".into()))
        );
        assert_eq!(check_template(MessageKind::StageUpdate, "{prospect} is {stage}"), Ok(()));
    }

    #[test]
    fn unbalanced_braces_are_refused() {
        assert_eq!(check_template(MessageKind::Welcome, "Hi {name"), Err(TemplateError::Unbalanced));
        assert_eq!(check_template(MessageKind::Welcome, "Hi name}"), Err(TemplateError::Unbalanced));
    }

    #[test]
    fn values_pass_through_the_escape_and_the_template_does_not() {
        let escape = |s: &str| s.replace('<', "&lt;");
        let out = fill("<p>{message}</p>", &[("message", "<script>")], &escape);
        assert_eq!(out, "<p>&lt;script></p>");
    }

    #[test]
    fn uses_placeholder_sees_only_real_placeholders() {
        assert!(uses_placeholder("x {unsubscribe_link} y", "unsubscribe_link"));
        assert!(!uses_placeholder("x {{unsubscribe_link}} y", "unsubscribe_link"));
    }
}
