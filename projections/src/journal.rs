//! The double-entry journal: every event becomes a balanced journal entry (debits equal
//! credits in each currency) on a chart of accounts fit for a charity, and the reports
//! finance staff close the books with: the trial balance at any seq or date, an account's
//! ledger with its running balance, and each project's fund statement.
//!
//! A pure fold, like every projection: [`Books`] folds the [`LedgerState`] and the trial
//! balance together, and returns each event's [`JournalEntry`] so callers can stream the
//! journal without keeping it.
//!
//! The chart of accounts (docs/FINANCE.md has the posting rules per event):
//!
//! | code | account | class | dimension |
//! |------|---------|-------|-----------|
//! | 1001 | Bank | asset | – |
//! | 1101 | Channel clearing | asset | channel |
//! | 1201 | Matching receivable | asset | pool |
//! | 2101 | Payouts payable | liability | project |
//! | 3101 | Transfers between funds | net assets | project |
//! | 4101 | Restricted donation income | income | project |
//! | 4102 | Donations refunded (contra income) | income | project |
//! | 4201 | Matching income | income | pool, project |
//! | 5101 | Channel fees | expense | channel, project |
//! | 5201 | Programme cost | expense | project |
//! | 9101 | Pledges receivable (memo) | memo | project |
//! | 9102 | Pledges outstanding (memo contra) | memo | project |

use std::collections::BTreeMap;
use std::fmt;

use events::{Channel, Currency, EventBody, EventRecord, Hash, Id, Resolution, SealedEvent};
use serde::{Deserialize, Serialize};

use crate::{LedgerState, ProjectionError};

/// The class of an account: where it sits in the statements and which side is its normal
/// balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountClass {
    Asset,
    Liability,
    NetAssets,
    Income,
    Expense,
    /// Off-balance memorandum accounts (pledges): they balance among themselves.
    Memo,
}

impl AccountClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountClass::Asset => "asset",
            AccountClass::Liability => "liability",
            AccountClass::NetAssets => "net_assets",
            AccountClass::Income => "income",
            AccountClass::Expense => "expense",
            AccountClass::Memo => "memo",
        }
    }
}

/// An account of the chart. Dimensions (channel, pool, project) are part of the account,
/// so every project's restricted fund can be read off the trial balance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "account", rename_all = "snake_case")]
pub enum Account {
    /// 1001: cash at bank. Bank-channel gifts land here directly.
    Bank,
    /// 1101: money a payment channel (WeChat Pay, Alipay, the cash box, the charity mall)
    /// holds for the charity until it settles to the bank, net of its fees.
    Clearing { channel: Channel },
    /// 1201: matching money a sponsor owes for matches allocated from its pool.
    MatchingReceivable { pool: Id },
    /// 2101: payouts approved and not yet paid.
    PayoutsPayable { project: Id },
    /// 3101: restricted net assets moved out of (debit) or into (credit) a project.
    FundTransfers { project: Id },
    /// 4101: restricted donation income, gross of channel fees.
    DonationIncome { project: Id },
    /// 4102: donations returned to donors (contra income).
    DonationsRefunded { project: Id },
    /// 4201: matching income from a sponsor's pool.
    MatchingIncome { pool: Id, project: Id },
    /// 5101: fees the payment channel kept, charged to the project the gift was for.
    ChannelFees { channel: Channel, project: Id },
    /// 5201: programme cost: payouts approved for the project's purpose.
    ProgrammeCost { project: Id },
    /// 9101: pledges outstanding, memo (not an asset: a promise is not cash).
    PledgesReceivable { project: Id },
    /// 9102: the memo contra of 9101.
    PledgesOutstanding { project: Id },
}

