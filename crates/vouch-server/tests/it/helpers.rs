//! A running server per test and engine, and typed helpers to talk to it.
//!
//! `TestApp::spawn` opens a fresh database (see `TestDatabase`), applies the five
//! example programs, binds `127.0.0.1:0` and serves on it until `stop`. Every test
//! loops over `TestDatabase::all()`, so each body runs on SQLite and, when
//! `VOUCH_TEST_DATABASE_URL` is set, on Postgres; assertion messages name the engine.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use vouch_domain::api_key::Scope;
use vouch_domain::program::parse_program;
use vouch_domain::{ClickId, ProgramId, ProgramVersionId, ReferralCode};
use vouch_server::demo::EXAMPLE_PROGRAMS;
use vouch_server::{AppState, Clock, ServerConfig};
use vouch_store::Store;
use vouch_store::testing::TestDatabase;

/// The base of the links the server hands out; deliberately not the address it
/// listens on, so tests see that links come from configuration.
pub const PUBLIC_URL: &str = "https://refer.example.test";

pub struct TestApp {
    pub engine: &'static str,
    pub store: Store,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    pub addr: std::net::SocketAddr,
    /// A key with every scope.
    pub api_key: String,
    /// Follows no redirects: tests look at the 302 itself.
    pub client: reqwest::Client,
    /// Every code handed out through the helpers, for `counts`.
    codes: Mutex<Vec<String>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _db: TestDatabase,
    /// The development mailbox (no SMTP server unless a test configures one).
    pub mailbox: tempfile::TempDir,
}

/// What an enrollment answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub status: StatusCode,
    pub participant_id: String,
    pub enrollment_id: String,
    pub code: String,
    pub link: String,
}

/// What a visit to `/r/{code}` answered.
#[derive(Debug)]
pub struct Visit {
    pub status: StatusCode,
    pub location: Option<url::Url>,
    pub content_type: Option<String>,
    pub body: String,
}

impl Visit {
    /// The value of one query parameter of the redirect target.
    pub fn param(&self, name: &str) -> Option<String> {
        self.location.as_ref()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    pub fn vclid(&self) -> Option<String> {
        self.param("vclid")
    }

    /// The redirect target without its query: where the visitor lands.
    pub fn landing(&self) -> Option<String> {
        let mut to = self.location.clone()?;
        to.set_query(None);
        Some(to.to_string())
    }
}

/// A snapshot of what the database holds, for "nothing changed" assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub participants: i64,
    pub api_keys: Vec<(String, bool)>,
    /// Slug → current version.
    pub programs: Vec<(String, i64)>,
    /// Code → (clicks, bot visits, stored click rows), for every code the helpers
    /// have seen: clicks can only be stored for a known code.
    pub clicks: BTreeMap<String, (i64, i64, usize)>,
}

impl TestApp {
    /// A server on a fresh database, with the five example programs applied.
    pub async fn spawn(db: TestDatabase) -> TestApp {
        Self::spawn_with(db, |_| {}).await
    }

    /// As `spawn`, with the server's configuration adjusted first.
    pub async fn spawn_with(db: TestDatabase, adjust: impl FnOnce(&mut ServerConfig)) -> TestApp {
        Self::try_spawn(db, adjust).await.expect("start the test app")
    }

    /// Where the database is, to reach it from outside the server.
    pub fn database(&self) -> &vouch_store::DatabaseConfig {
        &self._db.config
    }

