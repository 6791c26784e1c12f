//! The queries the reference added to the original suite: q14–q18 and q20–q22.
//!
//! | query | what | how |
//! |-------|------|-----|
//! | q14 | bids in a price range, with a time-of-day type and a character count | `flat_map` |
//! | q15 | per day: bids, distinct bidders and distinct auctions, in all and by price rank | keyed running aggregate with keyed sets |
//! | q16 | q15 per channel and day, with the latest minute | the same, keyed by channel and day |
//! | q17 | per auction and day: bid counts by price rank, min, max, average and sum of prices | keyed running aggregate |
//! | q18 | each bidder's last bid on each auction | keyed deduplication keeping the latest |
//! | q20 | bids of category-10 auctions, with the auction | keyed two-input join with state |
//! | q21 | bids with a channel id, from the channel name or the URL | `flat_map` |
//! | q22 | bids with the first three directories of their URL | `map` |

use std::fmt;

use chrono::{DateTime, Timelike};
use eddy::prelude::*;
use eddy::{
    Data, FunctionResult, KeyedCoProcessFunction, KeyedContext, KeyedProcessFunction, ListState,
    ListStateDescriptor, MapState, MapStateDescriptor, ValueState, ValueStateDescriptor,
};
use serde::{Deserialize, Serialize};

use super::{auctions, bids, open_pair};
use crate::json::format_timestamp;
use crate::model::{Auction, Bid, Event};

/// q14: bids whose price in euros (× 0.908, exactly) lies strictly between 1,000,000 and
/// 50,000,000, with `dayTime` (hours 8–18), `nightTime` (up to 6, from 20) or `otherTime`, and
/// the number of `c` in `extra` (the reference's `count_char` function).
pub fn q14(events: DataStream<Event>) -> DataStream<Q14Row> {
    bids(events)
        .flat_map(|b: Bid, out: &mut Collector<'_, Q14Row>| {
            // 0.908 × price, in thousandths: 1,000,000 < 0.908 × price < 50,000,000.
            let price_thousandths = u128::from(b.price) * 908;
            if price_thousandths > 1_000_000_000 && price_thousandths < 50_000_000_000 {
                let hour = DateTime::from_timestamp_millis(b.date_time).map_or(0, |t| t.hour());
                let bid_time_type = match hour {
                    8..=18 => BidTimeType::DayTime,
                    0..=6 | 20.. => BidTimeType::NightTime,
                    _ => BidTimeType::OtherTime,
                };
                out.collect(Q14Row {
                    auction: b.auction,
                    bidder: b.bidder,
                    price_thousandths,
                    bid_time_type,
                    date_time: b.date_time,
                    c_counts: b.extra.matches('c').count() as u64,
                    extra: b.extra,
                });
            }
        })
        .name("q14")
}

/// A q14 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q14Row {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// The price in euros, times 1000.
    pub price_thousandths: u128,
    /// When in the day the bid was placed.
    pub bid_time_type: BidTimeType,
    /// Bid time.
    pub date_time: i64,
    /// Padding.
    pub extra: String,
    /// How many `c` the padding holds.
    pub c_counts: u64,
}

/// q14's time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BidTimeType {
    /// Hours 8 to 18.
    DayTime,
    /// Hours 0 to 6 and 20 to 23.
    NightTime,
    /// Hours 7 and 19.
    OtherTime,
}

impl fmt::Display for BidTimeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BidTimeType::DayTime => "dayTime",
            BidTimeType::NightTime => "nightTime",
            BidTimeType::OtherTime => "otherTime",
        })
    }
}

impl fmt::Display for Q14Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{}.{:03},{},{},{},{}",
            self.auction,
            self.bidder,
            self.price_thousandths / 1000,
            self.price_thousandths % 1000,
            self.bid_time_type,
            format_timestamp(self.date_time),
            self.extra,
            self.c_counts
        )
    }
}

/// The day of a timestamp, as `DATE_FORMAT(t, 'yyyy-MM-dd')`.
fn day_of(millis: i64) -> String {
    format_timestamp(millis).chars().take(10).collect()
}

/// The price rank of q15–q17: 1 below $100 (10,000 cents), 2 below $10,000, 3 from there.
fn price_rank(price: u64) -> usize {
    match price {
        ..10_000 => 1,
        10_000..1_000_000 => 2,
        _ => 3,
    }
}

/// q15 and q16's figures for one key: bids, distinct bidders and distinct auctions, each in
/// all (index 0) and per price rank (1 to 3), and the latest bid time.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BidStats {
    /// Bids.
    pub bids: [u64; 4],
    /// Distinct bidders.
    pub bidders: [u64; 4],
    /// Distinct auctions.
    pub auctions: [u64; 4],
    /// The latest bid time (ms since the epoch).
    pub latest: i64,
}

