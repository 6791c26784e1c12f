//! A brute-force model of Flink's event-time window semantics with the default event-time
//! trigger, per-record watermarks (`max timestamp - out_of_orderness - 1` after each record),
//! allowed lateness, and late data. Deliberately simple: plain vectors, no timers, no panes.
#![allow(dead_code)]

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One input record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Event {
    pub key: String,
    pub ts: i64,
    pub value: i64,
}

/// One window firing: key, start, end, count, sum.
pub type Firing = (String, i64, i64, u64, i64);

#[derive(Clone, Copy, Debug)]
pub enum Assigner {
    Tumbling(i64),
    Sliding(i64, i64),
    Session(i64),
}

impl Assigner {
    pub fn spec(&self) -> String {
        match self {
            Assigner::Tumbling(s) => format!("tumbling:{s}"),
            Assigner::Sliding(s, d) => format!("sliding:{s}:{d}"),
            Assigner::Session(g) => format!("session:{g}"),
        }
    }
}

#[derive(Clone, Debug)]
struct Win {
    start: i64,
    end: i64,
    count: u64,
    sum: i64,
    /// A firing timer at the window's end is registered and has not fired.
    timer: bool,
}

impl Win {
    fn max(&self) -> i64 {
        self.end - 1
    }
    fn firing(&self, key: &str) -> Firing {
        (key.to_string(), self.start, self.end, self.count, self.sum)
    }
}

fn window_start(ts: i64, size: i64) -> i64 {
    ts - ts.rem_euclid(size)
}

/// Runs the model: every firing, and every late record.
pub fn run(
    events: &[Event],
    assigner: Assigner,
    ooo: i64,
    lateness: i64,
) -> (Vec<Firing>, Vec<Event>) {
    let mut windows: BTreeMap<String, Vec<Win>> = BTreeMap::new();
    let mut fired = Vec::new();
    let mut late = Vec::new();
    let mut wm = i64::MIN;
    let mut max_ts = i64::MIN;
    for e in events {
        let wins = windows.entry(e.key.clone()).or_default();
        match assigner {
            Assigner::Tumbling(_) | Assigner::Sliding(..) => {
                let (size, slide) = match assigner {
                    Assigner::Tumbling(s) => (s, s),
                    Assigner::Sliding(s, d) => (s, d),
                    Assigner::Session(_) => unreachable!(),
                };
                let mut starts = Vec::new();
                let mut start = window_start(e.ts, slide);
                while start > e.ts - size {
                    starts.push(start);
                    start -= slide;
                }
                let mut added = false;
                for start in starts {
                    let max = start + size - 1;
                    if max + lateness <= wm {
                        continue;
                    }
                    added = true;
                    let i = match wins.iter().position(|w| w.start == start) {
                        Some(i) => i,
                        None => {
                            wins.push(Win {
                                start,
                                end: start + size,
                                count: 0,
                                sum: 0,
                                timer: false,
                            });
                            wins.len() - 1
                        }
                    };
                    let w = &mut wins[i];
                    w.count += 1;
                    w.sum += e.value;
                    if max <= wm {
                        fired.push(w.firing(&e.key));
                    } else {
                        w.timer = true;
                    }
                }
                if !added && e.ts + lateness <= wm {
                    late.push(e.clone());
                }
            }
            Assigner::Session(gap) => {
                let (mut start, mut end) = (e.ts, e.ts + gap);
                let (mut count, mut sum) = (1u64, e.value);
                let mut merged_any = false;
                loop {
                    let hit = wins.iter().position(|w| w.start <= end && w.end >= start);
                    let Some(i) = hit else { break };
                    let w = wins.remove(i);
                    start = start.min(w.start);
                    end = end.max(w.end);
                    count += w.count;
                    sum += w.sum;
                    merged_any = true;
                }
                let max = end - 1;
                if !merged_any && max + lateness <= wm {
                    if e.ts + lateness <= wm {
                        late.push(e.clone());
                    }
                    continue;
                }
                let mut w = Win {
                    start,
                    end,
                    count,
                    sum,
                    timer: max > wm,
                };
                if max <= wm {
                    fired.push(w.firing(&e.key));
                    w.timer = false;
                }
                wins.push(w);
            }
        }
        // The watermark that follows the record.
        max_ts = max_ts.max(e.ts);
        let new_wm = max_ts - ooo - 1;
        if new_wm > wm {
            wm = new_wm;
            advance(&mut windows, wm, lateness, &mut fired);
        }
    }
    advance(&mut windows, i64::MAX, lateness, &mut fired);
    (fired, late)
}

fn advance(
    windows: &mut BTreeMap<String, Vec<Win>>,
    wm: i64,
    lateness: i64,
    fired: &mut Vec<Firing>,
) {
    for (key, wins) in windows.iter_mut() {
        for w in wins.iter_mut() {
            if w.timer && w.max() <= wm {
                fired.push(w.firing(key));
                w.timer = false;
            }
        }
        wins.retain(|w| w.max().saturating_add(lateness) > wm);
    }
}

/// Random events: a few keys, timestamps that mostly increase but jump back by up to
/// `disorder` ms, occasionally by far more (late records).
pub fn random_events(seed: u64, n: usize, keys: usize, disorder: i64) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = 1_000i64;
    (0..n)
        .map(|_| {
            t += rng.random_range(0..20);
            let ts = match rng.random_range(0..100) {
                0..=79 => t - rng.random_range(0..=disorder.max(0)),
                80..=94 => t,
                _ => t - rng.random_range(0..=disorder * 4 + 100),
            };
            Event {
                key: format!("k{}", rng.random_range(0..keys)),
                ts,
                value: rng.random_range(-50..100),
            }
        })
        .collect()
}

pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}
