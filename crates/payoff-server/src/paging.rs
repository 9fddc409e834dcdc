//! Pages of Payoff's own records, newest first, from one or several
//! newest-first walks (actions, the support agent's drafts), with a cursor
//! (`before`, a ledger sequence) that continues where the page stopped.
//!
//! A page never costs more than it reads: each walk stops once it holds a
//! page or has passed over [`SCANNED_MAX`] records, so a filter that keeps
//! few records answers with what it found so far and a cursor instead of
//! reading a customer's whole history.

/// Records one walk passes over at most before a page answers with what
/// it found and where to go on.
pub const SCANNED_MAX: usize = 5_000;

/// One newest-first walk's share of a page.
pub struct Walk<T> {
    limit: usize,
    kept: Vec<(u64, T)>,
    scanned: usize,
    /// The sequence of the last record passed over: the walk knows every
    /// record from there up.
    last: Option<u64>,
    /// The walk stopped before its records ran out.
    stopped: bool,
}

impl<T> Walk<T> {
    pub fn new(limit: usize) -> Walk<T> {
        assert!(limit > 0, "a page holds at least one record");
        Walk {
            limit,
            kept: Vec::new(),
            scanned: 0,
            last: None,
            stopped: false,
        }
    }

    /// Takes the next record (older than every one before it), kept when
    /// `item` is `Some`; answers whether the walk goes on.
    pub fn visit(&mut self, sequence: u64, item: Option<T>) -> bool {
        if self.kept.len() == self.limit || self.scanned == SCANNED_MAX {
            self.stopped = true;
            return false;
        }
        debug_assert!(self.last.is_none_or(|l| sequence < l), "newest first");
        self.scanned += 1;
        self.last = Some(sequence);
        if let Some(item) = item {
            self.kept.push((sequence, item));
        }
        true
    }
}

/// A page: at most `limit` records, newest first, and the cursor of the
/// next page (`None` on the last one).
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_before: Option<u64>,
}

/// Merges walks over records of one ledger (sequences never repeat
/// between them) into one page. Below the highest point where a walk
/// stopped, another walk's records cannot be told complete: they are left
/// for the next page, which starts there.
pub fn merge<T>(walks: Vec<Walk<T>>) -> Page<T> {
    let limit = walks.iter().map(|w| w.limit).min().unwrap_or(1);
    let floor = walks
        .iter()
        .filter(|w| w.stopped)
        .filter_map(|w| w.last)
        .max();
    let mut kept: Vec<(u64, T)> = walks
        .into_iter()
        .flat_map(|w| w.kept)
        .filter(|(sequence, _)| floor.is_none_or(|f| *sequence >= f))
        .collect();
    kept.sort_by_key(|(sequence, _)| std::cmp::Reverse(*sequence));
    let next_before = if kept.len() > limit {
        kept.truncate(limit);
        kept.last().map(|(sequence, _)| *sequence)
    } else {
        floor
    };
    Page {
        items: kept.into_iter().map(|(_, item)| item).collect(),
        next_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages every walk of `records` (sequence, kept?) split between two
    /// kinds, by following the cursor to the end.
    fn pages(records: &[(u64, bool, bool)], limit: usize) -> Vec<Vec<u64>> {
        let mut out = Vec::new();
        let mut before: Option<u64> = None;
        loop {
            let mut walks = vec![Walk::new(limit), Walk::new(limit)];
            for (k, walk) in walks.iter_mut().enumerate() {
                for &(sequence, kind_b, keep) in records.iter().rev() {
                    if usize::from(kind_b) != k || before.is_some_and(|b| sequence >= b) {
                        continue;
                    }
                    if !walk.visit(sequence, keep.then_some(sequence)) {
                        break;
                    }
                }
            }
            let page = merge(walks);
            assert!(page.items.len() <= limit);
            out.push(page.items);
            match page.next_before {
                Some(b) => {
                    assert!(before.is_none_or(|old| b < old), "the cursor moves on");
                    before = Some(b);
                }
                None => return out,
            }
        }
    }

    #[test]
    fn pages_of_two_merged_walks_give_every_kept_record_once_newest_first() {
        // Interleaved kinds, every third record filtered out.
        let records: Vec<(u64, bool, bool)> = (1..=50)
            .map(|s| (s, s % 2 == 0 || s % 7 == 0, s % 3 != 0))
            .collect();
        let want: Vec<u64> = records.iter().rev().filter(|r| r.2).map(|r| r.0).collect();
        for limit in [1, 2, 3, 7, 100] {
            let got: Vec<u64> = pages(&records, limit).into_iter().flatten().collect();
            assert_eq!(got, want, "limit {limit}");
        }
    }

    #[test]
    fn a_walk_that_keeps_nothing_stops_at_the_scan_bound_and_the_cursor_goes_on() {
        let records: Vec<(u64, bool, bool)> = (1..=(SCANNED_MAX as u64 + 10))
            .map(|s| (s, false, s == 3))
            .collect();
        let pages = pages(&records, 10);
        assert_eq!(pages.len(), 2, "one bounded page of nothing, then the rest");
        assert!(pages[0].is_empty());
        assert_eq!(pages[1], vec![3]);
    }
}
