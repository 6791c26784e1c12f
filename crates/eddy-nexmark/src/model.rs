//! The three Nexmark event types: people register, open auctions and bid on them.
//!
//! Times are milliseconds since the Unix epoch (UTC). Prices are in cents.

use serde::{Deserialize, Serialize};

/// A person who registers to buy or sell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Unique id, from [`crate::FIRST_PERSON_ID`] up.
    pub id: u64,
    /// First and last name.
    pub name: String,
    /// E-mail address.
    pub email_address: String,
    /// Four groups of four digits.
    pub credit_card: String,
    /// One of ten US cities.
    pub city: String,
    /// One of six US states.
    pub state: String,
    /// When the person registered.
    pub date_time: i64,
    /// Padding up to the configured average size.
    pub extra: String,
}

/// An auction of one item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// Unique id, from [`crate::FIRST_AUCTION_ID`] up.
    pub id: u64,
    /// The item's name.
    pub item_name: String,
    /// The item's description.
    pub description: String,
    /// The opening bid.
    pub initial_bid: u64,
    /// The lowest price the seller accepts.
    pub reserve: u64,
    /// When the auction opened.
    pub date_time: i64,
    /// When the auction closes.
    pub expires: i64,
    /// The seller's person id.
    pub seller: u64,
    /// One of five categories, from [`crate::FIRST_CATEGORY_ID`] up.
    pub category: u64,
    /// Padding up to the configured average size.
    pub extra: String,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The auction's id.
    pub auction: u64,
    /// The bidder's person id.
    pub bidder: u64,
    /// The bid, in cents.
    pub price: u64,
    /// The channel the bid came through.
    pub channel: String,
    /// The page the bid was placed on.
    pub url: String,
    /// When the bid was placed.
    pub date_time: i64,
    /// Padding up to the configured average size.
    pub extra: String,
}

/// One Nexmark event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new person (`event_type` 0).
    Person(Person),
    /// A new auction (`event_type` 1).
    Auction(Auction),
    /// A bid (`event_type` 2).
    Bid(Bid),
}

impl Event {
    /// When the event happened.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The reference's `event_type`: 0 person, 1 auction, 2 bid.
    pub fn event_type(&self) -> u8 {
        match self {
            Event::Person(_) => 0,
            Event::Auction(_) => 1,
            Event::Bid(_) => 2,
        }
    }
}
