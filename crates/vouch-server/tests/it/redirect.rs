//! `GET /r/{code}`: the redirect, what a click records, bots, bad codes, staff
//! actions and program edits reaching the redirect, and health and metrics.

use std::time::Duration;

use reqwest::StatusCode;
use vouch_domain::ReferralCode;
use vouch_store::testing::TestDatabase;

use crate::helpers::{BROWSER_UA, TestApp, Visit, email, ensure_stored, eventually, metric_sum, shipped_landing_url};

const NOT_FOUND_TEXT: &str = "This referral link doesn't work";

const BOT_UAS: [(&str, &str); 7] = [
    ("Slackbot", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"),
    ("facebookexternalhit", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"),
    ("Twitterbot", "Twitterbot/1.0"),
    ("LinkedInBot", "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)"),
    ("WhatsApp", "WhatsApp/2.23.20.0 A"),
    ("Googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    ("Discordbot", "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)"),
];

/// A 302 to `landing` carrying `ref=code` and a click id.
fn assert_attributed(engine: &str, v: &Visit, landing: &str, code: &str) -> String {
    assert_eq!(v.status, StatusCode::FOUND, "{engine}: {v:?}");
    assert_eq!(v.landing().as_deref(), Some(landing), "{engine}: lands on the program's page: {v:?}");
    assert_eq!(v.param("ref").as_deref(), Some(code), "{engine}: ref is the canonical code: {v:?}");
    v.vclid().unwrap_or_else(|| panic!("{engine}: a click id: {v:?}"))
}

/// A 302 to exactly the landing page: no ref, no click id.
fn assert_unattributed(engine: &str, v: &Visit, landing: &str) {
    assert_eq!(v.status, StatusCode::FOUND, "{engine}: {v:?}");
    assert_eq!(v.location.as_ref().map(url::Url::as_str), Some(landing), "{engine}: plain landing page: {v:?}");
    assert_eq!(v.param("ref"), None, "{engine}: {v:?}");
    assert_eq!(v.vclid(), None, "{engine}: {v:?}");
}

fn assert_not_found_page(engine: &str, what: &str, status: u16, content_type: Option<&str>, body: &str) {
    assert_eq!(status, 404, "{engine}: {what} answers 404: {body}");
    assert!(
        content_type.is_some_and(|ct| ct.starts_with("text/html")),
        "{engine}: {what} is an HTML page ({content_type:?})"
    );
    assert!(body.contains(NOT_FOUND_TEXT), "{engine}: {what} shows the friendly page: {body}");
}

#[tokio::test]
async fn link_redirects_302_to_the_landing_url_with_ref_and_a_stored_click_id() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("redirect"), "partner").await;
        let res = app.client.get(app.url(&format!("/r/{}", e.code))).send().await.unwrap();
        assert_eq!(
            res.headers().get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{}: a tracking redirect is never cached",
            app.engine
        );
        let v = app.visit(&e.code).await;
        let vclid = assert_attributed(app.engine, &v, &shipped_landing_url("agent-gift-card"), &e.code);
        assert!(vclid.starts_with(&format!("{}.", e.code)), "{}: vclid names its code: {vclid}", app.engine);
        ensure_stored(&app, &e.code, &vclid).await.unwrap();
        // The clicks API lists the same id.
        let clicks = app.clicks(&e.code, "").await;
        let ids: Vec<&str> =
            clicks["items"].as_array().unwrap().iter().filter_map(|c| c["click_id"].as_str()).collect();
        assert!(ids.contains(&vclid.as_str()), "{}: {vclid} listed in {clicks}", app.engine);
        assert_eq!(clicks["count"], 2, "{}: both visits counted", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn lowercase_code_redirects_like_the_canonical_one() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("per-technician", &email("lower"), "employee").await;
        let v = app.visit(&e.code.to_lowercase()).await;
        let vclid = assert_attributed(app.engine, &v, &shipped_landing_url("per-technician"), &e.code);
        ensure_stored(&app, &e.code, &vclid).await.unwrap();
        // Vanity codes too, in any case.
        let vanity = app
            .enroll_with(
                "per-technician",
                &serde_json::json!({"email": email("vanity"), "name": "V", "kind": "employee", "vanity_code": "Bob-Fixes"}),
            )
            .await;
        for spelling in ["bob-fixes", "BOB-FIXES", "Bob-Fixes"] {
            let v = app.visit(spelling).await;
            let vclid = assert_attributed(app.engine, &v, &shipped_landing_url("per-technician"), "BOB-FIXES");
            ensure_stored(&app, &vanity.code, &vclid).await.unwrap();
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn landing_url_query_is_kept_and_the_request_cannot_change_the_target() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        app.set_landing_url("double-sided", "https://example.com/friends?lang=en&ref_source=vouch").await;
        let e = app.enroll("double-sided", &email("query"), "customer").await;
        let v = app
            .get_link(
                &e.code,
                Some(BROWSER_UA),
                None,
                &[("url", "https://evil.example/"), ("next", "//evil.example"), ("ref", "OTHER"), ("vclid", "X.1")],
            )
            .await;
        assert_eq!(v.status, StatusCode::FOUND, "{}: {v:?}", app.engine);
        let to = v.location.clone().unwrap();
        assert_eq!(to.host_str(), Some("example.com"), "{}: no open redirect: {to}", app.engine);
        assert_eq!(to.path(), "/friends", "{}", app.engine);
        let pairs: Vec<(String, String)> =
            to.query_pairs().map(|(k, val)| (k.into_owned(), val.into_owned())).collect();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["lang", "ref_source", "ref", "vclid"],
            "{}: landing query kept, request's dropped: {to}",
            app.engine
        );
        assert_eq!(pairs[0].1, "en", "{}", app.engine);
        assert_eq!(pairs[2].1, e.code, "{}", app.engine);
        ensure_stored(&app, &e.code, &pairs[3].1).await.unwrap();
        app.stop().await;
    }
}

