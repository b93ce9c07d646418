//! The behaviours each type promises, on small hand-made scenarios.

use concord_crdt::{to_bytes, Cart, Crdt, LwwRegister, MvRegister, OrMap, OrSet, Timestamp};

fn ts(wall: u64) -> Timestamp {
    Timestamp::new(wall, 0)
}

#[test]
fn orset_add_wins_over_a_concurrent_remove() {
    let mut a = OrSet::new();
    a.add(1, "x");
    let mut b = a.clone();
    a.remove(&"x");
    b.add(2, "x");
    let mut m = a.clone();
    m.merge(&b);
    assert!(m.contains(&"x"));
    // A remove that saw the add does remove it.
    m.remove(&"x");
    b.merge(&m);
    assert!(!b.contains(&"x"));
    // Tombstone-free: nothing but the context is left, with no gaps.
    assert!(b.is_empty() && b.context().cloud_len() == 0);
}

#[test]
fn mv_register_keeps_concurrent_writes_until_one_sees_both() {
    let mut a = MvRegister::new();
    let mut b = MvRegister::new();
    a.set(1, "a");
    b.set(2, "b");
    a.merge(&b);
    assert_eq!(a.values().copied().collect::<Vec<_>>(), ["a", "b"]);
    a.set(1, "c");
    b.merge(&a);
    assert_eq!(b.values().copied().collect::<Vec<_>>(), ["c"]);
}

#[test]
fn lww_keeps_the_greater_stamp_and_loses_the_other() {
    let mut a = LwwRegister::new();
    let mut b = LwwRegister::new();
    a.set("a", ts(5), 1);
    b.set("b", ts(5), 2);
    a.merge(&b);
    assert_eq!(
        a.get(),
        Some(&"b"),
        "equal timestamps: the node id breaks the tie"
    );
    a.set("late", ts(4), 1);
    assert_eq!(a.get(), Some(&"b"), "a write with an older stamp loses");
}

#[test]
fn cart_keeps_an_add_concurrent_with_a_remove() {
    let mut a = Cart::new();
    a.set(1, "milk", 1, ts(1));
    a.set(1, "eggs", 6, ts(2));
    let mut b = a.clone();
    a.remove("milk");
    let d = b.set(2, "milk", 2, ts(3));
    a.merge(&d);
    b.merge(&a);
    assert_eq!(a, b);
    assert_eq!(a.items(), [("eggs".to_owned(), 6), ("milk".to_owned(), 2)]);
    assert_eq!(a.to_string(), "eggs x6, milk x2");
}

#[test]
fn forgetting_removed_values_once_stable_changes_nothing_visible() {
    let mut a: OrMap<&str, LwwRegister<u32>> = OrMap::new();
    a.update(1, "k", |r| r.set(5, ts(1), 1));
    a.remove(&"k");
    let mut b = a.clone();
    b.merge(&a);
    // Both replicas saw the remove: the hidden value may go, here only.
    assert_eq!(a.forget_removed(), 1);
    a.update(1, "k", |r| r.set(7, ts(2), 1));
    b.merge(&a);
    assert_eq!(b.get(&"k").and_then(|r| r.get()), Some(&7));
    assert_eq!(a.get(&"k"), b.get(&"k"));
}

#[test]
fn deltas_are_small_beside_the_state() {
    let mut s = OrSet::new();
    for i in 0..10_000u32 {
        s.add(1 + u64::from(i % 3), i);
    }
    let delta = s.add(1, 10_000);
    let (state, delta) = (to_bytes(&s).unwrap().len(), to_bytes(&delta).unwrap().len());
    assert!(
        delta < 32 && state > 10_000 * 4,
        "delta {delta} B, state {state} B"
    );
}
