//! Teardown on Ctrl-C and SIGTERM, not only on return and panic.
//!
//! A guard ([`OnInterrupt`]) registers a cleanup closure; dropping the guard runs the closure
//! (the normal path, error or not). On SIGINT or SIGTERM the handler runs every closure still
//! registered, in reverse order of registration, and exits with status 130. Each closure runs at
//! most once, whichever comes first. Child processes that must survive a terminal's Ctrl-C long
//! enough to be stopped in order (nodes, etcd members) run in their own process group.
//!
//! While the handler tears down, the rest of the program may notice (a killed child, an error)
//! and head for the exit; [`hold_if_interrupted`] (called by every guard's drop and at the end
//! of `main`) parks it, so that the process ends only when the handler has finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

type Cleanup = Box<dyn FnOnce() + Send>;

/// The cleanups registered and not run yet, by id.
static PENDING: Mutex<Vec<(u64, Cleanup)>> = Mutex::new(Vec::new());
static NEXT_ID: Mutex<u64> = Mutex::new(0);
static INSTALL: Once = Once::new();
/// Set when the handler starts tearing down.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Parks the calling thread for good if an interrupt is being handled: the handler exits the
/// process once it has run every cleanup.
pub(crate) fn hold_if_interrupted() {
    while INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::park();
    }
}

/// Runs its cleanup when dropped, or when the process is interrupted, whichever comes first.
#[must_use = "the cleanup runs when the guard is dropped"]
pub(crate) struct OnInterrupt(u64);

impl OnInterrupt {
    /// Registers `cleanup` (and the signal handler, the first time).
    pub(crate) fn new(cleanup: impl FnOnce() + Send + 'static) -> Self {
        install();
        let id = {
            let mut next = NEXT_ID.lock().expect("interrupt ids lock");
            *next += 1;
            *next
        };
        PENDING
            .lock()
            .expect("interrupt lock")
            .push((id, Box::new(cleanup)));
        Self(id)
    }
}

impl Drop for OnInterrupt {
    fn drop(&mut self) {
        let cleanup = {
            let mut pending = PENDING.lock().expect("interrupt lock");
            pending
                .iter()
                .position(|(id, _)| *id == self.0)
                .map(|i| pending.remove(i).1)
        };
        // Run outside the lock: a cleanup may take seconds (stopping processes).
        if let Some(cleanup) = cleanup {
            cleanup();
        }
        hold_if_interrupted();
    }
}

fn install() {
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                // A second Ctrl-C while tearing down: the first handler goes on.
                return;
            }
            eprintln!("\ninterrupted: tearing down");
            loop {
                // Take one at a time, so that a cleanup never runs under the lock.
                let next = PENDING.lock().map(|mut p| p.pop()).unwrap_or(None);
                match next {
                    Some((_, cleanup)) => cleanup(),
                    None => break,
                }
            }
            std::process::exit(130);
        });
        if let Err(e) = installed {
            eprintln!("warning: no teardown on Ctrl-C ({e}); clean up by hand if interrupted");
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn dropping_the_guard_runs_the_cleanup_once() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let guard = OnInterrupt::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        drop(guard);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
