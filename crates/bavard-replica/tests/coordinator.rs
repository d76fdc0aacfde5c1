//! Write and read coordination: quorums, sloppy quorum with hints, read repair, timeouts.

use std::time::{Duration, Instant};

use bavard_replica::{
    AnswerTime, Coordination, Failure, Outgoing, QuorumError, Read, ReadOptions, Request, Response,
    StoreOutcome, Write,
};
use bavard_store::{HlcTimestamp, Record, Version};

const TIMEOUT: Duration = Duration::from_secs(2);

fn record(key: &str, hlc: u64) -> Record {
    Record::new(
        key.as_bytes().to_vec(),
        b"v".to_vec(),
        Version::new(HlcTimestamp::new(hlc, 0), b"w".to_vec()),
    )
}

fn drain<P: Clone + PartialEq>(c: &mut impl Coordination<P>) -> Vec<Outgoing<P>> {
    std::iter::from_fn(|| c.poll_send()).collect()
}

fn stored() -> Result<Response, Failure> {
    Ok(Response::Store {
        results: vec![StoreOutcome::Stored],
    })
}

fn refused() -> Result<Response, Failure> {
    Err(Failure::Refused("disk full".into()))
}

#[test]
fn a_write_succeeds_at_quorum_and_keeps_writing_to_the_rest() {
    let now = Instant::now();
    let mut w = Write::new(record("k", 1), 1u64, vec![1, 2, 3], vec![], 2, now, TIMEOUT);
    let sent = drain(&mut w);
    assert_eq!(sent.iter().map(|s| s.to).collect::<Vec<_>>(), vec![1, 2, 3]);
    w.handle_response(now, sent[0].id, stored());
    assert_eq!(w.result(), None);
    w.handle_response(now, sent[2].id, stored());
    assert_eq!(w.result(), Some(&Ok(2)));
    assert!(!w.is_finished(), "replica 2 is still being written");
    w.handle_response(now, sent[1].id, stored());
    assert!(w.is_finished());
    assert_eq!(w.held(), 3);
}

#[test]
fn a_failed_replica_is_replaced_by_a_fallback_keeping_a_hint() {
    let now = Instant::now();
    let mut w = Write::new(
        record("k", 1),
        1u64,
        vec![1, 2, 3],
        vec![4, 5],
        2,
        now,
        TIMEOUT,
    );
    let sent = drain(&mut w);
    w.handle_response(now, sent[0].id, stored());
    w.handle_response(now, sent[1].id, refused());
    let hint = drain(&mut w);
    assert_eq!(hint.len(), 1);
    assert_eq!(hint[0].to, 4);
    assert!(matches!(
        &hint[0].request,
        Request::Store { hint_for: Some(2), records } if records.len() == 1
    ));
    // The first fallback fails too: the next one is tried.
    w.handle_response(now, hint[0].id, refused());
    let hint = drain(&mut w);
    assert_eq!(hint[0].to, 5);
    w.handle_response(now, hint[0].id, stored());
    assert_eq!(
        w.result(),
        None,
        "the hint is not the second acknowledgement"
    );
    w.handle_response(now, sent[2].id, stored());
    assert_eq!(w.result(), Some(&Ok(2)));
    assert_eq!((w.held(), w.hints_handed()), (2, 1));
    assert!(w.is_finished());
}

#[test]
fn a_quorum_write_is_not_acknowledged_by_a_hint() {
    // Replica 1 stores; 2 and 3 fail and fallbacks keep hints for them. Counting the hints
    // (Dynamo's sloppy quorum) acknowledged this write at quorum although a quorum read of
    // replicas 2 and 3 would not see it: only the replicas themselves count.
    let now = Instant::now();
    let mut w = Write::new(
        record("k", 1),
        1u64,
        vec![1, 2, 3],
        vec![4, 5],
        2,
        now,
        TIMEOUT,
    );
    let sent = drain(&mut w);
    w.handle_response(now, sent[0].id, stored());
    w.handle_response(now, sent[1].id, refused());
    let hint = drain(&mut w);
    w.handle_response(now, hint[0].id, stored());
    assert_eq!(w.result(), None, "replica 3 may still make a quorum");
    w.handle_response(now, sent[2].id, refused());
    assert_eq!(
        w.result(),
        Some(&Err(QuorumError {
            answered: 1,
            required: 2
        }))
    );
    // The write still goes on to a fallback for replica 3: every replica gets it later.
    let hint = drain(&mut w);
    assert_eq!(hint.len(), 1);
    assert_eq!(hint[0].to, 5);
    assert!(matches!(
        &hint[0].request,
        Request::Store {
            hint_for: Some(3),
            ..
        }
    ));
    w.handle_response(now, hint[0].id, stored());
    assert_eq!((w.held(), w.hints_handed()), (1, 2));
    assert!(w.is_finished());
}

