//! The event generator: the reference Nexmark generator's model, re-implemented.
//!
//! Event number `n` (0, 1, 2, ...) is a pure function of the configuration and `n`: its kind
//! (person : auction : bid = 1 : 3 : 46 by default), its ids, its timestamp and its random fields
//! all derive from `n` and the seed. That is what makes the stream the same whatever the
//! parallelism: subtask `i` of `p` simply generates the numbers `n ≡ i (mod p)`.
//!
//! # The model (as in the reference)
//!
//! - Event ids are laid out in epochs of `person + auction + bid` proportions; the person and
//!   auction ids follow from the event id, so a bid can name the last auction created before it.
//! - Bids go to a *hot* auction (the first of the latest hundred) with probability
//!   `1 - 1/hot_auction_ratio`, otherwise to one of the last `num_in_flight_auctions` auctions or
//!   up to ten not yet created. Bidders and sellers are chosen the same way among the last
//!   `num_active_people` people, with the hot bidder being the *second* person of a hundred so
//!   that hot bidders and hot sellers differ.
//! - Timestamps advance by `1 / events_per_second` per event from `base_time`; auctions last a
//!   random time averaging twice the time until `num_in_flight_auctions` more auctions exist.
//! - Strings are lowercase letters with occasional spaces; `extra` pads each event to the average
//!   size of its kind (200, 500 and 100 bytes), ±20 %.
//!
//! # The reference's quirks, and what this generator does
//!
//! - **Randomness.** The current reference draws all fields from one unseeded `Random`, so two
//!   runs differ; older versions seeded a `Random` with the event id. Here each event has its own
//!   PCG generator seeded from `(seed, event id)`: runs repeat exactly, and events can be made in
//!   any order and on any subtask.
//! - **Parallel generators.** The reference splits the id space into contiguous ranges, one per
//!   source subtask, and every subtask restarts the clock at `base_time`, so the data changes with
//!   the parallelism. Here the one global sequence is dealt out round-robin.
//! - **Hot bidder offset.** The hot bidder is `(last person / 100) * 100 + 1`, which can name a
//!   person not yet created (when the last person id is a multiple of 100). Kept as is: queries
//!   joining bids with people see the same misses as on the reference.
//! - **`nextExactString`** uses Java's signed `%`, so negative draws give characters below `a`
//!   (`[`, `\`, `]`, ...). Here `extra` is lowercase letters only, which keeps every field free of
//!   characters that need quoting in CSV or escaping in JSON.
//! - **`nextLong` for large bounds** takes `abs(nextLong() % n)`, which is skewed; here every draw
//!   is uniform. Bounds that large never occur with the default configuration.
//! - **Base time.** The reference starts at the wall clock; here `base_time` defaults to
//!   2015-07-15T00:00:00Z, the date Beam's Nexmark uses, so files are reproducible.

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::model::{Auction, Bid, Event, Person};

/// The first person id.
pub const FIRST_PERSON_ID: u64 = 1000;
/// The first auction id.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// The first category id.
pub const FIRST_CATEGORY_ID: u64 = 10;
/// How many categories there are.
pub const NUM_CATEGORIES: u64 = 5;

const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
const HOT_SELLER_RATIO: u64 = 100;
const HOT_AUCTION_RATIO: u64 = 100;
const HOT_BIDDER_RATIO: u64 = 100;
const HOT_CHANNELS_RATIO: u32 = 2;
const CHANNELS_NUMBER: usize = 10_000;
const MIN_STRING_LENGTH: usize = 3;

const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

/// 2015-07-15T00:00:00Z in milliseconds.
pub const DEFAULT_BASE_TIME: i64 = 1_436_918_400_000;

