//! A seeded run of N processes exchanging messages under skewed, drifting
//! physical clocks, each event stamped by every kind of clock.

use concord_clocks::{Hlc, Lamport, ManualClock, OffsetPolicy, Timestamp, VClock};
use concord_crdt::{Crdt, LwwRegister, MvRegister};
use concord_rng::SplitMix64;

/// The physical clocks start here (nanoseconds), so skews below zero fit.
const EPOCH: u64 = 1_000_000_000_000_000_000;
const MS: u64 = 1_000_000;

/// What a run simulates.
#[derive(Clone, Debug)]
pub struct Config {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of processes (2..=8).
    pub procs: usize,
    /// Events before in-flight messages are drained.
    pub events: usize,
    /// Each clock's offset is uniform in `[-skew, +skew]` ms.
    pub skew_ms: u64,
    /// Each clock's rate is off by up to this many parts per million.
    pub drift_ppm: u64,
    /// The HLC's max offset, ms: remote timestamps further ahead are flagged.
    pub max_offset_ms: u64,
}

/// What an event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A local step that writes `value` to the shared register.
    Write(String),
    /// Sent message `msg` to process `to`.
    Send { to: usize, msg: usize },
    /// Received message `msg` from process `from`.
    Recv { from: usize, msg: usize },
}

/// One recorded event with all its timestamps.
#[derive(Clone, Debug)]
pub struct Event {
    /// Index in the run (true-time order).
    pub id: usize,
    /// The process it happened on.
    pub proc: usize,
    /// `A1`, `B3`: process letter, then its position on that process.
    pub label: String,
    /// What happened.
    pub kind: Kind,
    /// True (simulated) time, ns since the run's start.
    pub true_ns: u64,
    /// The process's physical clock reading, ns since the run's start
    /// (negative when skewed behind the start).
    pub wall_ns: i64,
    /// Lamport timestamp.
    pub lamport: u64,
    /// Vector clock (entry `i` for process `i`).
    pub vc: VClock,
    /// Hybrid logical clock timestamp.
    pub hlc: Timestamp,
}

/// The three replicas of one register that each process keeps.
#[derive(Clone, Debug, Default)]
pub struct Registers {
    /// Last-writer-wins by the physical clock (the skew victim).
    pub lww_wall: LwwRegister<String>,
    /// Last-writer-wins by the HLC.
    pub lww_hlc: LwwRegister<String>,
    /// Keeps concurrent writes.
    pub mv: MvRegister<String>,
}

impl Registers {
    fn merge(&mut self, other: &Registers) {
        self.lww_wall.merge(&other.lww_wall);
        self.lww_hlc.merge(&other.lww_hlc);
        self.mv.merge(&other.mv);
    }
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Run {
    /// The configuration it ran.
    pub config: Config,
    /// Every event, in true-time order.
    pub events: Vec<Event>,
    /// Per process: offset (ns) and drift (ppm) of its clock.
    pub clocks: Vec<(i64, i64)>,
    /// Messages whose HLC timestamp was beyond the max offset.
    pub flagged: u64,
    /// The registers after every replica merged every other (anti-entropy).
    pub registers: Registers,
    /// Writes that LWW-by-wall-clock ignored as they were made: `(write
    /// event, the value that kept winning)`. The writer had seen that
    /// value, so its write causally follows it, but its clock is behind.
    pub wall_ignored: Vec<(usize, String)>,
}

struct Message {
    from: usize,
    to: usize,
    id: usize,
    deliver_at: u64,
    lamport: u64,
    vc: VClock,
    hlc: Timestamp,
    registers: Registers,
}

struct Proc {
    clock: ManualClock,
    offset: i64,
    drift: i64,
    lamport: Lamport,
    vc: VClock,
    hlc: Hlc<ManualClock>,
    registers: Registers,
    count: usize,
}

impl Proc {
    fn new(rng: &mut SplitMix64, cfg: &Config) -> Proc {
        let skew = (cfg.skew_ms * MS) as i64;
        let offset = rng.range(0, 2 * skew as u64) as i64 - skew;
        let drift = rng.range(0, 2 * cfg.drift_ppm) as i64 - cfg.drift_ppm as i64;
        let clock = ManualClock::new(EPOCH);
        let hlc = Hlc::new(clock.clone(), cfg.max_offset_ms * MS, OffsetPolicy::Flag);
        Proc {
            clock,
            offset,
            drift,
            lamport: Lamport::new(),
            vc: VClock::new(),
            hlc,
            registers: Registers::default(),
            count: 0,
        }
    }

    /// The physical reading at true time `t`, relative to the start.
    fn reading(&self, t: u64) -> i64 {
        t as i64 + self.offset + (t as i128 * self.drift as i128 / 1_000_000) as i64
    }
}

/// Process `i`'s name: `A`, `B`, ...
pub fn name(i: usize) -> char {
    (b'A' + i as u8) as char
}

/// The state of a run in progress.
struct World {
    procs: Vec<Proc>,
    inflight: Vec<Message>,
    events: Vec<Event>,
    flagged: u64,
    wall_ignored: Vec<(usize, String)>,
}

impl World {
    /// Process `m.to` receives message `m`.
    fn receive(&mut self, m: Message, t: u64) -> Event {
        let p = &mut self.procs[m.to];
        let before = p.hlc.flagged();
        let kind = Kind::Recv {
            from: m.from,
            msg: m.id,
        };
        let ev = step(p, m.to, t, kind, Some(&m), self.events.len());
        self.flagged += p.hlc.flagged() - before;
        ev
    }

