//! Nexmark queries q0–q5, q7–q9 and q11 of the original suite, and q14–q18 and q20–q22 of those
//! the reference added ([`extended`]), written with the DataStream API.
//!
//! Each query takes the stream of events (with timestamps and watermarks assigned) and returns a
//! typed stream of rows. A row's `Display` is one CSV line with the columns, in order, of the
//! reference's SQL for the same query; timestamps are written as SQL literals.
//!
//! | query | what | how |
//! |-------|------|-----|
//! | q0 | pass-through of bids | `flat_map` |
//! | q1 | bid prices in euros | `map` |
//! | q2 | bids on every 123rd auction | `filter` |
//! | q3 | sellers in OR, ID, CA of category-10 auctions | keyed two-input join with state |
//! | q4 | average winning bid per category | keyed join with timers, then a keyed running average |
//! | q5 | auctions with the most bids per sliding window | sliding windows, then a keyed max with timers |
//! | q7 | highest bids per tumbling window | tumbling windows, then an interval join |
//! | q8 | people who opened an auction in the window they registered | tumbling window co-group |
//! | q9 | each auction with its winning bid | keyed join with timers (as q4's first stage) |
//! | q11 | bids per bidder per session (10 s gap) | merging session windows |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use eddy::joins::{JoinContext, ProcessJoinFunction};
use eddy::prelude::*;
use eddy::windowing::{
    EventTimeSessionWindows, ProcessWindowContext, ProcessWindowFunction, SlidingEventTimeWindows,
    TimeWindow, TumblingEventTimeWindows,
};
use eddy::{
    AggregateFunction, FunctionResult, KeyedCoProcessFunction, KeyedContext, KeyedProcessFunction,
    ListState, ListStateDescriptor, ValueState, ValueStateDescriptor,
};
use serde::{Deserialize, Serialize};

pub mod extended;

pub use extended::{
    BidStats, BidTimeType, Q14Row, Q15Row, Q16Row, Q17Row, Q18Row, Q20Row, Q21Row, Q22Row, q14,
    q15, q16, q17, q18, q20, q21, q22,
};

use crate::NexmarkError;
use crate::json::format_timestamp;
use crate::model::{Auction, Bid, Event, Person};

/// The queries this crate implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Query {
    /// Pass-through.
    Q0,
    /// Currency conversion.
    Q1,
    /// Selection.
    Q2,
    /// Local item suggestion (join).
    Q3,
    /// Average price per category (join and aggregation).
    Q4,
    /// Hot items (sliding window).
    Q5,
    /// Highest bid (tumbling window).
    Q7,
    /// New users (window join).
    Q8,
    /// Winning bids (join and top-1 per auction).
    Q9,
    /// User sessions (session window).
    Q11,
    /// Calculation (filter, `CASE`, a character count).
    Q14,
    /// Bidding statistics per day (distinct counts with filters).
    Q15,
    /// Channel statistics per day (distinct counts with filters, several keys).
    Q16,
    /// Auction statistics per day (unbounded aggregation).
    Q17,
    /// Each bidder's last bid per auction (deduplication).
    Q18,
    /// Bids expanded with their auction (regular join).
    Q20,
    /// Channel ids (`CASE`, `REGEXP_EXTRACT`).
    Q21,
    /// URL directories (`SPLIT_INDEX`).
    Q22,
}

