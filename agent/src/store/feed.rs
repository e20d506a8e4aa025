//! Feeds: newly queued deliveries handed from the writer to the endpoint
//! workers in memory, once committed, so that a worker under live traffic
//! does not read back from the store what was just written.
//!
//! A feed is a hint, never the truth: the store is. A worker reads its
//! queue from the store until a read comes back short (the store had
//! nothing more), and from then on takes from its feed. The writer pushes
//! each queued delivery after its commit, in commit order, which is queue
//! order, since queue positions are handed out by the single writer.
//!
//! Whenever the feed may have missed something it is marked overflowed and
//! the worker goes back to the store: when it holds too much (the worker is
//! behind: a backlog), when memory for all feeds runs short, and after any
//! change other than queueing (purge, handoff, a failed commit).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Queued;

/// Most deliveries one feed holds before the worker must read the store.
const FEED_ITEMS: usize = 1024;
/// Most payload bytes all feeds hold together.
const FEEDS_BYTES: usize = 32 << 20;

/// The feeds of all workers. Shared by the store handle and the writer.
#[derive(Default)]
pub(super) struct Feeds {
    by_endpoint: Mutex<HashMap<String, Arc<Feed>>>,
    /// Bytes held by all feeds (approximate: the deliveries' payloads).
    bytes: AtomicUsize,
}

/// One endpoint's feed.
pub struct Feed {
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    items: VecDeque<Queued>,
    bytes: usize,
    /// Something may be missing: read the store.
    overflowed: bool,
}

/// What a worker gets from its feed.
#[derive(Debug)]
pub enum Taken {
    /// Queued deliveries in queue order, after the given position.
    Items(Vec<Queued>),
    /// Nothing new since the last take.
    Empty,
    /// The feed may have missed deliveries: read the store instead.
    Stale,
}

