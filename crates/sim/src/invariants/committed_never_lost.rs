//! Committed entries are never lost (Raft paper section 5.4 and Figure 2's
//! persistence rule): an entry is committed only once a majority stored it
//! durably, and durable state survives crashes, so at every moment the
//! latest applied entry is on the disks of a majority of the voters.
//!
//! Checked for runs with a fixed voter set; with membership changes the
//! relevant majority moves, and leader completeness plus state machine
//! safety carry the property.

use crate::storage::DurableLog;

/// `disks` are the durable logs of all voters (running or crashed).
pub fn check(index: u64, term: u64, disks: &[(u64, &DurableLog)]) -> Result<(), String> {
    // Index 1 is the bootstrap entry every founding member writes itself:
    // committed by construction, not by replication.
    if index <= 1 {
        return Ok(());
    }
    let holders: Vec<u64> = disks
        .iter()
        .filter(|(_, d)| d.covers(index, term))
        .map(|(id, _)| *id)
        .collect();
    if 2 * holders.len() <= disks.len() {
        return Err(format!(
            "committed entry lost: {term}/{index} was applied but is durable only on {holders:?} of {} voters",
            disks.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use concord_raft::Entry;

    #[test]
    fn an_entry_on_a_minority_of_disks_is_caught() {
        let entries = vec![
            Entry::normal(1, 1, Bytes::new()),
            Entry::normal(2, 2, Bytes::new()),
        ];
        let with = DurableLog {
            entries,
            ..Default::default()
        };
        let without = DurableLog::default();
        assert!(check(2, 2, &[(1, &with), (2, &with), (3, &without)]).is_ok());
        assert!(check(2, 2, &[(1, &with), (2, &without), (3, &without)]).is_err());
    }
}