/// What the generator makes; the defaults are the reference's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorConfig {
    /// Seed of every random field.
    pub seed: u64,
    /// Events per second of event time (the reference's `first-event.rate`).
    pub events_per_second: f64,
    /// Timestamp of event 0, in milliseconds since the epoch.
    pub base_time: i64,
    /// Share of people.
    pub person_proportion: u64,
    /// Share of auctions.
    pub auction_proportion: u64,
    /// Share of bids.
    pub bid_proportion: u64,
    /// Bidders and sellers are drawn from this many of the latest people.
    pub num_active_people: u64,
    /// Bids go to this many of the latest auctions.
    pub num_in_flight_auctions: u64,
    /// A bid is for a hot auction with probability `1 - 1/hot_auction_ratio`.
    pub hot_auction_ratio: u32,
    /// An auction is by a hot seller with probability `1 - 1/hot_sellers_ratio`.
    pub hot_sellers_ratio: u32,
    /// A bid is by a hot bidder with probability `1 - 1/hot_bidders_ratio`.
    pub hot_bidders_ratio: u32,
    /// Average size of a person, in bytes.
    pub avg_person_byte_size: usize,
    /// Average size of an auction, in bytes.
    pub avg_auction_byte_size: usize,
    /// Average size of a bid, in bytes.
    pub avg_bid_byte_size: usize,
    /// Events are shuffled within groups of this many (1: in order).
    pub out_of_order_group_size: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 0,
            events_per_second: 10_000.0,
            base_time: DEFAULT_BASE_TIME,
            person_proportion: 1,
            auction_proportion: 3,
            bid_proportion: 46,
            num_active_people: 1000,
            num_in_flight_auctions: 100,
            hot_auction_ratio: 2,
            hot_sellers_ratio: 4,
            hot_bidders_ratio: 4,
            avg_person_byte_size: 200,
            avg_auction_byte_size: 500,
            avg_bid_byte_size: 100,
            out_of_order_group_size: 1,
        }
    }
}

impl GeneratorConfig {
    fn total_proportion(&self) -> u64 {
        self.person_proportion + self.auction_proportion + self.bid_proportion
    }

    /// The id of event number `n`: `n` itself, unless events are shuffled within groups.
    pub fn event_id(&self, n: u64) -> u64 {
        let g = self.out_of_order_group_size.max(1);
        (n / g) * g + n.wrapping_mul(953) % g
    }

    /// The timestamp of the event with id `id`.
    pub fn timestamp(&self, id: u64) -> i64 {
        let delay_us = 1_000_000.0 / self.events_per_second;
        self.base_time + (id as f64 * delay_us) as i64 / 1000
    }