#[test]
fn a_write_fails_as_soon_as_too_few_replicas_can_still_hold_it() {
    let now = Instant::now();
    let mut w = Write::new(
        record("k", 1),
        1u64,
        vec![1, 2, 3],
        vec![4],
        3,
        now,
        TIMEOUT,
    );
    let sent = drain(&mut w);
    w.handle_response(now, sent[1].id, refused());
    assert_eq!(
        w.result(),
        Some(&Err(QuorumError {
            answered: 0,
            required: 3
        })),
        "with replica 2 failed, three replicas can no longer hold it"
    );
    assert!(
        !w.is_finished(),
        "the others and the hint are still written"
    );
}

#[test]
fn the_coordinators_own_failure_is_not_hinted() {
    let now = Instant::now();
    let mut w = Write::new(
        record("k", 1),
        1u64,
        vec![1, 2, 3],
        vec![4],
        2,
        now,
        TIMEOUT,
    );
    let sent = drain(&mut w);
    w.handle_response(now, sent[0].id, refused());
    assert!(
        drain(&mut w).is_empty(),
        "no hint for the coordinator itself"
    );
    w.handle_response(now, sent[1].id, stored());
    w.handle_response(now, sent[2].id, refused());
    assert_eq!(
        w.result(),
        Some(&Err(QuorumError {
            answered: 1,
            required: 2
        }))
    );
    assert_eq!(
        w.result().unwrap().unwrap_err().to_string(),
        "only 1 of the 2 required replicas answered"
    );
    // Replica 3's failure is hinted, the coordinator's was not.
    let hint = drain(&mut w);
    assert_eq!(hint.len(), 1);
    assert!(matches!(
        &hint[0].request,
        Request::Store {
            hint_for: Some(3),
            ..
        }
    ));
}

#[test]
fn silent_replicas_time_out_into_a_quorum_error() {
    let now = Instant::now();
    let mut w = Write::new(record("k", 1), 1u64, vec![1, 2, 3], vec![], 2, now, TIMEOUT);
    let sent = drain(&mut w);
    w.handle_response(now, sent[0].id, stored());
    assert_eq!(w.poll_timeout(), Some(now + TIMEOUT));
    w.handle_timeout(now + TIMEOUT / 2);
    assert_eq!(w.result(), None, "nothing expired yet");
    w.handle_timeout(now + TIMEOUT);
    assert_eq!(
        w.result(),
        Some(&Err(QuorumError {
            answered: 1,
            required: 2
        }))
    );
    assert!(w.is_finished());
    // A late answer changes nothing.
    w.handle_response(now + TIMEOUT * 2, sent[1].id, stored());
    assert_eq!(w.held(), 1);
}

#[test]
fn a_store_answer_that_is_not_a_store_counts_as_a_failure() {
    let now = Instant::now();
    let mut w = Write::new(record("k", 1), 1u64, vec![1], vec![], 1, now, TIMEOUT);
    let sent = drain(&mut w);
    w.handle_response(
        now,
        sent[0].id,
        Ok(Response::Fetch {
            records: vec![],
            covered: 1,
        }),
    );
    assert!(matches!(w.result(), Some(Err(_))));
}

/// Every preferred replica asked at once (no speculation).
fn all_at_once(read_repair: bool, repair_wait: Duration) -> ReadOptions {
    ReadOptions {
        timeout: TIMEOUT,
        read_repair,
        repair_wait,
        speculate_after: Duration::ZERO,
    }
}

const SPECULATE: Duration = Duration::from_millis(20);

/// R replicas asked first, the others after [`SPECULATE`].
fn speculative() -> ReadOptions {
    ReadOptions {
        timeout: TIMEOUT,
        read_repair: true,
        repair_wait: Duration::from_millis(500),
        speculate_after: SPECULATE,
    }
}

fn fetched(r: Option<Record>) -> Result<Response, Failure> {
    Ok(Response::Fetch {
        records: r.into_iter().collect(),
        covered: 1,
    })
}