impl Account {
    /// The four-digit code of the account's kind.
    pub fn code(&self) -> &'static str {
        match self {
            Account::Bank => "1001",
            Account::Clearing { .. } => "1101",
            Account::MatchingReceivable { .. } => "1201",
            Account::PayoutsPayable { .. } => "2101",
            Account::FundTransfers { .. } => "3101",
            Account::DonationIncome { .. } => "4101",
            Account::DonationsRefunded { .. } => "4102",
            Account::MatchingIncome { .. } => "4201",
            Account::ChannelFees { .. } => "5101",
            Account::ProgrammeCost { .. } => "5201",
            Account::PledgesReceivable { .. } => "9101",
            Account::PledgesOutstanding { .. } => "9102",
        }
    }

    /// The name of the account's kind.
    pub fn title(&self) -> &'static str {
        match self {
            Account::Bank => "Bank",
            Account::Clearing { .. } => "Channel clearing",
            Account::MatchingReceivable { .. } => "Matching receivable",
            Account::PayoutsPayable { .. } => "Payouts payable",
            Account::FundTransfers { .. } => "Transfers between funds",
            Account::DonationIncome { .. } => "Restricted donation income",
            Account::DonationsRefunded { .. } => "Donations refunded",
            Account::MatchingIncome { .. } => "Matching income",
            Account::ChannelFees { .. } => "Channel fees",
            Account::ProgrammeCost { .. } => "Programme cost",
            Account::PledgesReceivable { .. } => "Pledges receivable (memo)",
            Account::PledgesOutstanding { .. } => "Pledges outstanding (memo)",
        }
    }

    pub fn class(&self) -> AccountClass {
        match self {
            Account::Bank | Account::Clearing { .. } | Account::MatchingReceivable { .. } => {
                AccountClass::Asset
            }
            Account::PayoutsPayable { .. } => AccountClass::Liability,
            Account::FundTransfers { .. } => AccountClass::NetAssets,
            Account::DonationIncome { .. }
            | Account::DonationsRefunded { .. }
            | Account::MatchingIncome { .. } => AccountClass::Income,
            Account::ChannelFees { .. } | Account::ProgrammeCost { .. } => AccountClass::Expense,
            Account::PledgesReceivable { .. } | Account::PledgesOutstanding { .. } => {
                AccountClass::Memo
            }
        }
    }

    /// Whether the account normally carries a debit balance (assets, expenses, contra
    /// income, the memo receivable).
    pub fn debit_normal(&self) -> bool {
        matches!(
            self,
            Account::Bank
                | Account::Clearing { .. }
                | Account::MatchingReceivable { .. }
                | Account::DonationsRefunded { .. }
                | Account::ChannelFees { .. }
                | Account::ProgrammeCost { .. }
                | Account::PledgesReceivable { .. }
        )
    }

    /// The project (restricted fund) the account belongs to, if any.
    pub fn project(&self) -> Option<&Id> {
        match self {
            Account::Bank | Account::Clearing { .. } | Account::MatchingReceivable { .. } => None,
            Account::PayoutsPayable { project }
            | Account::FundTransfers { project }
            | Account::DonationIncome { project }
            | Account::DonationsRefunded { project }
            | Account::MatchingIncome { project, .. }
            | Account::ChannelFees { project, .. }
            | Account::ProgrammeCost { project }
            | Account::PledgesReceivable { project }
            | Account::PledgesOutstanding { project } => Some(project),
        }
    }

    /// The account's key: its code and dimensions joined by `:`, such as `1101:wechat` or
    /// `4201:pool-01:cp-001`. [`Account::parse`] reads it back.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Reads an account key (see [`Account::key`]).
    pub fn parse(key: &str) -> Result<Account, ProjectionError> {
        let bad = |why: &str| ProjectionError::BadAccount {
            key: key.chars().take(80).collect(),
            reason: why.to_owned(),
        };
        let parts: Vec<&str> = key.split(':').collect();
        let id = |i: usize| -> Result<Id, ProjectionError> {
            let s = parts.get(i).ok_or_else(|| bad("a dimension is missing"))?;
            Id::new(s).map_err(|e| bad(&e.to_string()))
        };
        let channel = |i: usize| -> Result<Channel, ProjectionError> {
            let s = parts.get(i).ok_or_else(|| bad("the channel is missing"))?;
            Channel::ALL
                .into_iter()
                .find(|c| c.as_str() == *s)
                .ok_or_else(|| bad("unknown channel"))
        };
        let (account, arity) = match parts[0] {
            "1001" => (Account::Bank, 1),
            "1101" => (
                Account::Clearing {
                    channel: channel(1)?,
                },
                2,
            ),
            "1201" => (Account::MatchingReceivable { pool: id(1)? }, 2),
            "2101" => (Account::PayoutsPayable { project: id(1)? }, 2),
            "3101" => (Account::FundTransfers { project: id(1)? }, 2),
            "4101" => (Account::DonationIncome { project: id(1)? }, 2),
            "4102" => (Account::DonationsRefunded { project: id(1)? }, 2),
            "4201" => (
                Account::MatchingIncome {
                    pool: id(1)?,
                    project: id(2)?,
                },
                3,
            ),
            "5101" => (
                Account::ChannelFees {
                    channel: channel(1)?,
                    project: id(2)?,
                },
                3,
            ),
            "5201" => (Account::ProgrammeCost { project: id(1)? }, 2),
            "9101" => (Account::PledgesReceivable { project: id(1)? }, 2),
            "9102" => (Account::PledgesOutstanding { project: id(1)? }, 2),
            _ => return Err(bad("unknown account code")),
        };
        if parts.len() != arity {
            return Err(bad("wrong number of dimensions"));
        }
        Ok(account)
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())?;
        match self {
            Account::Bank => Ok(()),
            Account::Clearing { channel } => write!(f, ":{}", channel.as_str()),
            Account::MatchingReceivable { pool } => write!(f, ":{pool}"),
            Account::MatchingIncome { pool, project } => write!(f, ":{pool}:{project}"),
            Account::ChannelFees { channel, project } => {
                write!(f, ":{}:{project}", channel.as_str())
            }
            Account::PayoutsPayable { project }
            | Account::FundTransfers { project }
            | Account::DonationIncome { project }
            | Account::DonationsRefunded { project }
            | Account::ProgrammeCost { project }
            | Account::PledgesReceivable { project }
            | Account::PledgesOutstanding { project } => write!(f, ":{project}"),
        }
    }
}

