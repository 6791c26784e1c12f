//! Every query against a brute-force oracle over the same generated events, at parallelism 1, 2
//! and 4, from the in-job generator and from JSON files.

use std::collections::{BTreeMap, HashMap, HashSet};

use eddy::prelude::*;
use eddy_nexmark::json::format_timestamp;
use eddy_nexmark::queries::{
    self, Q0Row, Q1Row, Q2Row, Q3Row, Q4Row, Q5Row, Q7Row, Q8Row, Q9Row, Q11Row,
};
use eddy_nexmark::{Event, GeneratorConfig, Input, Query, events, write_files};

const EVENTS: u64 = 24_000;

/// 600 events per second: 40 s of event time, so four tumbling windows and twenty slides.
fn config() -> GeneratorConfig {
    GeneratorConfig {
        seed: 42,
        events_per_second: 600.0,
        ..GeneratorConfig::default()
    }
}

/// 0.2 events per second: 33 hours of event time, every hour of the day and two days.
fn slow_config() -> GeneratorConfig {
    GeneratorConfig {
        events_per_second: 0.2,
        ..config()
    }
}

fn generated(c: &GeneratorConfig) -> Vec<Event> {
    (0..EVENTS).map(|n| c.event(n)).collect()
}

fn run(query: Query, input: &Input, parallelism: u32) -> Vec<String> {
    let env = StreamExecutionEnvironment::create_local_environment(parallelism);
    let events = events(&env, input);
    fn strings<T: eddy::Data + std::fmt::Display>(rows: DataStream<T>) -> DataStream<String> {
        rows.map(|r: T| r.to_string())
    }
    let rows = match query {
        Query::Q0 => strings(queries::q0(events)),
        Query::Q1 => strings(queries::q1(events)),
        Query::Q2 => strings(queries::q2(events)),
        Query::Q3 => strings(queries::q3(events)),
        Query::Q4 => strings(queries::q4(events)),
        Query::Q5 => strings(queries::q5(events)),
        Query::Q7 => strings(queries::q7(events)),
        Query::Q8 => strings(queries::q8(events)),
        Query::Q9 => strings(queries::q9(events)),
        Query::Q11 => strings(queries::q11(events)),
        Query::Q14 => strings(queries::q14(events)),
        Query::Q15 => strings(queries::q15(events)),
        Query::Q16 => strings(queries::q16(events)),
        Query::Q17 => strings(queries::q17(events)),
        Query::Q18 => strings(queries::q18(events)),
        Query::Q20 => strings(queries::q20(events)),
        Query::Q21 => strings(queries::q21(events)),
        Query::Q22 => strings(queries::q22(events)),
    };
    let mut out = rows
        .execute_and_collect(&format!("{query}"))
        .unwrap_or_else(|e| panic!("{query} p={parallelism}: {e}"));
    if let Some(k) = query.key_columns() {
        // A changelog: the last row per key (each key's rows come from one subtask, in order).
        let mut last = BTreeMap::new();
        for row in out {
            let key: Vec<String> = row.split(',').take(k).map(String::from).collect();
            last.insert(key, row);
        }
        out = last.into_values().collect();
    }
    out.sort();
    out
}

