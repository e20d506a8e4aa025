//! Handing queues to other agents. Two cases:
//!
//! - A slot moved away from us while we live (another agent joined, or we
//!   drain): its new owner parks new work until we have sent every queued
//!   delivery of the slot, in order, with its retry state and attempts,
//!   and then said we are done with the slot.
//! - We restarted and hold deliveries of slots that moved while we were
//!   gone: they go to the current owners as late backlog, queued behind
//!   what those delivered meanwhile.
//!
//! Level-triggered: each round looks at what the store holds and what the
//! assignment says, so a crash on either side just means a later round
//! sends again; the receiver skips deliveries it already holds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use herald_proto::v1 as pb;
use herald_proto::v1::agent_ingest_client::AgentIngestClient;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::dispatcher::Dispatcher;
use crate::state::AgentState;
use crate::store::Store;

/// Deliveries per handoff frame (about 1 MiB with small payloads).
const FRAME_DELIVERIES: usize = 2_000;
/// Frames sent before the first is acked.
const FRAMES_AHEAD: usize = 4;
/// How often a round runs while slots remain to hand over.
const ROUND_EVERY: Duration = Duration::from_secs(2);
/// Longest wait for an attempt in progress before its queue moves.
const QUIESCE_LIMIT: Duration = Duration::from_secs(65);

/// The handoff driver. One per agent.
pub struct Handoff {
    agent_id: String,
    store: Store,
    state: AgentState,
    dispatcher: Dispatcher,
    poke: Notify,
    outbox: tokio::sync::mpsc::Sender<pb::AgentMessage>,
    clients: std::sync::Mutex<HashMap<String, AgentIngestClient<Channel>>>,
    /// Mutual TLS to other agents, when on.
    tls: crate::members::Tls,
}

impl Handoff {
    /// A driver for this agent.
    pub fn new(
        agent_id: String,
        store: Store,
        state: AgentState,
        dispatcher: Dispatcher,
        outbox: tokio::sync::mpsc::Sender<pb::AgentMessage>,
        tls: crate::members::Tls,
    ) -> Arc<Self> {
        Arc::new(Handoff {
            agent_id,
            store,
            state,
            dispatcher,
            outbox,
            poke: Notify::new(),
            clients: Default::default(),
            tls,
        })
    }