    /// Event number `n`.
    pub fn event(&self, n: u64) -> Event {
        let id = self.event_id(n);
        let ts = self.timestamp(id);
        let mut rng = Pcg64Mcg::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ id);
        let rem = id % self.total_proportion();
        if rem < self.person_proportion {
            Event::Person(self.person(id, &mut rng, ts))
        } else if rem < self.person_proportion + self.auction_proportion {
            Event::Auction(self.auction(id, &mut rng, ts))
        } else {
            Event::Bid(self.bid(id, &mut rng, ts))
        }
    }

    /// The last person id (base 0) created at or before event `id`.
    fn last_base0_person_id(&self, id: u64) -> u64 {
        let epoch = id / self.total_proportion();
        let offset = (id % self.total_proportion()).min(self.person_proportion - 1);
        epoch * self.person_proportion + offset
    }

    /// The last auction id (base 0) created at or before event `id`.
    fn last_base0_auction_id(&self, id: u64) -> u64 {
        let total = self.total_proportion();
        let mut epoch = id / total;
        let mut offset = id % total;
        if offset < self.person_proportion {
            // A person: the last auction of the previous epoch.
            epoch = epoch.wrapping_sub(1);
            offset = self.auction_proportion - 1;
        } else if offset >= self.person_proportion + self.auction_proportion {
            // A bid: the last auction of this epoch.
            offset = self.auction_proportion - 1;
        } else {
            offset -= self.person_proportion;
        }
        epoch
            .wrapping_mul(self.auction_proportion)
            .wrapping_add(offset)
    }

    /// A random active person id (base 0), possibly a few ahead of the last one.
    fn next_base0_person_id(&self, id: u64, rng: &mut Pcg64Mcg) -> u64 {
        let num_people = self.last_base0_person_id(id) + 1;
        let active = num_people.min(self.num_active_people);
        let n = rng.random_range(0..active + PERSON_ID_LEAD);
        num_people - active + n
    }

    /// A random in-flight auction id (base 0), possibly a few ahead of the last one.
    fn next_base0_auction_id(&self, id: u64, rng: &mut Pcg64Mcg) -> u64 {
        let max = self.last_base0_auction_id(id);
        let min = max.saturating_sub(self.num_in_flight_auctions);
        min + rng.random_range(0..max - min + 1 + AUCTION_ID_LEAD)
    }

    fn person(&self, id: u64, rng: &mut Pcg64Mcg, ts: i64) -> Person {
        let name = format!(
            "{} {}",
            FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())],
            LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
        );
        let email_address = format!(
            "{}@{}.com",
            next_string(rng, 7, ' '),
            next_string(rng, 5, ' ')
        );
        let credit_card = (0..4)
            .map(|_| format!("{:04}", rng.random_range(0..10_000)))
            .collect::<Vec<_>>()
            .join(" ");
        let city = US_CITIES[rng.random_range(0..US_CITIES.len())].to_string();
        let state = US_STATES[rng.random_range(0..US_STATES.len())].to_string();
        let size =
            8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
        let extra = next_extra(rng, size, self.avg_person_byte_size);
        Person {
            id: self.last_base0_person_id(id) + FIRST_PERSON_ID,
            name,
            email_address,
            credit_card,
            city,
            state,
            date_time: ts,
            extra,
        }
    }

    fn auction(&self, id: u64, rng: &mut Pcg64Mcg, ts: i64) -> Auction {
        let seller = if rng.random_range(0..self.hot_sellers_ratio) > 0 {
            (self.last_base0_person_id(id) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
        } else {
            self.next_base0_person_id(id, rng)
        } + FIRST_PERSON_ID;
        let category = FIRST_CATEGORY_ID + rng.random_range(0..NUM_CATEGORIES);
        let initial_bid = next_price(rng);
        let expires = ts + self.auction_length_ms(id, rng, ts);
        let item_name = next_string(rng, 20, ' ');
        let description = next_string(rng, 100, ' ');
        let reserve = initial_bid + next_price(rng);
        let size = 8 + item_name.len() + description.len() + 8 + 8 + 8 + 8 + 8;
        let extra = next_extra(rng, size, self.avg_auction_byte_size);
        Auction {
            id: self.last_base0_auction_id(id) + FIRST_AUCTION_ID,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: ts,
            expires,
            seller,
            category,
            extra,
        }
    }

    /// An auction lasts on average twice the time until `num_in_flight_auctions` more auctions
    /// have been created.
    fn auction_length_ms(&self, id: u64, rng: &mut Pcg64Mcg, ts: i64) -> i64 {
        let events_for_auctions =
            self.num_in_flight_auctions * self.total_proportion() / self.auction_proportion;
        let horizon = self.timestamp(id + events_for_auctions) - ts;
        1 + rng.random_range(0..(horizon * 2).max(1))
    }

    fn bid(&self, id: u64, rng: &mut Pcg64Mcg, ts: i64) -> Bid {
        let auction = if rng.random_range(0..self.hot_auction_ratio) > 0 {
            (self.last_base0_auction_id(id) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
        } else {
            self.next_base0_auction_id(id, rng)
        } + FIRST_AUCTION_ID;
        let bidder = if rng.random_range(0..self.hot_bidders_ratio) > 0 {
            (self.last_base0_person_id(id) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
        } else {
            self.next_base0_person_id(id, rng)
        } + FIRST_PERSON_ID;
        let price = next_price(rng);
        let channels = channels();
        let (channel, url) = if rng.random_range(0..HOT_CHANNELS_RATIO) > 0 {
            &channels.hot[rng.random_range(0..HOT_CHANNELS.len())]
        } else {
            &channels.other[rng.random_range(0..CHANNELS_NUMBER)]
        };
        let extra = next_extra(rng, 8 + 8 + 8 + 8, self.avg_bid_byte_size);
        Bid {
            auction,
            bidder,
            price,
            channel: channel.clone(),
            url: url.clone(),
            date_time: ts,
            extra,
        }
    }
}

/// Channel names and their URLs: four hot channels and ten thousand others, fixed for every seed
/// (the reference caches them the same way).
struct Channels {
    hot: Vec<(String, String)>,
    other: Vec<(String, String)>,
}

fn channels() -> &'static Channels {
    static CHANNELS: OnceLock<Channels> = OnceLock::new();
    CHANNELS.get_or_init(|| {
        let mut rng = Pcg64Mcg::seed_from_u64(0x006e_6578_6d61_726b);
        let hot = HOT_CHANNELS
            .iter()
            .map(|c| (c.to_string(), base_url(&mut rng)))
            .collect();
        let other = (0..CHANNELS_NUMBER)
            .map(|i| {
                (
                    format!("channel-{i}"),
                    format!("{}&channel_id={i}", base_url(&mut rng)),
                )
            })
            .collect();
        Channels { hot, other }
    })
}

fn base_url(rng: &mut Pcg64Mcg) -> String {
    format!(
        "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
        next_string(rng, 5, '_'),
        next_string(rng, 5, '_'),
        next_string(rng, 5, '_')
    )
}

/// A price in cents, log-uniform between $0.01 and $1,000,000.
fn next_price(rng: &mut Pcg64Mcg) -> u64 {
    (10f64.powf(rng.random::<f64>() * 6.0) * 100.0).round() as u64
}

/// Lowercase letters, about one in thirteen replaced by `special`, of length 3 to `max_len - 1`;
/// trimmed of spaces.
fn next_string(rng: &mut Pcg64Mcg, max_len: usize, special: char) -> String {
    let len = MIN_STRING_LENGTH + rng.random_range(0..max_len - MIN_STRING_LENGTH);
    let s: String = (0..len)
        .map(|_| {
            if rng.random_range(0..13) == 0 {
                special
            } else {
                char::from(b'a' + rng.random_range(0..26u8))
            }
        })
        .collect();
    s.trim().to_string()
}

/// Exactly `len` lowercase letters.
fn next_exact_string(rng: &mut Pcg64Mcg, len: usize) -> String {
    let mut s = String::with_capacity(len);
    let mut bits = 0u64;
    let mut left = 0;
    for _ in 0..len {
        if left == 0 {
            bits = rng.random();
            left = 13; // 26^13 < 2^64
        }
        s.push(char::from(b'a' + (bits % 26) as u8));
        bits /= 26;
        left -= 1;
    }
    s
}

/// Padding so that `current + padding` averages `average`, ±20 %.
fn next_extra(rng: &mut Pcg64Mcg, current: usize, average: usize) -> String {
    if current > average {
        return String::new();
    }
    let wanted = average - current;
    let delta = (wanted as f64 * 0.2).round() as usize;
    let min = wanted - delta;
    let size = if delta == 0 {
        min
    } else {
        min + rng.random_range(0..2 * delta)
    };
    next_exact_string(rng, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(config: &GeneratorConfig, n: u64) -> [u64; 3] {
        let mut k = [0; 3];
        for i in 0..n {
            k[config.event(i).event_type() as usize] += 1;
        }
        k
    }

    #[test]
    fn proportions_are_one_three_forty_six() {
        assert_eq!(kinds(&GeneratorConfig::default(), 5000), [100, 300, 4600]);
    }

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_others() {
        let a = GeneratorConfig::default();
        let b = GeneratorConfig {
            seed: 7,
            ..GeneratorConfig::default()
        };
        for n in [0, 1, 5, 49, 1234] {
            assert_eq!(a.event(n), a.clone().event(n));
        }
        assert!((0..50).any(|n| a.event(n) != b.event(n)));
    }

    #[test]
    fn ids_and_timestamps_follow_the_reference_layout() {
        let c = GeneratorConfig::default();
        // Event 0 is person 1000, events 1-3 are auctions 1000-1002, 4-49 bids, 50 person 1001.
        let Event::Person(p) = c.event(0) else {
            panic!("event 0 is a person")
        };
        assert_eq!(p.id, 1000);
        let Event::Auction(a) = c.event(3) else {
            panic!("event 3 is an auction")
        };
        assert_eq!(a.id, 1002);
        assert!(a.expires > a.date_time);
        assert!((10..15).contains(&a.category));
        let Event::Person(p) = c.event(50) else {
            panic!("event 50 is a person")
        };
        assert_eq!(p.id, 1001);
        // 10,000 events per second: event 10,000 is one second after event 0.
        assert_eq!(c.event(10_000).date_time() - c.event(0).date_time(), 1000);
    }

    #[test]
    fn bids_name_existing_or_nearly_existing_auctions_and_people() {
        let c = GeneratorConfig::default();
        for n in 0..20_000 {
            if let Event::Bid(b) = c.event(n) {
                let last_auction = c.last_base0_auction_id(n) + FIRST_AUCTION_ID;
                let last_person = c.last_base0_person_id(n) + FIRST_PERSON_ID;
                assert!(b.auction <= last_auction + AUCTION_ID_LEAD, "{b:?}");
                assert!(b.bidder <= last_person + PERSON_ID_LEAD, "{b:?}");
                assert!((1..=100_000_000).contains(&b.price));
            }
        }
    }

    #[test]
    fn events_average_their_configured_sizes() {
        let c = GeneratorConfig::default();
        let (mut bytes, mut count) = (0usize, 0usize);
        for n in 0..10_000 {
            if let Event::Bid(b) = c.event(n) {
                bytes += 32 + b.extra.len();
                count += 1;
            }
        }
        let avg = bytes / count;
        assert!((95..=105).contains(&avg), "average bid size {avg}");
    }
}