impl fmt::Display for BidStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = self.bids.iter().chain(&self.bidders).chain(&self.auctions);
        for (i, n) in all.enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// A bid as q15 and q16 count it: `(bidder, auction, price, time)`.
type CountedBid = (u64, u64, u64, i64);

/// Keeps [`BidStats`] per key, and which bidders and auctions it has seen per rank, as keyed
/// map state (`(set, id)`: sets 0–3 are bidders in all and per rank, 4–7 auctions), so that a
/// bid costs a few lookups whatever the number of distinct values.
struct CountBids {
    stats: Option<ValueState<BidStats>>,
    seen: Option<MapState<(u8, u64), ()>>,
}

impl CountBids {
    fn new() -> Self {
        CountBids {
            stats: None,
            seen: None,
        }
    }
}

impl<K: Data + Eq + std::hash::Hash> KeyedProcessFunction<K, (K, CountedBid), (K, BidStats)>
    for CountBids
{
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.stats = Some(ctx.get_state(&ValueStateDescriptor::new("stats"))?);
        self.seen = Some(ctx.get_map_state(&MapStateDescriptor::new("seen"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (key, (bidder, auction, price, time)): (K, CountedBid),
        _ctx: &mut KeyedContext<'_, K>,
        out: &mut Collector<'_, (K, BidStats)>,
    ) -> FunctionResult<()> {
        let (stats, seen) = open_pair(&self.stats, &self.seen)?;
        let mut s = stats.value()?.unwrap_or_default();
        let rank = price_rank(price);
        s.latest = s.latest.max(time);
        for r in [0, rank] {
            s.bids[r] += 1;
            for (set, id, count) in [
                (r as u8, bidder, &mut s.bidders[r]),
                (4 + r as u8, auction, &mut s.auctions[r]),
            ] {
                if !seen.contains(&(set, id))? {
                    seen.put((set, id), ())?;
                    *count += 1;
                }
            }
        }
        stats.update(s.clone())?;
        out.collect((key, s));
        Ok(())
    }
}

/// q15: per day, the number of bids, distinct bidders and distinct auctions, in all and per
/// price rank. An unbounded aggregation: each bid emits its day's new row.
pub fn q15(events: DataStream<Event>) -> DataStream<Q15Row> {
    bids(events)
        .map(|b: Bid| {
            (
                day_of(b.date_time),
                (b.bidder, b.auction, b.price, b.date_time),
            )
        })
        .key_by(|b: &(String, CountedBid)| b.0.clone())
        .process(CountBids::new)
        .map(|(day, stats): (String, BidStats)| Q15Row { day, stats })
        .name("q15")
}

/// A q15 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q15Row {
    /// `yyyy-MM-dd`.
    pub day: String,
    /// The day's figures.
    pub stats: BidStats,
}

impl fmt::Display for Q15Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.day, self.stats)
    }
}

/// q16: q15 per channel and day, with the latest minute of a bid (`HH:mm`).
pub fn q16(events: DataStream<Event>) -> DataStream<Q16Row> {
    bids(events)
        .map(|b: Bid| {
            let key = (b.channel, day_of(b.date_time));
            (key, (b.bidder, b.auction, b.price, b.date_time))
        })
        .key_by(|b: &((String, String), CountedBid)| b.0.clone())
        .process(CountBids::new)
        .map(
            |((channel, day), stats): ((String, String), BidStats)| Q16Row {
                channel,
                day,
                stats,
            },
        )
        .name("q16")
}

/// A q16 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q16Row {
    /// Channel name.
    pub channel: String,
    /// `yyyy-MM-dd`.
    pub day: String,
    /// The channel's figures that day.
    pub stats: BidStats,
}

impl fmt::Display for Q16Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minute: String = format_timestamp(self.stats.latest)
            .chars()
            .skip(11)
            .take(5)
            .collect();
        write!(f, "{},{},{minute},{}", self.channel, self.day, self.stats)
    }
}

/// q17: per auction and day, the number of bids in all and below $100, from $100 to below
/// $10,000 and from $10,000, and the minimum, maximum, average (integer, as SQL's `AVG` of
/// `BIGINT`) and sum of their prices. An unbounded aggregation: each bid emits its key's new
/// row (a changelog whose last row per key is the result).
pub fn q17(events: DataStream<Event>) -> DataStream<Q17Row> {
    bids(events)
        .map(|b: Bid| ((b.auction, day_of(b.date_time)), b.price))
        .key_by(|b: &((u64, String), u64)| b.0.clone())
        .process(|| AuctionStats { stats: None })
        .name("q17")
}

