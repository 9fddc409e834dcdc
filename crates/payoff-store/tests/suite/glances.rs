//! Kept Overview figures on every backend: read back as written, per
//! customer and period, and the figures computed later win whatever
//! order two refreshes finish in.

use chrono::Duration;
use payoff_store::scratch::ScratchDb;
use payoff_store::{Store, StoredGlance};

#[test]
fn the_figures_computed_later_are_kept() {
    for db in ScratchDb::all() {
        let store = Store::open(&db.url).unwrap();
        // Whole microseconds, as the store keeps time.
        let now: chrono::DateTime<chrono::Utc> = "2026-11-20T12:00:00.123456Z".parse().unwrap();
        let glance = |at: chrono::DateTime<chrono::Utc>, head: u64, body: &str| StoredGlance {
            customer: "acme".into(),
            period: "2026-11".into(),
            basis: "v1:abc".into(),
            head,
            computed_at: at,
            took_us: 1_500_000,
            body: body.into(),
        };
        assert_eq!(
            store.glance("acme", "2026-11").unwrap(),
            None,
            "{}",
            db.label
        );

        let first = glance(now, 10, "{\"n\":1}");
        store.put_glance(&first).unwrap();
        assert_eq!(
            store.glance("acme", "2026-11").unwrap(),
            Some(first.clone())
        );
        // Another period and another customer are other rows.
        assert_eq!(store.glance("acme", "2026-10").unwrap(), None);
        assert_eq!(store.glance("globex", "2026-11").unwrap(), None);

        // A refresh that started later finishes first; the earlier one,
        // finishing after it, does not replace it.
        let later = glance(now + Duration::seconds(5), 12, "{\"n\":3}");
        store.put_glance(&later).unwrap();
        store
            .put_glance(&glance(now + Duration::seconds(2), 11, "{\"n\":2}"))
            .unwrap();
        assert_eq!(
            store.glance("acme", "2026-11").unwrap(),
            Some(later),
            "{}",
            db.label
        );
    }
}
