//! "Where my money went": a pure function from the ledger state to where each fen of a
//! project's money went, by one documented rule (docs/WEB.md, "The tracing rule").
//!
//! **FIFO.** Money comes into a project as lots: a gift's net amount (gross minus the
//! channel's fee), the match it triggered, money moved in from another project, and a fee a
//! channel gave back on a refund after the refund was recorded, each at the event that
//! recorded it. Money leaves as payouts (when disbursed), approved moves out,
//! refunds and released matches. Each outflow takes the project's oldest unspent money
//! first, gifts and matches alike, with two exceptions that follow from what they are: a
//! refund first takes back what is left of the refunded gift's own lot, and a released match
//! first takes back what is left of its own match lot; only the rest comes from the oldest
//! lots. Whatever no outflow has taken is still held by the project.
//!
//! So for every lot `amount = sum(uses) + held`: every fen is traced or shown as held.

use events::Id;
use projections::{LedgerState, RequestStatus};

/// Where a lot of money came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A gift's net amount (gross minus the channel fee).
    Gift { donation_seq: u64 },
    /// The match a gift triggered.
    Match { donation_seq: u64 },
    /// Money moved in from another project by the approved move request `move_seq`.
    MoveIn { move_seq: u64 },
    /// A fee the channel gave back on the refund of donation `donation_seq` after the
    /// refund was recorded (the correction at the lot's seq).
    FeeReturned { donation_seq: u64 },
}

/// Where (part of) a lot went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A disbursed payout.
    Payout { payout_seq: u64 },
    /// An approved move to another project.
    MoveOut { move_seq: u64 },
    /// Paid back to a donor (the refund of donation `donation_seq`).
    Refund { donation_seq: u64 },
    /// A released match, back to its pool (with its gift's refund, or after review).
    MatchReleased { donation_seq: u64 },
}

/// One lot and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    pub source: Source,
    /// The seq of the event that brought the money in (a match counts at its gift's seq).
    pub seq: u64,
    pub amount_minor: u64,
    /// Parts of the lot taken by outflows, in the order they were taken.
    pub uses: Vec<(Use, u64)>,
    /// What is left: money the project still holds.
    pub held_minor: u64,
}

/// Every lot of a project, oldest first, and any outflow the lots could not cover (always
/// zero for a consistent ledger; the tests assert it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectTrace {
    pub lots: Vec<Lot>,
    pub uncovered_minor: u64,
}

impl ProjectTrace {
    /// The lot a source produced.
    pub fn lot(&self, source: Source) -> Option<&Lot> {
        self.lots.iter().find(|l| l.source == source)
    }
    /// The money still held, over all lots.
    pub fn held_minor(&self) -> u64 {
        self.lots.iter().map(|l| l.held_minor).sum()
    }
}

enum Flow {
    In(Source, u64),
    Out(Use, u64),
}

/// Applies the FIFO rule to one project's history, as recorded in `state`.
pub fn trace_project(state: &LedgerState, project: &Id) -> ProjectTrace {
    // (seq, order within the seq, flow): a gift's match and its release follow the gift and
    // the refund they belong to.
    let mut flows: Vec<(u64, u8, Flow)> = Vec::new();
    for d in state.project_donations(project) {
        let donation_seq = d.seq;
        let net = d.amount_minor.saturating_sub(d.fee_minor);
        flows.push((d.seq, 0, Flow::In(Source::Gift { donation_seq }, net)));
        if let Some((_, matched)) = &d.matched {
            flows.push((d.seq, 1, Flow::In(Source::Match { donation_seq }, *matched)));
        }
        if let Some(refund_seq) = d.refunded_seq {
            flows.push((
                refund_seq,
                0,
                // The donor gets the whole amount back; the part of the fee the channel
                // gave back with the refund returned to the project, so the project's money
                // goes down by the difference. A fee given back later is a lot of its own.
                Flow::Out(
                    Use::Refund { donation_seq },
                    d.amount_minor - state.fee_returned_at_refund(d),
                ),
            ));
            for (seq, late) in state.fee_returns_after(refund_seq) {
                flows.push((
                    seq,
                    0,
                    Flow::In(
                        Source::FeeReturned { donation_seq },
                        late.fee_returned_minor,
                    ),
                ));
            }
            // A match a review released already left (below), not with the refund.
            if let (Some((_, matched)), None) =
                (&d.matched, state.match_released_after_review(donation_seq))
            {
                flows.push((
                    refund_seq,
                    1,
                    Flow::Out(Use::MatchReleased { donation_seq }, *matched),
                ));
            }
        }
    }
    // A match a review sent back to its pool leaves when it was released; the gift stays.
    for hold in state.match_holds.values().filter(|h| &h.project == project) {
        if let Some(released_seq) = hold.released_seq {
            let donation_seq = hold.donation_seq;
            flows.push((
                released_seq,
                1,
                Flow::Out(Use::MatchReleased { donation_seq }, hold.amount_minor),
            ));
        }
    }
    for p in state.payouts.values().filter(|p| &p.project == project) {
        if let (RequestStatus::Disbursed, Some(at)) = (p.status, p.disbursed_seq) {
            let payout_seq = p.seq;
            flows.push((at, 0, Flow::Out(Use::Payout { payout_seq }, p.amount_minor)));
        }
    }
    for m in state.moves.values() {
        let (RequestStatus::Approved, Some(at)) = (m.status, m.decided_seq) else {
            continue;
        };
        let move_seq = m.seq;
        if &m.project == project {
            flows.push((at, 0, Flow::Out(Use::MoveOut { move_seq }, m.amount_minor)));
        }
        if m.to_project.as_ref() == Some(project) {
            flows.push((at, 2, Flow::In(Source::MoveIn { move_seq }, m.amount_minor)));
        }
    }
    flows.sort_by_key(|(seq, order, _)| (*seq, *order));

    let mut trace = ProjectTrace::default();
    // Every lot before `oldest` is used up.
    let mut oldest = 0usize;
    for (seq, _, flow) in flows {
        match flow {
            Flow::In(source, amount_minor) => trace.lots.push(Lot {
                source,
                seq,
                amount_minor,
                uses: Vec::new(),
                held_minor: amount_minor,
            }),
            Flow::Out(used_for, amount_minor) => {
                let mut left = amount_minor;
                let own = match used_for {
                    Use::Refund { donation_seq } => Some(Source::Gift { donation_seq }),
                    Use::MatchReleased { donation_seq } => Some(Source::Match { donation_seq }),
                    _ => None,
                };
                if let Some(own) = own {
                    if let Some(lot) = trace.lots.iter_mut().find(|l| l.source == own) {
                        take(lot, used_for, &mut left);
                    }
                }
                while left > 0 && oldest < trace.lots.len() {
                    take(&mut trace.lots[oldest], used_for, &mut left);
                    if trace.lots[oldest].held_minor == 0 {
                        oldest += 1;
                    }
                }
                trace.uncovered_minor += left;
            }
        }
    }
    for lot in &trace.lots {
        debug_assert_eq!(
            lot.uses.iter().map(|(_, a)| a).sum::<u64>() + lot.held_minor,
            lot.amount_minor
        );
    }
    trace
}

fn take(lot: &mut Lot, used_for: Use, left: &mut u64) {
    let part = lot.held_minor.min(*left);
    if part > 0 {
        lot.held_minor -= part;
        *left -= part;
        lot.uses.push((used_for, part));
    }
}
