//! The demo's month, replayed in time order through the real API. A queue
//! of timed actions (a ticket arrives, a requester answers, a person takes
//! over, the approver does her rounds, a lead is qualified) is worked
//! oldest first; before each, the server's clock is set to its time, so
//! what the support agent does is stamped when it happens in the story.
//! The simulated people's events go in batches through `POST /v1/events`;
//! the agent is asked through `POST /v1/agents/support/tickets`, approvals
//! are decided through `/v1/approvals`, leads are assigned through
//! `/v1/assignments`: the same paths as production.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use indicatif::ProgressBar;
use payoff_clock::Clock;
use serde_json::{json, Value};

use super::business::{HelpCentre, Lead, Ticket};
use crate::client::ApiClient;

/// Who acts in the story, by API key.
pub struct Actors {
    /// The help desk and CRM integration (an agent key).
    pub integration: ApiClient,
    /// Dana, Acme's support lead, who approves drafted replies.
    pub approver: ApiClient,
}

/// What happened, counted.
#[derive(Default, Debug)]
pub struct Tally {
    pub agent: BTreeMap<String, u64>,
    pub approvals: BTreeMap<&'static str, u64>,
    pub resolved_by_ai: u64,
    pub resolved_by_people: u64,
    pub reopened: u64,
    pub leads: BTreeMap<&'static str, u64>,
    pub qualified: BTreeMap<&'static str, u64>,
    pub won: u64,
    pub events: u64,
    pub answered_wrongly: u64,
    /// What customers asked about that the agent handed to people.
    pub handed_over: BTreeMap<String, u64>,
}

enum Action {
    Arrives(usize),
    Reacts(usize),
    Reopens(usize),
    PersonTakes(usize),
    PersonSolves(usize),
    Reviewed(usize),
    ApproverRound,
    LeadArrives(usize),
    LeadQualified(usize, bool),
    LeadWon(usize, bool),
    DailyCosts,
}

/// What the story knows about a ticket as it unfolds.
#[derive(Default, Clone)]
struct TicketState {
    /// The agent's reply cited the article that answers the question.
    correct: bool,
    events: u32,
}

const BATCH_EVENTS: usize = 500;
/// Chance a requester is satisfied by a reply that cites the right article.
const SATISFIED_RIGHT: f64 = 0.9;
const SATISFIED_WRONG: f64 = 0.2;
const REOPEN_RATE: f64 = 0.06;
const REVIEW_RATE: f64 = 0.05;
const TIER_TWO_RATE: f64 = 0.12;

pub struct Simulation<'a> {
    actors: Actors,
    clock: Clock,
    help: &'a HelpCentre,
    tickets: &'a [Ticket],
    leads: &'a [Lead],
    end: DateTime<Utc>,
    queue: BinaryHeap<Reverse<(DateTime<Utc>, u64)>>,
    actions: HashMap<u64, Action>,
    next_id: u64,
    state: Vec<TicketState>,
    by_id: HashMap<String, usize>,
    buffer: Vec<Value>,
    /// Numbers the events of leads and costs.
    other_events: u32,
    pub tally: Tally,
}

/// Acme's support staff works 8 am to 6 pm Mountain Time (UTC-7) on
/// weekdays and 9 am to 1 pm on Saturdays.
fn staffed(local: chrono::NaiveDateTime) -> Option<(chrono::NaiveDateTime, chrono::NaiveDateTime)> {
    use chrono::{Datelike, Weekday};
    let day = local.date();
    let (from, to) = match day.weekday() {
        Weekday::Sun => return None,
        Weekday::Sat => (9, 13),
        _ => (8, 18),
    };
    Some((day.and_hms_opt(from, 0, 0)?, day.and_hms_opt(to, 0, 0)?))
}