    /// Asks for a round now (the assignment changed).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Runs rounds until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.poke.notified() => {}
                _ = tokio::time::sleep(ROUND_EVERY) => {}
            }
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "handoff round failed; will try again");
            }
        }
    }

    fn client(&self, addr: &str) -> anyhow::Result<AgentIngestClient<Channel>> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let ch = match &self.tls {
            Some(tls) => tonic::transport::Endpoint::from_shared(format!("https://{addr}"))?
                .tls_config(tls.client())?,
            None => tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?,
        };
        let ch = ch
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        let c = AgentIngestClient::new(ch)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> crate::error::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
    }

    /// One pass over everything there is to hand over.
    async fn round(&self) -> anyhow::Result<()> {
        if self.state.epoch() == 0 || !self.state.member() {
            // Until the map lists us, we cannot tell what we will own.
            return Ok(());
        }
        if self.state.leftovers_late() {
            // We were given up for dead: what we held is behind newer events.
            let n = self.store.mark_leftovers_late().await?;
            tracing::warn!(marked = n, "leftovers from before the restart are late");
            self.outbox
                .send(pb::AgentMessage {
                    kind: Some(pb::agent_message::Kind::LeftoversMarked(
                        pb::LeftoversMarked {},
                    )),
                })
                .await?;
        }
        // The assignment this round acts on, read once: which slots we
        // must hand on. Should it change while the round runs, the round
        // stops and the next one (poked by the change) starts over, so that
        // "outgoing", "ours" and "what the store holds" always describe the
        // same moment. (A round that checked ownership at one epoch and
        // read the outgoing list at another once handed a live slot's queue
        // as late leftovers, behind newer events: found by
        // `herald-bench chaos --seed 6`.)
        let (epoch, outgoing) = self.state.outgoing_at_epoch();
        let outgoing: HashSet<u32> = outgoing.into_iter().collect();
        // Whatever was accepted under the previous assignment is in the
        // store before we look (otherwise a slot could be declared done
        // with a delivery still on its way in, which would then go late).
        self.state.ingest_barrier().await;
        let with_work = self.blocking(|s| s.slots_with_work()).await?;
        // Parked work of a slot that is ours outright (its handoff finished
        // before a restart, say) is queued now.
        for slot in with_work.keys() {
            if self.state.deliverable(*slot) {
                for ep in self.store.unpark(*slot).await? {
                    self.dispatcher.wake(&ep);
                }
            }
        }
        let mut idle: HashMap<String, Vec<u32>> = HashMap::new();
        for slot in &outgoing {
            if !with_work.contains_key(slot)
                && let Some(addr) = self.state.owner_addr(*slot)
            {
                idle.entry(addr).or_default().push(*slot);
            }
        }
        // Slots with nothing left: one "done" per owner.
        for (addr, slots) in idle {
            if self.state.epoch() != epoch {
                return Ok(());
            }
            self.send(&addr, Vec::new(), slots, false).await?;
        }
        for (slot, endpoints) in with_work {
            let (now, ours, owner) = self.state.slot_at_epoch(slot);
            if now != epoch {
                return Ok(());
            }
            if ours {
                continue;
            }
            let Some(addr) = owner else {
                continue; // Nobody owns it yet; keep it.
            };
            self.hand_slot(slot, endpoints, &addr, !outgoing.contains(&slot))
                .await?;
        }
        Ok(())
    }

    /// Sends every delivery we hold of `slot` (queued for `endpoints`, or
    /// parked) to `addr` as a stream of store records, forgets them once
    /// every frame is acked, then (for a live handoff) says we are done
    /// with the slot.
    async fn hand_slot(
        &self,
        slot: u32,
        endpoints: Vec<String>,
        addr: &str,
        late: bool,
    ) -> anyhow::Result<()> {
        for ep in &endpoints {
            self.dispatcher.quiesce(ep, QUIESCE_LIMIT).await;
        }
        // Outcomes recorded without waiting are committed before we read.
        self.store.sync().await?;
        let seqs = self.store.handoff_seqs(slot, &endpoints);
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::HandoffFrame>(FRAMES_AHEAD);
        let mut acks = self
            .client(addr)?
            .handoff_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let frame = |records: Vec<u8>, done: bool| pb::HandoffFrame {
            from_agent_id: self.agent_id.clone(),
            slot,
            format: crate::store::RECORD_FORMAT,
            records,
            done,
            late,
        };
        let mut sent = 0usize;
        for chunk in seqs.chunks(FRAME_DELIVERIES) {
            let (store, chunk) = (self.store.clone(), chunk.to_vec());
            let records =
                tokio::task::spawn_blocking(move || store.handoff_records(&chunk)).await??;
            // A full channel means the receiver is behind: wait for its acks
            // before reading more.
            while sent >= FRAMES_AHEAD {
                expect_ack(&mut acks).await?;
                sent -= 1;
            }
            tx.send(frame(records, false)).await?;
            sent += 1;
        }
        while sent > 0 {
            expect_ack(&mut acks).await?;
            sent -= 1;
        }
        // Only once the owner has them stored do we forget them, and only
        // then do we say we are done: nothing of the slot is left here.
        let moved = seqs.len();
        crate::metrics::get().handed_out.add(moved as u64);
        self.store.drop_handed(seqs).await?;
        if !late {
            tx.send(frame(Vec::new(), true)).await?;
            expect_ack(&mut acks).await?;
        }
        tracing::info!(slot, to = addr, moved, late, "slot handed over");
        Ok(())
    }

    async fn send(
        &self,
        addr: &str,
        items: Vec<pb::HandedDelivery>,
        done_slots: Vec<u32>,
        late: bool,
    ) -> anyhow::Result<()> {
        let mut client = self.client(addr)?;
        client
            .handoff(pb::HandoffBatch {
                from_agent_id: self.agent_id.clone(),
                items,
                done_slots,
                late,
            })
            .await?;
        Ok(())
    }
}

/// The next ack of a handoff stream; an error if it ended or refused.
async fn expect_ack(acks: &mut tonic::Streaming<pb::HandoffFrameAck>) -> anyhow::Result<()> {
    match acks.message().await? {
        Some(_) => Ok(()),
        None => anyhow::bail!("the handoff stream ended before every frame was acked"),
    }
}