    /// `from` sends its clocks and registers to `to`, arriving after `delay`.
    fn send(&mut self, from: usize, to: usize, t: u64, delay: u64) -> Event {
        let id = self.events.len();
        let p = &mut self.procs[from];
        let ev = step(p, from, t, Kind::Send { to, msg: id }, None, id);
        self.inflight.push(Message {
            from,
            to,
            id,
            deliver_at: t + delay,
            lamport: ev.lamport,
            vc: ev.vc.clone(),
            hlc: ev.hlc,
            registers: p.registers.clone(),
        });
        ev
    }

    /// `from` writes the register; notes it if LWW-by-wall ignored it.
    fn write(&mut self, from: usize, t: u64) -> Event {
        let p = &mut self.procs[from];
        let value = format!("{}{}", name(from), p.count + 1);
        let ev = step(
            p,
            from,
            t,
            Kind::Write(value.clone()),
            None,
            self.events.len(),
        );
        let kept = p.registers.lww_wall.get().expect("just written");
        if *kept != value {
            self.wall_ignored.push((ev.id, kept.clone()));
        }
        ev
    }
}

/// Runs the simulation described by `cfg`.
pub fn run(cfg: &Config) -> Run {
    assert!((2..=8).contains(&cfg.procs), "2 to 8 processes");
    let mut rng = SplitMix64::new(cfg.seed);
    let procs = (0..cfg.procs).map(|_| Proc::new(&mut rng, cfg)).collect();
    let mut w = World {
        procs,
        inflight: Vec::new(),
        events: Vec::new(),
        flagged: 0,
        wall_ignored: Vec::new(),
    };
    let n = cfg.procs as u64;
    let mut t = 0u64;
    while w.events.len() < cfg.events || !w.inflight.is_empty() {
        t += rng.range(2, 12) * MS;
        let due = w.inflight.iter().position(|m| m.deliver_at <= t);
        let draining = w.events.len() >= cfg.events;
        let ev = match due {
            Some(i) if draining || rng.chance(0.7) => {
                let m = w.inflight.swap_remove(i);
                w.receive(m, t)
            }
            _ if draining => continue,
            _ => {
                let from = rng.below(n) as usize;
                if rng.chance(0.55) {
                    let to = (from + 1 + rng.below(n - 1) as usize) % cfg.procs;
                    let delay = rng.range(8, 60) * MS;
                    w.send(from, to, t, delay)
                } else {
                    w.write(from, t)
                }
            }
        };
        w.events.push(ev);
    }
    let mut registers = Registers::default();
    for p in &w.procs {
        registers.merge(&p.registers);
    }
    Run {
        config: cfg.clone(),
        clocks: w.procs.iter().map(|p| (p.offset, p.drift)).collect(),
        events: w.events,
        flagged: w.flagged,
        registers,
        wall_ignored: w.wall_ignored,
    }
}

/// One event on process `p` at true time `t`: advance every clock, apply
/// a received message or a write, and record the stamps.
fn step(p: &mut Proc, proc: usize, t: u64, kind: Kind, msg: Option<&Message>, id: usize) -> Event {
    let wall = p.reading(t);
    p.clock.set(EPOCH.saturating_add_signed(wall));
    let (lamport, hlc) = match msg {
        Some(m) => {
            p.vc.merge(&m.vc);
            p.registers.merge(&m.registers);
            (
                p.lamport.observe(m.lamport),
                p.hlc.update(m.hlc).expect("flag policy accepts"),
            )
        }
        None => (p.lamport.tick(), p.hlc.now()),
    };
    p.vc.increment(proc as u64);
    p.count += 1;
    if let Kind::Write(v) = &kind {
        let wall_ts = Timestamp::new(EPOCH.saturating_add_signed(wall), 0);
        p.registers.lww_wall.set(v.clone(), wall_ts, proc as u64);
        p.registers.lww_hlc.set(v.clone(), hlc, proc as u64);
        p.registers.mv.set(proc as u64, v.clone());
    }
    Event {
        id,
        proc,
        label: format!("{}{}", name(proc), p.count),
        kind,
        true_ns: t,
        wall_ns: wall,
        lamport,
        vc: p.vc.clone(),
        hlc,
    }
}

impl Event {
    /// The HLC's physical part relative to the run's start, ns.
    pub fn hlc_rel_ns(&self) -> i64 {
        (self.hlc.wall as i128 - EPOCH as i128) as i64
    }

    /// The HLC timestamp for people: `physical ms since the start, logical`.
    pub fn hlc_text(&self) -> String {
        format!(
            "{:.3} ms,{}",
            self.hlc_rel_ns() as f64 / 1e6,
            self.hlc.logical
        )
    }
}