/// A q17 row.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Q17Row {
    /// Auction id.
    pub auction: u64,
    /// `yyyy-MM-dd`.
    pub day: String,
    /// Bids.
    pub total_bids: u64,
    /// Bids below 10,000 cents.
    pub rank1_bids: u64,
    /// Bids from 10,000 to below 1,000,000 cents.
    pub rank2_bids: u64,
    /// Bids from 1,000,000 cents.
    pub rank3_bids: u64,
    /// Lowest price.
    pub min_price: u64,
    /// Highest price.
    pub max_price: u64,
    /// Sum of the prices.
    pub sum_price: u64,
}

impl Q17Row {
    /// The row after one more bid at `price`.
    pub fn add(&mut self, price: u64) {
        if self.total_bids == 0 {
            (self.min_price, self.max_price) = (price, price);
        }
        self.total_bids += 1;
        match price_rank(price) {
            1 => self.rank1_bids += 1,
            2 => self.rank2_bids += 1,
            _ => self.rank3_bids += 1,
        }
        self.min_price = self.min_price.min(price);
        self.max_price = self.max_price.max(price);
        self.sum_price += price;
    }
}

impl fmt::Display for Q17Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{},{},{},{},{},{},{}",
            self.auction,
            self.day,
            self.total_bids,
            self.rank1_bids,
            self.rank2_bids,
            self.rank3_bids,
            self.min_price,
            self.max_price,
            self.sum_price / self.total_bids.max(1),
            self.sum_price
        )
    }
}

/// q17's state per (auction, day): its row so far.
struct AuctionStats {
    stats: Option<ValueState<Q17Row>>,
}

impl KeyedProcessFunction<(u64, String), ((u64, String), u64), Q17Row> for AuctionStats {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.stats = Some(ctx.get_state(&ValueStateDescriptor::new("stats"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        ((auction, day), price): ((u64, String), u64),
        _ctx: &mut KeyedContext<'_, (u64, String)>,
        out: &mut Collector<'_, Q17Row>,
    ) -> FunctionResult<()> {
        let stats = self.stats.as_ref().ok_or("state used before open()")?;
        let mut row = stats.value()?.unwrap_or_else(|| Q17Row {
            auction,
            day,
            ..Q17Row::default()
        });
        row.add(price);
        stats.update(row.clone())?;
        out.collect(row);
        Ok(())
    }
}

/// q18: each bidder's last bid on each auction — the one with the latest `dateTime`, of equal
/// ones the later to arrive, as Flink's deduplication keeps it. A changelog: every bid that
/// becomes its (auction, bidder)'s last is emitted.
pub fn q18(events: DataStream<Event>) -> DataStream<Q18Row> {
    bids(events)
        .key_by(|b: &Bid| (b.auction, b.bidder))
        .process(|| LastBid { latest: None })
        .name("q18")
}

/// A q18 row: `auction, bidder, price, channel, url, dateTime, extra`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q18Row(pub Bid);

impl fmt::Display for Q18Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_all_bid_columns(&self.0, f)
    }
}

/// Every bid column: `auction, bidder, price, channel, url, dateTime, extra`.
fn write_all_bid_columns(b: &Bid, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(
        f,
        "{},{},{},{},{},{},{}",
        b.auction,
        b.bidder,
        b.price,
        b.channel,
        b.url,
        format_timestamp(b.date_time),
        b.extra
    )
}

/// q18's state per (auction, bidder): the time of the last bid.
struct LastBid {
    latest: Option<ValueState<i64>>,
}

impl KeyedProcessFunction<(u64, u64), Bid, Q18Row> for LastBid {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.latest = Some(ctx.get_state(&ValueStateDescriptor::new("latest"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        bid: Bid,
        _ctx: &mut KeyedContext<'_, (u64, u64)>,
        out: &mut Collector<'_, Q18Row>,
    ) -> FunctionResult<()> {
        let latest = self.latest.as_ref().ok_or("state used before open()")?;
        if latest.value()?.is_none_or(|t| bid.date_time >= t) {
            latest.update(bid.date_time)?;
            out.collect(Q18Row(bid));
        }
        Ok(())
    }
}

/// q20: every bid on an auction of category 10, with the auction's columns. A regular join of
/// two unbounded streams on the auction id: bids that arrive before their auction wait for it.
pub fn q20(events: DataStream<Event>) -> DataStream<Q20Row> {
    auctions(events.clone())
        .key_by(|a: &Auction| a.id)
        .connect(bids(events).key_by(|b: &Bid| b.auction))
        .process(ExpandBids::default)
        .name("q20")
}

/// A q20 row: the bid and its auction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q20Row {
    /// The bid.
    pub bid: Bid,
    /// Its auction.
    pub auction: Auction,
}

impl fmt::Display for Q20Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_all_bid_columns(&self.bid, f)?;
        let a = &self.auction;
        write!(
            f,
            ",{},{},{},{},{},{},{},{},{}",
            a.item_name,
            a.description,
            a.initial_bid,
            a.reserve,
            format_timestamp(a.date_time),
            format_timestamp(a.expires),
            a.seller,
            a.category,
            a.extra
        )
    }
}