/// Where money received through a channel sits until it is in the bank: gifts by bank
/// transfer are in the bank already; every other channel has its clearing account.
pub fn receiving_account(channel: Channel) -> Account {
    match channel {
        Channel::Bank => Account::Bank,
        other => Account::Clearing { channel: other },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Debit,
    Credit,
}

/// One line of a journal entry. Amounts are positive; zero lines are never written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: Account,
    pub side: Side,
    pub amount_minor: u64,
    pub currency: Currency,
}

/// The postings one event produced. Many events (a project opened, a payout requested, a
/// statement line) post nothing; their entries are empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub seq: u64,
    pub ts_ms: u64,
    pub event_type: &'static str,
    /// A short description for people: which donation, payout or move. Never personal data.
    pub memo: String,
    pub postings: Vec<Posting>,
}

impl JournalEntry {
    /// Debits minus credits per currency; all zero for a balanced entry.
    pub fn imbalance(&self) -> BTreeMap<Currency, i128> {
        let mut out = BTreeMap::new();
        for p in &self.postings {
            let v = i128::from(p.amount_minor);
            *out.entry(p.currency).or_insert(0) += match p.side {
                Side::Debit => v,
                Side::Credit => -v,
            };
        }
        out
    }

    /// Debits equal credits in every currency.
    pub fn is_balanced(&self) -> bool {
        self.imbalance().values().all(|v| *v == 0)
    }
}

struct EntryBuilder {
    postings: Vec<Posting>,
}

impl EntryBuilder {
    fn new() -> EntryBuilder {
        EntryBuilder {
            postings: Vec::new(),
        }
    }
    fn post(&mut self, account: Account, side: Side, amount_minor: u64, currency: Currency) {
        if amount_minor > 0 {
            self.postings.push(Posting {
                account,
                side,
                amount_minor,
                currency,
            });
        }
    }
    /// Debit one account and credit another with the same amount.
    fn transfer(&mut self, debit: Account, credit: Account, amount_minor: u64, currency: Currency) {
        self.post(debit, Side::Debit, amount_minor, currency);
        self.post(credit, Side::Credit, amount_minor, currency);
    }
}

fn invariant(seq: u64, what: impl Into<String>) -> ProjectionError {
    ProjectionError::Invariant {
        seq,
        what: what.into(),
    }
}