/// `hours` of the staff's working time after `t`: a ticket handed to
/// people on a Friday evening waits for Monday.
pub(crate) fn working_hours_after(t: DateTime<Utc>, hours: f64) -> DateTime<Utc> {
    let offset = Duration::hours(7);
    let mut local = (t - offset).naive_utc();
    let mut left = Duration::seconds((hours * 3600.0) as i64);
    // A month has at most 31 working days; a bound keeps bad input finite.
    for _ in 0..400 {
        match staffed(local) {
            Some((open, close)) if local < close => {
                local = local.max(open);
                let take = left.min(close - local);
                local += take;
                left -= take;
                if left <= Duration::zero() {
                    break;
                }
            }
            _ => {}
        }
        local = (local.date() + Duration::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or(local);
    }
    DateTime::from_naive_utc_and_offset(local, Utc) + offset
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl<'a> Simulation<'a> {
    pub fn new(
        actors: Actors,
        clock: Clock,
        help: &'a HelpCentre,
        tickets: &'a [Ticket],
        leads: &'a [Lead],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Self {
        let mut sim = Simulation {
            actors,
            clock,
            help,
            tickets,
            leads,
            end,
            queue: BinaryHeap::new(),
            actions: HashMap::new(),
            next_id: 0,
            state: vec![TicketState::default(); tickets.len()],
            by_id: tickets
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id.clone(), i))
                .collect(),
            buffer: Vec::new(),
            other_events: 0,
            tally: Tally::default(),
        };
        for (i, t) in tickets.iter().enumerate() {
            sim.at(t.opened, Action::Arrives(i));
        }
        for (i, l) in leads.iter().enumerate() {
            sim.at(l.created, Action::LeadArrives(i));
        }
        // Dana's rounds: 8 am and 4 pm Mountain Time, every day, so no
        // draft waits 24 hours; on the last day only the morning round.
        let mut day = start;
        while day < end {
            sim.at(day + Duration::hours(15), Action::ApproverRound);
            if day + Duration::days(1) < end {
                sim.at(day + Duration::hours(23), Action::ApproverRound);
            }
            sim.at(day + Duration::hours(6), Action::DailyCosts);
            day += Duration::days(1);
        }
        sim
    }

    /// Schedules an action; what would happen after the month is not part
    /// of this story.
    fn at(&mut self, when: DateTime<Utc>, action: Action) {
        if when >= self.end {
            return;
        }
        self.next_id += 1;
        self.actions.insert(self.next_id, action);
        self.queue.push(Reverse((when, self.next_id)));
    }

    fn emit(
        &mut self,
        ticket: Option<usize>,
        source: &str,
        kind: &str,
        subject: &str,
        when: DateTime<Utc>,
        data: Value,
    ) {
        let n = match ticket {
            Some(i) => {
                self.state[i].events += 1;
                self.state[i].events
            }
            None => {
                self.other_events += 1;
                self.other_events
            }
        };
        self.buffer.push(json!({
            "specversion": "1.0", "id": format!("{subject}/{kind}/{n}"), "source": source,
            "type": kind, "subject": subject, "time": stamp(when), "data": data,
        }));
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.buffer);
        self.tally.events += batch.len() as u64;
        self.actors
            .integration
            .send(
                reqwest::Method::POST,
                "/v1/events",
                "application/cloudevents-batch+json",
                serde_json::to_vec(&batch)?,
            )
            .await?
            .map_err(|p| anyhow::anyhow!("the demo's events were refused: {p}"))?;
        Ok(())
    }

    /// Works the whole month, then sends what is still buffered.
    pub async fn run(&mut self, progress: &ProgressBar) -> anyhow::Result<()> {
        while let Some(Reverse((when, id))) = self.queue.pop() {
            let action = self.actions.remove(&id).context("scheduled action")?;
            self.clock.set(when);
            if let Action::Arrives(_) = action {
                progress.inc(1);
            }
            self.step(when, action).await?;
            if self.buffer.len() >= BATCH_EVENTS {
                self.flush().await?;
            }
        }
        self.flush().await
    }

    async fn step(&mut self, now: DateTime<Utc>, action: Action) -> anyhow::Result<()> {
        let after = |h: f64| Duration::seconds((h * 3600.0) as i64);
        match action {
            Action::Arrives(i) => {
                let t = &self.tickets[i];
                // Routing uses a small model; its cost is simulated (the
                // support agent's own drafts are metered by the server).
                let (input, output) = t.draws.triage_tokens;
                self.emit(Some(i), "acme-helpdesk", "llm.call", &t.id.clone(), now, json!({
                    "model": "gpt-4.1-mini", "input_tokens": input, "output_tokens": output,
                    "latency_ms": 300 + input / 10, "agent": "triage", "subject": t.id, "simulated": true,
                }));
                let ticket = json!({
                    "id": t.id, "subject": t.subject, "body": t.body, "requester": t.requester,
                    "groups": [], "time": stamp(t.opened),
                });
                let reply = self
                    .actors
                    .integration
                    .post_json("/v1/agents/support/tickets", &ticket)
                    .await?
                    .map_err(|p| anyhow::anyhow!("the agent refused ticket {}: {p}", t.id))?;
                let status = reply["status"].as_str().unwrap_or("unknown").to_owned();
                *self.tally.agent.entry(status.clone()).or_default() += 1;
                if status == "escalated" {
                    let name = self.help.intent[t.intent].name.clone();
                    *self.tally.handed_over.entry(name).or_default() += 1;
                }
                let article = &self.help.intent[t.intent].article;
                self.state[i].correct = !article.is_empty()
                    && reply["citations"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c["doc_id"] == article.as_str()));
                let (wait, react) = (t.draws.human_wait_h, t.draws.reaction_h);
                match status.as_str() {
                    "replied" => self.at(now + after(react), Action::Reacts(i)),
                    "awaiting_approval" => {}
                    _ => self.at(working_hours_after(now, wait), Action::PersonTakes(i)),
                }
            }
            Action::Reacts(i) => {
                let t = &self.tickets[i];
                let id = t.id.clone();
                let correct = self.state[i].correct;
                if !correct {
                    self.tally.answered_wrongly += 1;
                }
                let p = if correct {
                    SATISFIED_RIGHT
                } else {
                    SATISFIED_WRONG
                };
                if t.draws.reviewed < REVIEW_RATE {
                    self.at(now + Duration::hours(20), Action::Reviewed(i));
                }
                if t.draws.satisfied < p {
                    self.emit(
                        Some(i),
                        "acme-helpdesk",
                        "ticket.customer_replied",
                        &id,
                        now,
                        json!({"sentiment": "positive", "text": "Thanks, that solved it!"}),
                    );
                    let closed = now + Duration::minutes(2);
                    self.emit(Some(i), "acme-helpdesk", "ticket.closed", &id, closed,
                        json!({"resolved_by": "ai", "minutes_open": (closed - t.opened).num_minutes()}));
                    self.tally.resolved_by_ai += 1;
                    if t.draws.reopens < REOPEN_RATE {
                        self.at(closed + Duration::hours(50), Action::Reopens(i));
                    }
                } else {
                    self.emit(Some(i), "acme-helpdesk", "ticket.customer_replied", &id, now,
                        json!({"sentiment": "negative", "text": "That does not answer my question, I need to talk to someone."}));
                    let wait = t.draws.human_wait_h / 2.0;
                    self.at(working_hours_after(now, wait), Action::PersonTakes(i));
                }
            }
            Action::Reopens(i) => {
                let id = self.tickets[i].id.clone();
                self.emit(
                    Some(i),
                    "acme-helpdesk",
                    "ticket.reopened",
                    &id,
                    now,
                    json!({"reason": "The problem is back, it is still broken."}),
                );
                self.tally.reopened += 1;
                let wait = self.tickets[i].draws.human_wait_h;
                self.at(working_hours_after(now, wait), Action::PersonTakes(i));
            }
            Action::PersonTakes(i) => {
                let t = &self.tickets[i];
                let id = t.id.clone();
                // Tier two needs another two working days or so.
                let work = if t.draws.tier_two < TIER_TWO_RATE {
                    20.0 + 10.0 * t.draws.human_work_h / 8.0
                } else {
                    t.draws.human_work_h
                };
                self.emit(
                    Some(i),
                    "acme-helpdesk",
                    "ticket.human_replied",
                    &id,
                    now,
                    json!({"by": "acme support staff"}),
                );
                self.at(working_hours_after(now, work), Action::PersonSolves(i));
            }
            Action::PersonSolves(i) => {
                let t = &self.tickets[i];
                let id = t.id.clone();
                let minutes_open = (now - t.opened).num_minutes();
                self.emit(
                    Some(i),
                    "acme-helpdesk",
                    "ticket.closed",
                    &id,
                    now,
                    json!({"resolved_by": "human", "minutes_open": minutes_open}),
                );
                self.tally.resolved_by_people += 1;
            }
            Action::Reviewed(i) => {
                let id = self.tickets[i].id.clone();
                let correct = self.state[i].correct && self.tickets[i].draws.satisfied < 0.97;
                self.emit(
                    Some(i),
                    "acme-qa",
                    "review.done",
                    &id,
                    now,
                    json!({"reviewer": "qa@acme.test", "correct": correct}),
                );
                self.emit(
                    Some(i),
                    "acme-qa",
                    "cost.incurred",
                    &id,
                    now,
                    json!({"amount": "1.50", "currency": "USD", "category": "human_review"}),
                );
            }
            Action::ApproverRound => self.approver_round(now).await?,
            Action::LeadArrives(i) => {
                let l = &self.leads[i];
                let id = l.id.clone();
                let arm = self
                    .actors
                    .integration
                    .get_json(&format!("/v1/assignments/leads/{id}"))
                    .await?
                    .map_err(|p| anyhow::anyhow!("no assignment for lead {id}: {p}"))?;
                let ai = arm["arm"] == "ai";
                *self
                    .tally
                    .leads
                    .entry(if ai { "ai" } else { "control" })
                    .or_default() += 1;
                self.emit(
                    None,
                    "acme-crm",
                    "lead.created",
                    &id,
                    now,
                    json!({"company": l.company, "source": "website"}),
                );
                let (chance, delay) = if ai {
                    (0.40, l.qualify_h * 0.4)
                } else {
                    (0.22, l.qualify_h * 1.5)
                };
                if l.qualifies < chance {
                    self.at(now + after(delay), Action::LeadQualified(i, ai));
                }
            }
            Action::LeadQualified(i, ai) => {
                let l = &self.leads[i];
                let id = l.id.clone();
                *self
                    .tally
                    .qualified
                    .entry(if ai { "ai" } else { "control" })
                    .or_default() += 1;
                self.emit(
                    None,
                    "acme-crm",
                    "lead.stage_changed",
                    &id,
                    now,
                    json!({
                        "stage": "SQL", "expected_value": format!("{}.00", l.expected_value),
                        "qualified_by": if ai { "ai" } else { "human" },
                    }),
                );
                if l.wins < 0.3 {
                    let days = l.win_days;
                    self.at(now + after(days * 24.0), Action::LeadWon(i, ai));
                }
            }
            Action::LeadWon(i, ai) => {
                let l = &self.leads[i];
                let id = l.id.clone();
                self.tally.won += 1;
                self.emit(
                    None,
                    "acme-crm",
                    "deal.won",
                    &id,
                    now,
                    json!({
                        "amount": format!("{}.00", l.amount), "currency": "USD",
                        "qualified_by": if ai { "ai" } else { "human" },
                    }),
                );
            }
            Action::DailyCosts => {
                let day = now.format("%Y-%m-%d").to_string();
                self.emit(
                    None,
                    "acme-ops",
                    "cost.incurred",
                    &format!("ops-{day}"),
                    now,
                    json!({"amount": "9.00", "currency": "USD", "category": "hosting"}),
                );
            }
        }
        Ok(())
    }

    /// Dana works the approval queue: most drafts go out as written, some
    /// after an edit, a few are rejected and the ticket is hers.
    async fn approver_round(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let queue = self
            .actors
            .approver
            .get_json("/v1/approvals?status=pending")
            .await?
            .map_err(|p| anyhow::anyhow!("the approval queue: {p}"))?;
        let mut pending: Vec<(String, String)> = queue["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["id"].as_str().unwrap_or_default().to_owned(),
                    a["ticket"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        pending.sort();
        for (approval, ticket) in pending {
            let Some(&i) = self.by_id.get(&ticket) else {
                continue;
            };
            let d = &self.tickets[i].draws;
            let (path, body, what) = if d.approval < 0.78 {
                (
                    format!("/v1/approvals/{approval}/approve"),
                    json!({}),
                    "approved",
                )
            } else if d.approval < 0.92 {
                let draft = queue["approvals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["id"] == approval.as_str())
                    .and_then(|a| a["request"]["reply"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                let text = format!("{draft}\n\nIf anything else comes up, just reply to this email. Dana, Acme support");
                (
                    format!("/v1/approvals/{approval}/approve"),
                    json!({"text": text}),
                    "edited",
                )
            } else {
                (
                    format!("/v1/approvals/{approval}/reject"),
                    json!({"reason": "this customer needs a personal answer"}),
                    "rejected",
                )
            };
            self.actors
                .approver
                .post_json(&path, &body)
                .await?
                .map_err(|p| anyhow::anyhow!("deciding {approval}: {p}"))?;
            *self.tally.approvals.entry(what).or_default() += 1;
            let wait = Duration::seconds((d.reaction_h * 3600.0) as i64);
            let person = d.human_wait_h / 3.0;
            if what == "rejected" {
                self.at(working_hours_after(now, person), Action::PersonTakes(i));
            } else {
                self.at(now + wait, Action::Reacts(i));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }

    #[test]
    fn people_work_office_hours_mountain_time() {
        // Monday 2 November 2026, 10:00 Mountain = 17:00 UTC: two hours on.
        assert_eq!(working_hours_after(utc(2, 17, 0), 2.0), utc(2, 19, 0));
        // Monday 17:00 Mountain: one hour today, two more on Tuesday from 8.
        assert_eq!(working_hours_after(utc(3, 0, 0), 3.0), utc(3, 17, 0));
        // Friday 6 November 17:30 Mountain: half an hour, then Saturday 9:00.
        assert_eq!(working_hours_after(utc(7, 0, 30), 1.0), utc(7, 16, 30));
        // Saturday 12:00 Mountain: one hour, then Monday from 8.
        assert_eq!(working_hours_after(utc(7, 19, 0), 3.0), utc(9, 17, 0));
        // Sunday: nothing happens before Monday 8:00.
        assert_eq!(working_hours_after(utc(8, 18, 0), 0.5), utc(9, 15, 30));
    }
}
