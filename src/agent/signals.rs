//! SIGTERM and SIGINT end the agent, never the containers.

use super::core::Input;
use smol::channel::Sender;

/// SIGTERM and SIGINT end the agent (not the containers).
pub(super) async fn watch_signals(tx: Sender<Input>) {
    let (sig_tx, sig_rx) = smol::channel::bounded::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            // SAFETY: blocking the signals in this thread and waiting for them synchronously.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::sigaddset(&mut set, libc::SIGINT);
                let mut sig = 0;
                libc::sigwait(&set, &mut sig);
            }
            let _ = sig_tx.send_blocking(());
        });
    if let Err(e) = spawned {
        log::error!(
            "cannot start the signal thread ({e}); SIGTERM will not stop the agent cleanly"
        );
        return;
    }
    if sig_rx.recv().await.is_ok() {
        let _ = tx.send(Input::Shutdown).await;
    }
}

/// Blocks SIGTERM/SIGINT in every thread (call before starting any), so only the signal
/// thread receives them.
pub fn block_termination_signals() {
    // SAFETY: plain signal-mask manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
