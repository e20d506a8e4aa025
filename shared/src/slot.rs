//! Slots: endpoints hash onto a fixed number of slots, and slots onto live
//! agents by rendezvous hashing, so that an agent joining or leaving moves
//! only the slots it gains or loses (about 1/N of them).

use sha2::{Digest, Sha256};

/// Number of slots. Fixed for the life of a cluster: changing it would move
/// every endpoint.
pub const SLOT_COUNT: u32 = 1024;

/// The slot an endpoint belongs to.
pub fn slot_for(endpoint_id: &str, slot_count: u32) -> u32 {
    debug_assert!(slot_count > 0);
    (hash64(&[endpoint_id.as_bytes()]) % u64::from(slot_count)) as u32
}

/// Assigns every slot to one of `agents` (ids): for each slot, the agent
/// with the highest hash of (agent, slot) wins. Deterministic for a given
/// set of agents, whatever their order, so any process computes the same map.
/// Returns, for each slot, an index into `agents`; empty when no agents.
pub fn assign(agents: &[String], slot_count: u32) -> Vec<u16> {
    if agents.is_empty() {
        return Vec::new();
    }
    debug_assert!(agents.len() <= usize::from(u16::MAX));
    (0..slot_count)
        .map(|slot| {
            let s = slot.to_be_bytes();
            let mut best = (0u64, "", 0u16);
            for (i, a) in agents.iter().enumerate() {
                let score = hash64(&[a.as_bytes(), &s]);
                // Ties are broken by id so the result is order-independent.
                if i == 0 || (score, a.as_str()) > (best.0, best.1) {
                    best = (score, a.as_str(), i as u16);
                }
            }
            best.2
        })
        .collect()
}

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u32).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("agent-{i}")).collect()
    }

    fn owners(agents: &[String]) -> Vec<String> {
        assign(agents, SLOT_COUNT)
            .into_iter()
            .map(|i| agents[usize::from(i)].clone())
            .collect()
    }

    #[test]
    fn slot_is_stable_and_in_range() {
        let s = slot_for("ep_1", SLOT_COUNT);
        assert_eq!(s, slot_for("ep_1", SLOT_COUNT));
        assert!(s < SLOT_COUNT);
    }

    #[test]
    fn assignment_ignores_agent_order() {
        let a = ids(5);
        let mut b = a.clone();
        b.reverse();
        assert_eq!(owners(&a), owners(&b));
    }

    #[test]
    fn leave_moves_only_the_leavers_slots() {
        for n in 2..9 {
            let all = ids(n);
            for gone in 0..n {
                let before = owners(&all);
                let rest: Vec<String> = all.iter().filter(|a| **a != all[gone]).cloned().collect();
                let after = owners(&rest);
                let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
                let held = before.iter().filter(|o| **o == all[gone]).count();
                assert_eq!(moved, held, "only the leaver's slots move");
                let expected = SLOT_COUNT as f64 / n as f64;
                assert!((moved as f64) < expected * 1.4, "n={n} moved={moved}");
            }
        }
    }

    #[test]
    fn join_moves_about_one_nth() {
        for n in 1..8 {
            let before = owners(&ids(n));
            let after = owners(&ids(n + 1));
            let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
            // Only slots won by the newcomer move; expect S/(n+1), allow 40 %.
            let expected = SLOT_COUNT as f64 / (n + 1) as f64;
            assert!((moved as f64) < expected * 1.4, "n={n} moved={moved}");
            assert!(
                after
                    .iter()
                    .zip(&before)
                    .all(|(a, b)| a == b || a == &format!("agent-{n}"))
            );
        }
    }

    #[test]
    fn spread_is_even() {
        let agents = ids(4);
        let map = assign(&agents, SLOT_COUNT);
        for i in 0..4u16 {
            let c = map.iter().filter(|&&x| x == i).count();
            assert!((180..=330).contains(&c), "agent {i} has {c} slots");
        }
    }
}
