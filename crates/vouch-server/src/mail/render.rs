//! Messages as their recipients read them: a subject, a plain-text part and an
//! HTML part, from `askama` templates in `templates/mail/`. The HTML templates
//! escape every value, so a name such as `<script>` shows as text, never markup.

use askama::Template;
use vouch_domain::program::{EmailTemplates, MessageKind, fill};
use vouch_store::MailPayload;

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What rendering needs beyond the payload.
pub struct Context<'a> {
    /// The base of links, without a trailing slash.
    pub public_url: &'a str,
    /// The program's display name (its slug when the program is gone).
    pub program_name: &'a str,
    /// The program's own wording of its emails (`[emails.<kind>]`), if any.
    pub emails: Option<&'a EmailTemplates>,
}

#[derive(Template)]
#[template(path = "mail/welcome.txt")]
struct WelcomeText<'a> {
    name: &'a str,
    program: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/welcome.html")]
struct WelcomeHtml<'a> {
    name: &'a str,
    program: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/invite.txt")]
struct InviteText<'a> {
    referrer: &'a str,
    program: &'a str,
    message: Option<&'a str>,
    link: &'a str,
    unsubscribe: &'a str,
}

#[derive(Template)]
#[template(path = "mail/invite.html")]
struct InviteHtml<'a> {
    referrer: &'a str,
    program: &'a str,
    message: Option<&'a str>,
    link: &'a str,
    unsubscribe: &'a str,
}

#[derive(Template)]
#[template(path = "mail/lead_received.txt")]
struct LeadReceivedText<'a> {
    name: &'a str,
    program: &'a str,
    prospect: &'a str,
}

#[derive(Template)]
#[template(path = "mail/lead_received.html")]
struct LeadReceivedHtml<'a> {
    name: &'a str,
    program: &'a str,
    prospect: &'a str,
}

#[derive(Template)]
#[template(path = "mail/stage_update.txt")]
struct StageUpdateText<'a> {
    name: &'a str,
    program: &'a str,
    prospect: &'a str,
    what: &'a str,
}

#[derive(Template)]
#[template(path = "mail/stage_update.html")]
struct StageUpdateHtml<'a> {
    name: &'a str,
    program: &'a str,
    prospect: &'a str,
    what: &'a str,
}

/// What reaching a stage means, in a sentence for the referrer.
fn stage_news(stage: &str) -> &'static str {
    match stage {
        "new" => "it is back at the start of our pipeline.",
        "contacted" => "our team has contacted them.",
        "qualified" => "they are a good fit, and our team is talking with them.",
        "won" => "they became a customer. Thank you!",
        "lost" => "it did not work out this time. Thank you all the same.",
        "churned" => "they are no longer a customer.",
        _ => "their referral moved on.",
    }
}

pub fn render(payload: &MailPayload, ctx: &Context<'_>) -> Result<Rendered, askama::Error> {
    let (kind, built_in, values) = built_in(payload, ctx)?;
    let Some(own) = ctx.emails.and_then(|e| e.get(&kind)) else {
        return Ok(built_in);
    };
    // The program's wording, where it has one: values are escaped in HTML and
    // left as they are in plain text (and in the subject, a header, not markup).
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let plain = |s: &str| s.to_string();
    let html =
        |s: &str| askama::filters::escape(s, askama::filters::Html).map_or_else(|_| String::new(), |e| e.to_string());
    Ok(Rendered {
        // A subject is one line whatever a value holds.
        subject: own
            .subject
            .as_deref()
            .map_or(built_in.subject, |t| fill(t, &values, &|s: &str| s.replace(['\r', '\n'], " "))),
        text: own.text.as_deref().map_or(built_in.text, |t| fill(t, &values, &plain)),
        html: own.html.as_deref().map_or(built_in.html, |t| fill(t, &values, &html)),
    })
}

