use super::*;

#[test]
fn a_burst_uses_a_bounded_pool_and_a_panic_fails_one_job() {
    let jobs: Vec<_> = (0..200)
        .map(|i| {
            run(move || {
                std::thread::sleep(Duration::from_millis(2));
                if i == 7 {
                    panic!("job {i} broke");
                }
                (i, POOL.lock().workers)
            })
        })
        .collect();
    let results = smol::block_on(async {
        let mut out = Vec::new();
        for j in jobs {
            out.push(j.await);
        }
        out
    });
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok((n, workers)) => {
                assert_eq!(*n, i);
                assert!(*workers <= MAX_WORKERS, "{workers} workers");
            }
            Err(JobError::Panicked(m)) => assert!(i == 7 && m.contains("job 7 broke")),
            Err(e) => panic!("{e}"),
        }
    }
    // Idle workers end.
    std::thread::sleep(IDLE + Duration::from_millis(500));
    assert_eq!(POOL.lock().workers, 0);
}

#[test]
fn probes_that_hang_do_not_hold_up_the_others() {
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let hold = std::sync::Arc::new(std::sync::Mutex::new(hold));
    // More hanging probes than the pool keeps workers.
    let mut hung: Vec<_> = (0..PROBE_WORKERS + 3)
        .map(|_| {
            let hold = hold.clone();
            Box::pin(run_in_netns(None, move || {
                let _ = hold.lock().unwrap().recv();
            }))
        })
        .collect();
    // Polled once: each is submitted, in this order, before the quick one.
    smol::block_on(async {
        for h in &mut hung {
            assert!(smol::future::poll_once(h.as_mut()).await.is_none());
        }
    });
    let quick = smol::block_on(smol::future::or(
        async { Some(run_in_netns(None, || 7).await) },
        async {
            smol::Timer::after(Duration::from_secs(20)).await;
            None
        },
    ));
    assert!(
        matches!(quick, Some(Ok(Ok(7)))),
        "a probe waited behind hanging ones: {quick:?}"
    );
    for _ in 0..hung.len() {
        release.send(()).unwrap();
    }
    smol::block_on(async {
        for h in hung {
            h.await.unwrap().unwrap();
        }
    });
}

/// A thread that has a network namespace of its own, for as long as the value lives.
struct OtherNetns {
    path: std::path::PathBuf,
    _stop: std::sync::mpsc::Sender<()>,
}

fn other_netns() -> Option<OtherNetns> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        // SAFETY: unshare and gettid change or read this thread only.
        let tid = unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                let _ = tx.send(None);
                return;
            }
            libc::gettid()
        };
        let _ = tx.send(Some(format!(
            "/proc/{}/task/{tid}/ns/net",
            std::process::id()
        )));
        let _ = stopped.recv();
    });
    Some(OtherNetns {
        path: rx.recv().ok()??.into(),
        _stop: stop,
    })
}

fn here() -> (std::thread::ThreadId, std::path::PathBuf) {
    (
        std::thread::current().id(),
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
    )
}

#[test]
fn a_probe_worker_goes_back_to_the_agents_network_namespace() {
    let Some(pod) = other_netns() else {
        eprintln!("skipped: creating a network namespace needs CAP_SYS_ADMIN");
        return;
    };
    let home = here().1;
    let (worker, inside) = smol::block_on(run_in_netns(Some(pod.path.clone()), here))
        .unwrap()
        .unwrap();
    assert_ne!(inside, home, "the job did not run in the pod's namespace");
    // A job that panics leaves its worker at home as well.
    let broke = smol::block_on(run_in_netns(Some(pod.path.clone()), move || {
        if std::thread::current().id() == worker {
            panic!("the probe broke");
        }
    }));
    assert!(matches!(broke, Ok(Ok(())) | Err(JobError::Panicked(_))));
    // Every later job on that worker (the pool is small: it comes round) runs at home.
    let mut met = 0;
    for _ in 0..200 {
        let (w, ns) = smol::block_on(run_in_netns(None, here)).unwrap().unwrap();
        assert_eq!(ns, home, "a worker stayed in the pod's namespace");
        met += usize::from(w == worker);
    }
    assert!(
        met > 0,
        "the worker that ran in the pod was never seen again"
    );
    let missing = smol::block_on(run_in_netns(Some("/nonexistent/ns".into()), here)).unwrap();
    assert!(missing.unwrap_err().contains("/nonexistent/ns"));
}
