//! The thin async shell around the core: it reads the clock, feeds inputs to the core, runs
//! the commands that come out (each runtime operation as a task that reports back with an
//! input, so one pod never waits for another), publishes the state, and sleeps until the
//! next input or the earliest deadline. It never polls.

use super::core::{Command, Core, Input, Now, Output};
use super::event::EventSink;
use super::perform::perform;
use crate::runtime::Runtime;
use crate::status::StatusBoard;
use smol::channel::{Receiver, Sender};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub struct Shell<R: Runtime + 'static> {
    pub rt: Rc<R>,
    pub core: Core,
    pub board: Arc<StatusBoard>,
    pub sink: Rc<dyn EventSink>,
    pub ex: Rc<smol::LocalExecutor<'static>>,
    pub tx: Sender<Input>,
    epoch: Instant,
}

impl<R: Runtime + 'static> Shell<R> {
    pub fn new(
        rt: Rc<R>,
        core: Core,
        board: Arc<StatusBoard>,
        sink: Rc<dyn EventSink>,
        ex: Rc<smol::LocalExecutor<'static>>,
        tx: Sender<Input>,
    ) -> Self {
        Shell {
            rt,
            core,
            board,
            sink,
            ex,
            tx,
            epoch: Instant::now(),
        }
    }

    pub fn now(&self) -> Now {
        Now {
            tick: self.epoch.elapsed(),
            wall: SystemTime::now(),
        }
    }

    pub fn spawn(&self, fut: impl Future<Output = ()> + 'static) {
        self.ex.spawn(fut).detach();
    }

    /// Adopts what the runtime has, publishes it, sweeps what nobody wants, and starts
    /// watching exits. The caller starts the sources afterwards, so the sweep never meets a
    /// pod being started. Returns the exit records written while the agent was down, for
    /// [`Shell::run`] to apply first.
    pub async fn start(&mut self, describe: &str) -> Vec<crate::runtime::ExitRecord> {
        let now = self.now();
        let inventory = self.rt.inventory().await;
        let adoption = self.core.adopt(inventory, now);
        log::info!(
            "staticlet {} on node {}: {} pod(s) adopted; {describe}",
            env!("CARGO_PKG_VERSION"),
            self.core.node_name(),
            self.core.pods().len(),
        );
        // The adopted pods are shown before the sweep, however much it has to remove.
        self.publish(now);
        self.rt.sweep(&adoption.keep).await;
        let (etx, erx) = smol::channel::unbounded();
        let rt = self.rt.clone();
        self.spawn(async move { rt.watch_exits(etx).await });
        let tx = self.tx.clone();
        self.spawn(async move {
            while let Ok(rec) = erx.recv().await {
                if tx.send(Input::Exited(rec)).await.is_err() {
                    return;
                }
            }
        });
        adoption.pending
    }

    /// The event loop, until a shutdown.
    pub async fn run(mut self, rx: Receiver<Input>, pending: Vec<crate::runtime::ExitRecord>) {
        let mut out = Output::default();
        let now = self.now();
        for rec in pending {
            self.core.apply(Input::Exited(rec), now, &mut out);
        }
        loop {
            let now = self.now();
            self.core.plan(now, &mut out);
            let wake = out.wake;
            // What a removed pod used is given back with the blocking pool's last worker
            // (`sys::blocking`), once the teardown's burst of work is over.
            for uid in &out.removed {
                self.sink.forget_pod(uid);
            }
            if self.execute(std::mem::take(&mut out)) {
                return;
            }
            if self.core.take_visible() {
                self.publish(now);
            }
            let input = match wake {
                Some(at) => {
                    let delay = at.saturating_sub(self.now().tick);
                    smol::future::or(async { rx.recv().await.ok() }, async {
                        smol::Timer::after(delay).await;
                        None
                    })
                    .await
                }
                None => rx.recv().await.ok(),
            };
            let now = self.now();
            match input {
                Some(input) => {
                    self.core.apply(input, now, &mut out);
                    // Take every input already queued before planning again.
                    while let Ok(input) = rx.try_recv() {
                        self.core.apply(input, now, &mut out);
                    }
                }
                None => self.core.apply(Input::Timer, now, &mut out),
            }
        }
    }

    /// Runs the commands; true when one of them ends the agent.
    fn execute(&self, out: Output) -> bool {
        let mut shutdown = false;
        for cmd in out.commands {
            match cmd {
                Command::Event(e) => self.sink.record(e),
                Command::Shutdown => shutdown = true,
                cmd => {
                    let (rt, tx) = (self.rt.clone(), self.tx.clone());
                    self.spawn(async move {
                        if let Some(input) = perform(&*rt, cmd).await {
                            let _ = tx.send(input).await;
                        }
                    });
                }
            }
        }
        shutdown
    }

    fn publish(&mut self, now: Now) {
        let rt = self.rt.clone();
        let shared = self.core.board(now, |pod, container, attempt| {
            rt.log_file(pod, container, attempt)
        });
        self.board.publish(shared);
    }
}