/// The journal entry of one event, given the ledger state just before and just after it.
/// Pure: the same states and event always give the same entry.
pub fn journal_entry(
    before: &LedgerState,
    after: &LedgerState,
    r: &EventRecord,
) -> Result<JournalEntry, ProjectionError> {
    let seq = r.seq;
    let mut e = EntryBuilder::new();
    let memo = match &r.body {
        EventBody::DonationReceived(d) => {
            let gross = d.amount_minor.minor();
            e.post(
                receiving_account(d.channel),
                Side::Debit,
                d.net_minor(),
                d.currency,
            );
            e.post(
                Account::ChannelFees {
                    channel: d.channel,
                    project: d.project.clone(),
                },
                Side::Debit,
                d.fee_minor,
                d.currency,
            );
            e.post(
                Account::DonationIncome {
                    project: d.project.clone(),
                },
                Side::Credit,
                gross,
                d.currency,
            );
            format!(
                "donation {} via {} txn {}",
                d.receipt_code,
                d.channel.as_str(),
                d.channel_txn_id
            )
        }
        EventBody::DonationRefunded(x) => {
            let (d, fee_returned) = fee_returned_by(before, &r.body, seq)?;
            // The full amount goes back through the channel; the fee stays an expense,
            // less what the channel gave back of it (`post_fee_returned`).
            e.transfer(
                Account::DonationsRefunded {
                    project: d.project.clone(),
                },
                receiving_account(d.channel),
                d.amount_minor,
                d.currency,
            );
            post_fee_returned(&mut e, d, fee_returned);
            if fee_returned > 0 {
                format!(
                    "refund of donation {}, fee {} returned",
                    x.donation_seq, fee_returned
                )
            } else {
                format!("refund of donation {}", x.donation_seq)
            }
        }
        // A fee given back after the refund was recorded is booked as one given back
        // with it, on the day of the correction.
        EventBody::RefundFeeReturned(x) => {
            let (d, fee_returned) = fee_returned_by(before, &r.body, seq)?;
            post_fee_returned(&mut e, d, fee_returned);
            format!(
                "fee {} returned on refund {} of donation {}",
                fee_returned, x.refund_seq, d.seq
            )
        }
        EventBody::PledgeMade(_) => format!("pledge {seq} made"),
        EventBody::PledgeCancelled(x) => format!("pledge {} cancelled", x.pledge_seq),
        EventBody::MatchAllocated(m) => {
            let currency = pool_currency(before, &m.pool, seq)?;
            e.transfer(
                Account::MatchingReceivable {
                    pool: m.pool.clone(),
                },
                Account::MatchingIncome {
                    pool: m.pool.clone(),
                    project: m.project.clone(),
                },
                m.amount_minor.minor(),
                currency,
            );
            format!("match for donation {} from {}", m.donation_seq, m.pool)
        }
        EventBody::MatchReleased(m) => {
            post_match_release(&mut e, before, &m.pool, &m.project, m.amount_minor, seq)?;
            format!("match released for donation {}", m.donation_seq)
        }
        // A release after review is booked as a refund's release of a match.
        EventBody::MatchRevoked(m) => {
            post_match_release(&mut e, before, &m.pool, &m.project, m.amount_minor, seq)?;
            format!(
                "match released after review for donation {}",
                m.donation_seq
            )
        }
        // A hold moves no money between accounts: the match is still the project's income
        // and the sponsor's debt. Only the memo says so.
        EventBody::MatchFrozen(m) => format!(
            "match for donation {} frozen for review (no posting)",
            m.donation_seq
        ),
        EventBody::MatchUnfrozen(m) => format!(
            "match for donation {} cleared by review (no posting)",
            m.donation_seq
        ),
        EventBody::PayoutApproved(d) => {
            let req = before
                .payouts
                .get(&d.request_seq)
                .ok_or_else(|| invariant(seq, format!("unknown payout {}", d.request_seq)))?;
            e.transfer(
                Account::ProgrammeCost {
                    project: req.project.clone(),
                },
                Account::PayoutsPayable {
                    project: req.project.clone(),
                },
                req.amount_minor,
                req.currency,
            );
            format!("payout {} approved", d.request_seq)
        }
        EventBody::PayoutDisbursed(x) => {
            let req = before
                .payouts
                .get(&x.payout_seq)
                .ok_or_else(|| invariant(seq, format!("unknown payout {}", x.payout_seq)))?;
            e.transfer(
                Account::PayoutsPayable {
                    project: req.project.clone(),
                },
                Account::Bank,
                req.amount_minor,
                req.currency,
            );
            format!(
                "payout {} paid, bank ref {}",
                x.payout_seq, x.bank_reference
            )
        }
        EventBody::MoveApproved(d) => {
            let req = before
                .moves
                .get(&d.request_seq)
                .ok_or_else(|| invariant(seq, format!("unknown move {}", d.request_seq)))?;
            let to = req
                .to_project
                .clone()
                .ok_or_else(|| invariant(seq, "a move without a receiving project"))?;
            e.transfer(
                Account::FundTransfers {
                    project: req.project.clone(),
                },
                Account::FundTransfers { project: to },
                req.amount_minor,
                req.currency,
            );
            format!("move {} approved", d.request_seq)
        }
        EventBody::ExceptionResolved(x) => {
            let st = before
                .statements
                .get(&x.statement_seq)
                .ok_or_else(|| invariant(seq, format!("unknown statement {}", x.statement_seq)))?;
            match &x.resolution {
                Resolution::Settlement {
                    channel,
                    amount_minor,
                } => e.transfer(
                    Account::Bank,
                    receiving_account(*channel),
                    amount_minor.minor(),
                    st.currency,
                ),
                Resolution::MatchingReceived { pool, amount_minor } => e.transfer(
                    Account::Bank,
                    Account::MatchingReceivable { pool: pool.clone() },
                    amount_minor.minor(),
                    st.currency,
                ),
                Resolution::Explained | Resolution::Linked { .. } => {}
            }
            format!(
                "statement {} exception {}: {}",
                x.statement_seq,
                match (x.line_no, x.entry_seq) {
                    (Some(l), _) => format!("line {l}"),
                    (_, Some(s)) => format!("entry {s}"),
                    _ => String::new(),
                },
                x.resolution.as_str()
            )
        }
        other => other.type_name().replace('_', " "),
    };
    post_pledge_memo(before, after, seq, &r.body, &mut e);
    let entry = JournalEntry {
        seq,
        ts_ms: r.ts_ms,
        event_type: r.body.type_name(),
        memo,
        postings: e.postings,
    };
    if !entry.is_balanced() {
        return Err(invariant(seq, "a journal entry does not balance"));
    }
    Ok(entry)
}

