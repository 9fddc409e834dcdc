//! Issue 16, findings 4 and 5: on a full disk the server could not start
//! at all and `/readyz` said ready while every write failed; on a
//! read-only data directory it failed with "index is locked by another
//! writer". The data lives on a small tmpfs mounted for the test (root, as
//! CI runs; `payoff bench disk` is the long version under load).

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use payoff_store::scratch::{ScratchDb, Tmpfs};
use serde_json::{json, Value};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// How a `payoff serve` started on a faulty disk went: it listens (its
/// URL), or it exited (its status and standard error).
enum Start {
    Listening(Server),
    Exited(ExitStatus, String),
}

fn start(db: &ScratchDb) -> Start {
    let mut child = command(db)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    match line.split_whitespace().find(|w| w.starts_with("http://")) {
        Some(url) => Start::Listening(Server {
            url: url.to_owned(),
            banner: line.clone(),
            child,
        }),
        None => {
            // Standard output ended: the process is exiting.
            let status = child.wait().unwrap();
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            Start::Exited(status, err)
        }
    }
}

#[test]
fn a_full_disk_is_named_and_recovered_from_and_a_read_only_one_is_named() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let db = ScratchDb::sqlite();
    let mounted = Tmpfs::mount(db.dir(), 32).expect("mount a tmpfs (root)");
    init(&db);
    let key = customer_with_key(&db, "acme", "agent");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let post = |url: &str, id: &str| {
        let event = json!({"specversion": "1.0", "id": id, "source": "crm", "type": "lead.created",
                           "subject": "L-1", "time": "2026-11-03T10:00:00Z", "data": {}});
        runtime.block_on(async {
            let r = http
                .post(format!("{url}/v1/events"))
                .bearer_auth(&key)
                .json(&event)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };
    let ready = |url: &str| {
        runtime.block_on(async {
            let r = http.get(format!("{url}/readyz")).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };

    // The disk fills under a running server: not ready, saying why, and
    // writes refused naming the cause.
    let server = Server::start(&db);
    assert_eq!(ready(&server.url).0, 200);
    let ballast = mounted.fill().unwrap();
    let (s, v) = ready(&server.url);
    assert_eq!(s, 503, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("disk is full"),
        "{v}"
    );
    let (s, v) = post(&server.url, "e-1");
    assert_eq!(s, 503, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("disk is full"),
        "{v}"
    );

    // Space comes back: ready again without a restart, and writes succeed.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&server.url).0 != 200 {
        assert!(Instant::now() < deadline, "not ready after space came back");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(post(&server.url, "e-1").0, 200);
    server.kill();

    // A start on a full disk names the cause: it gets no further than
    // opening the database (SQLite must create its shared-memory file,
    // which the last connection to close removed), and says the disk is
    // full instead of "disk I/O error".
    let o = payoff(&db, &["customers", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ballast = mounted.fill().unwrap();
    match start(&db) {
        Start::Exited(status, err) => {
            assert!(!status.success(), "{err}");
            assert!(err.contains("the disk is full"), "{err}");
        }
        // Or SQLite found room for it: then it says why it is not ready.
        Start::Listening(server) => {
            let (s, v) = ready(&server.url);
            assert_eq!(s, 503, "{v}");
            assert!(
                v["detail"].as_str().unwrap().contains("disk is full"),
                "{v}"
            );
            server.kill();
        }
    }
    std::fs::remove_file(&ballast).unwrap();
    let server = Server::start(&db);
    assert_eq!(post(&server.url, "e-2").0, 200);
    server.kill();

    // Read-only: the server does not start, and says why.
    mounted.remount("ro").unwrap();
    let Start::Exited(status, err) = start(&db) else {
        panic!("the server started on a read-only data directory");
    };
    assert!(!status.success(), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!err.contains("locked by another writer"), "{err}");
    mounted.remount("rw").unwrap();
}
