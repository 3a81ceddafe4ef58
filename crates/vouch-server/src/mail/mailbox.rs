//! The development mailbox: without an SMTP server, each message is written as
//! an `.eml` file (RFC 5322, what an SMTP server would have received) into a
//! folder, listed at `/dev/mailbox`.

use std::path::{Path, PathBuf};

/// Writes `message` as `{name}.eml`, through a temporary file and a rename, so a
/// reader never sees half a message and writing the same one again replaces it.
pub async fn write(dir: &Path, name: &str, message: &[u8]) -> std::io::Result<PathBuf> {
    tokio::fs::create_dir_all(dir).await?;
    let path = dir.join(format!("{name}.eml"));
    let partial = dir.join(format!(".{name}.eml.partial"));
    tokio::fs::write(&partial, message).await?;
    tokio::fs::rename(&partial, &path).await?;
    Ok(path)
}

/// A message in the mailbox, as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub file: String,
    /// When the file was written (RFC 3339, UTC, seconds).
    pub written: String,
    pub to: String,
    pub subject: String,
}

/// Whether `name` is one of our `.eml` file names: letters, digits and `-` only,
/// so a request for a file never leaves the folder.
pub fn is_message_name(name: &str) -> bool {
    name.strip_suffix(".eml").is_some_and(|stem| {
        !stem.is_empty() && stem.len() <= 64 && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// The `.eml` files of `dir`, newest first (none when the folder does not exist).
pub async fn list(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut read = match tokio::fs::read_dir(dir).await {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    while let Some(e) = read.next_entry().await? {
        let file = e.file_name().to_string_lossy().into_owned();
        if !is_message_name(&file) {
            continue;
        }
        let modified = e.metadata().await?.modified().ok();
        found.push((modified, file));
    }
    // Newest first; file names (UUIDv7, time-ordered) break ties.
    found.sort_by(|a, b| b.cmp(a));
    for (modified, file) in found {
        let raw = tokio::fs::read(dir.join(&file)).await?;
        let text = String::from_utf8_lossy(&raw);
        let written = modified
            .and_then(|m| jiff::Timestamp::try_from(m).ok())
            .map(|t| t.round(jiff::Unit::Second).map_or_else(|_| t.to_string(), |t| t.to_string()))
            .unwrap_or_default();
        entries.push(Entry {
            to: header(&text, "To").unwrap_or_default(),
            subject: header(&text, "Subject").unwrap_or_default(),
            written,
            file,
        });
    }
    Ok(entries)
}

/// The value of a header of a message, with folded lines joined.
pub fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or(message);
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => v.push_str(line),
            Some(_) => break,
            None => {
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case(name)
                {
                    value = Some(v.trim().to_string());
                }
            }
        }
    }
    value.map(|v| decode_words(&v))
}

/// Decodes RFC 2047 encoded words of the `=?utf-8?b?...?=` form (what lettre
/// writes for non-ASCII subjects and names); anything else is left as it is.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("=?") {
        let Some(end) = rest[start + 2..].find("?=").map(|e| start + 2 + e) else { break };
        let word = &rest[start + 2..end];
        let mut parts = word.splitn(3, '?');
        let (charset, encoding, data) = (parts.next(), parts.next(), parts.next());
        let decoded = match (charset, encoding, data) {
            (Some(c), Some(e), Some(d)) if c.eq_ignore_ascii_case("utf-8") && e.eq_ignore_ascii_case("b") => {
                base64_decode(d).and_then(|b| String::from_utf8(b).ok())
            }
            _ => None,
        };
        match decoded {
            Some(d) => {
                let before = &rest[..start];
                // Whitespace between two encoded words is not part of the text.
                if !before.trim().is_empty() || out.is_empty() {
                    out.push_str(before);
                }
                out.push_str(&d);
            }
            None => out.push_str(&rest[..end + 2]),
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes().filter(|b| *b != b'=') {
        let v = ALPHABET.iter().position(|a| *a == b)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_eml_names_are_messages() {
        assert!(is_message_name("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.eml"));
        for bad in ["../vouch.db", "a/b.eml", ".x.eml.partial", ".eml", "x.txt", "..eml", "a.b.eml"] {
            assert!(!is_message_name(bad), "{bad}");
        }
    }

    #[test]
    fn headers_are_unfolded_and_decoded() {
        let msg = "From: a@b\r\nSubject: =?utf-8?b?V2VsY29tZSDinJM=?=\r\n =?utf-8?b?IQ==?=\r\nTo: x@y\r\n\r\nbody";
        assert_eq!(header(msg, "subject").as_deref(), Some("Welcome ✓!"));
        assert_eq!(header(msg, "To").as_deref(), Some("x@y"));
        assert_eq!(header(msg, "Cc"), None);
    }
}
