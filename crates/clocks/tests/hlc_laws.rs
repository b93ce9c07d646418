//! Property tests of the hybrid logical clock: it never goes backwards,
//! stays at or ahead of physical time, and within the max offset of it.

use concord_clocks::{Hlc, HlcError, ManualClock, OffsetPolicy, Timestamp};
use proptest::prelude::*;

const MAX_OFFSET: u64 = 500;

#[derive(Clone, Debug)]
enum Op {
    Now,
    /// A remote timestamp this far from our physical time (may be ahead).
    Recv(i64, u32),
    /// The physical clock moves by this much (may step back).
    Tick(i64),
}

fn ops(backwards: bool) -> impl Strategy<Value = Vec<Op>> {
    let lo = if backwards { -300 } else { 0 };
    prop::collection::vec(
        prop_oneof![
            Just(Op::Now),
            (-1_000i64..1_000, 0u32..5).prop_map(|(d, l)| Op::Recv(d, l)),
            (lo..300i64).prop_map(Op::Tick),
        ],
        0..80,
    )
}

fn shift(t: u64, d: i64) -> u64 {
    t.saturating_add_signed(d)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_goes_backwards_even_if_physical_time_does(ops in ops(true)) {
        let pc = ManualClock::new(1_000_000);
        let mut hlc = Hlc::new(pc.clone(), MAX_OFFSET, OffsetPolicy::Flag);
        let mut prev = Timestamp::default();
        for op in ops {
            let ts = match op {
                Op::Now => hlc.now(),
                Op::Recv(d, l) => {
                    let remote = Timestamp::new(shift(1_000_000, d), l);
                    let ts = hlc.update(remote).unwrap();
                    prop_assert!(ts > remote);
                    ts
                }
                Op::Tick(d) => { pc.set(shift(pc_now(&pc), d)); continue; }
            };
            prop_assert!(ts > prev, "{ts:?} after {prev:?}");
            prop_assert!(ts.wall >= pc_now(&pc));
            prev = ts;
        }
    }

    #[test]
    fn stays_within_the_offset_bound(ops in ops(false)) {
        let pc = ManualClock::new(1_000_000);
        let mut hlc = Hlc::new(pc.clone(), MAX_OFFSET, OffsetPolicy::Refuse);
        for op in ops {
            let before = hlc.last();
            let ts = match op {
                Op::Now => hlc.now(),
                Op::Recv(d, l) => match hlc.update(Timestamp::new(shift(pc_now(&pc), d), l)) {
                    Ok(ts) => ts,
                    Err(HlcError::TooFarAhead { ahead_nanos, .. }) => {
                        prop_assert!(ahead_nanos > MAX_OFFSET);
                        prop_assert_eq!(hlc.last(), before, "a refusal moves nothing");
                        continue;
                    }
                },
                Op::Tick(d) => { pc.advance(d as u64); continue; }
            };
            prop_assert!(ts.wall >= pc_now(&pc) && ts.wall <= pc_now(&pc) + MAX_OFFSET);
        }
    }
}

fn pc_now(pc: &ManualClock) -> u64 {
    use concord_clocks::PhysicalClock;
    pc.now_nanos()
}

#[test]
fn monotonic_across_a_restart_when_persisted() {
    let pc = ManualClock::new(5_000);
    let mut hlc = Hlc::new(pc.clone(), MAX_OFFSET, OffsetPolicy::Refuse);
    hlc.update(Timestamp::new(5_400, 7)).unwrap();
    let saved = hlc.now();
    // The process restarts and its clock came back 3 us behind.
    pc.set(2_000);
    let mut restarted = Hlc::resume(pc.clone(), MAX_OFFSET, OffsetPolicy::Refuse, saved);
    assert!(restarted.now() > saved);
    // Without the persisted timestamp it would have gone back.
    assert!(Hlc::new(pc, MAX_OFFSET, OffsetPolicy::Refuse).now() < saved);
}

#[test]
fn refuses_or_flags_a_remote_too_far_ahead() {
    let pc = ManualClock::new(10_000);
    let far = Timestamp::new(10_000 + MAX_OFFSET + 1, 0);
    let mut strict = Hlc::new(pc.clone(), MAX_OFFSET, OffsetPolicy::Refuse);
    let err = strict.update(far).unwrap_err();
    assert_eq!(
        err,
        HlcError::TooFarAhead {
            remote: far,
            ahead_nanos: MAX_OFFSET + 1,
            max_offset_nanos: MAX_OFFSET
        }
    );
    assert!(strict
        .update(Timestamp::new(10_000 + MAX_OFFSET, 0))
        .is_ok());
    let mut lenient = Hlc::new(pc, MAX_OFFSET, OffsetPolicy::Flag);
    assert!(lenient.update(far).unwrap() > far);
    assert_eq!(lenient.flagged(), 1);
}

#[test]
fn logical_part_orders_events_within_one_tick() {
    let pc = ManualClock::new(7);
    let mut hlc = Hlc::new(pc, MAX_OFFSET, OffsetPolicy::Refuse);
    assert_eq!(hlc.now(), Timestamp::new(7, 0));
    assert_eq!(hlc.now(), Timestamp::new(7, 1));
    assert_eq!(
        hlc.update(Timestamp::new(9, 4)).unwrap(),
        Timestamp::new(9, 5)
    );
    assert_eq!(hlc.now(), Timestamp::new(9, 6));
}