impl Query {
    /// Every query, in order.
    pub const ALL: [Query; 18] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q7,
        Query::Q8,
        Query::Q9,
        Query::Q11,
        Query::Q14,
        Query::Q15,
        Query::Q16,
        Query::Q17,
        Query::Q18,
        Query::Q20,
        Query::Q21,
        Query::Q22,
    ];

    /// For a query whose output is a changelog of updates to keyed results (only the last row
    /// per key is the result), the number of leading columns that make the key; `None` for a
    /// query whose output is a multiset of rows.
    pub fn key_columns(self) -> Option<usize> {
        match self {
            Query::Q4 | Query::Q15 => Some(1),
            Query::Q16 | Query::Q17 | Query::Q18 => Some(2),
            _ => None,
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match self {
            Query::Q0 => 0,
            Query::Q1 => 1,
            Query::Q2 => 2,
            Query::Q3 => 3,
            Query::Q4 => 4,
            Query::Q5 => 5,
            Query::Q7 => 7,
            Query::Q8 => 8,
            Query::Q9 => 9,
            Query::Q11 => 11,
            Query::Q14 => 14,
            Query::Q15 => 15,
            Query::Q16 => 16,
            Query::Q17 => 17,
            Query::Q18 => 18,
            Query::Q20 => 20,
            Query::Q21 => 21,
            Query::Q22 => 22,
        };
        write!(f, "q{n}")
    }
}

impl FromStr for Query {
    type Err = NexmarkError;

    fn from_str(s: &str) -> Result<Self, NexmarkError> {
        Query::ALL
            .into_iter()
            .find(|q| q.to_string().eq_ignore_ascii_case(s))
            .ok_or_else(|| NexmarkError::UnknownQuery(s.to_string()))
    }
}

/// The bids of an event stream.
pub fn bids(events: DataStream<Event>) -> DataStream<Bid> {
    events
        .flat_map(|e: Event, out: &mut Collector<'_, Bid>| {
            if let Event::Bid(b) = e {
                out.collect(b);
            }
        })
        .name("Bids")
}

/// The auctions of an event stream.
pub fn auctions(events: DataStream<Event>) -> DataStream<Auction> {
    events
        .flat_map(|e: Event, out: &mut Collector<'_, Auction>| {
            if let Event::Auction(a) = e {
                out.collect(a);
            }
        })
        .name("Auctions")
}

/// The people of an event stream.
pub fn persons(events: DataStream<Event>) -> DataStream<Person> {
    events
        .flat_map(|e: Event, out: &mut Collector<'_, Person>| {
            if let Event::Person(p) = e {
                out.collect(p);
            }
        })
        .name("Persons")
}

/// q0: every bid, unchanged (`auction, bidder, price, dateTime, extra`).
pub fn q0(events: DataStream<Event>) -> DataStream<Q0Row> {
    bids(events).map(Q0Row).name("q0")
}

/// A q0 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q0Row(pub Bid);

impl fmt::Display for Q0Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_bid(&self.0, f)
    }
}

/// `auction, bidder, price, dateTime, extra`: the bid columns of q0 and q7.
fn write_bid(b: &Bid, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(
        f,
        "{},{},{},{},{}",
        b.auction,
        b.bidder,
        b.price,
        format_timestamp(b.date_time),
        b.extra
    )
}

/// q1: bid prices converted from dollars to euros at 0.908, exactly (`DECIMAL(23, 3)`).
pub fn q1(events: DataStream<Event>) -> DataStream<Q1Row> {
    bids(events)
        .map(|b: Bid| Q1Row {
            auction: b.auction,
            bidder: b.bidder,
            price_thousandths: u128::from(b.price) * 908,
            date_time: b.date_time,
            extra: b.extra,
        })
        .name("q1")
}

/// A q1 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q1Row {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// The price in euros, times 1000.
    pub price_thousandths: u128,
    /// Bid time.
    pub date_time: i64,
    /// Padding.
    pub extra: String,
}

impl fmt::Display for Q1Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{}.{:03},{},{}",
            self.auction,
            self.bidder,
            self.price_thousandths / 1000,
            self.price_thousandths % 1000,
            format_timestamp(self.date_time),
            self.extra
        )
    }
}

/// q2: auction and price of the bids on every 123rd auction.
pub fn q2(events: DataStream<Event>) -> DataStream<Q2Row> {
    bids(events)
        .filter(|b: &Bid| b.auction.is_multiple_of(123))
        .map(|b: Bid| Q2Row {
            auction: b.auction,
            price: b.price,
        })
        .name("q2")
}

