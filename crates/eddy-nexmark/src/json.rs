//! Events as newline-delimited JSON in the reference's layout, which Flink's `json` format reads
//! with the reference DDL:
//!
//! ```text
//! {"event_type":2,"person":null,"auction":null,
//!  "bid":{"auction":1000,"bidder":1001,"price":1234,"channel":"Google","url":"https://…",
//!         "dateTime":"2015-07-15 00:00:00.001","extra":"…"},
//!  "dateTime":"2015-07-15 00:00:00.001"}
//! ```
//!
//! Timestamps are SQL `TIMESTAMP(3)` literals in UTC, `yyyy-MM-dd HH:mm:ss.SSS`.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::NexmarkError;
use crate::model::{Auction, Bid, Event, Person};

/// A timestamp in milliseconds, written as a SQL timestamp literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SqlTimestamp(i64);

impl Serialize for SqlTimestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_timestamp(self.0))
    }
}

impl<'de> Deserialize<'de> for SqlTimestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        parse_timestamp(&s)
            .map(SqlTimestamp)
            .ok_or_else(|| serde::de::Error::custom(format!("not a timestamp: '{s}'")))
    }
}

/// `millis` as `yyyy-MM-dd HH:mm:ss.SSS` (UTC).
pub fn format_timestamp(millis: i64) -> String {
    match DateTime::from_timestamp_millis(millis) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        None => millis.to_string(),
    }
}

/// Parses `yyyy-MM-dd HH:mm:ss[.SSS]` (or with `T` between date and time), as UTC.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = match b.get(19) {
        None => 0,
        Some(b'.') => {
            let frac = &b[20..];
            if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
                return None;
            }
            frac.iter()
                .chain(std::iter::repeat(&b'0'))
                .take(3)
                .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
        }
        Some(_) => return None,
    };
    let t = date.and_hms_milli_opt(h, m, sec, millis)?;
    Some(t.and_utc().timestamp_millis())
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonPerson<'a> {
    id: u64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    email_address: Cow<'a, str>,
    #[serde(borrow)]
    credit_card: Cow<'a, str>,
    #[serde(borrow)]
    city: Cow<'a, str>,
    #[serde(borrow)]
    state: Cow<'a, str>,
    date_time: SqlTimestamp,
    #[serde(borrow)]
    extra: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonAuction<'a> {
    id: u64,
    #[serde(borrow)]
    item_name: Cow<'a, str>,
    #[serde(borrow)]
    description: Cow<'a, str>,
    initial_bid: u64,
    reserve: u64,
    date_time: SqlTimestamp,
    expires: SqlTimestamp,
    seller: u64,
    category: u64,
    #[serde(borrow)]
    extra: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonBid<'a> {
    auction: u64,
    bidder: u64,
    price: u64,
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    url: Cow<'a, str>,
    date_time: SqlTimestamp,
    #[serde(borrow)]
    extra: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct JsonEvent<'a> {
    event_type: u8,
    #[serde(borrow)]
    person: Option<JsonPerson<'a>>,
    #[serde(borrow)]
    auction: Option<JsonAuction<'a>>,
    #[serde(borrow)]
    bid: Option<JsonBid<'a>>,
    #[serde(rename = "dateTime")]
    date_time: SqlTimestamp,
}