/// Per auction: the auction once seen (`None` inside once it is known not to be in category
/// 10), and the bids that arrived before it.
#[derive(Default)]
struct ExpandBids {
    auction: Option<ValueState<Option<Auction>>>,
    pending: Option<ListState<Bid>>,
}

impl KeyedCoProcessFunction<u64, Auction, Bid, Q20Row> for ExpandBids {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.auction = Some(ctx.get_state(&ValueStateDescriptor::new("auction"))?);
        self.pending = Some(ctx.get_list_state(&ListStateDescriptor::new("pending"))?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        auction: Auction,
        _ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Q20Row>,
    ) -> FunctionResult<()> {
        let (state, pending) = open_pair(&self.auction, &self.pending)?;
        let auction = (auction.category == 10).then_some(auction);
        if let Some(a) = &auction {
            for bid in pending.get()? {
                out.collect(Q20Row {
                    bid,
                    auction: a.clone(),
                });
            }
        }
        pending.clear()?;
        state.update(auction)?;
        Ok(())
    }

    fn process_element2(
        &mut self,
        bid: Bid,
        _ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Q20Row>,
    ) -> FunctionResult<()> {
        let (state, pending) = open_pair(&self.auction, &self.pending)?;
        match state.value()? {
            Some(Some(auction)) => out.collect(Q20Row { bid, auction }),
            Some(None) => {} // not in category 10
            None => pending.add(bid)?,
        }
        Ok(())
    }
}

/// The first match of `(&|^)channel_id=([^&]*)` in `url`: its second group.
fn channel_id_in(url: &str) -> Option<&str> {
    const KEY: &str = "channel_id=";
    url.match_indices(KEY)
        .find(|(at, _)| *at == 0 || url.as_bytes()[at - 1] == b'&')
        .map(|(at, _)| {
            let rest = &url[at + KEY.len()..];
            rest.split('&').next().unwrap_or(rest)
        })
}

/// q21: the bids of the four hot channels (ids 0 to 3, by lower-cased name) and of channels
/// whose URL names a `channel_id`, with that id.
pub fn q21(events: DataStream<Event>) -> DataStream<Q21Row> {
    bids(events)
        .flat_map(|b: Bid, out: &mut Collector<'_, Q21Row>| {
            let hot = match b.channel.to_lowercase().as_str() {
                "apple" => Some("0"),
                "google" => Some("1"),
                "facebook" => Some("2"),
                "baidu" => Some("3"),
                _ => None,
            };
            if let Some(id) = hot.or_else(|| channel_id_in(&b.url)) {
                out.collect(Q21Row {
                    channel_id: id.to_string(),
                    auction: b.auction,
                    bidder: b.bidder,
                    price: b.price,
                    channel: b.channel,
                });
            }
        })
        .name("q21")
}

/// A q21 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q21Row {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price in cents.
    pub price: u64,
    /// Channel name.
    pub channel: String,
    /// Channel id.
    pub channel_id: String,
}

impl fmt::Display for Q21Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{},{}",
            self.auction, self.bidder, self.price, self.channel, self.channel_id
        )
    }
}

/// q22: every bid with the 4th, 5th and 6th `/`-separated parts of its URL (SQL's
/// `SPLIT_INDEX(url, '/', 3..=5)`; empty where the URL has fewer parts, as SQL's `NULL` is
/// written in CSV).
pub fn q22(events: DataStream<Event>) -> DataStream<Q22Row> {
    bids(events)
        .map(|b: Bid| {
            let mut parts = b.url.split('/').skip(3).map(str::to_string);
            let mut next = || parts.next().unwrap_or_default();
            Q22Row {
                dirs: [next(), next(), next()],
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: b.channel,
            }
        })
        .name("q22")
}

/// A q22 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q22Row {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price in cents.
    pub price: u64,
    /// Channel name.
    pub channel: String,
    /// The URL's first three directories.
    pub dirs: [String; 3],
}

impl fmt::Display for Q22Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{},{},{},{}",
            self.auction,
            self.bidder,
            self.price,
            self.channel,
            self.dirs[0],
            self.dirs[1],
            self.dirs[2]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::channel_id_in;

    #[test]
    fn the_channel_id_is_the_first_one_at_the_start_or_after_an_ampersand() {
        assert_eq!(channel_id_in("a?q=1&channel_id=42"), Some("42"));
        assert_eq!(channel_id_in("channel_id=7&x=1"), Some("7"));
        assert_eq!(channel_id_in("a?xchannel_id=1&channel_id=2&y"), Some("2"));
        assert_eq!(channel_id_in("a?q=1&channel_id=&y"), Some(""));
        assert_eq!(channel_id_in("a?q=1"), None);
    }
}