fn bids(events: &[Event]) -> impl Iterator<Item = &eddy_nexmark::Bid> {
    events.iter().filter_map(|e| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

fn oracle(query: Query, events: &[Event]) -> Vec<String> {
    let mut out: Vec<String> = match query {
        Query::Q0 => bids(events).map(|b| Q0Row(b.clone()).to_string()).collect(),
        Query::Q1 => bids(events)
            .map(|b| {
                Q1Row {
                    auction: b.auction,
                    bidder: b.bidder,
                    price_thousandths: u128::from(b.price) * 908,
                    date_time: b.date_time,
                    extra: b.extra.clone(),
                }
                .to_string()
            })
            .collect(),
        Query::Q2 => bids(events)
            .filter(|b| b.auction % 123 == 0)
            .map(|b| {
                Q2Row {
                    auction: b.auction,
                    price: b.price,
                }
                .to_string()
            })
            .collect(),
        Query::Q3 => {
            let mut rows = Vec::new();
            for e in events {
                let Event::Auction(a) = e else { continue };
                if a.category != 10 {
                    continue;
                }
                for p in events {
                    let Event::Person(p) = p else { continue };
                    if p.id == a.seller && ["OR", "ID", "CA"].contains(&p.state.as_str()) {
                        rows.push(
                            Q3Row {
                                name: p.name.clone(),
                                city: p.city.clone(),
                                state: p.state.clone(),
                                id: a.id,
                            }
                            .to_string(),
                        );
                    }
                }
            }
            rows
        }
        Query::Q4 => {
            let mut winners: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for e in events {
                let Event::Auction(a) = e else { continue };
                let best = bids(events)
                    .filter(|b| {
                        b.auction == a.id && (a.date_time..=a.expires).contains(&b.date_time)
                    })
                    .map(|b| b.price)
                    .max();
                if let Some(p) = best {
                    winners.entry(a.category).or_default().push(p);
                }
            }
            winners
                .into_iter()
                .map(|(category, prices)| {
                    Q4Row {
                        category,
                        average: prices.iter().sum::<u64>() / prices.len() as u64,
                    }
                    .to_string()
                })
                .collect()
        }
        Query::Q5 => {
            let mut windows: BTreeMap<i64, HashMap<u64, u64>> = BTreeMap::new();
            for b in bids(events) {
                let last = b.date_time - b.date_time.rem_euclid(2000);
                let mut start = last;
                while start > b.date_time - 10_000 {
                    *windows
                        .entry(start)
                        .or_default()
                        .entry(b.auction)
                        .or_default() += 1;
                    start -= 2000;
                }
            }
            let mut rows = Vec::new();
            for counts in windows.values() {
                let max = counts.values().copied().max().unwrap_or(0);
                for (&auction, &num) in counts {
                    if num == max {
                        rows.push(Q5Row { auction, num }.to_string());
                    }
                }
            }
            rows
        }
        Query::Q7 => {
            let mut max: BTreeMap<i64, u64> = BTreeMap::new();
            for b in bids(events) {
                let w = max.entry(b.date_time.div_euclid(10_000)).or_default();
                *w = (*w).max(b.price);
            }
            let mut rows = Vec::new();
            for (&w, &price) in &max {
                let (start, end) = (w * 10_000, w * 10_000 + 10_000);
                for b in bids(events) {
                    if b.price == price && (start..=end).contains(&b.date_time) {
                        rows.push(Q7Row(b.clone()).to_string());
                    }
                }
            }
            rows
        }
        Query::Q8 => {
            let mut sellers: HashSet<(u64, i64)> = HashSet::new();
            for e in events {
                if let Event::Auction(a) = e {
                    sellers.insert((a.seller, a.date_time.div_euclid(10_000)));
                }
            }
            events
                .iter()
                .filter_map(|e| match e {
                    Event::Person(p) => Some(p),
                    _ => None,
                })
                .filter(|p| sellers.contains(&(p.id, p.date_time.div_euclid(10_000))))
                .map(|p| {
                    Q8Row {
                        id: p.id,
                        name: p.name.clone(),
                        start: p.date_time.div_euclid(10_000) * 10_000,
                    }
                    .to_string()
                })
                .collect()
        }
        Query::Q9 => {
            // Per auction, the highest bid placed while it was open, the earliest of equals.
            events
                .iter()
                .filter_map(|e| match e {
                    Event::Auction(a) => Some(a),
                    _ => None,
                })
                .filter_map(|a| {
                    bids(events)
                        .filter(|b| {
                            b.auction == a.id && (a.date_time..=a.expires).contains(&b.date_time)
                        })
                        .min_by_key(|b| (std::cmp::Reverse(b.price), b.date_time))
                        .map(|b| {
                            Q9Row {
                                auction: a.clone(),
                                bid: b.clone(),
                            }
                            .to_string()
                        })
                })
                .collect()
        }
        Query::Q11 => {
            // Per bidder, bids in time order; a bid more than 10 s after the session's last
            // one starts a new session (exactly 10 s: the windows touch, and merge).
            let mut per_bidder: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
            for b in bids(events) {
                per_bidder.entry(b.bidder).or_default().push(b.date_time);
            }
            let mut rows = Vec::new();
            for (bidder, mut times) in per_bidder {
                times.sort_unstable();
                let mut session: Option<(i64, i64, u64)> = None;
                for t in times {
                    session = match session {
                        Some((start, last, n)) if t <= last + 10_000 => Some((start, t, n + 1)),
                        Some((start, last, n)) => {
                            rows.push(q11_row(bidder, start, last, n));
                            Some((t, t, 1))
                        }
                        None => Some((t, t, 1)),
                    };
                }
                if let Some((start, last, n)) = session {
                    rows.push(q11_row(bidder, start, last, n));
                }
            }
            rows
        }
        Query::Q14 => bids(events)
            .filter(|b| {
                let euros = b.price as f64 * 0.908;
                euros > 1_000_000.0 && euros < 50_000_000.0
            })
            .map(|b| {
                let hour = b.date_time.div_euclid(3_600_000).rem_euclid(24);
                let kind = if (8..=18).contains(&hour) {
                    "dayTime"
                } else if hour <= 6 || hour >= 20 {
                    "nightTime"
                } else {
                    "otherTime"
                };
                let thousandths = b.price * 908;
                format!(
                    "{},{},{}.{:03},{kind},{},{},{}",
                    b.auction,
                    b.bidder,
                    thousandths / 1000,
                    thousandths % 1000,
                    format_timestamp(b.date_time),
                    b.extra,
                    b.extra.chars().filter(|c| *c == 'c').count()
                )
            })
            .collect(),
        Query::Q15 | Query::Q16 => {
            // Per (channel, day), or per day: the bids' (bidder, auction, price, time).
            let mut groups: BTreeMap<(String, String), Vec<&eddy_nexmark::Bid>> = BTreeMap::new();
            for b in bids(events) {
                let day = format_timestamp(b.date_time)[..10].to_string();
                let channel = if query == Query::Q16 {
                    b.channel.clone()
                } else {
                    String::new()
                };
                groups.entry((channel, day)).or_default().push(b);
            }
            groups
                .into_iter()
                .map(|((channel, day), bids)| {
                    let ranks: [fn(u64) -> bool; 4] = [
                        |_| true,
                        |p| p < 10_000,
                        |p| (10_000..1_000_000).contains(&p),
                        |p| p >= 1_000_000,
                    ];
                    let mut cols = Vec::new();
                    for r in ranks {
                        cols.push(bids.iter().filter(|b| r(b.price)).count());
                    }
                    for r in ranks {
                        let s: HashSet<u64> = bids
                            .iter()
                            .filter(|b| r(b.price))
                            .map(|b| b.bidder)
                            .collect();
                        cols.push(s.len());
                    }
                    for r in ranks {
                        let s: HashSet<u64> = bids
                            .iter()
                            .filter(|b| r(b.price))
                            .map(|b| b.auction)
                            .collect();
                        cols.push(s.len());
                    }
                    let cols: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
                    if query == Query::Q16 {
                        let latest = bids.iter().map(|b| b.date_time).max().unwrap();
                        let minute = &format_timestamp(latest)[11..16];
                        format!("{channel},{day},{minute},{}", cols.join(","))
                    } else {
                        format!("{day},{}", cols.join(","))
                    }
                })
                .collect()
        }
        Query::Q17 => {
            let mut groups: BTreeMap<(u64, String), Vec<u64>> = BTreeMap::new();
            for b in bids(events) {
                let day = format_timestamp(b.date_time)[..10].to_string();
                groups.entry((b.auction, day)).or_default().push(b.price);
            }
            groups
                .into_iter()
                .map(|((auction, day), prices)| {
                    let n = prices.len() as u64;
                    let sum: u64 = prices.iter().sum();
                    let rank =
                        |r: std::ops::Range<u64>| prices.iter().filter(|p| r.contains(p)).count();
                    format!(
                        "{auction},{day},{n},{},{},{},{},{},{},{sum}",
                        rank(0..10_000),
                        rank(10_000..1_000_000),
                        rank(1_000_000..u64::MAX),
                        prices.iter().min().unwrap(),
                        prices.iter().max().unwrap(),
                        sum / n
                    )
                })
                .collect()
        }
        Query::Q18 => {
            // Timestamps are 1.7 ms apart: no two bids tie.
            let mut last: BTreeMap<(u64, u64), &eddy_nexmark::Bid> = BTreeMap::new();
            for b in bids(events) {
                let e = last.entry((b.auction, b.bidder)).or_insert(b);
                if b.date_time > e.date_time {
                    *e = b;
                }
            }
            last.values()
                .map(|b| {
                    format!(
                        "{},{},{},{},{},{},{}",
                        b.auction,
                        b.bidder,
                        b.price,
                        b.channel,
                        b.url,
                        format_timestamp(b.date_time),
                        b.extra
                    )
                })
                .collect()
        }
        Query::Q20 => {
            let auctions: HashMap<u64, &eddy_nexmark::Auction> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Auction(a) if a.category == 10 => Some((a.id, a)),
                    _ => None,
                })
                .collect();
            bids(events)
                .filter_map(|b| {
                    let a = auctions.get(&b.auction)?;
                    Some(format!(
                        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                        b.auction,
                        b.bidder,
                        b.price,
                        b.channel,
                        b.url,
                        format_timestamp(b.date_time),
                        b.extra,
                        a.item_name,
                        a.description,
                        a.initial_bid,
                        a.reserve,
                        format_timestamp(a.date_time),
                        format_timestamp(a.expires),
                        a.seller,
                        a.category,
                        a.extra
                    ))
                })
                .collect()
        }
        Query::Q21 => bids(events)
            .filter_map(|b| {
                let hot = ["apple", "google", "facebook", "baidu"]
                    .iter()
                    .position(|c| b.channel.eq_ignore_ascii_case(c));
                // `(&|^)channel_id=([^&]*)`: a `&`-separated part that starts with the name.
                let id = match hot {
                    Some(i) => i.to_string(),
                    None => b
                        .url
                        .split('&')
                        .find_map(|part| part.strip_prefix("channel_id="))?
                        .to_string(),
                };
                Some(format!(
                    "{},{},{},{},{id}",
                    b.auction, b.bidder, b.price, b.channel
                ))
            })
            .collect(),
        Query::Q22 => bids(events)
            .map(|b| {
                let parts: Vec<&str> = b.url.split('/').collect();
                let dir = |i: usize| parts.get(i).copied().unwrap_or("");
                format!(
                    "{},{},{},{},{},{},{}",
                    b.auction,
                    b.bidder,
                    b.price,
                    b.channel,
                    dir(3),
                    dir(4),
                    dir(5)
                )
            })
            .collect(),
    };
    out.sort();
    out
}