/// A q2 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q2Row {
    /// Auction id.
    pub auction: u64,
    /// Price in cents.
    pub price: u64,
}

impl fmt::Display for Q2Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.auction, self.price)
    }
}

/// q3: name, city and state of the sellers in Oregon, Idaho or California, with the id of each
/// of their auctions in category 10. A join of two unbounded streams on the seller.
pub fn q3(events: DataStream<Event>) -> DataStream<Q3Row> {
    let sellers = auctions(events.clone())
        .filter(|a: &Auction| a.category == 10)
        .map(|a: Auction| (a.seller, a.id));
    let people = persons(events)
        .filter(|p: &Person| matches!(p.state.as_str(), "OR" | "ID" | "CA"))
        .map(|p: Person| (p.id, p.name, p.city, p.state));
    sellers
        .key_by(|s: &(u64, u64)| s.0)
        .connect(people.key_by(|p: &(u64, String, String, String)| p.0))
        .process(LocalItems::default)
        .name("q3")
}

/// A q3 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q3Row {
    /// Seller's name.
    pub name: String,
    /// Seller's city.
    pub city: String,
    /// Seller's state.
    pub state: String,
    /// Auction id.
    pub id: u64,
}

impl fmt::Display for Q3Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{},{}", self.name, self.city, self.state, self.id)
    }
}

/// Per seller: the person once seen, and the auctions that arrived before the person.
#[derive(Default)]
struct LocalItems {
    person: Option<ValueState<(String, String, String)>>,
    pending: Option<ListState<u64>>,
}

impl KeyedCoProcessFunction<u64, (u64, u64), (u64, String, String, String), Q3Row> for LocalItems {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.person = Some(ctx.get_state(&ValueStateDescriptor::new("person"))?);
        self.pending = Some(ctx.get_list_state(&ListStateDescriptor::new("pending"))?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        (_, id): (u64, u64),
        _ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Q3Row>,
    ) -> FunctionResult<()> {
        let (person, pending) = open_pair(&self.person, &self.pending)?;
        match person.value()? {
            Some((name, city, state)) => out.collect(Q3Row {
                name,
                city,
                state,
                id,
            }),
            None => pending.add(id)?,
        }
        Ok(())
    }

    fn process_element2(
        &mut self,
        (_, name, city, state): (u64, String, String, String),
        _ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Q3Row>,
    ) -> FunctionResult<()> {
        let (person, pending) = open_pair(&self.person, &self.pending)?;
        for id in pending.get()? {
            out.collect(Q3Row {
                name: name.clone(),
                city: city.clone(),
                state: state.clone(),
                id,
            });
        }
        pending.clear()?;
        person.update((name, city, state))?;
        Ok(())
    }
}

fn open_pair<'a, A, B>(a: &'a Option<A>, b: &'a Option<B>) -> FunctionResult<(&'a A, &'a B)> {
    match (a, b) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err("state used before open()".into()),
    }
}

/// What q4 keeps of an auction.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct AuctionWindow {
    date_time: i64,
    expires: i64,
    category: u64,
}

/// An auction as [`WinningBids`] sees it: open from `opens()` to `closes()`, inclusive.
trait OpenAuction: eddy::Data {
    fn opens(&self) -> i64;
    fn closes(&self) -> i64;
}

/// A bid as [`WinningBids`] sees it.
trait Offer: eddy::Data {
    fn time(&self) -> i64;
    /// Whether this bid wins over `other`.
    fn beats(&self, other: &Self) -> bool;
}

impl OpenAuction for AuctionWindow {
    fn opens(&self) -> i64 {
        self.date_time
    }
    fn closes(&self) -> i64 {
        self.expires
    }
}

impl OpenAuction for Auction {
    fn opens(&self) -> i64 {
        self.date_time
    }
    fn closes(&self) -> i64 {
        self.expires
    }
}

