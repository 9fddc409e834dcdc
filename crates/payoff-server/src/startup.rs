//! What a node does after it starts listening and before it says it is
//! ready: its knowledge index follows the documents' change log, and the
//! outcome projector makes a first pass over every customer. The port
//! answers meanwhile (`/readyz` says what it is waiting for, with 503), so
//! an orchestrator sees a node catching up rather than one that hangs.

use tokio::sync::watch;

/// Where one start-up task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Pending,
    /// Done: how many changes (documents) or customers it took.
    Done(usize),
    /// Failed, with why; it is tried again (see [`crate::serve`]).
    Failed(String),
}

/// The start-up tasks of one node.
pub struct Startup {
    pub knowledge: watch::Sender<Phase>,
    pub outcomes: watch::Sender<Phase>,
}

impl Default for Startup {
    fn default() -> Self {
        Startup {
            knowledge: watch::Sender::new(Phase::Pending),
            outcomes: watch::Sender::new(Phase::Pending),
        }
    }
}

impl Startup {
    /// Why the node is not ready yet; `None` once both tasks are done.
    pub fn waiting_for(&self) -> Option<String> {
        match &*self.knowledge.borrow() {
            Phase::Pending => {
                return Some(
                    "catching up: the knowledge index is applying the documents' change log".into(),
                )
            }
            Phase::Failed(why) => {
                return Some(format!("the knowledge index cannot catch up: {why}"))
            }
            Phase::Done(_) => {}
        }
        match &*self.outcomes.borrow() {
            Phase::Pending | Phase::Failed(_) => Some(
                "catching up: the outcome read model's first pass since start is under way".into(),
            ),
            Phase::Done(_) => None,
        }
    }

    /// Waits until the knowledge index has caught up or failed, and says
    /// which (the `serve` command's banner).
    pub async fn knowledge_settled(&self) -> Phase {
        let mut seen = self.knowledge.subscribe();
        let settled = seen
            .wait_for(|p| *p != Phase::Pending)
            .await
            .map(|p| p.clone());
        settled.unwrap_or(Phase::Failed("the server stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_both_tasks_are_done_and_the_reason_names_the_first_pending() {
        let s = Startup::default();
        assert!(s
            .waiting_for()
            .unwrap()
            .contains("knowledge index is applying"));
        s.outcomes.send_replace(Phase::Done(3));
        assert!(s.waiting_for().unwrap().contains("knowledge"));
        s.knowledge
            .send_replace(Phase::Failed("no space left on device".into()));
        assert!(s.waiting_for().unwrap().contains("no space left on device"));
        s.knowledge.send_replace(Phase::Done(0));
        assert_eq!(s.waiting_for(), None);
        s.outcomes.send_replace(Phase::Pending);
        assert!(s.waiting_for().unwrap().contains("outcome read model"));
    }
}