/// The refunded gift whose fee a refund or a correction gives back, and how much
/// ([`LedgerState::fee_returned_by`]); a gift the state does not know is a bug.
fn fee_returned_by<'s>(
    before: &'s LedgerState,
    body: &EventBody,
    seq: u64,
) -> Result<(&'s crate::Donation, u64), ProjectionError> {
    before
        .fee_returned_by(body)
        .ok_or_else(|| invariant(seq, "a fee given back on an unknown refund or gift"))
}

/// The part of a gift's fee the channel gave back: the channel owes it again (its
/// clearing account, or the bank for a bank gift) and the project's fee expense falls by
/// it, the reverse of the gift's fee posting for that part. Nothing when it is 0.
fn post_fee_returned(e: &mut EntryBuilder, d: &crate::Donation, fee_returned: u64) {
    e.transfer(
        receiving_account(d.channel),
        Account::ChannelFees {
            channel: d.channel,
            project: d.project.clone(),
        },
        fee_returned,
        d.currency,
    );
}

/// A match going back to its pool (with its gift's refund, or after review): the reverse
/// of its allocation, Dr 4201 matching income / Cr 1201 matching receivable.
fn post_match_release(
    e: &mut EntryBuilder,
    before: &LedgerState,
    pool: &Id,
    project: &Id,
    amount: events::Amount,
    seq: u64,
) -> Result<(), ProjectionError> {
    let currency = pool_currency(before, pool, seq)?;
    e.transfer(
        Account::MatchingIncome {
            pool: pool.clone(),
            project: project.clone(),
        },
        Account::MatchingReceivable { pool: pool.clone() },
        amount.minor(),
        currency,
    );
    Ok(())
}

fn pool_currency(state: &LedgerState, pool: &Id, seq: u64) -> Result<Currency, ProjectionError> {
    state
        .pools
        .get(pool)
        .map(|p| p.currency)
        .ok_or_else(|| invariant(seq, format!("unknown pool {pool}")))
}