/// q4's bid: time and price; the higher price wins.
impl Offer for (i64, u64) {
    fn time(&self) -> i64 {
        self.0
    }
    fn beats(&self, other: &Self) -> bool {
        self.1 > other.1
    }
}

/// q9's bid: the higher price wins, then the earlier bid (the reference's `ORDER BY B.price
/// DESC, B.dateTime ASC`).
impl Offer for Bid {
    fn time(&self) -> i64 {
        self.date_time
    }
    fn beats(&self, other: &Self) -> bool {
        (self.price, std::cmp::Reverse(self.date_time))
            > (other.price, std::cmp::Reverse(other.date_time))
    }
}

/// q4: per category, the average (integer, as SQL's `AVG` of `BIGINT`) of the winning bids of
/// its closed auctions; a winning bid is the highest bid placed while the auction was open
/// (`dateTime` to `expires`, inclusive). Emits the new average of a category each time one of
/// its auctions closes with a bid.
pub fn q4(events: DataStream<Event>) -> DataStream<Q4Row> {
    let open = auctions(events.clone()).map(|a: Auction| {
        (
            a.id,
            AuctionWindow {
                date_time: a.date_time,
                expires: a.expires,
                category: a.category,
            },
        )
    });
    let prices = bids(events).map(|b: Bid| (b.auction, (b.date_time, b.price)));
    winning_bids(open, prices)
        .map(|(w, (_, price)): (AuctionWindow, (i64, u64))| (w.category, price))
        .key_by(|w: &(u64, u64)| w.0)
        .process(|| CategoryAverage { sums: None })
        .name("q4")
}

/// Each auction with its winning bid, when the auction closes.
fn winning_bids<A: OpenAuction, B: Offer>(
    auctions: DataStream<(u64, A)>,
    bids: DataStream<(u64, B)>,
) -> DataStream<(A, B)> {
    auctions
        .key_by(|a: &(u64, A)| a.0)
        .connect(bids.key_by(|b: &(u64, B)| b.0))
        .process(WinningBids::default)
        .name("Winning bids")
}

/// q9: each auction with its winning bid (the highest, the earliest of equal ones, placed while
/// the auction was open), emitted when the auction closes.
pub fn q9(events: DataStream<Event>) -> DataStream<Q9Row> {
    let open = auctions(events.clone()).map(|a: Auction| (a.id, a));
    let offers = bids(events).map(|b: Bid| (b.auction, b));
    winning_bids(open, offers)
        .map(|(auction, bid): (Auction, Bid)| Q9Row { auction, bid })
        .name("q9")
}

/// A q9 row: the auction's columns, then the winning bid's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q9Row {
    /// The auction.
    pub auction: Auction,
    /// Its winning bid.
    pub bid: Bid,
}

impl fmt::Display for Q9Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.auction;
        write!(
            f,
            "{},{},{},{},{},{},{},{},{},{},",
            a.id,
            a.item_name,
            a.description,
            a.initial_bid,
            a.reserve,
            format_timestamp(a.date_time),
            format_timestamp(a.expires),
            a.seller,
            a.category,
            a.extra
        )?;
        write_bid(&self.bid, f)
    }
}

/// A q4 row: the category's average winning bid so far.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q4Row {
    /// Category id.
    pub category: u64,
    /// Average winning bid, in cents, rounded down.
    pub average: u64,
}

impl fmt::Display for Q4Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.category, self.average)
    }
}

/// Per auction: the auction once seen, its best bid so far, and bids that arrived before it.
struct WinningBids<A: OpenAuction, B: Offer> {
    auction: Option<ValueState<A>>,
    best: Option<ValueState<B>>,
    early: Option<ListState<B>>,
}

impl<A: OpenAuction, B: Offer> Default for WinningBids<A, B> {
    fn default() -> Self {
        WinningBids {
            auction: None,
            best: None,
            early: None,
        }
    }
}

impl<A: OpenAuction, B: Offer> WinningBids<A, B> {
    fn states(&self) -> FunctionResult<(&ValueState<A>, &ValueState<B>)> {
        open_pair(&self.auction, &self.best)
    }