#[test]
fn a_read_returns_the_newest_of_r_answers_and_repairs_the_stale_ones() {
    let now = Instant::now();
    let wait = Duration::from_millis(500);
    let mut r = Read::new(
        b"k".to_vec(),
        vec![1u64, 2, 3],
        2,
        now,
        all_at_once(true, wait),
    );
    let sent = drain(&mut r);
    assert!(sent.iter().all(|s| s.request
        == Request::Fetch {
            keys: vec![b"k".to_vec()]
        }));
    r.handle_response(now, sent[0].id, fetched(Some(record("k", 5))));
    r.handle_response(now, sent[1].id, fetched(Some(record("k", 9))));
    assert_eq!(r.result(), Some(&Ok(Some(record("k", 9)))));
    assert!(drain(&mut r).is_empty(), "repairs wait for the straggler");
    // The straggler has nothing; once it answered, both stale replicas are repaired.
    r.handle_response(now, sent[2].id, fetched(None));
    let repairs = drain(&mut r);
    let mut to: Vec<u64> = repairs.iter().map(|o| o.to).collect();
    to.sort_unstable();
    assert_eq!(to, vec![1, 3]);
    for o in &repairs {
        assert_eq!(
            o.request,
            Request::Store {
                records: vec![record("k", 9)],
                hint_for: None
            }
        );
        r.handle_response(now, o.id, stored());
    }
    assert_eq!(r.repaired(), 2);
    assert!(r.is_finished());
}

