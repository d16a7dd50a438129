//! The control knob both stand-ins have: the behaviour, switched at run time, and what the
//! stand-in counts, under one lock, so each request is counted with the behaviour that
//! decided its answer and a fault's counts taken at its switches are exact however fast
//! requests come; and the seeded RNG that decides which requests a fault hits.
//!
//! What differs between the LLM and the TTS stand-in (their behaviour, their counts, the
//! records they keep) is a [`StandIn`]; [`super::llm::LlmControl`] and
//! [`super::tts::TtsControl`] are this one [`Control`] for each.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::lock;

/// One kind of stand-in, as its [`Control`] sees it. The value itself is what the stand-in
/// keeps outside the lock (the LLM's id counter).
pub trait StandIn: Default + Debug + Send + Sync + 'static {
    /// What the stand-in does, switched at run time.
    type Behaviour: Clone + Debug + Send + 'static;
    /// A snapshot of what it counted.
    type Counts: Counts;
    /// What it keeps with its counts, under the same lock (records of requests).
    type Kept: Default + Debug + Send + 'static;

    /// What a switch does to what is kept: nothing, unless it belongs to the behaviour
    /// replaced.
    fn switched(_kept: &mut Self::Kept) {}
}

/// A snapshot of what a stand-in counted.
pub trait Counts: Clone + Default + Debug + Send + 'static {
    /// What was counted after `earlier`, a snapshot of the same stand-in.
    #[must_use]
    fn since(&self, earlier: &Self) -> Self;

    /// Requests counted, whatever their answer.
    fn requests(&self) -> u64;
}

/// What the count lock guards: the behaviour and everything counted with it.
#[derive(Debug)]
pub(super) struct Ledger<K: StandIn> {
    pub(super) behaviour: K::Behaviour,
    pub(super) counts: K::Counts,
    pub(super) kept: K::Kept,
}

/// Counters and the control knob of one stand-in, shared between its server and whoever
/// drives it.
#[derive(Debug)]
pub struct Control<K: StandIn> {
    ledger: Mutex<Ledger<K>>,
    /// Decides which requests a fault hits.
    pub(super) rng: Mutex<ChaCha8Rng>,
    /// What the stand-in keeps outside the lock.
    pub(super) own: K,
}

impl<K: StandIn> Control<K> {
    pub fn new(behaviour: K::Behaviour, seed: u64) -> Arc<Self> {
        Arc::new(Control {
            ledger: Mutex::new(Ledger {
                behaviour,
                counts: K::Counts::default(),
                kept: K::Kept::default(),
            }),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            own: K::default(),
        })
    }

    pub fn set(&self, behaviour: K::Behaviour) {
        self.switch(behaviour);
    }

    /// Sets the behaviour and returns the counts at that moment: every request counted
    /// after it was answered with the new behaviour.
    pub fn switch(&self, behaviour: K::Behaviour) -> K::Counts {
        let mut ledger = self.ledger();
        ledger.behaviour = behaviour;
        K::switched(&mut ledger.kept);
        ledger.counts.clone()
    }

    pub fn behaviour(&self) -> K::Behaviour {
        self.ledger().behaviour.clone()
    }

    /// Everything counted so far.
    pub fn counts(&self) -> K::Counts {
        self.ledger().counts.clone()
    }

    /// Requests counted so far.
    pub fn requests(&self) -> u64 {
        self.ledger().counts.requests()
    }

    pub(super) fn ledger(&self) -> MutexGuard<'_, Ledger<K>> {
        lock(&self.ledger)
    }
}