fn q11_row(bidder: u64, start: i64, last: i64, bid_count: u64) -> String {
    Q11Row {
        bidder,
        bid_count,
        start,
        end: last + 10_000,
    }
    .to_string()
}

fn check(query: Query) {
    check_with(query, config());
}

fn check_with(query: Query, config: GeneratorConfig) {
    let events = generated(&config);
    let expected = oracle(query, &events);
    assert!(!expected.is_empty(), "{query}: the oracle found no rows");
    for p in [1, 2, 4] {
        let input = Input::Generator {
            config: config.clone(),
            events: EVENTS,
        };
        let got = run(query, &input, p);
        assert_eq!(got.len(), expected.len(), "{query} p={p}: row count");
        assert!(got == expected, "{query} p={p}: rows differ");
    }
    let dir = tempfile::tempdir().unwrap();
    write_files(&config, EVENTS, 2, dir.path()).unwrap();
    let got = run(query, &Input::Files(dir.path().to_path_buf()), 2);
    assert!(got == expected, "{query} from files: rows differ");
}

#[test]
fn q0_passes_bids_through() {
    check(Query::Q0);
}

#[test]
fn q1_converts_prices() {
    check(Query::Q1);
}

#[test]
fn q2_selects_auctions() {
    check(Query::Q2);
}