    fn early(&self) -> FunctionResult<&ListState<B>> {
        self.early
            .as_ref()
            .ok_or_else(|| "state used before open()".into())
    }

    fn offer(best: &ValueState<B>, bid: B) -> FunctionResult<()> {
        if best.value()?.is_none_or(|b| bid.beats(&b)) {
            best.update(bid)?;
        }
        Ok(())
    }
}

impl<A: OpenAuction, B: Offer> KeyedCoProcessFunction<u64, (u64, A), (u64, B), (A, B)>
    for WinningBids<A, B>
{
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.auction = Some(ctx.get_state(&ValueStateDescriptor::new("auction"))?);
        self.best = Some(ctx.get_state(&ValueStateDescriptor::new("best"))?);
        self.early = Some(ctx.get_list_state(&ListStateDescriptor::new("early"))?);
        Ok(())
    }

    fn process_element1(
        &mut self,
        (_, a): (u64, A),
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<'_, (A, B)>,
    ) -> FunctionResult<()> {
        let (auction, best) = self.states()?;
        let early = self.early()?;
        for bid in early.get()? {
            if (a.opens()..=a.closes()).contains(&bid.time()) {
                Self::offer(best, bid)?;
            }
        }
        early.clear()?;
        ctx.timer_service().register_event_time_timer(a.closes())?;
        auction.update(a)?;
        Ok(())
    }

    fn process_element2(
        &mut self,
        (_, bid): (u64, B),
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<'_, (A, B)>,
    ) -> FunctionResult<()> {
        let (auction, best) = self.states()?;
        match auction.value()? {
            Some(a) => {
                if (a.opens()..=a.closes()).contains(&bid.time()) {
                    Self::offer(best, bid)?;
                }
            }
            None => {
                // The auction may not have arrived yet; the bid can only count for an auction
                // opened at or before it, so it is dropped once the watermark passes it.
                ctx.timer_service().register_event_time_timer(bid.time())?;
                self.early()?.add(bid)?;
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        timestamp: i64,
        _ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, (A, B)>,
    ) -> FunctionResult<()> {
        let (auction, best) = self.states()?;
        match auction.value()? {
            Some(a) if a.closes() <= timestamp => {
                if let Some(bid) = best.value()? {
                    out.collect((a, bid));
                }
                auction.clear()?;
                best.clear()?;
            }
            Some(_) => {}
            None => {
                let early = self.early()?;
                let left: Vec<_> = early
                    .get()?
                    .into_iter()
                    .filter(|bid| bid.time() > timestamp)
                    .collect();
                early.update(left)?;
            }
        }
        Ok(())
    }
}

/// Per category: the sum and count of winning bids.
struct CategoryAverage {
    sums: Option<ValueState<(u64, u64)>>,
}

impl KeyedProcessFunction<u64, (u64, u64), Q4Row> for CategoryAverage {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.sums = Some(ctx.get_state(&ValueStateDescriptor::new("sums"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (category, price): (u64, u64),
        _ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, Q4Row>,
    ) -> FunctionResult<()> {
        let sums = self.sums.as_ref().ok_or("state used before open()")?;
        let (sum, count) = sums.value()?.unwrap_or((0, 0));
        let (sum, count) = (sum + price, count + 1);
        sums.update((sum, count))?;
        out.collect(Q4Row {
            category,
            average: sum / count,
        });
        Ok(())
    }
}

/// Counts elements.
struct Count;

impl<T> AggregateFunction<T, u64, u64> for Count {
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, _: T, acc: &mut u64) {
        *acc += 1;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

/// Tags a per-key window result with its key and window.
struct WithWindow;

impl<R: Clone + 'static> ProcessWindowFunction<R, (u64, R, TimeWindow), u64, TimeWindow>
    for WithWindow
{
    fn process(
        &mut self,
        key: &u64,
        context: &mut ProcessWindowContext<'_, TimeWindow>,
        elements: Vec<R>,
        out: &mut Collector<'_, (u64, R, TimeWindow)>,
    ) -> FunctionResult<()> {
        for r in elements {
            out.collect((*key, r, *context.window()));
        }
        Ok(())
    }
}

/// q5: per sliding window of 10 s every 2 s, the auctions with the most bids, and their count.
pub fn q5(events: DataStream<Event>) -> DataStream<Q5Row> {
    bids(events)
        .map(|b: Bid| b.auction)
        .key_by(|a: &u64| *a)
        .window(SlidingEventTimeWindows::of(
            Duration::from_secs(10),
            Duration::from_secs(2),
        ))
        .aggregate_with(Count, || WithWindow)
        .name("Bids per auction")
        .key_by(|c: &(u64, u64, TimeWindow)| c.2.end)
        .process(|| HotItems { best: None })
        .name("q5")
}

/// A q5 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q5Row {
    /// Auction id.
    pub auction: u64,
    /// Its number of bids in the window.
    pub num: u64,
}

impl fmt::Display for Q5Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.auction, self.num)
    }
}

