//! Messages as their recipients read them: a subject, a plain-text part and an
//! HTML part, from `askama` templates in `templates/mail/`. The HTML templates
//! escape every value, so a name such as `<script>` shows as text, never markup.

use askama::Template;
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
    match payload {
        MailPayload::Invite { referrer_name, code, message, unsubscribe_token, .. } => {
            let link = format!("{}/r/{code}", ctx.public_url);
            let unsubscribe = format!("{}/unsubscribe/{unsubscribe_token}", ctx.public_url);
            let (referrer, program, message) = (referrer_name.as_str(), ctx.program_name, message.as_deref());
            Ok(Rendered {
                subject: format!("{referrer} invites you to {program}"),
                text: InviteText { referrer, program, message, link: &link, unsubscribe: &unsubscribe }.render()?,
                html: InviteHtml { referrer, program, message, link: &link, unsubscribe: &unsubscribe }.render()?,
            })
        }
        MailPayload::LeadReceived { name, prospect, .. } => {
            let program = ctx.program_name;
            Ok(Rendered {
                subject: format!("Your referral of {prospect} arrived"),
                text: LeadReceivedText { name, program, prospect }.render()?,
                html: LeadReceivedHtml { name, program, prospect }.render()?,
            })
        }
        MailPayload::StageUpdate { name, prospect, stage, .. } => {
            let (program, what) = (ctx.program_name, stage_news(stage));
            Ok(Rendered {
                subject: format!("Your referral of {prospect}: {stage}"),
                text: StageUpdateText { name, program, prospect, what }.render()?,
                html: StageUpdateHtml { name, program, prospect, what }.render()?,
            })
        }
        MailPayload::Welcome { name, code, .. } => {
            let link = format!("{}/r/{code}", ctx.public_url);
            let program = ctx.program_name;
            Ok(Rendered {
                subject: format!("Welcome to {program}: your referral link"),
                text: WelcomeText { name, program, link: &link }.render()?,
                html: WelcomeHtml { name, program, link: &link }.render()?,
            })
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
        render(&payload, &Context { public_url: "https://refer.example.com", program_name: "Credit & <Co>" })
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
        render(&payload, &Context { public_url: "https://refer.example.com", program_name: "Credit" }).expect("render")
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
}