#[test]
fn q3_joins_sellers_and_auctions() {
    check(Query::Q3);
}

#[test]
fn q4_averages_winning_bids_per_category() {
    check(Query::Q4);
}

#[test]
fn q5_finds_hot_items_per_sliding_window() {
    check(Query::Q5);
}

#[test]
fn q7_finds_the_highest_bids_per_window() {
    check(Query::Q7);
}

#[test]
fn q8_finds_new_sellers_per_window() {
    check(Query::Q8);
}

#[test]
fn q9_finds_each_auctions_winning_bid() {
    check(Query::Q9);
}

#[test]
fn q11_counts_bids_per_user_session() {
    check(Query::Q11);
}

#[test]
fn q14_selects_bids_by_price_with_their_time_of_day() {
    check_with(Query::Q14, slow_config());
}

#[test]
fn q15_counts_bids_bidders_and_auctions_per_day() {
    check_with(Query::Q15, slow_config());
}

#[test]
fn q16_counts_bids_bidders_and_auctions_per_channel_and_day() {
    check_with(Query::Q16, slow_config());
}

#[test]
fn q17_aggregates_bids_per_auction_and_day() {
    check_with(Query::Q17, slow_config());
}

#[test]
fn q18_keeps_each_bidders_last_bid_per_auction() {
    check(Query::Q18);
}

#[test]
fn q20_expands_bids_with_their_category_10_auction() {
    check(Query::Q20);
}

#[test]
fn q21_adds_channel_ids() {
    check(Query::Q21);
}

#[test]
fn q22_splits_urls_into_directories() {
    check(Query::Q22);
}

#[test]
fn a_malformed_line_fails_the_job_with_the_line_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    write_files(&config(), 500, 1, dir.path()).unwrap();
    let file = dir.path().join("events-000.json");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("{\"event_type\":2,\"bid\":{\"auction\":\"oops\"}}\n");
    std::fs::write(&file, text).unwrap();
    let env = StreamExecutionEnvironment::create_local_environment(1);
    let err = eddy_nexmark::run_query(&env, Query::Q0, &Input::Files(dir.path().into()), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("malformed Nexmark event"), "{err}");
    assert!(err.contains("oops"), "{err}");
}

#[test]
fn a_missing_input_directory_is_a_clear_error() {
    let env = StreamExecutionEnvironment::create_local_environment(1);
    let err = eddy_nexmark::run_query(
        &env,
        Query::Q0,
        &Input::Files("/nonexistent/nexmark".into()),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/nexmark"), "{err}");
}
