//! A small SMTP server for tests (RFC 5321: greeting, EHLO/HELO, MAIL FROM,
//! RCPT TO, DATA with the dot terminator and dot-stuffing, RSET, NOOP, QUIT),
//! on `127.0.0.1:0`. It keeps every message it accepts and can be told to refuse
//! the first N transactions with `451` (try again later) or every one with `550`.
//! Plus a little MIME reading, to look into what arrived.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA, dot-stuffing undone, lines ending in CRLF.
    pub data: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.data, name)
    }

    /// The decoded body of the first part of this media type (`text/plain`).
    pub fn part(&self, media_type: &str) -> Option<String> {
        parts(&self.data).into_iter().find(|(ct, _)| ct.eq_ignore_ascii_case(media_type)).map(|(_, body)| body)
    }
}

#[derive(Default)]
struct State {
    /// Transactions still to refuse with 451.
    refuse_transient: usize,
    /// Refuse every transaction with 550.
    refuse_permanent: bool,
    refused: usize,
    messages: Vec<Received>,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpServer {
    /// A server that accepts everything.
    pub async fn start() -> SmtpServer {
        Self::with(State::default()).await
    }

    /// A server that refuses the first `n` transactions with `451`, then accepts.
    pub async fn refusing(n: usize) -> SmtpServer {
        Self::with(State { refuse_transient: n, ..State::default() }).await
    }

    /// A server that refuses every transaction with `550`.
    pub async fn rejecting() -> SmtpServer {
        Self::with(State { refuse_permanent: true, ..State::default() }).await
    }

    async fn with(state: State) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the test SMTP server");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = session(stream, state).await;
                });
            }
        });
        SmtpServer { addr, state, task }
    }

    /// `smtp://127.0.0.1:PORT`, for `VOUCH_SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().expect("smtp state").messages.clone()
    }

    /// Transactions refused so far.
    pub fn refused(&self) -> usize {
        self.state.lock().expect("smtp state").refused
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(stream: tokio::net::TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 localhost test SMTP ready\r\n").await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-localhost greets you\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n",
            "HELO" => b"250 localhost\r\n",
            "MAIL" => {
                let mut s = state.lock().expect("smtp state");
                if s.refuse_permanent {
                    s.refused += 1;
                    b"550 5.7.1 we do not take mail from you\r\n"
                } else if s.refuse_transient > 0 {
                    s.refuse_transient -= 1;
                    s.refused += 1;
                    b"451 4.3.0 try again later\r\n"
                } else {
                    from = Some(address(command));
                    to.clear();
                    b"250 2.1.0 ok\r\n"
                }
            }
            "RCPT" if from.is_some() => {
                to.push(address(command));
                b"250 2.1.5 ok\r\n"
            }
            "DATA" if from.is_some() && !to.is_empty() => {
                write.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // Dot-stuffing: a line starting with a dot was sent with two.
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let message = Received { from: from.take().unwrap_or_default(), to: std::mem::take(&mut to), data };
                state.lock().expect("smtp state").messages.push(message);
                b"250 2.0.0 queued\r\n"
            }
            "RCPT" | "DATA" => b"503 5.5.1 bad sequence of commands\r\n",
            "RSET" => {
                from = None;
                to.clear();
                b"250 2.0.0 ok\r\n"
            }
            "NOOP" => b"250 2.0.0 ok\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 command not recognised\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The address inside `<...>` of `MAIL FROM:<a@b> SIZE=123`.
fn address(command: &str) -> String {
    command.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(a, _)| a.to_string()).unwrap_or_default()
}

/// The value of a header, folded lines joined.
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
    value
}

/// The leaf parts of a MIME message: (media type, decoded body).
pub fn parts(message: &str) -> Vec<(String, String)> {
    let (head, body) = message.split_once("\r\n\r\n").unwrap_or((message, ""));
    let content_type = header(head, "Content-Type").unwrap_or_else(|| "text/plain".into());
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if media_type.starts_with("multipart/") {
        let boundary = content_type
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("boundary="))
            .next()
            .map(|b| b.trim_matches('"').to_string())
            .expect("a multipart boundary");
        let delimiter = format!("--{boundary}");
        return body
            .split(&delimiter)
            .skip(1)
            .take_while(|p| !p.starts_with("--"))
            .flat_map(|p| parts(p.trim_start_matches("\r\n")))
            .collect();
    }
    let encoding = header(head, "Content-Transfer-Encoding").unwrap_or_default().to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "base64" => String::from_utf8(base64(body)).expect("UTF-8 body"),
        "quoted-printable" => String::from_utf8(quoted_printable(body)).expect("UTF-8 body"),
        _ => body.to_string(),
    };
    vec![(media_type, decoded)]
}

fn base64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0u32);
    for b in s.bytes().filter(|b| ALPHABET.contains(b)) {
        acc = (acc << 6) | ALPHABET.iter().position(|a| *a == b).expect("base64") as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn quoted_printable(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < bytes.len() {
        if bytes[i] == b'=' {
            // A soft line break, or an escaped byte.
            if bytes[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}
