//! A realistic demo data set shaped like the seed's world: the "Warm Erqi" (温暖二七)
//! district platform. Dozens of projects of each kind, enterprise sponsors with matching pools
//! of 20,000 to 100,000 yuan, tens of thousands of one-yuan gifts, pledges, refunds and
//! approved payouts. Fictional people and organisations only. Deterministic for a seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use events::{
    Amount, Channel, Currency, Id, MatchingPoolCommitted, MoveRequested, PayoutRequested,
    ProjectKind, Text,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::command::{Command, DonationInput};
use crate::writer::{Clock, Submission, WriterHandle};

/// 2018-10-09 09:00 China time, the day the seed's platform launched.
pub const DEMO_START_MS: u64 = 1_539_046_800_000;

/// How big the demo is.
#[derive(Debug, Clone)]
pub struct DemoSize {
    pub community_projects: usize,
    pub help_requests: usize,
    pub micro_wishes: usize,
    pub general_funds: usize,
    pub sponsors: usize,
    pub donations: usize,
    pub seed: u64,
}

impl Default for DemoSize {
    fn default() -> Self {
        DemoSize {
            community_projects: 48,
            help_requests: 30,
            micro_wishes: 60,
            general_funds: 4,
            sponsors: 20,
            donations: 50_000,
            seed: 2018,
        }
    }
}

/// A clock the demo advances by hand, so the data spans weeks of simulated time.
#[derive(Clone, Default)]
pub struct DemoClock(Arc<AtomicU64>);