/// Appends `event` as one JSON line (with its newline) to `out`.
pub fn write_event(event: &Event, out: &mut Vec<u8>) -> Result<(), NexmarkError> {
    let mut json = JsonEvent {
        event_type: event.event_type(),
        person: None,
        auction: None,
        bid: None,
        date_time: SqlTimestamp(event.date_time()),
    };
    match event {
        Event::Person(p) => {
            json.person = Some(JsonPerson {
                id: p.id,
                name: Cow::Borrowed(&p.name),
                email_address: Cow::Borrowed(&p.email_address),
                credit_card: Cow::Borrowed(&p.credit_card),
                city: Cow::Borrowed(&p.city),
                state: Cow::Borrowed(&p.state),
                date_time: SqlTimestamp(p.date_time),
                extra: Cow::Borrowed(&p.extra),
            })
        }
        Event::Auction(a) => {
            json.auction = Some(JsonAuction {
                id: a.id,
                item_name: Cow::Borrowed(&a.item_name),
                description: Cow::Borrowed(&a.description),
                initial_bid: a.initial_bid,
                reserve: a.reserve,
                date_time: SqlTimestamp(a.date_time),
                expires: SqlTimestamp(a.expires),
                seller: a.seller,
                category: a.category,
                extra: Cow::Borrowed(&a.extra),
            })
        }
        Event::Bid(b) => {
            json.bid = Some(JsonBid {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: Cow::Borrowed(&b.channel),
                url: Cow::Borrowed(&b.url),
                date_time: SqlTimestamp(b.date_time),
                extra: Cow::Borrowed(&b.extra),
            })
        }
    }
    serde_json::to_writer(&mut *out, &json).map_err(|e| NexmarkError::Json {
        line: String::new(),
        message: e.to_string(),
    })?;
    out.push(b'\n');
    Ok(())
}

/// Parses one JSON line in the reference's layout.
pub fn parse_event(line: &str) -> Result<Event, NexmarkError> {
    let bad = |message: String| NexmarkError::Json {
        line: excerpt(line),
        message,
    };
    let json: JsonEvent<'_> = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    let missing = || bad(format!("event_type {} without its body", json.event_type));
    Ok(match json.event_type {
        0 => {
            let p = json.person.ok_or_else(missing)?;
            Event::Person(Person {
                id: p.id,
                name: p.name.into_owned(),
                email_address: p.email_address.into_owned(),
                credit_card: p.credit_card.into_owned(),
                city: p.city.into_owned(),
                state: p.state.into_owned(),
                date_time: p.date_time.0,
                extra: p.extra.into_owned(),
            })
        }
        1 => {
            let a = json.auction.ok_or_else(missing)?;
            Event::Auction(Auction {
                id: a.id,
                item_name: a.item_name.into_owned(),
                description: a.description.into_owned(),
                initial_bid: a.initial_bid,
                reserve: a.reserve,
                date_time: a.date_time.0,
                expires: a.expires.0,
                seller: a.seller,
                category: a.category,
                extra: a.extra.into_owned(),
            })
        }
        2 => {
            let b = json.bid.ok_or_else(missing)?;
            Event::Bid(Bid {
                auction: b.auction,
                bidder: b.bidder,
                price: b.price,
                channel: b.channel.into_owned(),
                url: b.url.into_owned(),
                date_time: b.date_time.0,
                extra: b.extra.into_owned(),
            })
        }
        other => return Err(bad(format!("unknown event_type {other}"))),
    })
}

fn excerpt(line: &str) -> String {
    match line.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GeneratorConfig;

    #[test]
    fn events_round_trip_through_json() {
        let c = GeneratorConfig::default();
        for n in 0..200 {
            let e = c.event(n);
            let mut line = Vec::new();
            write_event(&e, &mut line).unwrap();
            let text = std::str::from_utf8(&line).unwrap();
            assert!(text.ends_with('\n'));
            assert_eq!(parse_event(text.trim_end()).unwrap(), e);
        }
    }

    #[test]
    fn timestamps_are_sql_literals() {
        assert_eq!(
            format_timestamp(1_436_918_400_123),
            "2015-07-15 00:00:00.123"
        );
        assert_eq!(
            parse_timestamp("2015-07-15 00:00:00.123"),
            Some(1_436_918_400_123)
        );
        assert_eq!(
            parse_timestamp("2015-07-15T00:00:01"),
            Some(1_436_918_401_000)
        );
        assert_eq!(
            parse_timestamp("2015-07-15 00:00:00.5"),
            Some(1_436_918_400_500)
        );
        assert_eq!(parse_timestamp("2015-13-15 00:00:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn malformed_lines_name_the_problem() {
        let e = parse_event("{\"event_type\":2,\"dateTime\":\"2015-07-15 00:00:00.000\"}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("without its body"), "{e}");
        let e = parse_event("not json").unwrap_err().to_string();
        assert!(e.contains("not json"), "{e}");
    }
}
