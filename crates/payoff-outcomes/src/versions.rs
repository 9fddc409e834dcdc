//! A customer's contract versions, parsed and compiled once per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use payoff_billing::{version_for, Contract, ContractVersion, Period};
use payoff_store::outcomes::Governed;
use payoff_store::{Store, StoredContract};

use crate::OutcomesError;

/// Compiled contracts by (customer, version, sha256). Versions are
/// immutable, so an entry never goes stale; the sha256 keeps two databases
/// of one process (tests, the demo) from sharing a wrong entry.
type Compiled = HashMap<(String, u32, String), Arc<Contract>>;

/// Entries kept at most; past it the cache starts over (a contract
/// compiles in well under a millisecond, so this only bounds memory).
const COMPILED_MAX: usize = 4096;

/// A stored version, parsed and its CEL compiled once per process: every
/// reader of a stored version (reads, closes, the dashboard, uploads
/// comparing with the first version) takes it from here.
pub fn compiled(stored: &StoredContract) -> Result<Arc<Contract>, OutcomesError> {
    static CACHE: OnceLock<Mutex<Compiled>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (
        stored.customer.clone(),
        stored.version,
        stored.sha256.clone(),
    );
    if let Some(c) = cache.lock().expect("contract cache").get(&key) {
        return Ok(c.clone());
    }
    let contract = Contract::parse(&format!("contract v{}", stored.version), &stored.body)
        .map_err(|e| OutcomesError::Corrupt(e.to_string()))?;
    let contract = Arc::new(contract);
    let mut map = cache.lock().expect("contract cache");
    if map.len() >= COMPILED_MAX {
        map.clear();
    }
    map.insert(key, contract.clone());
    Ok(contract)
}

/// A customer's contract versions, loaded and compiled.
pub struct Versions {
    pub stored: Vec<StoredContract>,
    pub contracts: Vec<Arc<Contract>>,
    pub effective: Vec<Period>,
}

impl Versions {
    pub fn load(store: &Store, customer: &str) -> Result<Versions, OutcomesError> {
        let stored = store.contracts(customer)?;
        if stored.is_empty() {
            return Err(OutcomesError::NoContract(customer.to_owned()));
        }
        let mut contracts = Vec::new();
        let mut effective = Vec::new();
        for s in &stored {
            assert!(s.version >= 1, "contract versions count from 1");
            let c = compiled(s)?;
            effective.push(Period::parse(c.cadence, &s.effective).map_err(OutcomesError::Corrupt)?);
            contracts.push(c);
        }
        Ok(Versions {
            stored,
            contracts,
            effective,
        })
    }

    pub fn list(&self) -> Vec<ContractVersion<'_>> {
        self.stored
            .iter()
            .zip(&self.contracts)
            .zip(&self.effective)
            .map(|((s, c), e)| ContractVersion {
                version: s.version,
                effective: *e,
                contract: c,
            })
            .collect()
    }

    /// The newest version.
    pub fn latest(&self) -> &Contract {
        self.contracts.last().expect("at least one version")
    }

    /// The number of the latest version.
    pub fn latest_version(&self) -> u32 {
        self.stored.last().expect("at least one version").version
    }

    /// A period named in the customer's cadence; the error names the field.
    pub fn period(&self, name: &str) -> Result<Period, OutcomesError> {
        Period::parse(self.latest().cadence, name)
            .map_err(|e| OutcomesError::BadPeriod(format!("period: {e}")))
    }

    /// The contract of a version number.
    pub fn contract(&self, version: u32) -> Option<&Contract> {
        self.stored
            .iter()
            .position(|s| s.version == version)
            .map(|i| &*self.contracts[i])
    }

    /// The version that governs an outcome maturing at `t`: the one in
    /// force for the period `t` falls in. Before the first period any
    /// version governs, the first one stands in, so such outcomes are
    /// still shown.
    pub fn governing(&self, t: DateTime<Utc>) -> u32 {
        let us = t.timestamp_micros();
        self.governed(&|_| true)
            .iter()
            .find(|g| g.from_us <= us && us < g.until_us)
            .expect("the stretches cover all time")
            .version
    }

    /// Maturity stretches and the version governing each, covering all
    /// time. A version that `usable` refuses (its fold is still being
    /// built) is stood in for by the newest usable one before it, else
    /// the oldest usable one.
    pub fn governed(&self, usable: &dyn Fn(u32) -> bool) -> Vec<Governed> {
        let list = self.list();
        let cadence = self.latest().cadence;
        let mut starts: Vec<DateTime<Utc>> = list
            .iter()
            .map(|v| v.effective.start.max(v.contract.starts.start))
            .collect();
        starts.sort();
        starts.dedup();
        let stand_in = |v: u32| -> u32 {
            if usable(v) {
                return v;
            }
            let mut older: Vec<u32> = list
                .iter()
                .map(|l| l.version)
                .filter(|&o| usable(o))
                .collect();
            older.sort();
            older
                .iter()
                .rev()
                .find(|&&o| o < v)
                .or(older.first())
                .copied()
                .unwrap_or(v)
        };
        let mut out: Vec<Governed> = Vec::new();
        for (i, start) in starts.iter().enumerate() {
            let Some(v) = version_for(&list, Period::containing(cadence, *start)) else {
                continue;
            };
            let version = stand_in(v.version);
            let until_us = starts.get(i + 1).map_or(i64::MAX, |s| s.timestamp_micros());
            match out.last_mut() {
                Some(last) if last.version == version => last.until_us = until_us,
                _ => out.push(Governed {
                    version,
                    from_us: start.timestamp_micros(),
                    until_us,
                }),
            }
        }
        if let Some(first) = out.first_mut() {
            first.from_us = i64::MIN;
        }
        out
    }
}