/// Referring page, query, and the channel they should give.
type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn clicks_record_utm_referer_user_agent_and_channel() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("utm"), "influencer").await;
        let utm = [
            ("utm_source", "newsletter-march"),
            ("utm_medium", "email"),
            ("utm_campaign", "spring"),
            ("utm_term", "hvac"),
            ("utm_content", "footer"),
        ];
        let cases: [Case; 5] = [
            (None, &utm, "email"),
            (Some("https://www.linkedin.com/feed/"), &[], "social"),
            (None, &[], "direct"),
            (Some("https://mail.google.com/mail/u/0/"), &[], "email"),
            (Some("https://blog.example.net/post"), &[], "other"),
        ];
        let mut ids = Vec::new();
        for (referer, query, _) in cases {
            let v = app.get_link(&e.code, Some(BROWSER_UA), referer, query).await;
            ids.push(v.vclid().unwrap_or_else(|| panic!("{}: vclid", app.engine)));
        }
        let listed = app.clicks(&e.code, "").await;
        let items = listed["items"].as_array().unwrap();
        let by_id =
            |id: &str| items.iter().find(|c| c["click_id"] == id).cloned().unwrap_or_else(|| panic!("{id} listed"));
        for ((referer, _, channel), id) in cases.iter().zip(&ids) {
            let c = by_id(id);
            assert_eq!(c["channel"], *channel, "{}: channel for referer {referer:?}: {c}", app.engine);
            assert_eq!(c["referer"].as_str(), *referer, "{}: referer recorded: {c}", app.engine);
            assert_eq!(c["user_agent"], BROWSER_UA, "{}: user agent recorded", app.engine);
            assert_eq!(c["is_bot"], false, "{}", app.engine);
            assert!(
                c["occurred_at"].as_str().is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
                "{}: {c}",
                app.engine
            );
        }
        let first = by_id(&ids[0]);
        assert_eq!(first["utm"]["source"], "newsletter-march", "{}: {first}", app.engine);
        assert_eq!(first["utm"]["medium"], "email", "{}", app.engine);
        assert_eq!(first["utm"]["campaign"], "spring", "{}", app.engine);
        assert_eq!(first["utm"]["term"], "hvac", "{}", app.engine);
        assert_eq!(first["utm"]["content"], "footer", "{}", app.engine);
        let direct = by_id(&ids[2]);
        assert!(direct["utm"]["source"].is_null() && direct["referer"].is_null(), "{}: {direct}", app.engine);

        // A visit without a user agent is a click, not a bot visit.
        let v = app.get_link(&e.code, None, None, &[]).await;
        let vclid = v.vclid().unwrap_or_else(|| panic!("{}: no UA still gets a vclid", app.engine));
        let listed = app.clicks(&e.code, "?limit=1").await;
        assert_eq!(listed["items"][0]["click_id"], vclid, "{}", app.engine);
        assert!(listed["items"][0]["user_agent"].is_null(), "{}", app.engine);
        assert_eq!(listed["count"], 6, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn ip_is_stored_only_as_a_stable_keyed_hash() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let a = app.enroll("agent-gift-card", &email("ip-a"), "partner").await;
        let b = app.enroll("per-technician", &email("ip-b"), "partner").await;
        app.visit(&a.code).await;
        app.visit(&a.code).await;
        app.visit(&b.code).await;
        let mut hashes = Vec::new();
        for code in [&a.code, &b.code] {
            let listed = app.clicks(code, "").await;
            for c in listed["items"].as_array().unwrap() {
                hashes.push(
                    c["ip_hash"].as_str().unwrap_or_else(|| panic!("{}: ip_hash in {c}", app.engine)).to_string(),
                );
            }
        }
        assert_eq!(hashes.len(), 3, "{}", app.engine);
        for h in &hashes {
            assert!(!h.contains("127.0.0.1") && !h.contains("127-0-0-1"), "{}: raw IP in {h}", app.engine);
            assert!(h.len() >= 16 && h.bytes().all(|b| b.is_ascii_hexdigit()), "{}: a hash: {h}", app.engine);
        }
        assert!(hashes.iter().all(|h| *h == hashes[0]), "{}: same IP, same hash, across codes: {hashes:?}", app.engine);
        // Also what the store holds, not only what the API shows.
        let stored = app.store.clicks(&ReferralCode::parse(&a.code).unwrap(), None, 10, true).await.unwrap();
        for c in stored {
            let h = c.ip_hash.unwrap_or_default();
            assert_eq!(h, hashes[0], "{}", app.engine);
            assert!(!format!("{:?}", c.referer).contains("127.0.0.1"), "{}", app.engine);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn bots_are_redirected_without_a_click_id_and_stored_as_bot_visits() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("bots"), "partner").await;
        let landing = shipped_landing_url("agent-gift-card");
        for (name, ua) in BOT_UAS {
            let v = app.get_link(&e.code, Some(ua), None, &[]).await;
            assert_eq!(v.status, StatusCode::FOUND, "{}: {name} is redirected", app.engine);
            assert_eq!(v.landing().as_deref(), Some(landing.as_str()), "{}: {name} lands: {v:?}", app.engine);
            assert_eq!(v.vclid(), None, "{}: {name} gets no click id: {v:?}", app.engine);
        }
        // Case does not fool the list.
        let v = app.get_link(&e.code, Some("SLACKBOT 1.0"), None, &[]).await;
        assert_eq!(v.vclid(), None, "{}", app.engine);
        let bots = BOT_UAS.len() as i64 + 1;
        assert_eq!(app.wait_for_bot_visits(&e.code, bots).await, bots, "{}: every bot visit stored", app.engine);
        // One person among them.
        let v = app.visit(&e.code).await;
        assert!(v.vclid().is_some(), "{}", app.engine);

        let listed = app.clicks(&e.code, "").await;
        assert_eq!(listed["count"], 1, "{}: bots are not counted as clicks: {listed}", app.engine);
        assert_eq!(listed["bot_visits"], bots, "{}: {listed}", app.engine);
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{}", app.engine);
        let with_bots = app.clicks(&e.code, "?include_bots=true").await;
        let items = with_bots["items"].as_array().unwrap();
        assert_eq!(items.len() as i64, bots + 1, "{}", app.engine);
        for (name, ua) in BOT_UAS {
            let c =
                items.iter().find(|c| c["user_agent"] == ua).unwrap_or_else(|| panic!("{}: {name} stored", app.engine));
            assert_eq!(c["is_bot"], true, "{}: {name}: {c}", app.engine);
        }
        assert_eq!(app.stored_click_ids(&e.code).await.len() as i64, bots + 1, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn unknown_code_gets_a_friendly_404_page() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("known"), "partner").await;
        app.visit(&e.code).await;
        let before = app.counts().await;
        for code in ["ZZZZ2222", "NOPE", "2", "a-b_c"] {
            let v = app.visit(code).await;
            assert_not_found_page(app.engine, code, v.status.as_u16(), v.content_type.as_deref(), &v.body);
            assert!(v.location.is_none(), "{}: no redirect for {code}", app.engine);
        }
        // A code that became known afterwards is found (the miss is not cached forever).
        let later = app
            .enroll_with(
                "agent-gift-card",
                &serde_json::json!({"email": email("later"), "name": "L", "kind": "partner", "vanity_code": "NOPE"}),
            )
            .await;
        assert_eq!(app.counts().await.participants, before.participants + 1, "{}", app.engine);
        let found =
            eventually(Duration::from_secs(5), || async { app.visit("nope").await.status == StatusCode::FOUND }).await;
        assert!(found, "{}: a new vanity code is reachable within seconds", app.engine);
        assert_eq!(later.code, "NOPE", "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn hostile_codes_get_the_404_page_and_record_nothing() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("hostile"), "partner").await;
        let v = app.visit(&e.code).await;
        assert!(v.vclid().is_some(), "{}", app.engine);
        let before = app.counts().await;
        let code = e.code.clone();
        let hostile = [
            "A".repeat(33),
            format!("{code}{}", "2".repeat(33 - code.len())),
            "B".repeat(4096),
            "caf%C3%A9".to_string(),
            format!("{code}%C3%A9"),
            "%E2%82%AC%E2%82%AC".to_string(),
            "%F0%9F%98%80".to_string(),
            "%FF%FE".to_string(),
            "a%2Fb".to_string(),
            format!("{code}%2F"),
            format!("{code}%2F..%2F..%2Fetc"),
            "a..b".to_string(),
            format!("{code}.."),
            "%00".to_string(),
            format!("{code}%00"),
            format!("%00{code}"),
            format!("{code}%20"),
            format!("{code}%0D%0ALocation:%20https://evil.example"),
            "%3Cscript%3E".to_string(),
            "-".to_string(),
            format!("-{code}"),
        ];
        for raw in &hostile {
            let v = app.visit(raw).await;
            assert_not_found_page(app.engine, raw, v.status.as_u16(), v.content_type.as_deref(), &v.body);
            assert!(v.location.is_none(), "{}: {raw} redirects nowhere", app.engine);
        }
        // Paths an HTTP client would tidy up are sent byte for byte.
        for path in ["/r/..", "/r/%2E%2E", "/r/.", "/r/%2e%2e%2f", &format!("/r/{code}%00")] {
            let (status, head, body) = app.raw_get(path).await;
            let content_type = head.lines().find_map(|l| l.strip_prefix("content-type:")).map(str::trim);
            assert_not_found_page(app.engine, path, status, content_type, &body);
        }
        assert_eq!(app.counts().await, before, "{}: nothing recorded for hostile codes", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn malformed_link_paths_get_the_404_page() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("paths"), "partner").await;
        let before = app.counts().await;
        let code = &e.code;
        for path in [
            "/r/a/b".to_string(),
            format!("/r/{code}/x"),
            format!("/r/{code}/"),
            format!("/r/{code}/%2E%2E/x"),
            "/r/".to_string(),
        ] {
            let (status, head, body) = app.raw_get(&path).await;
            let content_type = head.lines().find_map(|l| l.strip_prefix("content-type:")).map(str::trim);
            assert_not_found_page(app.engine, &path, status, content_type, &body);
        }
        assert_eq!(app.counts().await, before, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn revoked_code_leads_to_the_landing_page_without_attribution_or_click() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let landing = shipped_landing_url("qualified-lead");
        let e = app.enroll("qualified-lead", &email("revoked"), "customer").await;
        let kept = app.enroll("qualified-lead", &email("kept"), "customer").await;
        // Warm the cache with an attributing visit first.
        assert_attributed(app.engine, &app.visit(&e.code).await, &landing, &e.code);
        let res = app.api_post(&format!("/codes/{}/revoke", e.code)).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", app.engine);
        let before = app.counts().await;
        for spelling in [e.code.clone(), e.code.to_lowercase()] {
            let v = app.visit(&spelling).await;
            assert_unattributed(app.engine, &v, &landing);
        }
        let bot = app.get_link(&e.code, Some(BOT_UAS[0].1), None, &[]).await;
        assert_unattributed(app.engine, &bot, &landing);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(app.counts().await, before, "{}: no click recorded for a revoked code", app.engine);
        assert_eq!(app.clicks(&e.code, "").await["count"], 1, "{}", app.engine);
        // Other codes are untouched.
        assert_attributed(app.engine, &app.visit(&kept.code).await, &landing, &kept.code);
        app.stop().await;
    }
}

#[tokio::test]
async fn revocation_by_another_server_reaches_the_cache_within_seconds() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let landing = shipped_landing_url("agent-gift-card");
        let e = app.enroll("agent-gift-card", &email("elsewhere"), "partner").await;
        assert_attributed(app.engine, &app.visit(&e.code).await, &landing, &e.code);
        // As if another replica did it: straight in the database, no cache clear here.
        app.store.revoke_code(&ReferralCode::parse(&e.code).unwrap(), jiff::Timestamp::now()).await.unwrap();
        let seen =
            eventually(Duration::from_secs(5), || async { app.visit(&e.code).await.param("ref").is_none() }).await;
        assert!(seen, "{}: the revocation reaches the redirect within 5 s", app.engine);
        assert_unattributed(app.engine, &app.visit(&e.code).await, &landing);
        app.stop().await;
    }
}