fn size_of(q: &Queued) -> usize {
    q.delivery.payload_json.len() + 256
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Feeds {
    /// Registers a worker's feed for `endpoint_id`, replacing any older one.
    /// It starts stale: the worker reads the store first.
    pub(super) fn subscribe(&self, endpoint_id: &str) -> Arc<Feed> {
        let feed = Arc::new(Feed {
            state: Mutex::new(FeedState {
                overflowed: true,
                ..Default::default()
            }),
        });
        if let Some(old) = lock(&self.by_endpoint).insert(endpoint_id.to_string(), feed.clone()) {
            // Nothing is pushed to the old feed any more: a worker still
            // holding it must go back to the store.
            self.mark_stale(&mut lock(&old.state));
        }
        feed
    }

    /// Drops `feed` if it is still the one registered for `endpoint_id`.
    pub(super) fn unsubscribe(&self, endpoint_id: &str, feed: &Arc<Feed>) {
        let mut map = lock(&self.by_endpoint);
        if map.get(endpoint_id).is_some_and(|f| Arc::ptr_eq(f, feed)) {
            map.remove(endpoint_id);
        }
        drop(map);
        self.release(&mut lock(&feed.state));
    }

    /// Hands committed, newly queued deliveries to their workers' feeds.
    pub(super) fn push(&self, queued: Vec<Queued>) {
        if queued.is_empty() {
            return;
        }
        let map = lock(&self.by_endpoint);
        for q in queued {
            let Some(feed) = map.get(q.delivery.endpoint_id.as_str()) else {
                continue;
            };
            let mut st = lock(&feed.state);
            if st.overflowed {
                continue;
            }
            let size = size_of(&q);
            if st.items.len() >= FEED_ITEMS
                || self.bytes.load(Ordering::Relaxed) + size > FEEDS_BYTES
            {
                self.mark_stale(&mut st);
                continue;
            }
            self.bytes.fetch_add(size, Ordering::Relaxed);
            st.bytes += size;
            st.items.push_back(q);
        }
    }

    /// Marks every feed stale (after a change the feeds cannot follow).
    pub(super) fn invalidate_all(&self) {
        for feed in lock(&self.by_endpoint).values() {
            self.mark_stale(&mut lock(&feed.state));
        }
    }

    /// Drops what the feed holds and sends its worker back to the store.
    fn mark_stale(&self, st: &mut FeedState) {
        self.release(st);
        st.overflowed = true;
    }

    fn release(&self, st: &mut FeedState) {
        self.bytes.fetch_sub(st.bytes, Ordering::Relaxed);
        st.bytes = 0;
        st.items.clear();
    }

    /// Makes `feed` fresh: from here on it receives every delivery queued
    /// for its endpoint. Call just before reading the queue from the store.
    pub(super) fn refresh(&self, feed: &Feed) {
        let mut st = lock(&feed.state);
        self.release(&mut st);
        st.overflowed = false;
    }

    /// Up to `limit` deliveries queued after position `after`.
    pub(super) fn take(&self, feed: &Feed, after: u64, limit: usize) -> Taken {
        let mut st = lock(&feed.state);
        if st.overflowed {
            return Taken::Stale;
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(q) = st.items.pop_front() else { break };
            let size = size_of(&q);
            st.bytes -= size;
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            // Already read from the store (pushed between the refresh and
            // that read's snapshot).
            if q.position > after {
                out.push(q);
            }
        }
        if out.is_empty() {
            Taken::Empty
        } else {
            Taken::Items(out)
        }
    }

    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A worker's subscription to its endpoint's feed; unsubscribes on drop.
pub struct Subscription {
    feeds: Arc<Feeds>,
    endpoint_id: String,
    feed: Arc<Feed>,
}

impl Subscription {
    pub(super) fn new(feeds: Arc<Feeds>, endpoint_id: &str) -> Self {
        let feed = feeds.subscribe(endpoint_id);
        Subscription {
            feeds,
            endpoint_id: endpoint_id.to_string(),
            feed,
        }
    }

    /// From here on the feed receives every delivery queued for the
    /// endpoint. Call just before reading the queue from the store.
    pub fn refresh(&self) {
        self.feeds.refresh(&self.feed);
    }

    /// Up to `limit` deliveries queued after position `after`.
    pub fn take(&self, after: u64, limit: usize) -> Taken {
        self.feeds.take(&self.feed, after, limit)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.feeds.unsubscribe(&self.endpoint_id, &self.feed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_proto::v1 as pb;

    fn q(ep: &str, position: u64) -> Queued {
        Queued {
            seq: position,
            position,
            delivery: pb::Delivery {
                endpoint_id: ep.into(),
                payload_json: "{}".into(),
                ..Default::default()
            },
            attempts: 0,
            next_attempt_at_ms: 0,
        }
    }

    fn positions(t: Taken) -> Vec<u64> {
        match t {
            Taken::Items(v) => v.iter().map(|q| q.position).collect(),
            other => panic!("expected items, got {other:?}"),
        }
    }

    #[test]
    fn a_feed_is_stale_until_refreshed_then_gets_its_own_items_in_order() {
        let feeds = Feeds::default();
        let a = feeds.subscribe("a");
        feeds.push(vec![q("a", 1)]);
        assert!(matches!(feeds.take(&a, 0, 10), Taken::Stale));
        feeds.refresh(&a);
        feeds.push(vec![q("a", 2), q("b", 3), q("a", 4), q("a", 5)]);
        // Position 2 was already read from the store.
        assert_eq!(positions(feeds.take(&a, 2, 1)), [4]);
        assert_eq!(positions(feeds.take(&a, 4, 10)), [5]);
        assert!(matches!(feeds.take(&a, 5, 10), Taken::Empty));
        assert_eq!(feeds.bytes(), 0);
    }

    #[test]
    fn overflow_and_invalidation_make_it_stale_and_free_the_memory() {
        let feeds = Feeds::default();
        let a = feeds.subscribe("a");
        feeds.refresh(&a);
        feeds.push((1..=FEED_ITEMS as u64 + 1).map(|p| q("a", p)).collect());
        assert!(matches!(feeds.take(&a, 0, 10), Taken::Stale));
        assert_eq!(feeds.bytes(), 0);
        feeds.refresh(&a);
        feeds.push(vec![q("a", 7)]);
        assert!(feeds.bytes() > 0);
        feeds.invalidate_all();
        assert!(matches!(feeds.take(&a, 0, 10), Taken::Stale));
        assert_eq!(feeds.bytes(), 0);
    }

    #[test]
    fn an_old_worker_cannot_unsubscribe_its_successor() {
        let feeds = Feeds::default();
        let old = feeds.subscribe("a");
        feeds.refresh(&old);
        let new = feeds.subscribe("a");
        assert!(
            matches!(feeds.take(&old, 0, 10), Taken::Stale),
            "a replaced feed gets nothing more"
        );
        feeds.unsubscribe("a", &old);
        feeds.refresh(&new);
        feeds.push(vec![q("a", 1)]);
        assert_eq!(positions(feeds.take(&new, 0, 10)), [1]);
        feeds.unsubscribe("a", &new);
        feeds.push(vec![q("a", 2)]);
        assert_eq!(feeds.bytes(), 0);
    }
}