/// Pledges are memo items: the change in a pledge's outstanding amount moves between the
/// memo receivable and its contra, so they balance without touching the balance sheet.
fn post_pledge_memo(
    before: &LedgerState,
    after: &LedgerState,
    seq: u64,
    body: &EventBody,
    e: &mut EntryBuilder,
) {
    let pledge_seq = match body {
        EventBody::PledgeMade(_) => Some(seq),
        EventBody::PledgeCancelled(p) => Some(p.pledge_seq),
        EventBody::DonationReceived(d) => d.pledge_seq,
        EventBody::DonationRefunded(r) => before
            .donations
            .get(&r.donation_seq)
            .and_then(|d| d.pledge_seq),
        _ => None,
    };
    let Some(pledge_seq) = pledge_seq else { return };
    let outstanding = |s: &LedgerState| s.pledges.get(&pledge_seq).map(|p| p.outstanding());
    let Some(after_pledge) = after.pledges.get(&pledge_seq) else {
        return;
    };
    let was = outstanding(before).unwrap_or(0);
    let now = outstanding(after).unwrap_or(0);
    let receivable = Account::PledgesReceivable {
        project: after_pledge.project.clone(),
    };
    let contra = Account::PledgesOutstanding {
        project: after_pledge.project.clone(),
    };
    if now > was {
        e.transfer(receivable, contra, now - was, after_pledge.currency);
    } else if was > now {
        e.transfer(contra, receivable, was - now, after_pledge.currency);
    }
}

/// Debit and credit turnover of one account in one currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turnover {
    pub debit_minor: u64,
    pub credit_minor: u64,
}

impl Turnover {
    /// Debits minus credits.
    pub fn balance(&self) -> i128 {
        i128::from(self.debit_minor) - i128::from(self.credit_minor)
    }
}

/// Totals per account and currency. Ordered, so two equal trial balances serialize alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialBalance {
    /// Events folded (the next seq).
    pub position: u64,
    /// The time of the last event folded.
    pub last_ts_ms: u64,
    pub accounts: BTreeMap<(Currency, Account), Turnover>,
}

/// One row of a trial balance report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrialBalanceRow {
    pub currency: Currency,
    pub account: Account,
    pub debit_minor: u64,
    pub credit_minor: u64,
    /// Debits minus credits.
    pub balance_minor: i128,
}

impl TrialBalance {
    /// Adds an entry's postings.
    pub fn post(&mut self, entry: &JournalEntry) -> Result<(), ProjectionError> {
        for p in &entry.postings {
            let t = self
                .accounts
                .entry((p.currency, p.account.clone()))
                .or_default();
            let side = match p.side {
                Side::Debit => &mut t.debit_minor,
                Side::Credit => &mut t.credit_minor,
            };
            *side = side
                .checked_add(p.amount_minor)
                .ok_or_else(|| invariant(entry.seq, "an account's turnover overflowed u64"))?;
        }
        self.position = entry.seq + 1;
        self.last_ts_ms = entry.ts_ms;
        Ok(())
    }

    /// Total debits and credits per currency.
    pub fn totals(&self) -> BTreeMap<Currency, (u128, u128)> {
        let mut out: BTreeMap<Currency, (u128, u128)> = BTreeMap::new();
        for ((currency, _), t) in &self.accounts {
            let e = out.entry(*currency).or_default();
            e.0 += u128::from(t.debit_minor);
            e.1 += u128::from(t.credit_minor);
        }
        out
    }

    /// Debits equal credits in every currency.
    pub fn is_balanced(&self) -> bool {
        self.totals().values().all(|(d, c)| d == c)
    }

    /// The rows, ordered by currency then account.
    pub fn rows(&self) -> Vec<TrialBalanceRow> {
        self.accounts
            .iter()
            .map(|((currency, account), t)| TrialBalanceRow {
                currency: *currency,
                account: account.clone(),
                debit_minor: t.debit_minor,
                credit_minor: t.credit_minor,
                balance_minor: t.balance(),
            })
            .collect()
    }

    /// One account's turnover (zero when it was never posted to).
    pub fn turnover(&self, currency: Currency, account: &Account) -> Turnover {
        self.accounts
            .get(&(currency, account.clone()))
            .copied()
            .unwrap_or_default()
    }