    async fn try_spawn(db: TestDatabase, adjust: impl FnOnce(&mut ServerConfig)) -> Result<TestApp> {
        let engine = db.engine;
        let store = db.open().await;
        let now = jiff::Timestamp::now();
        for (slug, source) in EXAMPLE_PROGRAMS {
            apply_to(&store, source, now).await.with_context(|| format!("{engine}: apply {slug}"))?;
        }
        let (api_key, _) = vouch_server::api_keys::create(&store, "tests", Scope::all(), now).await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut config = ServerConfig::new(url::Url::parse(PUBLIC_URL)?);
        // Tests assert that clicks are recorded, not how fast: on two busy cores
        // running many test servers at once, the production deadline could pass.
        config.click_deadline = Duration::from_secs(5);
        let mailbox = tempfile::tempdir()?;
        config.mailbox_dir = mailbox.path().to_path_buf();
        // Tests release holds themselves: a worker on the wall clock would
        // approve the pending rewards they assert on.
        config.holds_interval = None;
        adjust(&mut config);
        let state = AppState::start(store.clone(), config, Clock::system()).await?;
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(vouch_server::serve(listener, state, async {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(TestApp {
            engine,
            store,
            base: format!("http://{addr}"),
            addr,
            api_key,
            client,
            codes: Mutex::new(Vec::new()),
            shutdown: Some(tx),
            server: Some(server),
            _db: db,
            mailbox,
        })
    }

    /// Stops the server gracefully (draining the click writer) and closes the store.
    pub async fn stop(mut self) {
        self.shutdown().await;
        self.store.close().await;
    }

    /// Shuts the server down gracefully and waits until `serve` returns; the
    /// store stays open for inspection.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let done = tokio::time::timeout(Duration::from_secs(10), server).await;
            let served = done.unwrap_or_else(|_| panic!("{}: server did not stop within 10 s", self.engine));
            served.expect("server task").expect("serve returned an error");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request under `/api/v1` carrying the all-scopes key.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(&format!("/api/v1{path}"))).bearer_auth(&self.api_key)
    }

    pub async fn api_get(&self, path: &str) -> reqwest::Response {
        self.api(reqwest::Method::GET, path).send().await.expect("send API request")
    }

    pub async fn api_post(&self, path: &str) -> reqwest::Response {
        self.api(reqwest::Method::POST, path).send().await.expect("send API request")
    }

    /// A JSON body posted to the enrollment route of `slug`, answer untouched.
    pub async fn enroll_raw(&self, slug: &str, body: &Value) -> reqwest::Response {
        self.api(reqwest::Method::POST, &format!("/programs/{slug}/participants"))
            .json(body)
            .send()
            .await
            .expect("send enrollment")
    }

    /// Enrolls and expects success (201 or 200).
    pub async fn enroll(&self, slug: &str, email: &str, kind: &str) -> Enrolled {
        self.enroll_with(slug, &json!({"email": email, "name": "Test Person", "kind": kind})).await
    }

    pub async fn enroll_with(&self, slug: &str, body: &Value) -> Enrolled {
        let res = self.enroll_raw(slug, body).await;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{}: enrolling {body} in {slug} answered {status}: {text}",
            self.engine
        );
        let v: Value = serde_json::from_str(&text).expect("enrollment answer is JSON");
        let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{}: `{k}` missing in {v}", self.engine)).to_string();
        let enrolled = Enrolled {
            status,
            participant_id: s("participant_id"),
            enrollment_id: s("enrollment_id"),
            code: s("code"),
            link: s("link"),
        };
        self.remember_code(&enrolled.code);
        enrolled
    }

    /// Makes `counts` watch a code created outside the helpers.
    pub fn remember_code(&self, code: &str) {
        let mut codes = self.codes.lock().expect("codes lock");
        if !codes.iter().any(|c| c.eq_ignore_ascii_case(code)) {
            codes.push(code.to_string());
        }
    }

    /// `GET /r/{code}` (the code pasted into the path as given: percent-encode
    /// it yourself), with optional user agent, referring page and query.
    pub async fn get_link(&self, code: &str, ua: Option<&str>, referer: Option<&str>, query: &[(&str, &str)]) -> Visit {
        let mut req = self.client.get(self.url(&format!("/r/{code}")));
        if !query.is_empty() {
            req = req.query(query);
        }
        // reqwest sends no User-Agent of its own unless told to.
        if let Some(ua) = ua {
            req = req.header(reqwest::header::USER_AGENT, ua);
        }
        if let Some(referer) = referer {
            req = req.header(reqwest::header::REFERER, referer);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{}: GET /r/{code}: {e}", self.engine));
        visit_from(res).await
    }

    /// A plain browser visit.
    pub async fn visit(&self, code: &str) -> Visit {
        self.get_link(code, Some(BROWSER_UA), None, &[]).await
    }

    /// Sends `GET {path}` byte for byte over a fresh connection, for paths an
    /// HTTP client would normalise (`/r/..`). Returns status, headers (lower
    /// case) and body.
    pub async fn raw_get(&self, path: &str) -> (u16, String, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        self.raw_request(request.as_bytes()).await
    }

    /// Sends `request` as is over a fresh connection and reads the whole answer.
    pub async fn raw_request(&self, request: &[u8]) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.expect("connect");
        // The server may answer (413) before reading everything: ignore a reset.
        let _ = stream.write_all(request).await;
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    /// The clicks listing of a code, as JSON (expects 200).
    pub async fn clicks(&self, code: &str, query: &str) -> Value {
        let res = self.api_get(&format!("/codes/{code}/clicks{query}")).await;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::OK, "{}: clicks of {code}{query}: {text}", self.engine);
        serde_json::from_str(&text).expect("clicks answer is JSON")
    }

