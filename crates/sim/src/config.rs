//! The settings of one simulated run, all derived from its seed.

use crate::net::NetConfig;
use crate::rng::SplitMix64;

/// How hard the fault phase hits.
#[derive(Clone, Debug)]
pub struct FaultConfig {
    /// Mean time between fault actions, microseconds.
    pub mean_interval_us: u64,
    /// Crash and restart nodes.
    pub crashes: bool,
    /// Partitions of every shape.
    pub partitions: bool,
    /// Clogged links.
    pub clogging: bool,
    /// Membership changes (learners added, promoted; voters removed or swapped).
    pub membership: bool,
    /// Leadership transfers.
    pub transfers: bool,
    /// Relative weights of crash, partition, clog, membership, transfer, heal.
    pub weights: [u64; 6],
    /// How long a crashed node stays down, microseconds.
    pub restart_delay_us: (u64, u64),
    /// Share of crashes aimed at a node with a write in flight (crash mid-fsync).
    pub crash_mid_write: f64,
    /// How long a partition lasts before it heals, microseconds.
    pub partition_us: (u64, u64),
    /// Probability that a newly elected leader is cut off within a few
    /// milliseconds (leaders that append but cannot replicate: Figure 8 histories).
    pub isolate_new_leader: f64,
    /// Delay before such a leader is cut off, microseconds.
    pub isolate_delay_us: (u64, u64),
    /// Probability that a leader is cut off at the moment an append
    /// acknowledgement reaches it, before its answer leaves (a partition
    /// landing at the worst moment).
    pub cut_leader_on_ack: f64,
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed everything derives from.
    pub seed: u64,
    /// Founding voters.
    pub nodes: u64,
    /// Client processes.
    pub clients: u64,
    /// Keys the clients use (few keys = more contention).
    pub keys: u64,
    /// Transactions may span two keys (fusing key partitions in the checker).
    pub multi_key_txns: bool,
    /// Length of the fault phase, microseconds of simulated time.
    pub fault_phase_us: u64,
    /// Bound on the healed phase that must elect a leader and commit a write.
    pub liveness_us: u64,
    /// Nominal tick period, microseconds.
    pub tick_us: u64,
    /// Election timeout in ticks.
    pub election_tick: u32,
    /// PreVote on.
    pub pre_vote: bool,
    /// CheckQuorum on.
    pub check_quorum: bool,
    /// Lease-based reads (requires CheckQuorum).
    pub lease_reads: bool,
    /// Largest clock rate error (0.05 = 5%).
    pub clock_bound: f64,
    /// fsync latency range, microseconds.
    pub fsync_us: (u64, u64),
    /// A node snapshots and compacts after this many applied entries.
    pub compact_every: u64,
    /// Client request timeout, microseconds.
    pub client_timeout_us: u64,
    /// Pause between a client's requests, microseconds.
    pub think_us: (u64, u64),
    /// Entry bytes per append message.
    pub max_size_per_msg: usize,
    /// Appends in flight per follower.
    pub max_inflight: usize,
    /// Network behaviour.
    pub net: NetConfig,
    /// Faults.
    pub faults: FaultConfig,
    /// Nodes keep their Raft state in the real WAL and snapshot files on a
    /// simulated disk (otherwise in the simulator's own durable model only).
    pub real_wal: bool,
    /// Record a readable trace.
    pub trace: bool,
    /// A planted bug (takes effect only with the feature `planted-bugs`).
    pub planted_bug: Option<concord_raft::PlantedBug>,
}

impl SimConfig {
    /// A configuration that varies with the seed: 3 or 5 nodes, with or
    /// without PreVote/CheckQuorum/lease reads, different loss, duplication
    /// and fault mixes. Every fault kind is on for every seed.
    pub fn for_seed(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x5EED_C0DE);
        let nodes = if rng.chance(0.5) { 3 } else { 5 };
        let check_quorum = rng.chance(0.7);
        let lease_reads = check_quorum && rng.chance(0.4);
        SimConfig {
            seed,
            nodes,
            clients: rng.range(3, 6),
            keys: rng.range(2, 5),
            multi_key_txns: rng.chance(0.3),
            fault_phase_us: 4_000_000,
            liveness_us: 6_000_000,
            tick_us: 10_000,
            election_tick: 10,
            pre_vote: rng.chance(0.7),
            check_quorum,
            lease_reads,
            // Within the bound the core is configured for (2 ticks of 10 = 20%,
            // each side drifting at most half of it).
            clock_bound: 0.02 + rng.unit() * 0.06,
            fsync_us: (200, rng.range(500, 5_000)),
            compact_every: rng.range(10, 60),
            client_timeout_us: 300_000,
            think_us: (0, 20_000),
            net: NetConfig {
                loss: rng.unit() * 0.08,
                duplicate: rng.unit() * 0.05,
                delay_us: (100, rng.range(1_000, 8_000)),
                clog_delay_us: (50_000, 400_000),
            },
            faults: FaultConfig {
                mean_interval_us: rng.range(100_000, 400_000),
                crashes: true,
                partitions: true,
                clogging: true,
                membership: rng.chance(0.4),
                transfers: true,
                weights: [25, 35, 10, 15, 8, 7],
                restart_delay_us: (20_000, 1_500_000),
                crash_mid_write: 0.5,
                partition_us: (100_000, 2_000_000),
                isolate_new_leader: 0.0,
                isolate_delay_us: (0, 3_000),
                cut_leader_on_ack: 0.0,
            },
            max_size_per_msg: 4096,
            max_inflight: 8,
            real_wal: rng.chance(0.5),
            trace: false,
            planted_bug: None,
        }
    }

    /// The core configuration of member `id`.
    pub fn raft_config(&self, id: u64) -> concord_raft::Config {
        let mut c = concord_raft::Config::new(id, 1);
        c.election_tick = self.election_tick;
        c.heartbeat_tick = 1;
        c.pre_vote = self.pre_vote;
        c.check_quorum = self.check_quorum;
        c.seed = self.seed.wrapping_mul(1000).wrapping_add(id);
        c.max_size_per_msg = self.max_size_per_msg;
        c.max_inflight_msgs = self.max_inflight;
        c.snapshot_chunk_size = 512;
        if self.lease_reads {
            c.read_mode = concord_raft::ReadMode::LeaseBased;
            c.max_clock_drift_ticks = 2;
        }
        c.planted_bug = self.planted_bug;
        c
    }
}