/// Per window: the highest count and the auctions that have it. The window's counts all carry
/// the window's last timestamp, so a timer there fires once all of them have arrived.
struct HotItems {
    best: Option<ValueState<(u64, Vec<u64>)>>,
}

impl KeyedProcessFunction<i64, (u64, u64, TimeWindow), Q5Row> for HotItems {
    fn open(&mut self, ctx: &RuntimeContext) -> FunctionResult<()> {
        self.best = Some(ctx.get_state(&ValueStateDescriptor::new("best"))?);
        Ok(())
    }

    fn process_element(
        &mut self,
        (auction, num, window): (u64, u64, TimeWindow),
        ctx: &mut KeyedContext<'_, i64>,
        _out: &mut Collector<'_, Q5Row>,
    ) -> FunctionResult<()> {
        let best = self.best.as_ref().ok_or("state used before open()")?;
        match best.value()? {
            None => {
                ctx.timer_service()
                    .register_event_time_timer(window.end - 1)?;
                best.update((num, vec![auction]))?;
            }
            Some((max, mut auctions)) => {
                if num > max {
                    best.update((num, vec![auction]))?;
                } else if num == max {
                    auctions.push(auction);
                    best.update((max, auctions))?;
                }
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<'_, i64>,
        out: &mut Collector<'_, Q5Row>,
    ) -> FunctionResult<()> {
        let best = self.best.as_ref().ok_or("state used before open()")?;
        if let Some((num, auctions)) = best.value()? {
            for auction in auctions {
                out.collect(Q5Row { auction, num });
            }
        }
        best.clear()?;
        Ok(())
    }
}

const TEN_SECONDS: i64 = 10_000;

/// q7: the bids with the highest price of each tumbling 10 s window. As in the reference, a bid
/// matches a window's highest price if it falls between the window's start and its end, both
/// inclusive (so a bid exactly at a window's end can match two windows).
pub fn q7(events: DataStream<Event>) -> DataStream<Q7Row> {
    let bids = bids(events);
    let highest = bids
        .clone()
        .map(|b: Bid| (b.date_time.div_euclid(TEN_SECONDS), b.price))
        .key_by(|w: &(i64, u64)| w.0)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .reduce(|a: (i64, u64), b: (i64, u64)| if b.1 > a.1 { b } else { a })
        .name("Highest price");
    // The highest price carries its window's last timestamp, end - 1: the matching bids are
    // those from end - 10 s to end.
    highest
        .key_by(|h: &(i64, u64)| h.1)
        .interval_join(bids.key_by(|b: &Bid| b.price))
        .between(-(TEN_SECONDS - 1), 1)
        .process(|| HighestBids)
        .name("q7")
}

/// Emits the bids that match a window's highest price.
struct HighestBids;

impl ProcessJoinFunction<(i64, u64), Bid, Q7Row> for HighestBids {
    fn process_element(
        &mut self,
        _highest: (i64, u64),
        b: Bid,
        _ctx: &mut JoinContext<'_>,
        out: &mut Collector<'_, Q7Row>,
    ) -> FunctionResult<()> {
        out.collect(Q7Row(b));
        Ok(())
    }
}

/// A q7 row: the bid (`auction, bidder, price, dateTime, extra`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q7Row(pub Bid);

impl fmt::Display for Q7Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_bid(&self.0, f)
    }
}

