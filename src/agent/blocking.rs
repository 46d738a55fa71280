//! Blocking work (mounts, unpacking, removing trees) on a thread of its own, awaited from the
//! event loop. A pool would keep idle threads waking up (smol's wakes each one every 500 ms
//! for as long as the agent runs); a thread per job costs tens of microseconds and then is
//! gone, so an idle agent is asleep.

/// Runs `f` on a new thread and waits for its result without blocking the event loop.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = smol::channel::bounded(1);
    let spawned = std::thread::Builder::new()
        .name("staticlet-work".into())
        .spawn(move || {
            let _ = tx.send_blocking(f());
        });
    match spawned {
        Ok(_) => match rx.recv().await {
            Ok(v) => v,
            Err(_) => panic!("a blocking job panicked"),
        },
        Err(e) => panic!("cannot start a thread: {e}"),
    }
}
