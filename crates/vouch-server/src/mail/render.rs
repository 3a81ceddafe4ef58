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

pub fn render(payload: &MailPayload, ctx: &Context<'_>) -> Result<Rendered, askama::Error> {
    match payload {
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
