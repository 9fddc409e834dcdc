//! The per-customer hash chain.
//!
//! Link `n` has hash `SHA-256(hash(n-1) || canonical bytes of event n)`,
//! starting from [`GENESIS_HASH`]. Changing, removing or reordering any
//! stored event changes every later hash, so a published head pins the
//! whole history before it.

use sha2::{Digest, Sha256};

/// The hash before the first event of every chain: 32 zero bytes.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The end of a chain: how many events it holds and the hash of the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub sequence: u64,
    pub hash: [u8; 32],
}

impl Head {
    /// The head of a chain that holds no event yet.
    pub const EMPTY: Head = Head {
        sequence: 0,
        hash: GENESIS_HASH,
    };

    /// Appends one event's canonical bytes and returns the new head.
    pub fn append(&self, canonical: &[u8]) -> Head {
        let mut hasher = Sha256::new();
        hasher.update(self.hash);
        hasher.update(canonical);
        Head {
            sequence: self.sequence + 1,
            hash: hasher.finalize().into(),
        }
    }

    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// One stored link, as read back for verification.
#[derive(Debug, Clone, Copy)]
pub struct ChainLink<'a> {
    pub sequence: u64,
    pub canonical: &'a [u8],
    pub hash: &'a [u8],
}

/// The first place where a stored chain disagrees with its recomputation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain broken at sequence {sequence}: {reason}")]
pub struct ChainBreak {
    pub sequence: u64,
    pub reason: String,
}

/// Recomputes a chain link by link, from `start` (the head before the first
/// link given), and returns the head it ends at or the first broken link.
pub fn verify_chain<'a>(
    start: Head,
    links: impl IntoIterator<Item = ChainLink<'a>>,
) -> Result<Head, ChainBreak> {
    let mut head = start;
    for link in links {
        let expected_sequence = head.sequence + 1;
        if link.sequence != expected_sequence {
            return Err(ChainBreak {
                sequence: expected_sequence,
                reason: format!(
                    "expected sequence {expected_sequence}, found {}",
                    link.sequence
                ),
            });
        }
        let next = head.append(link.canonical);
        if next.hash.as_slice() != link.hash {
            return Err(ChainBreak {
                sequence: link.sequence,
                reason: format!(
                    "stored hash {} differs from recomputed {}",
                    hex::encode(link.hash),
                    next.hash_hex()
                ),
            });
        }
        head = next;
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(bodies: &[&[u8]]) -> Vec<(u64, Vec<u8>, [u8; 32])> {
        let mut head = Head::EMPTY;
        bodies
            .iter()
            .map(|b| {
                head = head.append(b);
                (head.sequence, b.to_vec(), head.hash)
            })
            .collect()
    }

    fn links(rows: &[(u64, Vec<u8>, [u8; 32])]) -> Vec<ChainLink<'_>> {
        rows.iter()
            .map(|(s, c, h)| ChainLink {
                sequence: *s,
                canonical: c,
                hash: h,
            })
            .collect()
    }

    #[test]
    fn first_link_hashes_genesis_and_body() {
        let head = Head::EMPTY.append(b"{}");
        let expected: [u8; 32] = Sha256::digest([&[0u8; 32][..], b"{}"].concat()).into();
        assert_eq!(head.hash, expected);
        assert_eq!(head.sequence, 1);
    }

    #[test]
    fn intact_chain_verifies_to_its_head() {
        let rows = build(&[b"a", b"b", b"c"]);
        let head = verify_chain(Head::EMPTY, links(&rows)).unwrap();
        assert_eq!(head.sequence, 3);
        assert_eq!(head.hash, rows[2].2);
    }

    #[test]
    fn edited_body_breaks_at_that_link() {
        let mut rows = build(&[b"a", b"b", b"c"]);
        rows[1].1 = b"B".to_vec();
        assert_eq!(
            verify_chain(Head::EMPTY, links(&rows))
                .unwrap_err()
                .sequence,
            2
        );
    }

    #[test]
    fn removed_link_is_a_sequence_gap() {
        let mut rows = build(&[b"a", b"b", b"c"]);
        rows.remove(1);
        let err = verify_chain(Head::EMPTY, links(&rows)).unwrap_err();
        assert_eq!(err.sequence, 2);
        assert!(err.reason.contains("found 3"));
    }

    #[test]
    fn swapped_links_break() {
        let mut rows = build(&[b"a", b"b", b"c"]);
        rows.swap(0, 1);
        assert!(verify_chain(Head::EMPTY, links(&rows)).is_err());
    }
}
