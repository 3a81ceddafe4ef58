//! The customer registry in the store, on every engine available here (SQLite
//! always; Postgres when `VOUCH_TEST_DATABASE_URL` names a server).

use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::customer::{CustomerEntry, CustomerId, CustomerSource, KnownBy};
use vouch_store::testing::TestDatabase;
use vouch_store::{AddedCustomers, NewCustomer, Store};

/// Runs `test` once per engine, each time on a fresh, migrated database.
async fn for_each_engine(test: impl AsyncFn(Store, &'static str)) {
    for db in TestDatabase::all().await {
        let store = db.open().await;
        test(store.clone(), db.engine).await;
        store.close().await;
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("a valid instant")
}

fn customer(email: &str, domain: &str, external_id: &str) -> NewCustomer {
    let entry = CustomerEntry::parse(Some(email), Some(domain), Some(external_id)).expect("a valid entry");
    NewCustomer { id: CustomerId(Uuid::now_v7()), entry, source: CustomerSource::Import }
}

fn added(added: u64, already_known: u64) -> AddedCustomers {
    AddedCustomers { added, already_known }
}

async fn known(store: &Store, email: Option<&str>, domain: Option<&str>, external_id: Option<&str>) -> Option<KnownBy> {
    store.is_known_customer(email, domain, external_id).await.expect("is_known_customer")
}

#[tokio::test]
async fn loading_entries_stores_them_and_loading_them_again_adds_nothing() {
    for_each_engine(async |store, engine| {
        let entries = [
            customer("Jane@Acme.com", "acme.com", "cus_1"),
            customer("", "globex.example", ""),
            customer("", "", "cus_3"),
        ];
        assert_eq!(store.add_customers(&entries, now()).await.unwrap(), added(3, 0), "{engine}: first load");
        assert_eq!(store.count_customers().await.unwrap(), 3, "{engine}");
        // The same entries, with fresh ids and in other cases.
        let again = [
            customer("jane@ACME.com", "ACME.com", "cus_1"),
            customer("", "www.globex.example", ""),
            customer("", "", "cus_3"),
        ];
        assert_eq!(store.add_customers(&again, now()).await.unwrap(), added(0, 3), "{engine}: reload");
        assert_eq!(store.count_customers().await.unwrap(), 3, "{engine}: nothing duplicated");
    })
    .await;
}

#[tokio::test]
async fn a_prospect_is_known_by_email_external_id_or_domain_when_asked() {
    for_each_engine(async |store, engine| {
        store
            .add_customers(&[customer("jane@acme.com", "acme.com", "cus_1"), customer("", "", "cus_2")], now())
            .await
            .unwrap();
        assert_eq!(known(&store, Some("jane@acme.com"), None, None).await, Some(KnownBy::Email), "{engine}");
        assert_eq!(known(&store, None, None, Some("cus_2")).await, Some(KnownBy::ExternalId), "{engine}");
        assert_eq!(known(&store, None, Some("acme.com"), None).await, Some(KnownBy::Domain), "{engine}");
        // The most specific match is named.
        assert_eq!(
            known(&store, Some("jane@acme.com"), Some("acme.com"), Some("cus_1")).await,
            Some(KnownBy::Email),
            "{engine}"
        );
        assert_eq!(
            known(&store, Some("bob@acme.com"), Some("acme.com"), Some("cus_1")).await,
            Some(KnownBy::ExternalId),
            "{engine}"
        );
        // A colleague at a known company is known by domain only when the domain is asked about.
        assert_eq!(known(&store, Some("bob@acme.com"), None, None).await, None, "{engine}");
        assert_eq!(
            known(&store, Some("bob@acme.com"), Some("acme.com"), None).await,
            Some(KnownBy::Domain),
            "{engine}"
        );
        assert_eq!(
            known(&store, Some("bob@other.example"), Some("other.example"), Some("cus_9")).await,
            None,
            "{engine}"
        );
        assert_eq!(known(&store, None, None, None).await, None, "{engine}: nothing asked");
        // External ids compare exactly.
        assert_eq!(known(&store, None, None, Some("CUS_2")).await, None, "{engine}");
    })
    .await;
}

#[tokio::test]
async fn an_entry_with_a_known_domain_still_adds_its_new_email_and_external_id() {
    for_each_engine(async |store, engine| {
        let first = store.add_customers(&[customer("jane@acme.com", "acme.com", "")], now()).await.unwrap();
        assert_eq!(first, added(1, 0), "{engine}");
        let colleague = store.add_customers(&[customer("bob@acme.com", "acme.com", "cus_7")], now()).await.unwrap();
        assert_eq!(colleague, added(1, 0), "{engine}: a new email at a known company is added");
        assert_eq!(known(&store, Some("bob@acme.com"), None, None).await, Some(KnownBy::Email), "{engine}");
        assert_eq!(known(&store, None, None, Some("cus_7")).await, Some(KnownBy::ExternalId), "{engine}");
        let again = store.add_customers(&[customer("bob@acme.com", "acme.com", "cus_7")], now()).await.unwrap();
        assert_eq!(again, added(0, 1), "{engine}");
        assert_eq!(store.count_customers().await.unwrap(), 2, "{engine}");
    })
    .await;
}

#[tokio::test]
async fn the_same_entry_twice_in_one_load_is_stored_once() {
    for_each_engine(async |store, engine| {
        let entries = [
            customer("jane@acme.com", "", ""),
            customer("JANE@acme.com", "", ""),
            customer("", "acme.com", "cus_1"),
            customer("", "acme.com", "cus_1"),
            customer("bob@acme.com", "acme.com", "cus_1"),
        ];
        let outcome = store.add_customers(&entries, now()).await.unwrap();
        assert_eq!(outcome, added(3, 2), "{engine}");
        assert_eq!(store.count_customers().await.unwrap(), 3, "{engine}");
        assert_eq!(store.add_customers(&[], now()).await.unwrap(), added(0, 0), "{engine}: an empty load");
    })
    .await;
}

#[tokio::test]
async fn a_large_load_spans_many_statements_and_reloads_idempotently() {
    for_each_engine(async |store, engine| {
        let entries: Vec<NewCustomer> = (0..2_500)
            .map(|i| customer(&format!("person{i}@company{}.example", i % 700), "", &format!("ext-{i}")))
            .collect();
        assert_eq!(store.add_customers(&entries, now()).await.unwrap(), added(2_500, 0), "{engine}");
        // Half known, half new, with domains this time.
        let more: Vec<NewCustomer> = (1_250..3_750)
            .map(|i| customer(&format!("person{i}@company{}.example", i % 700), "", &format!("ext-{i}")))
            .collect();
        assert_eq!(store.add_customers(&more, now()).await.unwrap(), added(1_250, 1_250), "{engine}");
        assert_eq!(store.count_customers().await.unwrap(), 3_750, "{engine}");
        let domains: Vec<NewCustomer> =
            (0..1_500).map(|i| customer("", &format!("company{}.example", i % 1_200), "")).collect();
        assert_eq!(store.add_customers(&domains, now()).await.unwrap(), added(1_200, 300), "{engine}");
        assert_eq!(known(&store, None, Some("company1199.example"), None).await, Some(KnownBy::Domain), "{engine}");
        assert_eq!(known(&store, Some("person3749@company249.example"), None, None).await, Some(KnownBy::Email));
    })
    .await;
}

#[tokio::test]
async fn concurrent_loads_of_overlapping_entries_store_each_identifier_once() {
    for_each_engine(async |store, engine| {
        let load = |from: usize| {
            let store = store.clone();
            async move {
                let entries: Vec<NewCustomer> = (from..from + 300)
                    .map(|i| customer(&format!("p{i}@example.org"), &format!("c{}.example", i / 3), &format!("x{i}")))
                    .collect();
                store.add_customers(&entries, now()).await.expect("concurrent load")
            }
        };
        let (a, b, c) = tokio::join!(load(0), load(150), load(0));
        let total_added = a.added + b.added + c.added;
        // 450 different entries in all; every one stored once, whichever load got there first.
        assert_eq!(total_added, 450, "{engine}: {a:?} {b:?} {c:?}");
        assert_eq!(store.count_customers().await.unwrap(), 450, "{engine}");
        for i in [0, 149, 150, 299, 449] {
            let email = format!("p{i}@example.org");
            assert_eq!(known(&store, Some(&email), None, None).await, Some(KnownBy::Email), "{engine}: {email}");
            let x = format!("x{i}");
            assert_eq!(known(&store, None, None, Some(&x)).await, Some(KnownBy::ExternalId), "{engine}: {x}");
        }
    })
    .await;
}