#[test]
fn repairs_go_out_after_the_wait_without_the_silent_replica() {
    let now = Instant::now();
    let wait = Duration::from_millis(500);
    let mut r = Read::new(
        b"k".to_vec(),
        vec![1u64, 2, 3],
        2,
        now,
        all_at_once(true, wait),
    );
    let sent = drain(&mut r);
    r.handle_response(now, sent[0].id, fetched(None));
    r.handle_response(now, sent[1].id, fetched(Some(record("k", 3))));
    assert_eq!(r.poll_timeout(), Some(now + wait));
    r.handle_timeout(now + wait);
    let repairs = drain(&mut r);
    assert_eq!(repairs.iter().map(|o| o.to).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn keys_nobody_asked_for_are_ignored_and_too_few_answers_fail() {
    let now = Instant::now();
    let mut r = Read::new(
        b"k".to_vec(),
        vec![1u64, 2, 3],
        2,
        now,
        all_at_once(true, TIMEOUT),
    );
    let sent = drain(&mut r);
    // A replica answering with another key's record has, for this read, nothing.
    r.handle_response(now, sent[0].id, fetched(Some(record("planted", 99))));
    r.handle_response(now, sent[1].id, Err(Failure::NoAnswer("timeout".into())));
    r.handle_response(now, sent[2].id, Err(Failure::NoAnswer("timeout".into())));
    assert_eq!(
        r.result(),
        Some(&Err(QuorumError {
            answered: 1,
            required: 2
        }))
    );
    assert!(r.is_finished());
}

#[test]
fn without_read_repair_a_read_ends_when_its_fetches_do() {
    let now = Instant::now();
    let mut r = Read::new(
        b"k".to_vec(),
        vec![1u64, 2],
        1,
        now,
        all_at_once(false, TIMEOUT),
    );
    let sent = drain(&mut r);
    r.handle_response(now, sent[0].id, fetched(Some(record("k", 1))));
    r.handle_response(now, sent[1].id, fetched(None));
    assert!(drain(&mut r).is_empty());
    assert!(r.is_finished());
}

#[test]
fn a_speculative_read_asks_r_replicas_in_preference_order_and_no_more_when_they_answer() {
    let now = Instant::now();
    let mut r = Read::new(b"k".to_vec(), vec![1u64, 2, 3], 2, now, speculative());
    let sent = drain(&mut r);
    assert_eq!(sent.iter().map(|o| o.to).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(r.poll_timeout(), Some(now + SPECULATE));
    r.handle_response(now, sent[0].id, fetched(Some(record("k", 4))));
    r.handle_response(now, sent[1].id, fetched(Some(record("k", 4))));
    assert_eq!(r.result(), Some(&Ok(Some(record("k", 4)))));
    // The speculation deadline passing after the result asks nobody.
    r.handle_timeout(now + SPECULATE);
    assert!(drain(&mut r).is_empty());
    assert!(r.is_finished());
    assert!(!r.speculated());
}

#[test]
fn a_slow_read_asks_the_remaining_replicas_once_the_speculation_delay_passes() {
    let now = Instant::now();
    let mut r = Read::new(b"k".to_vec(), vec![1u64, 2, 3], 2, now, speculative());
    let first = drain(&mut r);
    r.handle_response(now, first[0].id, fetched(Some(record("k", 2))));
    // Replica 2 is slow: nothing more goes out before the delay …
    r.handle_timeout(now + SPECULATE / 2);
    assert!(drain(&mut r).is_empty());
    // … and replica 3 is asked once it passed.
    r.handle_timeout(now + SPECULATE);
    let extra = drain(&mut r);
    assert_eq!(extra.iter().map(|o| o.to).collect::<Vec<_>>(), vec![3]);
    assert!(r.speculated());
    r.handle_response(now + SPECULATE, extra[0].id, fetched(Some(record("k", 7))));
    assert_eq!(r.result(), Some(&Ok(Some(record("k", 7)))));
    // The slow replica still answers; with the stale replica 1 it is repaired.
    r.handle_response(now + SPECULATE, first[1].id, fetched(None));
    let mut repaired: Vec<u64> = drain(&mut r).iter().map(|o| o.to).collect();
    repaired.sort_unstable();
    assert_eq!(repaired, vec![1, 2]);
}

#[test]
fn a_replica_that_fails_is_replaced_at_once_and_a_quorum_error_needs_every_replica_tried() {
    let now = Instant::now();
    let mut r = Read::new(b"k".to_vec(), vec![1u64, 2, 3], 2, now, speculative());
    let first = drain(&mut r);
    r.handle_response(now, first[0].id, Err(Failure::Refused("disk".into())));
    let replacement = drain(&mut r);
    assert_eq!(
        replacement.iter().map(|o| o.to).collect::<Vec<_>>(),
        vec![3]
    );
    assert!(r.result().is_none(), "two replicas may still answer");
    r.handle_response(
        now,
        replacement[0].id,
        Err(Failure::NoAnswer("gone".into())),
    );
    assert!(r.result().is_none());
    r.handle_response(now, first[1].id, fetched(None));
    assert_eq!(
        r.result(),
        Some(&Err(QuorumError {
            answered: 1,
            required: 2
        }))
    );
    assert!(drain(&mut r).is_empty());
    assert!(r.is_finished());
}

#[test]
fn a_read_at_one_asks_one_replica_and_replaces_it_when_it_times_out() {
    let now = Instant::now();
    let options = ReadOptions {
        speculate_after: TIMEOUT * 2,
        ..speculative()
    };
    let mut r = Read::new(b"k".to_vec(), vec![1u64, 2, 3], 1, now, options);
    let first = drain(&mut r);
    assert_eq!(first.iter().map(|o| o.to).collect::<Vec<_>>(), vec![1]);
    assert_eq!(r.poll_timeout(), Some(now + TIMEOUT));
    r.handle_timeout(now + TIMEOUT);
    let next = drain(&mut r);
    assert_eq!(next.iter().map(|o| o.to).collect::<Vec<_>>(), vec![2]);
    r.handle_response(now + TIMEOUT, next[0].id, fetched(Some(record("k", 1))));
    assert_eq!(r.result(), Some(&Ok(Some(record("k", 1)))));
}

#[test]
fn the_answer_time_follows_the_answers_and_stays_within_its_bounds() {
    let floor = AnswerTime::FLOOR;
    let ceiling = Duration::from_secs(1);
    let mut t = AnswerTime::default();
    assert_eq!(
        t.speculate_after(ceiling),
        AnswerTime::INITIAL,
        "nothing seen yet"
    );
    assert_eq!(t.speculate_after(floor), floor, "nor above the ceiling");
    // Steady 4 ms answers: the deviation decays and the delay approaches 4 ms from above.
    for _ in 0..200 {
        t.observe(Duration::from_millis(4));
    }
    let steady = t.speculate_after(ceiling);
    assert!(steady > Duration::from_micros(3_990) && steady < Duration::from_micros(4_100));
    // A jittery replica raises it: mean 4 ms, but half the answers take 12 ms.
    for i in 0..200 {
        t.observe(Duration::from_millis(if i % 2 == 0 { 1 } else { 12 }));
    }
    assert!(t.speculate_after(ceiling) > Duration::from_millis(12));
    // Answers far faster than the floor, or far slower than the ceiling, are clamped.
    for _ in 0..200 {
        t.observe(Duration::from_micros(10));
    }
    assert_eq!(t.speculate_after(ceiling), floor);
    for _ in 0..200 {
        t.observe(Duration::from_secs(30));
    }
    assert_eq!(t.speculate_after(ceiling), ceiling);
}
