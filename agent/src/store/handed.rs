//! Deliveries moving between agents: what a handoff carries of each, from
//! the wire's `HandedDelivery` messages or from a stream of the store's own
//! records (`HandoffStream`), and how the sender writes that stream.

use herald_proto::v1 as pb;

use super::convert;
use super::record::*;
use super::segment::put_record;

/// One delivery as a handoff carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handed {
    /// Its place in its slot's order; `None` from a sender that predates
    /// stamps (it is then stamped on arrival).
    pub stamp: Option<Stamp>,
    /// Its state (queued: pending or retrying).
    pub state: DeliveryState,
    pub delivery: DeliveryRec,
    /// Its attempts so far, oldest first.
    pub attempts: Vec<AttemptLog>,
}

/// From `HandedDelivery` messages (items without a delivery are skipped).
pub fn from_wire(items: Vec<pb::HandedDelivery>) -> Vec<Handed> {
    items
        .into_iter()
        .filter_map(|item| {
            let state = convert::handed_state(&item);
            let stamp = item.stamp.map(|s| Stamp {
                epoch: s.epoch,
                seq: s.seq,
            });
            Some(Handed {
                stamp,
                state,
                delivery: convert::delivery_rec(item.delivery?),
                attempts: item
                    .attempt_log
                    .into_iter()
                    .map(convert::attempt_log)
                    .collect(),
            })
        })
        .collect()
}

/// From a stream's records: each delivery is an `Accept`, followed by the
/// `Attempt`s of the same seq. Anything else is refused, saying where.
pub fn from_records(records: Vec<Record>) -> Result<Vec<Handed>, String> {
    let mut out: Vec<(u64, Handed)> = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        match r {
            Record::Accept(a) => {
                if !a.state.status.is_queued() {
                    return Err(format!(
                        "record {i}: a finished delivery is not handed over"
                    ));
                }
                out.push((
                    a.seq,
                    Handed {
                        stamp: Some(a.stamp),
                        state: a.state,
                        delivery: a.delivery,
                        attempts: Vec::new(),
                    },
                ));
            }
            Record::Attempt(a) => match out.last_mut() {
                Some((seq, h)) if *seq == a.seq => h.attempts.push(a.log),
                _ => {
                    return Err(format!(
                        "record {i}: an attempt that follows no delivery of its seq"
                    ));
                }
            },
            _ => {
                return Err(format!(
                    "record {i}: only deliveries and attempts are handed over"
                ));
            }
        }
    }
    Ok(out.into_iter().map(|(_, h)| h).collect())
}

/// Appends `h` to a stream as the receiver reads it: an `Accept` (its seq
/// only ties its attempts to it), then its attempts.
pub fn encode(buf: &mut Vec<u8>, seq: u64, h: &Handed) {
    put_record(
        buf,
        &Record::Accept(Box::new(Accept {
            seq,
            stamp: h.stamp.unwrap_or_default(),
            accepted_at_ms: 0,
            origin: Origin::Handed,
            parked: false,
            state: h.state,
            delivery: h.delivery.clone(),
        })),
    );
    for log in &h.attempts {
        put_record(
            buf,
            &Record::Attempt(Box::new(Attempt {
                seq,
                carried: true,
                at_ms: log.started_at_ms,
                prev: None,
                outcome: Outcome::Held,
                log: log.clone(),
            })),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment::parse_records;

    fn handed(n: u64) -> Handed {
        Handed {
            stamp: Some(Stamp { epoch: 3, seq: n }),
            state: DeliveryState {
                status: Status::Retrying,
                attempts: 2,
                next_attempt_at_ms: 9,
                ..DeliveryState::pending()
            },
            delivery: DeliveryRec {
                delivery_id: format!("dlv_{n:024x}"),
                endpoint_id: "ep".into(),
                payload_json: "{}".into(),
                ..Default::default()
            },
            attempts: vec![
                AttemptLog {
                    number: 1,
                    response_status: 500,
                    ..Default::default()
                },
                AttemptLog {
                    number: 2,
                    response_status: 503,
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn a_stream_reads_back_as_written() {
        let sent: Vec<Handed> = (1..=3).map(handed).collect();
        let mut buf = Vec::new();
        for (i, h) in sent.iter().enumerate() {
            encode(&mut buf, i as u64 + 10, h);
        }
        let got = from_records(parse_records(&buf).unwrap()).unwrap();
        assert_eq!(got, sent);
    }

    #[test]
    fn a_damaged_or_misshapen_stream_is_refused_saying_where() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, &handed(1));
        let mut bad = buf.clone();
        bad[20] ^= 1;
        assert!(parse_records(&bad).unwrap_err().starts_with("byte 0"));
        let orphan = Record::Attempt(Box::new(Attempt {
            seq: 7,
            carried: true,
            at_ms: 0,
            prev: None,
            outcome: Outcome::Held,
            log: AttemptLog::default(),
        }));
        let err = from_records(vec![orphan]).unwrap_err();
        assert!(err.starts_with("record 0"), "{err}");
        let err = from_records(vec![Record::MarkLate { up_to: 1 }]).unwrap_err();
        assert!(err.contains("only deliveries"), "{err}");
    }
}
