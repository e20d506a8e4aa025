//! The one order of a slot's deliveries that every agent agrees on.
//!
//! Each delivery is stamped when an agent accepts it from a publish with
//! (slot-map epoch, that agent's sequence number); see [`Stamp`]. Fencing
//! lets only the slot's owner at an epoch accept work for it, and epochs
//! only grow, so within a slot stamps never tie and sort in the order the
//! owners accepted the work, whichever agents hold it now.
//!
//! A new owner parks everything of an incoming slot, its own new work and
//! whatever earlier owners hand it (from any number of them, in any order
//! of arrival), and delivers none of it until the last listed earlier
//! owner is done. Then [`merge`] puts the parked work in stamp order and
//! it joins the endpoint queues behind what was queued already, which
//! came from earlier epochs.

use super::record::{IdKey, Stamp};

/// Sorts parked deliveries `(stamp, id, seq)` into the order they join
/// their queues: by stamp, then by delivery id (stamps tie only for work
/// stored before stamps existed).
pub fn merge(items: &mut [(Stamp, IdKey, u64)]) {
    items.sort_unstable_by_key(|(stamp, id, _)| (*stamp, *id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A chain of owners of one slot: owner k accepted `counts[k]`
    /// deliveries under epoch k + 1, numbered by its own sequence.
    fn chain(counts: &[usize]) -> Vec<Vec<(Stamp, IdKey, u64)>> {
        let mut global = 0u64;
        counts
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                (0..n)
                    .map(|i| {
                        global += 1;
                        let stamp = Stamp {
                            epoch: k as u64 + 1,
                            // Each agent has its own sequence; they do not compare.
                            seq: 1000 * (counts.len() - k) as u64 + i as u64,
                        };
                        (
                            stamp,
                            IdKey::from_num(u128::from(global * 7919 % 1009)),
                            global,
                        )
                    })
                    .collect()
            })
            .collect()
    }

    proptest! {
        /// However the owners' batches arrive (any interleaving, any order
        /// of owners), the merge gives acceptance order.
        #[test]
        fn any_arrival_order_gives_acceptance_order(
            counts in proptest::collection::vec(0usize..20, 1..6),
            shuffle in any::<u64>(),
        ) {
            let owners = chain(&counts);
            let expected: Vec<u64> = owners.iter().flatten().map(|x| x.2).collect();
            let mut arrived: Vec<(Stamp, IdKey, u64)> = owners.into_iter().flatten().collect();
            // A deterministic shuffle from the seed.
            let mut s = shuffle | 1;
            for i in (1..arrived.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                arrived.swap(i, (s % (i as u64 + 1)) as usize);
            }
            merge(&mut arrived);
            prop_assert_eq!(arrived.iter().map(|x| x.2).collect::<Vec<_>>(), expected);
        }
    }

    #[test]
    fn the_chain_of_dying_owners_from_the_issue_is_put_back_in_order() {
        // Owner A (epoch 1) holds 145; it dies. B (epoch 2) parks 146-169 and
        // dies; C (epoch 3) parks 170-176; A returns (epoch 4) and receives
        // C's batch before B's.
        let a = (Stamp { epoch: 1, seq: 9 }, IdKey::from_num(1), 145);
        let b: Vec<_> = (146..=169)
            .map(|n| {
                (
                    Stamp { epoch: 2, seq: n },
                    IdKey::from_num(u128::from(n)),
                    n,
                )
            })
            .collect();
        let c: Vec<_> = (170..=176)
            .map(|n| {
                (
                    Stamp {
                        epoch: 3,
                        seq: n - 169,
                    },
                    IdKey::from_num(u128::from(n)),
                    n,
                )
            })
            .collect();
        let mut arrived = vec![a];
        arrived.extend(c);
        arrived.extend(b);
        arrived.push((Stamp { epoch: 4, seq: 1 }, IdKey::from_num(0), 177));
        merge(&mut arrived);
        let order: Vec<u64> = arrived.iter().map(|x| x.2).collect();
        assert_eq!(order, (145..=177).collect::<Vec<_>>());
    }
}