    /// The fund statement of one project, read off the trial balance.
    pub fn fund_statement(&self, project: &Id, currency: Currency) -> FundStatement {
        let mut s = FundStatement {
            project: project.clone(),
            currency,
            donations_gross_minor: 0,
            refunded_minor: 0,
            fees_minor: 0,
            fees_returned_minor: 0,
            matched_minor: 0,
            programme_cost_minor: 0,
            paid_out_minor: 0,
            payable_minor: 0,
            moved_in_minor: 0,
            moved_out_minor: 0,
            pledges_outstanding_minor: 0,
        };
        let range = self
            .accounts
            .range((currency, Account::Bank)..)
            .take_while(|((c, _), _)| *c == currency);
        for ((_, account), t) in range {
            if account.project() != Some(project) {
                continue;
            }
            match account {
                Account::DonationIncome { .. } => {
                    s.donations_gross_minor +=
                        i128::from(t.credit_minor) - i128::from(t.debit_minor)
                }
                Account::DonationsRefunded { .. } => s.refunded_minor += t.balance(),
                Account::ChannelFees { .. } => {
                    s.fees_minor += i128::from(t.debit_minor);
                    s.fees_returned_minor += i128::from(t.credit_minor);
                }
                Account::MatchingIncome { .. } => s.matched_minor += -t.balance(),
                Account::ProgrammeCost { .. } => s.programme_cost_minor += t.balance(),
                Account::FundTransfers { .. } => {
                    s.moved_in_minor += i128::from(t.credit_minor);
                    s.moved_out_minor += i128::from(t.debit_minor);
                }
                Account::PayoutsPayable { .. } => {
                    s.paid_out_minor += i128::from(t.debit_minor);
                    s.payable_minor += -t.balance();
                }
                Account::PledgesReceivable { .. } => s.pledges_outstanding_minor += t.balance(),
                _ => {}
            }
        }
        s
    }
}

/// A project's restricted fund: where its money came from and went, from the journal.
///
/// `net_assets = donations_gross − refunded − fees + fees_returned + matched −
/// programme_cost + moved_in − moved_out`; `balance = net_assets + payable` is the money the charity holds for the
/// project, which equals the ledger's balance projection to the fen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FundStatement {
    pub project: Id,
    pub currency: Currency,
    pub donations_gross_minor: i128,
    pub refunded_minor: i128,
    /// Channel fees charged on gifts (the debits of 5101).
    pub fees_minor: i128,
    /// Channel fees given back on refunds (the credits of 5101).
    pub fees_returned_minor: i128,
    pub matched_minor: i128,
    /// Payouts approved (recognised as cost when approved).
    pub programme_cost_minor: i128,
    /// Payouts paid from the bank.
    pub paid_out_minor: i128,
    /// Payouts approved and not yet paid.
    pub payable_minor: i128,
    pub moved_in_minor: i128,
    pub moved_out_minor: i128,
    /// Memo: pledges promised and not yet fulfilled or cancelled.
    pub pledges_outstanding_minor: i128,
}

impl FundStatement {
    /// Restricted net assets of the project.
    pub fn net_assets_minor(&self) -> i128 {
        self.donations_gross_minor - self.refunded_minor - self.fees_minor
            + self.fees_returned_minor
            + self.matched_minor
            - self.programme_cost_minor
            + self.moved_in_minor
            - self.moved_out_minor
    }
    /// Money held for the project: net assets plus approved payouts not yet paid.
    pub fn balance_minor(&self) -> i128 {
        self.net_assets_minor() + self.payable_minor
    }
}

/// Which events a report covers: those with `seq <= through_seq` and `ts_ms < before_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cutoff {
    pub through_seq: Option<u64>,
    pub before_ms: Option<u64>,
}

impl Cutoff {
    /// Whether the event is inside the cutoff. Events come in seq and time order, so the
    /// first event outside it ends the report.
    pub fn includes(&self, seq: u64, ts_ms: u64) -> bool {
        self.through_seq.is_none_or(|s| seq <= s) && self.before_ms.is_none_or(|t| ts_ms < t)
    }
}

/// The ledger state and the trial balance, folded together. Each `apply` returns the
/// event's journal entry.
#[derive(Debug, Clone, Default)]
pub struct Books {
    pub ledger: LedgerState,
    pub trial: TrialBalance,
}

impl Books {
    pub fn apply(&mut self, event: &SealedEvent) -> Result<JournalEntry, ProjectionError> {
        self.apply_record(event.record(), event.hash())
    }

    pub fn apply_record(
        &mut self,
        r: &EventRecord,
        hash: Hash,
    ) -> Result<JournalEntry, ProjectionError> {
        let before = self.ledger.clone();
        self.ledger.apply_record(r, hash)?;
        let entry = journal_entry(&before, &self.ledger, r)?;
        self.trial.post(&entry)?;
        Ok(entry)
    }