    /// Click ids stored for `code`.
    pub async fn stored_click_ids(&self, code: &str) -> Vec<ClickId> {
        let code = ReferralCode::parse(code).expect("a valid code");
        self.store.stored_click_ids(&code).await.expect("stored click ids")
    }

    /// Waits (up to 5 s) until `code` has at least `n` bot visits: bot visits
    /// are written without the visitor waiting for them.
    pub async fn wait_for_bot_visits(&self, code: &str, n: i64) -> i64 {
        let parsed = ReferralCode::parse(code).expect("a valid code");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let seen = self.store.click_stats(&parsed).await.expect("click stats").bot_visits;
            if seen >= n || tokio::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn counts(&self) -> Counts {
        let participants = self.store.count_participants().await.expect("count participants");
        let api_keys = self
            .store
            .api_keys()
            .await
            .expect("api keys")
            .into_iter()
            .map(|k| (k.id.to_string(), k.revoked_at.is_some()))
            .collect();
        let programs = self
            .store
            .programs()
            .await
            .expect("programs")
            .into_iter()
            .map(|p| (p.definition.slug().as_str().to_string(), p.version))
            .collect();
        let codes = self.codes.lock().expect("codes lock").clone();
        let mut clicks = BTreeMap::new();
        for code in codes {
            let parsed = ReferralCode::parse(&code).expect("a valid code");
            let stats = self.store.click_stats(&parsed).await.expect("click stats");
            let rows = self.store.stored_click_ids(&parsed).await.expect("stored click ids").len();
            clicks.insert(code, (stats.clicks, stats.bot_visits, rows));
        }
        Counts { participants, api_keys, programs, clicks }
    }

    /// `/metrics`, as text.
    pub async fn metrics(&self) -> String {
        let res = self.client.get(self.url("/metrics")).send().await.expect("GET /metrics");
        assert_eq!(res.status(), StatusCode::OK, "{}: /metrics", self.engine);
        res.text().await.expect("metrics text")
    }

    /// Applies a new version of an example program with another landing URL.
    pub async fn set_landing_url(&self, slug: &str, landing_url: &str) {
        let source = EXAMPLE_PROGRAMS.iter().find(|(s, _)| *s == slug).expect("an example slug").1;
        let current = self.store.program(slug).await.expect("program").definition.landing_url().to_string();
        let original = example_landing_url(source);
        let edited =
            source.replacen(&format!("landing_url = \"{original}\""), &format!("landing_url = \"{landing_url}\""), 1);
        assert_ne!(edited, source, "the example {slug} has a landing_url line");
        assert_ne!(current, landing_url, "{slug} already leads to {landing_url}");
        apply_to(&self.store, &edited, jiff::Timestamp::now()).await.expect("apply edited program");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // A test that panicked never reached `stop`: at least end the server.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A desktop browser's user agent.
pub const BROWSER_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

async fn apply_to(store: &Store, source: &str, now: jiff::Timestamp) -> Result<()> {
    let definition = parse_program(source).map_err(|e| anyhow!("{e}"))?;
    let ids = (ProgramId(uuid::Uuid::now_v7()), ProgramVersionId(uuid::Uuid::now_v7()));
    store.apply_program(&definition, source, ids, now).await?;
    Ok(())
}

/// The `landing_url = "..."` value of an example program's source.
pub fn example_landing_url(source: &str) -> String {
    source
        .lines()
        .find_map(|l| l.trim().strip_prefix("landing_url = \""))
        .and_then(|rest| rest.split('"').next())
        .expect("a landing_url line")
        .to_string()
}

/// The landing URL an example program ships with.
pub fn shipped_landing_url(slug: &str) -> String {
    example_landing_url(EXAMPLE_PROGRAMS.iter().find(|(s, _)| *s == slug).expect("an example slug").1)
}

async fn visit_from(res: reqwest::Response) -> Visit {
    let status = res.status();
    let location = res
        .headers()
        .get(LOCATION)
        .map(|v| url::Url::parse(v.to_str().expect("ASCII Location")).expect("absolute Location"));
    let content_type = res.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = res.text().await.unwrap_or_default();
    Visit { status, location, content_type, body }
}

/// Checks a problem document: status, media type, and the RFC 9457 members;
/// returns it for further checks.
pub async fn expect_problem(engine: &str, res: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let got = res.status();
    let content_type = res.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = res.text().await.unwrap_or_default();
    assert_eq!(got, status, "{engine}: expected {status} `{code}`, got {got}: {text}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "{engine}: a problem document's media type ({text})"
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{engine}: problem is JSON ({e}): {text}"));
    assert_eq!(v["code"], code, "{engine}: problem code in {v}");
    assert_eq!(v["status"], status.as_u16(), "{engine}: problem status in {v}");
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "{engine}: problem title in {v}");
    assert!(v["type"].as_str().is_some_and(|t| !t.is_empty()), "{engine}: problem type in {v}");
    v
}

/// The JSON pointers named in a problem's `errors`.
pub fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["pointer"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Sums every sample of `name` (with any labels) in a Prometheus text page.
pub fn metric_sum(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Polls `check` every 50 ms for up to `within`; true once it holds.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A unique email for one test.
pub fn email(tag: &str) -> String {
    format!("{tag}-{}@example.org", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

/// Checks a click id handed out names a stored click of `code`.
pub async fn ensure_stored(app: &TestApp, code: &str, vclid: &str) -> Result<()> {
    let click = vouch_domain::click::ClickRef::parse(vclid).ok_or_else(|| anyhow!("vclid `{vclid}` does not parse"))?;
    ensure!(click.code.as_str().eq_ignore_ascii_case(code), "vclid {vclid} names another code than {code}");
    let stored = app.stored_click_ids(code).await;
    ensure!(stored.contains(&click.id), "{}: vclid {vclid} names no stored click", app.engine);
    Ok(())
}

/// A short unique suffix, for keys and addresses.
pub fn uniq() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_string()
}

/// A unique address at a company domain of its own: every example program is a
/// business program, so two people of a test must not share a company by accident.
pub fn company_email(tag: &str) -> String {
    let u = uniq();
    format!("{tag}.{u}@{tag}-{u}.example")
}

/// The answer's JSON, once its status is `status` (the body is in the message when not).
pub async fn json_of(app: &TestApp, res: reqwest::Response, status: StatusCode) -> Value {
    let got = res.status();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(got, status, "{}: {text}", app.engine);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", app.engine))
}

/// The CSV answer at `path` (200, `text/csv`), one map per row by column name.
pub async fn csv_of(app: &TestApp, path: &str) -> Vec<BTreeMap<String, String>> {
    let res = app.api_get(path).await;
    assert_eq!(res.status(), StatusCode::OK, "{}: {path}", app.engine);
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ct.starts_with("text/csv"), "{}: {path} is CSV: {ct}", app.engine);
    let text = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| headers.iter().map(str::to_string).zip(r.unwrap().iter().map(str::to_string)).collect())
        .collect()
}

/// Applies a program file (a new program, or a new version of one) now.
pub async fn apply(app: &TestApp, source: &str) {
    apply_to(&app.store, source, jiff::Timestamp::now()).await.expect("apply the test program");
}

/// A lead for a fresh prospect at a company of their own, handed over with
/// `code`; asserts the referral counts (`active`) and answers its id.
pub async fn lead(app: &TestApp, slug: &str, code: &str) -> String {
    let body = json!({"referrer_code": code, "prospect": {"email": company_email("bob")}, "consent": true});
    let res = app.api(reqwest::Method::POST, &format!("/programs/{slug}/leads")).json(&body).send().await.unwrap();
    let r = json_of(app, res, StatusCode::CREATED).await;
    assert_eq!(r["status"], "active", "{}: {r}", app.engine);
    r["id"].as_str().unwrap().to_string()
}
