//! The smoke run CI does of every fuzz target: its seeds, the inputs that
//! once broke it, and mutations of them from a fixed seed (so a failure
//! here repeats). The long runs are libFuzzer's (`fuzz/README.md`).

use std::path::{Path, PathBuf};

use super::TARGETS;

/// Mutations tried per target, spread over its seeds.
const MUTATIONS: usize = 3_000;

fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable folder").path())
        .filter(|p| p.is_file() && !p.ends_with("README.md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("readable seed");
            (p, bytes)
        })
        .collect()
}

/// xorshift64*: enough to vary inputs, and the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One of libFuzzer's simpler moves: change, insert, erase, repeat or
/// cut bytes, or splice in one of the bytes parsers care about.
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    const SPECIAL: &[u8] = b"{}[]()\"'\\<>=&%:;,\n\0#*-";
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 if at < out.len() => out[at] = rng.next() as u8,
            1 => out.insert(at, SPECIAL[rng.below(SPECIAL.len())]),
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 if at < out.len() => {
                let end = (at + 1 + rng.below(32)).min(out.len());
                let piece = out[at..end].to_vec();
                for _ in 0..1 + rng.below(64) {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            4 => out.truncate(at),
            _ => out.insert(at, rng.next() as u8),
        }
    }
    out
}

#[test]
fn every_target_survives_its_seeds_regressions_and_mutations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    for (name, target) in TARGETS {
        let seeds = inputs(&root.join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} has no seeds");
        let regressions = inputs(&root.join("regressions").join(name));
        for (path, bytes) in seeds.iter().chain(&regressions) {
            let run = std::panic::catch_unwind(|| target(bytes));
            assert!(run.is_ok(), "{name}: {} broke the target", path.display());
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
        for i in 0..MUTATIONS {
            let (path, seed) = &seeds[i % seeds.len()];
            let input = mutate(seed, &mut rng);
            let run = std::panic::catch_unwind(|| target(&input));
            assert!(
                run.is_ok(),
                "{name}: mutation {i} of {} broke the target; input (escaped): {:?}",
                path.display(),
                String::from_utf8_lossy(&input)
            );
        }
    }
}

/// The dashboard target reaches the pages as a logged-in operator (not
/// the login page every time) and its forms get past the CSRF check.
#[test]
fn the_dashboard_target_is_logged_in_and_its_forms_are_read() {
    use axum::http::StatusCode;
    let (request, status) = crate::dashboard::answer(b"\x05x\nstate=voided").unwrap();
    assert_eq!(status, StatusCode::OK, "{request}");
    // A form with a field no form has: refused by the form's decoding
    // (400), which runs only after the session and its token passed.
    let (request, status) = crate::dashboard::answer(b"\x08x\nnot_a_field=1").unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{request}");
}