    /// The fund statement of a project, in its currency; `None` for an unknown project.
    pub fn fund_statement(&self, project: &Id) -> Option<FundStatement> {
        let p = self.ledger.projects.get(project)?;
        Some(self.trial.fund_statement(project, p.currency))
    }
}

/// One line of an account's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountLine {
    pub seq: u64,
    pub ts_ms: u64,
    pub event_type: &'static str,
    pub memo: String,
    pub debit_minor: u64,
    pub credit_minor: u64,
    /// Debits minus credits so far, in the account's currency.
    pub running_balance_minor: i128,
}

/// An account's ledger with its running balance, built from journal entries in order.
#[derive(Debug, Clone)]
pub struct AccountLedger {
    pub account: Account,
    pub currency: Currency,
    running: i128,
}

impl AccountLedger {
    pub fn new(account: Account, currency: Currency) -> AccountLedger {
        AccountLedger {
            account,
            currency,
            running: 0,
        }
    }

    /// The lines this entry adds to the account (usually none or one).
    pub fn push(&mut self, entry: &JournalEntry) -> Vec<AccountLine> {
        let mut out = Vec::new();
        for p in &entry.postings {
            if p.account != self.account || p.currency != self.currency {
                continue;
            }
            let (debit, credit) = match p.side {
                Side::Debit => (p.amount_minor, 0),
                Side::Credit => (0, p.amount_minor),
            };
            self.running += i128::from(debit) - i128::from(credit);
            out.push(AccountLine {
                seq: entry.seq,
                ts_ms: entry.ts_ms,
                event_type: entry.event_type,
                memo: entry.memo.clone(),
                debit_minor: debit,
                credit_minor: credit,
                running_balance_minor: self.running,
            });
        }
        out
    }

    /// The balance so far (debits minus credits).
    pub fn balance_minor(&self) -> i128 {
        self.running
    }
}

/// The trial balance of a sequence of events, up to a cutoff.
pub fn trial_balance<'a>(
    events: impl IntoIterator<Item = &'a SealedEvent>,
    cutoff: Cutoff,
) -> Result<TrialBalance, ProjectionError> {
    let mut books = Books::default();
    for e in events {
        if !cutoff.includes(e.seq(), e.record().ts_ms) {
            break;
        }
        books.apply(e)?;
    }
    Ok(books.trial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_keys_round_trip() {
        let p = Id::new("cp-001").unwrap();
        let pool = Id::new("pool-1").unwrap();
        let all = vec![
            Account::Bank,
            Account::Clearing {
                channel: Channel::CharityMall,
            },
            Account::MatchingReceivable { pool: pool.clone() },
            Account::PayoutsPayable { project: p.clone() },
            Account::FundTransfers { project: p.clone() },
            Account::DonationIncome { project: p.clone() },
            Account::DonationsRefunded { project: p.clone() },
            Account::MatchingIncome {
                pool,
                project: p.clone(),
            },
            Account::ChannelFees {
                channel: Channel::Alipay,
                project: p.clone(),
            },
            Account::ProgrammeCost { project: p.clone() },
            Account::PledgesReceivable { project: p.clone() },
            Account::PledgesOutstanding { project: p },
        ];
        for a in all {
            assert_eq!(Account::parse(&a.key()).unwrap(), a, "{a}");
        }
        assert_eq!(
            Account::parse("1101:wechat").unwrap().to_string(),
            "1101:wechat"
        );
        for bad in [
            "",
            "1001:x",
            "1101",
            "1101:paypal",
            "4201:pool",
            "9999",
            "4101:Bad",
        ] {
            assert!(Account::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_unbalanced_entry_is_seen() {
        let mut entry = JournalEntry {
            seq: 0,
            ts_ms: 0,
            event_type: "test",
            memo: String::new(),
            postings: vec![Posting {
                account: Account::Bank,
                side: Side::Debit,
                amount_minor: 5,
                currency: Currency::CNY,
            }],
        };
        assert!(!entry.is_balanced());
        entry.postings.push(Posting {
            account: Account::Clearing {
                channel: Channel::Wechat,
            },
            side: Side::Credit,
            amount_minor: 5,
            currency: Currency::new("USD").unwrap(),
        });
        assert!(!entry.is_balanced(), "balance is per currency");
    }
}