#[tokio::test]
async fn suspended_participant_links_lead_to_the_landing_page_without_attribution_or_click() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let address = email("suspended");
        let a = app.enroll("customer-credit", &address, "customer").await;
        let b = app.enroll("double-sided", &address, "customer").await;
        let other = app.enroll("double-sided", &email("other"), "customer").await;
        assert!(app.visit(&a.code).await.vclid().is_some(), "{}", app.engine);
        assert!(app.visit(&b.code).await.vclid().is_some(), "{}", app.engine);
        let res = app.api_post(&format!("/participants/{}/suspend", a.participant_id)).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", app.engine);
        let before = app.counts().await;
        assert_unattributed(app.engine, &app.visit(&a.code).await, &shipped_landing_url("customer-credit"));
        assert_unattributed(app.engine, &app.visit(&b.code).await, &shipped_landing_url("double-sided"));
        assert_unattributed(
            app.engine,
            &app.get_link(&b.code, Some(BOT_UAS[2].1), None, &[]).await,
            &shipped_landing_url("double-sided"),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(app.counts().await, before, "{}: no click recorded for a suspended participant", app.engine);
        assert!(app.visit(&other.code).await.vclid().is_some(), "{}: others unaffected", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn redirect_follows_a_reapplied_landing_url_within_seconds() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("moved"), "partner").await;
        // Cached with the old target.
        assert_attributed(app.engine, &app.visit(&e.code).await, &shipped_landing_url("agent-gift-card"), &e.code);
        app.set_landing_url("agent-gift-card", "https://example.com/partners/new").await;
        let moved = eventually(Duration::from_secs(5), || async {
            app.visit(&e.code).await.landing().as_deref() == Some("https://example.com/partners/new")
        })
        .await;
        assert!(moved, "{}: the new landing URL reaches the redirect within 5 s", app.engine);
        let v = app.visit(&e.code).await;
        let vclid = assert_attributed(app.engine, &v, "https://example.com/partners/new", &e.code);
        ensure_stored(&app, &e.code, &vclid).await.unwrap();
        app.stop().await;
    }
}

