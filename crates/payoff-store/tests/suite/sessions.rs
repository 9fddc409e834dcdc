//! Dashboard sessions on every backend: a session opens for a key, ends
//! at logout, at expiry and when its key is revoked, and a copy of the
//! table opens nothing.

use chrono::Duration;
use payoff_store::scratch::ScratchDb;
use payoff_store::{Role, Store};

#[test]
fn a_session_lives_until_logout_expiry_or_revocation() {
    for db in ScratchDb::all() {
        let store = Store::open(&db.url).unwrap();
        let now = payoff_clock::wall();
        store.create_customer("acme", "Acme", now).unwrap();
        let (key, _) = store
            .create_key(Role::CustomerViewer, Some("acme"), now)
            .unwrap();

        let open = store
            .open_session(&key.key_id, now, Duration::hours(1))
            .unwrap();
        let (principal, csrf) = store.session(&open.token, now).unwrap().unwrap();
        assert_eq!(principal.key_id, key.key_id, "{}", db.label);
        assert_eq!(principal.role, Role::CustomerViewer);
        assert_eq!(principal.customer.as_deref(), Some("acme"));
        assert_eq!(csrf, open.csrf_token);

        // Expired: refused, and deleted when the next session opens.
        let later = now + Duration::hours(2);
        assert!(store.session(&open.token, later).unwrap().is_none());
        let second = store
            .open_session(&key.key_id, later, Duration::hours(1))
            .unwrap();
        assert!(store.session(&open.token, now).unwrap().is_none());
        assert_ne!(second.csrf_token, open.csrf_token);

        // Logout ends it; a second logout finds nothing.
        assert!(store.close_session(&second.token).unwrap());
        assert!(!store.close_session(&second.token).unwrap());
        assert!(store.session(&second.token, later).unwrap().is_none());

        // Revoking the key ends its sessions at once.
        let third = store
            .open_session(&key.key_id, now, Duration::hours(1))
            .unwrap();
        store.revoke_key(&key.key_id, now).unwrap();
        assert!(store.session(&third.token, now).unwrap().is_none());

        // Garbage and the API key itself are not session tokens.
        for bad in ["", "pys_", &key.key, &third.token.to_uppercase()] {
            assert!(store.session(bad, now).unwrap().is_none(), "{bad}");
        }
    }
}

/// Issue 15: sessions lasted 12 hours with no idle timeout. A session
/// unused for 30 minutes ends; each use keeps it alive.
#[test]
fn a_session_left_unused_ends_before_its_expiry() {
    for db in ScratchDb::all() {
        let store = Store::open(&db.url).unwrap();
        let now = payoff_clock::wall();
        store.create_customer("acme", "Acme", now).unwrap();
        let (key, _) = store
            .create_key(Role::CustomerViewer, Some("acme"), now)
            .unwrap();
        let open = store
            .open_session(&key.key_id, now, Duration::hours(12))
            .unwrap();
        let idle = payoff_store::SESSION_IDLE;
        let minute = Duration::minutes(1);
        let first_use = now + idle - minute;
        assert!(
            store.session(&open.token, first_use).unwrap().is_some(),
            "{}",
            db.label
        );
        let second_use = first_use + idle - minute;
        assert!(
            store.session(&open.token, second_use).unwrap().is_some(),
            "{}: each use keeps it alive",
            db.label
        );
        assert!(
            store
                .session(&open.token, second_use + idle + minute)
                .unwrap()
                .is_none(),
            "{}: left unused, it ends",
            db.label
        );
    }
}