/// A message kind's placeholders and their values (see `MessageKind::placeholders`).
type Values = Vec<(&'static str, String)>;

/// The built-in message, its kind, and the values of its kind's placeholders.
fn built_in(payload: &MailPayload, ctx: &Context<'_>) -> Result<(MessageKind, Rendered, Values), askama::Error> {
    let program = ctx.program_name;
    match payload {
        MailPayload::Invite { referrer_name, code, message, unsubscribe_token, .. } => {
            let link = format!("{}/r/{code}", ctx.public_url);
            let unsubscribe = format!("{}/unsubscribe/{unsubscribe_token}", ctx.public_url);
            let (referrer, message) = (referrer_name.as_str(), message.as_deref());
            let rendered = Rendered {
                subject: format!("{referrer} invites you to {program}"),
                text: InviteText { referrer, program, message, link: &link, unsubscribe: &unsubscribe }.render()?,
                html: InviteHtml { referrer, program, message, link: &link, unsubscribe: &unsubscribe }.render()?,
            };
            let values = vec![
                ("program", program.to_string()),
                ("referrer", referrer.to_string()),
                ("message", message.unwrap_or_default().to_string()),
                ("link", link),
                ("unsubscribe_link", unsubscribe),
            ];
            Ok((MessageKind::Invite, rendered, values))
        }
        MailPayload::LeadReceived { name, prospect, .. } => {
            let rendered = Rendered {
                subject: format!("Your referral of {prospect} arrived"),
                text: LeadReceivedText { name, program, prospect }.render()?,
                html: LeadReceivedHtml { name, program, prospect }.render()?,
            };
            let values = vec![("program", program.to_string()), ("name", name.clone()), ("prospect", prospect.clone())];
            Ok((MessageKind::LeadReceived, rendered, values))
        }
        MailPayload::StageUpdate { name, prospect, stage, .. } => {
            let what = stage_news(stage);
            let rendered = Rendered {
                subject: format!("Your referral of {prospect}: {stage}"),
                text: StageUpdateText { name, program, prospect, what }.render()?,
                html: StageUpdateHtml { name, program, prospect, what }.render()?,
            };
            let values = vec![
                ("program", program.to_string()),
                ("name", name.clone()),
                ("prospect", prospect.clone()),
                ("stage", stage.clone()),
                ("stage_news", what.to_string()),
            ];
            Ok((MessageKind::StageUpdate, rendered, values))
        }
        MailPayload::Welcome { name, code, .. } => {
            let link = format!("{}/r/{code}", ctx.public_url);
            let rendered = Rendered {
                subject: format!("Welcome to {program}: your referral link"),
                text: WelcomeText { name, program, link: &link }.render()?,
                html: WelcomeHtml { name, program, link: &link }.render()?,
            };
            let values = vec![("program", program.to_string()), ("name", name.clone()), ("link", link)];
            Ok((MessageKind::Welcome, rendered, values))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(name: &str) -> Rendered {
        let payload = MailPayload::Welcome {
            to: "ada@example.com".into(),
            name: name.into(),
            program: "customer-credit".into(),
            code: "ADA1".into(),
        };
        render(
            &payload,
            &Context { public_url: "https://refer.example.com", program_name: "Credit & <Co>", emails: None },
        )
        .expect("render")
    }

    #[test]
    fn the_welcome_carries_the_link_in_both_parts() {
        let m = welcome("Ada");
        assert!(m.text.contains("Hello Ada,"), "{}", m.text);
        assert!(m.text.contains("https://refer.example.com/r/ADA1"), "{}", m.text);
        assert!(m.html.contains(r#"<a href="https://refer.example.com/r/ADA1">"#), "{}", m.html);
        assert_eq!(m.subject, "Welcome to Credit & <Co>: your referral link");
    }

    fn invite(message: Option<&str>) -> Rendered {
        let payload = MailPayload::Invite {
            to: "bob@example.com".into(),
            referrer_name: "Ada".into(),
            program: "customer-credit".into(),
            code: "ADA1".into(),
            message: message.map(str::to_string),
            unsubscribe_token: "abc.def".into(),
        };
        render(&payload, &Context { public_url: "https://refer.example.com", program_name: "Credit", emails: None })
            .expect("render")
    }

    #[test]
    fn an_invite_carries_the_message_the_link_and_the_unsubscribe_link() {
        let m = invite(Some("Try it, <b>really</b> <script>alert(1)</script>"));
        assert_eq!(m.subject, "Ada invites you to Credit");
        assert!(m.text.contains("Try it, <b>really</b> <script>alert(1)</script>"), "{}", m.text);
        assert!(m.text.contains("https://refer.example.com/r/ADA1"), "{}", m.text);
        assert!(m.text.contains("https://refer.example.com/unsubscribe/abc.def"), "{}", m.text);
        assert!(!m.html.contains("<script>") && !m.html.contains("<b>really"), "{}", m.html);
        assert!(m.html.contains("&#60;b&#62;really") || m.html.contains("&lt;b&gt;really"), "{}", m.html);
        assert!(m.html.contains(r#"<a href="https://refer.example.com/unsubscribe/abc.def">"#), "{}", m.html);
        let bare = invite(None);
        assert!(!bare.text.contains("writes:"), "{}", bare.text);
    }

    #[test]
    fn markup_in_a_name_is_escaped_in_html_and_left_alone_in_text() {
        let m = welcome("<script>alert(1)</script>");
        assert!(!m.html.contains("<script>"), "{}", m.html);
        assert!(m.html.contains("&#60;script&#62;") || m.html.contains("&lt;script&gt;"), "{}", m.html);
        assert!(
            m.html.contains("Credit &#38; &#60;Co&#62;") || m.html.contains("Credit &amp; &lt;Co&gt;"),
            "{}",
            m.html
        );
        assert!(m.text.contains("Hello <script>alert(1)</script>,"), "{}", m.text);
    }

    #[test]
    fn a_program_wording_replaces_the_parts_it_names_and_escapes_values_only_in_html() {
        let mut emails = EmailTemplates::new();
        emails.insert(
            MessageKind::Welcome,
            vouch_domain::program::EmailTemplate {
                subject: Some("{name}, here is {program}".into()),
                text: None,
                html: Some("<p>Dear {name}: <a href=\"{link}\">go</a></p>".into()),
            },
        );
        let payload = MailPayload::Welcome {
            to: "ada@example.com".into(),
            name: "<b>Ada</b>".into(),
            program: "customer-credit".into(),
            code: "ADA1".into(),
        };
        let ctx = Context { public_url: "https://refer.example.com", program_name: "Credit", emails: Some(&emails) };
        let m = render(&payload, &ctx).expect("render");
        assert_eq!(m.subject, "<b>Ada</b>, here is Credit");
        assert!(
            m.html.starts_with("<p>Dear &#60;b&#62;Ada&#60;/b&#62;: ") || m.html.contains("&lt;b&gt;Ada"),
            "{}",
            m.html
        );
        assert!(m.html.contains(r#"<a href="https://refer.example.com/r/ADA1">go</a></p>"#), "{}", m.html);
        // The text part was not reworded: the built-in one.
        assert!(m.text.contains("Hello <b>Ada</b>,"), "{}", m.text);
    }
}
