//! The OpenAPI document: served without a key, covering every API route, and
//! snapshot-tested so that a change to the contract shows up in review.

use vouch_store::testing::TestDatabase;

use crate::helpers::TestApp;

/// Every `/api/v1` route the server answers, as (method, OpenAPI path).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/programs"),
    ("get", "/api/v1/programs/{slug}"),
    ("post", "/api/v1/programs/{slug}/participants"),
    ("get", "/api/v1/participants/{id}"),
    ("patch", "/api/v1/participants/{id}"),
    ("post", "/api/v1/participants/{id}/suspend"),
    ("get", "/api/v1/codes/{code}/clicks"),
    ("post", "/api/v1/codes/{code}/revoke"),
    ("post", "/api/v1/customers"),
    ("post", "/api/v1/events"),
    ("post", "/api/v1/programs/{slug}/leads"),
    ("post", "/api/v1/programs/{slug}/invites"),
    ("get", "/api/v1/referrals"),
    ("post", "/api/v1/referrals"),
    ("get", "/api/v1/referrals/{id}"),
    ("patch", "/api/v1/referrals/{id}"),
    ("post", "/api/v1/referrals/{id}/stage"),
    ("post", "/api/v1/referrals/{id}/override"),
    ("post", "/api/v1/referrals/{id}/review"),
    ("get", "/api/v1/rewards"),
    ("get", "/api/v1/rewards/{id}"),
    ("post", "/api/v1/rewards/{id}/approve"),
    ("post", "/api/v1/rewards/{id}/void"),
    ("put", "/api/v1/participants/{id}/payout-details"),
    ("post", "/api/v1/payouts"),
    ("get", "/api/v1/payouts/{id}"),
    ("get", "/api/v1/payouts/{id}/export"),
    ("post", "/api/v1/payouts/{id}/paid"),
    ("post", "/api/v1/payouts/{id}/items/{item_id}/failed"),
    ("get", "/api/v1/fulfilment/gift-cards"),
    ("post", "/api/v1/rewards/{id}/fulfil"),
    ("post", "/api/v1/rewards/{id}/applied"),
    ("get", "/api/v1/reports/payees"),
    ("get", "/api/v1/reports/liability"),
    ("post", "/api/v1/programs/{slug}/simulate"),
];

#[tokio::test]
async fn the_openapi_document_describes_every_api_route() {
    let app = TestApp::spawn(TestDatabase::sqlite().await).await;
    let res = app.client.get(app.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200, "served without an API key");
    let doc: serde_json::Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "OpenAPI 3.1: {}", doc["openapi"]);
    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} lists responses");
    }
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, ROUTES.len(), "no undocumented extras and none missing");
    app.stop().await;
}

#[test]
fn the_openapi_document_matches_its_snapshot() {
    insta::assert_json_snapshot!(vouch_server::openapi::document());
}