/// A person registering, or one of their auctions, in q8.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum NewUser {
    Registered(u64, String),
    Sold(u64),
}

impl NewUser {
    fn person(&self) -> u64 {
        match self {
            NewUser::Registered(id, _) | NewUser::Sold(id) => *id,
        }
    }
}

/// Per person and window: the name if they registered, and whether they opened an auction.
struct Registered;

impl AggregateFunction<NewUser, (Option<String>, bool), (Option<String>, bool)> for Registered {
    fn create_accumulator(&self) -> (Option<String>, bool) {
        (None, false)
    }
    fn add(&self, value: NewUser, acc: &mut (Option<String>, bool)) {
        match value {
            NewUser::Registered(_, name) => acc.0 = Some(name),
            NewUser::Sold(_) => acc.1 = true,
        }
    }
    fn get_result(&self, acc: &(Option<String>, bool)) -> (Option<String>, bool) {
        acc.clone()
    }
    fn merge(
        &self,
        a: (Option<String>, bool),
        b: (Option<String>, bool),
    ) -> (Option<String>, bool) {
        (a.0.or(b.0), a.1 || b.1)
    }
}

/// q8: people who registered and opened an auction within the same tumbling 10 s window.
pub fn q8(events: DataStream<Event>) -> DataStream<Q8Row> {
    let registered = persons(events.clone()).map(|p: Person| NewUser::Registered(p.id, p.name));
    let sold = auctions(events).map(|a: Auction| NewUser::Sold(a.seller));
    registered
        .union([sold])
        .key_by(|u: &NewUser| u.person())
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))
        .aggregate_with(Registered, || WithWindow)
        .flat_map(
            |(id, (name, sold), w): (u64, (Option<String>, bool), TimeWindow),
             out: &mut Collector<'_, Q8Row>| {
                if let (Some(name), true) = (name, sold) {
                    out.collect(Q8Row {
                        id,
                        name,
                        start: w.start,
                    });
                }
            },
        )
        .name("q8")
}

/// A q8 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q8Row {
    /// Person id.
    pub id: u64,
    /// Their name.
    pub name: String,
    /// The window's start.
    pub start: i64,
}

impl fmt::Display for Q8Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{}",
            self.id,
            self.name,
            format_timestamp(self.start)
        )
    }
}

/// q11: bids per bidder and session, a session ending after 10 s without a bid from its bidder.
/// As in Flink, sessions whose windows touch (bids exactly 10 s apart) merge.
pub fn q11(events: DataStream<Event>) -> DataStream<Q11Row> {
    bids(events)
        .map(|b: Bid| b.bidder)
        .key_by(|bidder: &u64| *bidder)
        .window(EventTimeSessionWindows::with_gap(Duration::from_secs(10)))
        .aggregate_with(Count, || WithWindow)
        .map(|(bidder, bid_count, w): (u64, u64, TimeWindow)| Q11Row {
            bidder,
            bid_count,
            start: w.start,
            end: w.end,
        })
        .name("q11")
}

/// A q11 row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q11Row {
    /// The bidder.
    pub bidder: u64,
    /// Their bids in the session.
    pub bid_count: u64,
    /// The session's first bid's time.
    pub start: i64,
    /// The session's last bid's time plus the gap.
    pub end: i64,
}

impl fmt::Display for Q11Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{}",
            self.bidder,
            self.bid_count,
            format_timestamp(self.start),
            format_timestamp(self.end)
        )
    }
}
