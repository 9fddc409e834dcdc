//! The storage contract of agent rules and webhook outboxes, run on every
//! backend.

use chrono::{DateTime, Duration, Utc};
use payoff_store::scratch::ScratchDb;
use payoff_store::{DeliveryStatus, Store, WebhookDelivery, WebhookSubscription};

fn at(s: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(s, 0).unwrap()
}

fn subscription(id: &str) -> WebhookSubscription {
    WebhookSubscription {
        id: id.into(),
        customer: "acme".into(),
        url: "http://127.0.0.1:9/hook".into(),
        event_types: vec!["ticket.*".into(), "payoff.budget.warning".into()],
        secret: "whsec_c2VjcmV0".into(),
        created_by: "k1".into(),
        created_at: at(100),
        cursor: 0,
        deleted_at: None,
    }
}

#[test]
fn policy_versions_count_up_and_need_a_customer() {
    for db in ScratchDb::all() {
        let store = Store::open(&db.url).unwrap();
        store.create_customer("acme", "Acme", at(1)).unwrap();
        let v1 = store
            .add_policy("acme", "forbid(principal, action, resource);", "k1", at(2))
            .unwrap();
        let v2 = store.add_policy("acme", "// v2", "k2", at(3)).unwrap();
        assert_eq!((v1.version, v2.version), (1, 2), "{}", db.label);
        let all = store.policies("acme").unwrap();
        assert_eq!(all, vec![v1.clone(), v2]);
        // The digest is the stored text's.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(v1.body.as_bytes());
        assert_eq!(v1.sha256, hex::encode(digest));
        assert!(store.policies("other").unwrap().is_empty());
        assert!(store.add_policy("nobody", "x", "k1", at(4)).is_err());
    }
}

#[test]
fn a_cursor_moves_once_and_claims_are_leased() {
    for db in ScratchDb::all() {
        let store = Store::open(&db.url).unwrap();
        store.create_customer("acme", "Acme", at(1)).unwrap();
        let sub = subscription("wh_1");
        assert!(sub.wants("ticket.ai_replied") && sub.wants("payoff.budget.warning"));
        assert!(!sub.wants("payoff.budget.exceeded") && !sub.wants("lead.created"));
        store.add_webhook(&sub).unwrap();
        let batch: Vec<WebhookDelivery> = [3, 5]
            .iter()
            .map(|&seq| WebhookDelivery::new(&sub, seq, "ticket.ai_replied", at(200)))
            .collect();
        assert!(store.advance_webhook("wh_1", 0, 6, &batch).unwrap());
        // A second node that read the old cursor writes nothing.
        assert!(
            !store.advance_webhook("wh_1", 0, 6, &batch).unwrap(),
            "{}",
            db.label
        );
        assert_eq!(store.webhooks(Some("acme")).unwrap()[0].cursor, 6);
        assert_eq!(store.deliveries("wh_1", 0, 10).unwrap().len(), 2);

        // Claimed once until the lease runs out.
        let now = at(300);
        let claimed = store
            .claim_deliveries(now, now + Duration::seconds(30), up_to(10))
            .unwrap();
        assert_eq!(claimed.len(), 2, "{}", db.label);
        assert!(store
            .claim_deliveries(now, now + Duration::seconds(30), up_to(10))
            .unwrap()
            .is_empty());
        let later = now + Duration::seconds(31);
        assert_eq!(
            store
                .claim_deliveries(later, later + Duration::seconds(30), up_to(1))
                .unwrap()
                .len(),
            1
        );

        // A failed attempt waits for its next time; a success is final.
        let mut failed = claimed[0].clone();
        failed.attempts = 1;
        failed.last_status = Some(503);
        failed.last_error = Some("503 Service Unavailable".into());
        failed.next_attempt_at = at(1000);
        store
            .finish_deliveries(std::slice::from_ref(&failed))
            .unwrap();
        let mut done = claimed[1].clone();
        done.attempts = 1;
        done.status = DeliveryStatus::Delivered;
        done.last_status = Some(204);
        done.delivered_at = Some(at(301));
        store
            .finish_deliveries(std::slice::from_ref(&done))
            .unwrap();
        let far = at(2000);
        let due = store.claim_deliveries(at(999), far, up_to(10)).unwrap();
        assert!(due.is_empty(), "{}: {due:?}", db.label);
        let due = store
            .claim_deliveries(far, far + Duration::seconds(30), up_to(10))
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].sequence, due[0].attempts, due[0].last_status),
            (3, 1, Some(503))
        );
        let log = store.deliveries("wh_1", 0, 10).unwrap();
        assert_eq!(log[1].status, DeliveryStatus::Delivered);
        assert_eq!(log[1].delivered_at, Some(at(301)));

        assert!(store.delete_webhook("wh_1", at(400)).unwrap());
        assert!(!store.delete_webhook("wh_1", at(401)).unwrap());
        assert_eq!(store.webhooks(None).unwrap()[0].deleted_at, Some(at(400)));
    }
}

/// At most `n` deliveries of each of at most `n` customers.
fn up_to(n: usize) -> payoff_store::ClaimLimits<'static> {
    payoff_store::ClaimLimits {
        customers_max: n,
        per_customer_max: n,
        skip: &[],
    }
}