impl DemoClock {
    pub fn new() -> DemoClock {
        DemoClock(Arc::new(AtomicU64::new(DEMO_START_MS)))
    }
    pub fn clock(&self) -> Clock {
        let inner = self.0.clone();
        Arc::new(move || inner.load(Ordering::Relaxed))
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

const COMMUNITIES: &[&str] = &[
    "陇海中路社区",
    "金桥社区",
    "一马路社区",
    "福华街社区",
    "大学路社区",
    "解放路社区",
    "樱桃沟社区",
    "长江路社区",
    "建中街社区",
    "京广路社区",
    "淮河路社区",
    "嵩山路社区",
];
const THEMES: &[&str] = &[
    "杂院变形记",
    "星星课堂",
    "社区小厨房",
    "养老托老服务圈",
    "亲亲家园",
    "爱心理发",
    "助残就业",
    "青春助力",
    "妇女关爱",
    "困境儿童陪伴",
    "高龄老人助餐",
    "非遗传承",
];
const WISHES: &[&str] = &[
    "一台助听器",
    "冬季棉被",
    "儿童书包",
    "轮椅一辆",
    "学习台灯",
    "老人保温杯",
    "电饭煲",
    "书桌一张",
    "校服两套",
    "护膝一副",
];
const SPONSORS: &[&str] = &[
    "郑州暖阳实业有限公司",
    "二七商贸集团",
    "中原绿城建设",
    "嵩岳科技",
    "黄河之星食品",
    "德化街百货",
    "金水湾物业",
    "豫见未来教育",
    "康宁医药连锁",
    "铁道印象文旅",
];
const NAMES: &[&str] = &[
    "爱心人士",
    "一位老师",
    "小王",
    "热心市民",
    "二七老街坊",
    "阳光少年",
    "李阿姨",
];

fn id(s: String) -> Id {
    Id::new(&s).expect("demo ids are valid")
}

fn text(s: &str) -> Text {
    Text::new(s).expect("demo text is valid")
}

fn amount(minor: u64) -> Amount {
    Amount::new(minor).expect("demo amounts are valid")
}

/// Progress of a long demo run, reported to the caller.
pub trait Progress: Send + Sync {
    fn set_total(&self, total: u64);
    fn advance(&self, by: u64);
}

/// Writes the demo through the writer. Returns the number of submissions made.
pub async fn run_demo(
    writer: &WriterHandle,
    clock: &DemoClock,
    size: &DemoSize,
    progress: &dyn Progress,
) -> anyhow::Result<u64> {
    let mut rng = SmallRng::seed_from_u64(size.seed);
    let admin = id("admin-zhao".into());
    let recorder = id("recorder-liu".into());
    let requester = id("finance-li".into());
    let approver = id("director-wang".into());
    let cny = Currency::CNY;
    let mut submissions = 0u64;
    progress.set_total(size.donations as u64);

    let submit = |actor: &Id, commands: Vec<Command>| {
        let s = Submission {
            actor: actor.clone(),
            token_issuer: None,
            idempotency_key: None,
            commands,
        };
        async move { writer.submit(s).await }
    };

    // Projects of every kind.
    let mut projects: Vec<(Id, ProjectKind, u64)> = Vec::new();
    let mut open = Vec::new();
    for i in 0..size.community_projects {
        let name = format!(
            "{}·{}",
            COMMUNITIES[i % COMMUNITIES.len()],
            THEMES[i % THEMES.len()]
        );
        let goal = rng.gen_range(5..=50) * 1_000_000;
        projects.push((
            id(format!("cp-{i:03}")),
            ProjectKind::CommunityProject,
            goal,
        ));
        open.push(Command::OpenProject {
            project: projects.last().unwrap().0.clone(),
            kind: ProjectKind::CommunityProject,
            name: text(&name),
            currency: cny,
            goal_minor: Some(amount(goal)),
        });
    }
    for i in 0..size.help_requests {
        let goal = rng.gen_range(20..=200) * 100_000;
        projects.push((id(format!("help-{i:03}")), ProjectKind::HelpRequest, goal));
        open.push(Command::OpenProject {
            project: projects.last().unwrap().0.clone(),
            kind: ProjectKind::HelpRequest,
            name: text(&format!(
                "{}居民大病求助 #{i}",
                COMMUNITIES[i % COMMUNITIES.len()]
            )),
            currency: cny,
            goal_minor: Some(amount(goal)),
        });
    }
    for i in 0..size.micro_wishes {
        let goal = rng.gen_range(1..=20) * 5_000;
        projects.push((id(format!("wish-{i:03}")), ProjectKind::MicroWish, goal));
        open.push(Command::OpenProject {
            project: projects.last().unwrap().0.clone(),
            kind: ProjectKind::MicroWish,
            name: text(&format!("微心愿:{}", WISHES[i % WISHES.len()])),
            currency: cny,
            goal_minor: Some(amount(goal)),
        });
    }
    for i in 0..size.general_funds {
        projects.push((id(format!("fund-{i:02}")), ProjectKind::GeneralFund, 0));
        open.push(Command::OpenProject {
            project: projects.last().unwrap().0.clone(),
            kind: ProjectKind::GeneralFund,
            name: text(&format!("温暖二七慈善基金 {}", i + 1)),
            currency: cny,
            goal_minor: None,
        });
    }
    for chunk in open.chunks(100) {
        submit(&admin, chunk.to_vec()).await?;
        submissions += 1;
    }

    // Enterprise sponsors claim community projects and commit matching pools (20k–100k yuan).
    let community: Vec<&Id> = projects
        .iter()
        .filter(|p| p.1 == ProjectKind::CommunityProject)
        .map(|p| &p.0)
        .collect();
    let start = clock.now();
    for s in 0..size.sponsors.min(community.len()) {
        let covered: Vec<Id> = community
            .iter()
            .skip(s)
            .step_by(size.sponsors.max(1))
            .take(4)
            .map(|p| (*p).clone())
            .collect();
        let total_yuan = rng.gen_range(2..=10) * 10_000;
        submit(
            &admin,
            vec![Command::CommitMatchingPool(MatchingPoolCommitted {
                pool: id(format!("pool-{s:02}")),
                sponsor: text(SPONSORS[s % SPONSORS.len()]),
                projects: covered,
                currency: cny,
                ratio_numerator: 1,
                ratio_denominator: 1,
                cap_per_donation_minor: amount(10_000),
                cap_per_donor_per_day_minor: amount(20_000),
                total_cap_minor: amount(total_yuan * 100),
                valid_from_ms: start,
                valid_until_ms: start + 90 * 86_400_000,
                day_utc_offset_minutes: 480,
            })],
        )
        .await?;
        submissions += 1;
    }

    // Pledges from enterprises to community projects and funds.
    let mut pledges = Vec::new();
    for s in 0..size.sponsors {
        let target = &projects[rng.gen_range(0..size.community_projects.max(1))].0;
        let o = submit(
            &admin,
            vec![Command::MakePledge {
                project: target.clone(),
                sponsor: text(SPONSORS[s % SPONSORS.len()]),
                amount_minor: amount(rng.gen_range(1..=5) * 1_000_000),
                currency: cny,
            }],
        )
        .await?;
        submissions += 1;
        pledges.push((o.events[0].seq(), target.clone()));
    }

    // Gifts: mostly one yuan, through every channel, over simulated weeks.
    let donors = (size.donations / 3).max(1);
    let mut raised_capped: std::collections::HashMap<Id, u64> = Default::default();
    let mut batch = Vec::new();
    let mut txn = 0u64;
    for n in 0..size.donations {
        clock.advance(rng.gen_range(1_000..60_000));
        let p = &projects[rng.gen_range(0..projects.len())];
        let roll: f64 = rng.gen();
        let minor: u64 = if roll < 0.90 {
            100
        } else if roll < 0.95 {
            rng.gen_range(1..100)
        } else if roll < 0.995 {
            rng.gen_range(2..=200) * 100
        } else {
            rng.gen_range(10..=100) * 10_000
        };
        if p.1.goal_is_cap() {
            let raised = raised_capped.entry(p.0.clone()).or_default();
            if *raised + minor > p.2 {
                continue;
            }
            *raised += minor;
        }
        let channel = match rng.gen_range(0..100) {
            0..=54 => Channel::Wechat,
            55..=89 => Channel::Alipay,
            90..=94 => Channel::Bank,
            95..=97 => Channel::CharityMall,
            _ => Channel::Cash,
        };
        // Channel fees: 0.6% for the online channels, booked to the fen as the channel's
        // bill rounds it (half away from zero: 0.006 yuan is 0.01); none for cash and bank.
        let fee = match channel {
            Channel::Wechat | Channel::Alipay | Channel::CharityMall => (minor * 6 + 500) / 1000,
            _ => 0,
        };
        txn += 1;
        let anonymous = rng.gen_bool(0.6);
        batch.push(Command::RecordDonation(DonationInput {
            project: p.0.clone(),
            amount_minor: amount(minor),
            currency: cny,
            channel,
            channel_txn_id: format!("{}-{:010}", channel.as_str(), txn),
            fee_minor: fee,
            pledge_seq: None,
            anonymous,
            public_name: (!anonymous).then(|| text(NAMES[rng.gen_range(0..NAMES.len())])),
            donor_ref: id(format!("donor-{:06}", rng.gen_range(0..donors))),
        }));
        if batch.len() == 500 || n + 1 == size.donations {
            submit(&recorder, std::mem::take(&mut batch)).await?;
            submissions += 1;
        }
        progress.advance(1);
    }

    // Enterprises pay part of their pledges through the bank.
    for (i, (pledge_seq, project)) in pledges.iter().enumerate() {
        submit(
            &recorder,
            vec![Command::RecordDonation(DonationInput {
                project: project.clone(),
                amount_minor: amount(500_000),
                currency: cny,
                channel: Channel::Bank,
                channel_txn_id: format!("bank-pledge-{i:04}"),
                fee_minor: 0,
                pledge_seq: Some(*pledge_seq),
                anonymous: false,
                public_name: Some(text(SPONSORS[i % SPONSORS.len()])),
                donor_ref: id(format!("org-{i:03}")),
            })],
        )
        .await?;
        submissions += 1;
    }

    // A few refunds (duplicate payments reported by donors).
    let state_refunds: Vec<u64> = {
        let mut seqs = Vec::new();
        let mut seq = 0;
        while seqs.len() < 25 && seq < 5_000 {
            seq += rng.gen_range(50..200);
            seqs.push(seq);
        }
        seqs
    };
    for seq in state_refunds {
        // WeChat Pay and Alipay give back a refunded payment's fee; a bank keeps none.
        let fee_returned_minor = writer
            .committed()
            .borrow()
            .donations
            .get(&seq)
            .filter(|d| matches!(d.channel, Channel::Wechat | Channel::Alipay))
            .map(|d| d.fee_minor)
            .filter(|&fee| fee > 0);
        let refund = Command::RefundDonation {
            donation_seq: seq,
            reason: text("捐赠人重复支付,原路退回"),
            fee_returned_minor,
        };
        // Not every sampled seq is a donation; the ledger says which are not.
        if writer
            .submit(Submission::one(admin.clone(), refund))
            .await
            .is_ok()
        {
            submissions += 1;
        }
    }

    // Payouts: requested by finance, approved by the director, disbursed by bank transfer.
    clock.advance(7 * 86_400_000);
    for (i, (project, kind, _)) in projects.iter().enumerate().step_by(3) {
        let purpose = match kind {
            ProjectKind::MicroWish => "采购微心愿物品并送达",
            ProjectKind::HelpRequest => "支付医院治疗费用",
            ProjectKind::GeneralFund => "社区慈善活动物资",
            ProjectKind::CommunityProject => "项目服务费用(社工服务、物资)",
        };
        let request = Command::RequestPayout(PayoutRequested {
            project: project.clone(),
            amount_minor: amount(rng.gen_range(1..=20) * 1_000),
            currency: cny,
            payee: text(&format!(
                "二七区{}服务中心",
                COMMUNITIES[i % COMMUNITIES.len()]
            )),
            purpose: text(purpose),
            document_sha256: events::sha256(format!("invoice-{i}").as_bytes()),
        });
        let Ok(o) = writer
            .submit(Submission::one(requester.clone(), request))
            .await
        else {
            continue; // not enough money in this project yet
        };
        let seq = o.events[0].seq();
        submit(&approver, vec![Command::ApprovePayout { payout_seq: seq }]).await?;
        if i % 2 == 0 {
            submit(
                &requester,
                vec![Command::DisbursePayout {
                    payout_seq: seq,
                    bank_reference: format!("ICBC-ZZ-{:08}", 20181100 + i),
                }],
            )
            .await?;
        }
        submissions += 3;
    }

    // One move between projects, approved by a second person.
    let from = projects[0].0.clone();
    let to = projects[projects.len() - 1].0.clone();
    if let Ok(o) = writer
        .submit(Submission::one(
            requester.clone(),
            Command::RequestMove(MoveRequested {
                from_project: from,
                to_project: to,
                amount_minor: amount(100),
                currency: cny,
                reason: text("项目结余转入慈善基金"),
            }),
        ))
        .await
    {
        submit(
            &approver,
            vec![Command::ApproveMove {
                move_seq: o.events[0].seq(),
            }],
        )
        .await?;
        submissions += 2;
    }
    Ok(submissions)
}
