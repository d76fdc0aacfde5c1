//! What a run cost in memory: every experiment reports the process's peak resident set
//! (`peak_rss_mb`) and that peak shared out over the simulated nodes (`bytes_per_node`).
//!
//! The peak resident set (VmHWM in `/proc/self/status`) is what the machine had to give: the
//! nodes' state, the event queue, the experiment's bookkeeping, the allocator's slack, the binary.
//! It is the figure that says whether a run fits, but it is not a pure function of the run (it
//! moves with the allocator and the page size), so regression checks use a computed figure
//! instead where the experiment has one (the lookup experiment's `state_bytes_per_node`).

/// The process's peak resident set (VmHWM), in KiB; 0 where `/proc` is not there.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// The process's peak resident set so far, MiB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> u64 {
    peak_rss_kib() / 1024
}

/// The process's peak resident set so far divided by `nodes`, in bytes (Linux; 0 elsewhere).
pub fn bytes_per_node(nodes: u32) -> u64 {
    peak_rss_kib() * 1024 / u64::from(nodes.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linux_process_has_a_peak_resident_set() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_mb() > 0);
            assert!(bytes_per_node(1) >= peak_rss_mb() * 1024 * 1024);
            assert!(bytes_per_node(0) >= bytes_per_node(2));
        }
    }
}
