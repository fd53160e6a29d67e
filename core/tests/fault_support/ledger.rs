//! The checkers: the lost-update ledger (etcd's history of the counter
//! against the contenders' logs) and the belief-overlap check.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use shardkit::lease::{FenceGate, Kv};

use super::Msg;

/// One committed increment as etcd recorded it: the counter's value is
/// `n token lease-hex writer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Increment {
    /// The count written.
    pub n: u64,
    /// The writer's fencing token (its lock key's create revision).
    pub token: i64,
    /// The writer's lease, hex.
    pub lease: String,
    /// The writer's process id in the fleet.
    pub writer: usize,
    /// The revision of the put.
    pub revision: i64,
}

/// Parses the counter's history (every put, in revision order).
pub fn increments(history: &[Kv]) -> Vec<Increment> {
    history
        .iter()
        .map(|kv| {
            let text = String::from_utf8_lossy(&kv.value);
            let w: Vec<&str> = text.split_whitespace().collect();
            let what = format!("counter value {text:?} at revision {}", kv.mod_revision);
            assert_eq!(w.len(), 4, "{what} is malformed");
            Increment {
                n: field(&w, 0, &what),
                token: field(&w, 1, &what),
                lease: w[2].to_string(),
                writer: field(&w, 3, &what),
                revision: kv.mod_revision,
            }
        })
        .collect()
}

/// Word `i` of `w` parsed; panics naming `what` (a protocol bug).
fn field<T: std::str::FromStr>(w: &[&str], i: usize, what: &str) -> T {
    w.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: word {i} is malformed"))
}

/// One line of a contender's log: `C n token lease revision` for a commit
/// it saw acknowledged, `U n token lease` for a write of unknown outcome.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Committed (`C`) or uncertain (`U`).
    pub committed: bool,
    /// Value written.
    pub n: u64,
    /// Token it was written with.
    pub token: i64,
    /// Lease, hex.
    pub lease: String,
    /// The process whose log it is.
    pub writer: usize,
}

/// Reads the log of process `writer` (a missing file has no lines).
pub fn read_log(path: &Path, writer: usize) -> Vec<LogLine> {
    let text = fs::read_to_string(path).unwrap_or_default();
    // A kill can cut the last line short: only newline-terminated lines
    // were fully written.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let what = format!("log {} line {l:?}", path.display());
            assert!(
                w.len() >= 4 && (w[0] == "C" || w[0] == "U"),
                "{what} is malformed"
            );
            LogLine {
                committed: w[0] == "C",
                n: field(&w, 1, &what),
                token: field(&w, 2, &what),
                lease: w[3].to_string(),
                writer,
            }
        })
        .collect()
}

/// What the ledger found. Every count but `increments`, `uncertain_*` and
/// `unlogged` must be 0.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Increments in etcd's history (N).
    pub increments: usize,
    /// Distinct writer processes.
    pub writers: usize,
    /// History values written more than once.
    pub doubled: usize,
    /// Values missing from 1..=N, plus logged commits etcd does not have.
    pub lost: usize,
    /// History positions holding another value than their position.
    pub misordered: usize,
    /// Places where a value's token is not above the previous value's.
    pub token_order: usize,
    /// Logged commits (external view) whose tokens do not strictly rise.
    pub external_order: usize,
    /// Unlogged increments not explained by a kill.
    pub unexplained: usize,
    /// Unlogged increments explained by a kill (at most one per kill).
    pub unlogged: usize,
    /// Uncertain writes that did commit / did not.
    pub uncertain_committed: usize,
    /// Uncertain writes that did not commit.
    pub uncertain_not: usize,
    /// Human-readable problems, first few.
    pub problems: Vec<String>,
}

impl Verdict {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 20 {
            self.problems.push(p);
        }
    }

    /// Whether every safety count is 0.
    pub fn ok(&self) -> bool {
        self.doubled == 0
            && self.lost == 0
            && self.misordered == 0
            && self.token_order == 0
            && self.external_order == 0
            && self.unexplained == 0
    }
}

