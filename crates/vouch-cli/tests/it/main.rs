//! Tests of the `vouch` binary as operators run it: real processes, real databases.

mod cli;
mod demo;
mod durability;
mod import;
mod jobs;
mod replicas;
mod simulate;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vouch_domain::program::parse_program;
use vouch_domain::{ProgramId, ProgramVersionId};
use vouch_store::Store;

pub const VOUCH: &str = env!("CARGO_BIN_EXE_vouch");

/// A running `vouch serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `vouch serve` on a free port and waits until it says where it listens.
    pub fn start(db_args: &[String]) -> Server {
        let mut child = Command::new(VOUCH)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(db_args)
            .env("VOUCH_LOG", "warn")
            // Welcome emails of enrolled participants: out of the source tree.
            .env("VOUCH_MAILBOX", std::env::temp_dir().join("vouch-test-mailbox"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vouch serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().expect("vouch serve exited before listening").expect("read stdout");
            if let Some(rest) = line.strip_prefix("Vouch is serving on http://") {
                break rest.split_whitespace().next().expect("address").parse().expect("socket address");
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal}");
    }

    /// Waits for the process to end, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    // Bounded: a request to a server that is being killed must fail, not wait.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub fn example(slug: &str) -> String {
    let path = format!("{}/../../examples/programs/{slug}.toml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).expect("example program")
}

/// Applies an example program (optionally edited) straight through the store.
pub async fn apply(store: &Store, source: &str) {
    let definition = parse_program(source).expect("valid program");
    let ids = (ProgramId(uuid::Uuid::now_v7()), ProgramVersionId(uuid::Uuid::now_v7()));
    store.apply_program(&definition, source, ids, jiff::Timestamp::now()).await.expect("apply");
}

/// A key with every scope.
pub async fn api_key(store: &Store) -> String {
    let scopes = vouch_domain::api_key::Scope::all();
    vouch_server::api_keys::create(store, "test", scopes, jiff::Timestamp::now()).await.expect("api key").0
}

/// Enrolls through the API and returns the code.
pub async fn enroll(server: &Server, key: &str, slug: &str, email: &str) -> String {
    let res = client()
        .post(server.url(&format!("/api/v1/programs/{slug}/participants")))
        .bearer_auth(key)
        .json(&serde_json::json!({"email": email, "name": "Test Referrer", "kind": "customer"}))
        .send()
        .await
        .expect("enroll");
    assert!(res.status().is_success(), "enroll: {}", res.status());
    let body: serde_json::Value = res.json().await.expect("json");
    body["code"].as_str().expect("code").to_string()
}