#[tokio::test]
async fn health_and_readiness_answer_200() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        for path in ["/healthz", "/readyz"] {
            let res = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{}: {path}", app.engine);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn metrics_report_requests_clicks_and_batches() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("metrics"), "partner").await;
        for _ in 0..3 {
            assert!(app.visit(&e.code).await.vclid().is_some(), "{}", app.engine);
        }
        app.get_link(&e.code, Some(BOT_UAS[1].1), None, &[]).await;
        app.wait_for_bot_visits(&e.code, 1).await;
        let res = app.client.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}", app.engine);
        let content_type =
            res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(content_type.starts_with("text/plain"), "{}: {content_type}", app.engine);
        let page = res.text().await.unwrap();
        for name in [
            "vouch_clicks_recorded_total",
            "vouch_bot_visits_total",
            "http_requests_total",
            "http_request_duration_seconds",
            "vouch_click_batch_size",
            "vouch_click_writer_queue_depth",
        ] {
            assert!(page.contains(name), "{}: /metrics has {name}:\n{page}", app.engine);
        }
        assert!(metric_sum(&page, "vouch_clicks_recorded_total").unwrap_or(0.0) >= 3.0, "{}:\n{page}", app.engine);
        assert!(page.contains("route=\"/r/{code}\""), "{}: requests labelled by route template:\n{page}", app.engine);
        assert!(!page.contains(&e.code), "{}: no series per code:\n{page}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn burst_of_concurrent_redirects_is_batched_and_every_click_id_is_stored() {
    const CODES: usize = 4;
    const PER_CODE: usize = 50;
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let mut codes = Vec::new();
        for i in 0..CODES {
            codes.push(app.enroll("agent-gift-card", &email(&format!("burst{i}")), "partner").await.code);
        }
        let page = app.metrics().await;
        let (count_before, sum_before) = (
            metric_sum(&page, "vouch_click_batch_size_count").unwrap_or(0.0),
            metric_sum(&page, "vouch_click_batch_size_sum").unwrap_or(0.0),
        );

        let visits = codes.iter().flat_map(|c| std::iter::repeat_n(c.clone(), PER_CODE)).map(|code| {
            let app = &app;
            async move { (code.clone(), app.visit(&code).await) }
        });
        let answers = futures::future::join_all(visits).await;
        let mut handed_out = 0;
        for (code, v) in &answers {
            let vclid = assert_attributed(app.engine, v, &shipped_landing_url("agent-gift-card"), code);
            let parsed = vouch_domain::click::ClickRef::parse(&vclid).unwrap();
            assert!(app.stored_click_ids(code).await.contains(&parsed.id), "{}: {vclid} stored", app.engine);
            handed_out += 1;
        }
        assert_eq!(handed_out, CODES * PER_CODE, "{}", app.engine);
        let ids: std::collections::HashSet<String> = answers.iter().filter_map(|(_, v)| v.vclid()).collect();
        assert_eq!(ids.len(), CODES * PER_CODE, "{}: every click id is distinct", app.engine);
        for code in &codes {
            let listed = app.clicks(code, "").await;
            assert_eq!(listed["count"], PER_CODE as i64, "{}: counter of {code}", app.engine);
            assert_eq!(app.stored_click_ids(code).await.len(), PER_CODE, "{}: rows of {code}", app.engine);
        }

        // Group commit: fewer batches than clicks. Other tests write clicks into
        // the same process-wide metrics meanwhile, but each of their batches adds
        // at least one click too, so the comparison still holds.
        let page = app.metrics().await;
        let batches = metric_sum(&page, "vouch_click_batch_size_count").unwrap_or(0.0) - count_before;
        let clicks = metric_sum(&page, "vouch_click_batch_size_sum").unwrap_or(0.0) - sum_before;
        assert!(clicks >= (CODES * PER_CODE) as f64, "{}: batch sizes cover the burst ({clicks})", app.engine);
        assert!(batches < clicks, "{}: {batches} batches for {clicks} clicks: no batching", app.engine);
        eprintln!("{}: {clicks} clicks in {batches} batches", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn graceful_shutdown_stores_every_queued_bot_visit() {
    for db in TestDatabase::all().await {
        let mut app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("drain"), "partner").await;
        // Bot visits are answered before they are written: shutting down at once
        // must still write them all.
        let visits = (0..20).map(|_| app.get_link(&e.code, Some(BOT_UAS[5].1), None, &[]));
        for v in futures::future::join_all(visits).await {
            assert_eq!(v.status, StatusCode::FOUND, "{}", app.engine);
        }
        app.shutdown().await;
        let stats = app.store.click_stats(&ReferralCode::parse(&e.code).unwrap()).await.unwrap();
        assert_eq!(stats.bot_visits, 20, "{}: drained on shutdown", app.engine);
        assert_eq!(app.stored_click_ids(&e.code).await.len(), 20, "{}", app.engine);
        app.stop().await;
    }
}

/// Holds the database's write lock from outside the server, so its click writer
/// cannot commit: the state of a saturated or unreachable database, as the
/// redirect sees it.
enum WriteBlocker {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteBlocker {
    async fn hold(database: &vouch_store::DatabaseConfig) -> WriteBlocker {
        use sqlx::{Connection, Executor};
        match database {
            vouch_store::DatabaseConfig::Sqlite { dir } => {
                let url = format!("sqlite://{}", dir.join("vouch.db").display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("connect to SQLite");
                conn.execute("BEGIN EXCLUSIVE").await.expect("take SQLite's write lock");
                WriteBlocker::Sqlite(conn)
            }
            vouch_store::DatabaseConfig::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to Postgres");
                conn.execute("BEGIN").await.expect("begin");
                conn.execute("LOCK TABLE clicks IN EXCLUSIVE MODE").await.expect("lock the click table");
                WriteBlocker::Postgres(conn)
            }
        }
    }

    async fn release(self) {
        use sqlx::Executor;
        match self {
            WriteBlocker::Sqlite(mut c) => c.execute("ROLLBACK").await.map(|_| ()),
            WriteBlocker::Postgres(mut c) => c.execute("ROLLBACK").await.map(|_| ()),
        }
        .expect("release the lock");
    }
}

#[tokio::test]
async fn a_blocked_database_still_redirects_with_the_code_but_no_click_id_and_counts_it() {
    for db in TestDatabase::all().await {
        // A short deadline and a tiny queue: the writer stalls on its first
        // batch, one more click fills the queue, the rest are turned away at once.
        let app = TestApp::spawn_with(db, |config| {
            config.click_deadline = Duration::from_millis(300);
            config.click_queue = 1;
        })
        .await;
        let code = app.enroll("customer-credit", &email("blocked"), "customer").await.code;
        assert!(app.visit(&code).await.vclid().is_some(), "{}: a click id while the database is free", app.engine);
        let unrecorded = |page: &str| metric_sum(page, "vouch_clicks_unrecorded_total").unwrap_or(0.0);
        let before = unrecorded(&app.metrics().await);

        let blocker = WriteBlocker::hold(app.database()).await;
        let visits = futures::future::join_all((0..5).map(|_| app.visit(&code))).await;
        for visit in &visits {
            assert_eq!(visit.status, StatusCode::FOUND, "{}: the visitor is still redirected", app.engine);
            assert_eq!(visit.param("ref").as_deref(), Some(code.as_str()), "{}: with the code", app.engine);
            assert_eq!(visit.vclid(), None, "{}: but without a click id", app.engine);
        }
        let after = unrecorded(&app.metrics().await);
        assert!(
            after - before >= 5.0,
            "{}: five unrecorded clicks counted, metric went {before} → {after}",
            app.engine
        );

        blocker.release().await;
        // The stalled batch commits first, then clicks get ids again.
        let mut vclid = None;
        for _ in 0..100 {
            vclid = app.visit(&code).await.vclid();
            if vclid.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let vclid = vclid.unwrap_or_else(|| panic!("{}: click ids again once the database is free", app.engine));
        ensure_stored(&app, &code, &vclid).await.expect("the new click id names a stored click");
        app.stop().await;
    }
}