/// Checks the counter's history against the logs.
///
/// Why this is sound with kills: etcd's history is authoritative (every
/// committed increment is one put to the counter key, kept until compaction,
/// and nothing compacts). A contender logs after its commit is acknowledged,
/// so the logs are a subset of the truth plus nothing: a logged commit
/// missing from the history is a lost update. The reverse gap, a commit in
/// the history that no log shows, has exactly two innocent causes: the
/// writer's answer never came (it logged `U`), or the writer was killed
/// between commit and log. A contender runs one transaction at a time and
/// logs before the next, so a kill hides at most one commit, and only one
/// of the killed process's own: anything else unlogged is a failure.
pub fn check_counter(
    history: &[Increment],
    logs: &[LogLine],
    killed: &BTreeSet<usize>,
    lock: &str,
) -> Verdict {
    let mut v = Verdict {
        increments: history.len(),
        writers: history
            .iter()
            .map(|i| i.writer)
            .collect::<BTreeSet<_>>()
            .len(),
        ..Verdict::default()
    };
    // Values exactly 1..=N in order: no duplicate, no gap.
    let mut seen = BTreeSet::new();
    for (i, inc) in history.iter().enumerate() {
        if !seen.insert(inc.n) {
            v.doubled += 1;
            v.problem(format!(
                "value {} written twice (again at revision {}, by p{} token {})",
                inc.n, inc.revision, inc.writer, inc.token
            ));
        } else if inc.n != i as u64 + 1 {
            v.misordered += 1;
            v.problem(format!(
                "history position {} holds value {} (revision {})",
                i + 1,
                inc.n,
                inc.revision
            ));
        }
        if i > 0 && inc.token <= history[i - 1].token {
            v.token_order += 1;
            v.problem(format!(
                "value {} has token {} after value {} with token {}: a stale holder wrote",
                inc.n,
                inc.token,
                history[i - 1].n,
                history[i - 1].token
            ));
        }
    }
    let gaps = (1..=history.len() as u64)
        .filter(|n| !seen.contains(n))
        .count();
    if gaps > 0 {
        v.problem(format!("{gaps} values of 1..={} missing", history.len()));
    }
    v.lost += gaps;

    let by_n: HashMap<u64, &Increment> = history.iter().map(|i| (i.n, i)).collect();
    let mut explained: BTreeSet<(u64, i64)> = BTreeSet::new();
    for l in logs {
        let hit = by_n
            .get(&l.n)
            .is_some_and(|i| i.token == l.token && i.lease == l.lease && i.writer == l.writer);
        if l.committed {
            if hit {
                explained.insert((l.n, l.token));
            } else {
                v.lost += 1;
                v.problem(format!(
                    "p{} logged a commit of {} with token {} that etcd's history does not hold",
                    l.writer, l.n, l.token
                ));
            }
        } else if hit {
            v.uncertain_committed += 1;
            explained.insert((l.n, l.token));
        } else {
            v.uncertain_not += 1;
        }
    }
    let mut per_killed: BTreeMap<usize, usize> = BTreeMap::new();
    for inc in history {
        if explained.contains(&(inc.n, inc.token)) {
            continue;
        }
        let k = per_killed.entry(inc.writer).or_insert(0);
        *k += 1;
        if killed.contains(&inc.writer) && *k == 1 {
            v.unlogged += 1;
        } else {
            v.unexplained += 1;
            v.problem(format!(
                "value {} (token {}, p{}) is in etcd but in no log, and p{} was {}",
                inc.n,
                inc.token,
                inc.writer,
                inc.writer,
                if killed.contains(&inc.writer) {
                    "killed only once"
                } else {
                    "never killed"
                }
            ));
        }
    }

    // The external resource's view: the logged commits, in value order, as
    // a store fenced by token would have received them.
    let gate = FenceGate::for_lock(lock).expect("fence gate");
    let mut external: Vec<&LogLine> = logs.iter().filter(|l| l.committed).collect();
    external.sort_by_key(|l| l.n);
    for (i, l) in external.iter().enumerate() {
        let admitted = gate.admit_value(b"counter", l.token).is_ok();
        let rising = i == 0 || l.token > external[i - 1].token;
        if !admitted || !rising {
            v.external_order += 1;
            v.problem(format!(
                "external store: value {} with token {} after value {} with token {}",
                l.n,
                l.token,
                external[i - 1].n,
                external[i - 1].token
            ));
        }
    }
    v
}

/// A belief interval from a `BELIEF token lease first last how` line.
#[derive(Debug, Clone)]
pub struct Belief {
    /// Fencing token of the hold.
    pub token: i64,
    /// Lease, hex.
    pub lease: String,
    /// Wall µs before the first Ok check.
    pub first: u64,
    /// Wall µs before the last Ok check.
    pub last: u64,
    /// `unlock` or `lost`.
    pub how: String,
    /// Which process.
    pub proc: usize,
}

/// The belief intervals among `msgs`.
pub fn beliefs(msgs: &[Msg]) -> Vec<Belief> {
    msgs.iter()
        .filter(|m| m.tag == "BELIEF")
        .map(|m| Belief {
            token: m.int(0),
            lease: m.s(1).to_string(),
            first: m.int(2) as u64,
            last: m.int(3) as u64,
            how: m.s(4).to_string(),
            proc: m.proc,
        })
        .collect()
}

/// Pairs of belief intervals of different holds that overlap. The reported
/// intervals lie inside the real beliefs (see `contender::belief`), so any
/// overlap found is a real one.
pub fn overlaps(mut b: Vec<Belief>) -> Vec<(Belief, Belief)> {
    b.sort_by_key(|x| (x.first, x.last));
    let mut out = Vec::new();
    let mut widest: Option<Belief> = None;
    for cur in b {
        if let Some(w) = &widest {
            if w.token != cur.token && cur.first <= w.last {
                out.push((w.clone(), cur.clone()));
            }
        }
        if widest.as_ref().is_none_or(|w| cur.last > w.last) {
            widest = Some(cur);
        }
    }
    out
}
