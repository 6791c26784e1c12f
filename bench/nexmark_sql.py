"""The Nexmark queries in Flink SQL, as the reference benchmark writes them, over a
filesystem JSON table of the events `nexmark generate` writes: the statements both
flink_nexmark.py (Apache Flink) and nexmark.py's `--sql` runs (`eddy sql`) execute unchanged."""

SOURCE = """
CREATE TABLE nexmark (
    event_type INT,
    person ROW<id BIGINT, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR,
               city VARCHAR, state VARCHAR, `dateTime` TIMESTAMP(3), extra VARCHAR>,
    auction ROW<id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT,
                reserve BIGINT, `dateTime` TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT,
                category BIGINT, extra VARCHAR>,
    bid ROW<auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
            `dateTime` TIMESTAMP(3), extra VARCHAR>,
    `dateTime` TIMESTAMP(3),
    WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND
) WITH (
    'connector' = 'filesystem',
    'path' = 'file://{path}',
    'format' = 'json'
)
"""

VIEWS = [
    """CREATE VIEW person AS SELECT person.id, person.name, person.emailAddress,
       person.creditCard, person.city, person.state, `dateTime`, person.extra
       FROM nexmark WHERE event_type = 0""",
    """CREATE VIEW auction AS SELECT auction.id, auction.itemName, auction.description,
       auction.initialBid, auction.reserve, `dateTime`, auction.expires, auction.seller,
       auction.category, auction.extra
       FROM nexmark WHERE event_type = 1""",
    """CREATE VIEW bid AS SELECT bid.auction, bid.bidder, bid.price, bid.channel, bid.url,
       `dateTime`, bid.extra
       FROM nexmark WHERE event_type = 2""",
]

# q15 and q16's aggregates.
BID_STATS = """count(*) AS total_bids,
    count(*) FILTER (WHERE price < 10000) AS rank1_bids,
    count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
    count(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
    count(DISTINCT bidder) AS total_bidders,
    count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders,
    count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders,
    count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders,
    count(DISTINCT auction) AS total_auctions,
    count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions,
    count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions,
    count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions"""

# Each query: the sink's columns and the SELECT that fills it (the reference's semantics).
QUERIES = {
    "q0": ("auction BIGINT, bidder BIGINT, price BIGINT, `dateTime` TIMESTAMP(3), extra VARCHAR",
           "SELECT auction, bidder, price, `dateTime`, extra FROM bid"),
    "q1": ("auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), `dateTime` TIMESTAMP(3), "
           "extra VARCHAR",
           "SELECT auction, bidder, 0.908 * price AS price, `dateTime`, extra FROM bid"),
    "q2": ("auction BIGINT, price BIGINT",
           "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0"),
    "q3": ("name VARCHAR, city VARCHAR, state VARCHAR, id BIGINT",
           """SELECT P.name, P.city, P.state, A.id
              FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
              WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')"""),
    "q4": ("id BIGINT, final BIGINT",
           """SELECT Q.category, AVG(Q.final)
              FROM (SELECT MAX(B.price) AS final, A.category
                    FROM auction A, bid B
                    WHERE A.id = B.auction AND B.`dateTime` BETWEEN A.`dateTime` AND A.expires
                    GROUP BY A.id, A.category) Q
              GROUP BY Q.category"""),
    "q5": ("auction BIGINT, num BIGINT",
           """SELECT AuctionBids.auction, AuctionBids.num
              FROM (SELECT auction, count(*) AS num, window_start AS starttime,
                           window_end AS endtime
                    FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND,
                                   INTERVAL '10' SECOND))
                    GROUP BY auction, window_start, window_end) AS AuctionBids
              JOIN (SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
                    FROM (SELECT count(*) AS num, window_start AS starttime,
                                 window_end AS endtime
                          FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND,
                                         INTERVAL '10' SECOND))
                          GROUP BY auction, window_start, window_end) AS CountBids
                    GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids
              ON AuctionBids.starttime = MaxBids.starttime
                 AND AuctionBids.endtime = MaxBids.endtime
                 AND AuctionBids.num >= MaxBids.maxn"""),
    "q7": ("auction BIGINT, bidder BIGINT, price BIGINT, `dateTime` TIMESTAMP(3), extra VARCHAR",
           """SELECT B.auction, B.bidder, B.price, B.`dateTime`, B.extra
              FROM bid B
              JOIN (SELECT MAX(price) AS maxprice, window_end AS `dateTime`
                    FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
                    GROUP BY window_start, window_end) B1
              ON B.price = B1.maxprice
              WHERE B.`dateTime` BETWEEN B1.`dateTime` - INTERVAL '10' SECOND AND B1.`dateTime`"""),
    "q8": ("id BIGINT, name VARCHAR, stime TIMESTAMP(3)",
           """SELECT P.id, P.name, P.starttime
              FROM (SELECT id, name, window_start AS starttime, window_end AS endtime
                    FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
                    GROUP BY id, name, window_start, window_end) P
              JOIN (SELECT seller, window_start AS starttime, window_end AS endtime
                    FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(`dateTime`),
                                      INTERVAL '10' SECOND))
                    GROUP BY seller, window_start, window_end) A
              ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime"""),
    "q9": ("id BIGINT, itemName VARCHAR, description VARCHAR, initialBid BIGINT, reserve BIGINT, "
           "`dateTime` TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, "
           "extra VARCHAR, auction BIGINT, bidder BIGINT, price BIGINT, "
           "bid_dateTime TIMESTAMP(3), bid_extra VARCHAR",
           """SELECT id, itemName, description, initialBid, reserve, `dateTime`, expires, seller,
                     category, extra, auction, bidder, price, bid_dateTime, bid_extra
              FROM (SELECT A.*, B.auction, B.bidder, B.price, B.`dateTime` AS bid_dateTime,
                           B.extra AS bid_extra,
                           ROW_NUMBER() OVER (PARTITION BY A.id
                                              ORDER BY B.price DESC, B.`dateTime` ASC) AS rownum
                    FROM auction A, bid B
                    WHERE A.id = B.auction AND B.`dateTime` BETWEEN A.`dateTime` AND A.expires)
              WHERE rownum <= 1"""),
    "q11": ("bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)",
            """SELECT bidder, count(*) AS bid_count, window_start AS starttime,
                      window_end AS endtime
               FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(`dateTime`),
                                  INTERVAL '10' SECOND))
               GROUP BY bidder, window_start, window_end"""),
    # The reference's count_char function, written with built-in functions.
    "q14": ("auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), bidTimeType VARCHAR, "
            "`dateTime` TIMESTAMP(3), extra VARCHAR, c_counts BIGINT",
            """SELECT auction, bidder, 0.908 * price AS price,
                      CASE
                          WHEN HOUR(`dateTime`) >= 8 AND HOUR(`dateTime`) <= 18 THEN 'dayTime'
                          WHEN HOUR(`dateTime`) <= 6 OR HOUR(`dateTime`) >= 20 THEN 'nightTime'
                          ELSE 'otherTime'
                      END AS bidTimeType,
                      `dateTime`, extra,
                      CAST(CHAR_LENGTH(extra) - CHAR_LENGTH(REPLACE(extra, 'c', '')) AS BIGINT)
                          AS c_counts
               FROM bid
               WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000"""),
    "q15": ("`day` VARCHAR, total_bids BIGINT, rank1_bids BIGINT, rank2_bids BIGINT, "
            "rank3_bids BIGINT, total_bidders BIGINT, rank1_bidders BIGINT, "
            "rank2_bidders BIGINT, rank3_bidders BIGINT, total_auctions BIGINT, "
            "rank1_auctions BIGINT, rank2_auctions BIGINT, rank3_auctions BIGINT",
            f"""SELECT DATE_FORMAT(`dateTime`, 'yyyy-MM-dd') AS `day`, {BID_STATS}
                FROM bid
                GROUP BY DATE_FORMAT(`dateTime`, 'yyyy-MM-dd')"""),
    "q16": ("channel VARCHAR, `day` VARCHAR, `minute` VARCHAR, total_bids BIGINT, "
            "rank1_bids BIGINT, rank2_bids BIGINT, rank3_bids BIGINT, total_bidders BIGINT, "
            "rank1_bidders BIGINT, rank2_bidders BIGINT, rank3_bidders BIGINT, "
            "total_auctions BIGINT, rank1_auctions BIGINT, rank2_auctions BIGINT, "
            "rank3_auctions BIGINT",
            f"""SELECT channel, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd') AS `day`,
                       max(DATE_FORMAT(`dateTime`, 'HH:mm')) AS `minute`, {BID_STATS}
                FROM bid
                GROUP BY channel, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd')"""),
    "q17": ("auction BIGINT, `day` VARCHAR, total_bids BIGINT, rank1_bids BIGINT, "
            "rank2_bids BIGINT, rank3_bids BIGINT, min_price BIGINT, max_price BIGINT, "
            "avg_price BIGINT, sum_price BIGINT",
            """SELECT auction, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd') AS `day`,
                      count(*) AS total_bids,
                      count(*) FILTER (WHERE price < 10000) AS rank1_bids,
                      count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
                      count(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
                      min(price) AS min_price, max(price) AS max_price,
                      avg(price) AS avg_price, sum(price) AS sum_price
               FROM bid
               GROUP BY auction, DATE_FORMAT(`dateTime`, 'yyyy-MM-dd')"""),
    "q18": ("auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, "
            "`dateTime` TIMESTAMP(3), extra VARCHAR",
            """SELECT auction, bidder, price, channel, url, `dateTime`, extra
               FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction
                                                  ORDER BY `dateTime` DESC) AS rank_number
                     FROM bid)
               WHERE rank_number <= 1"""),
    "q20": ("auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, "
            "bid_dateTime TIMESTAMP(3), bid_extra VARCHAR, itemName VARCHAR, "
            "description VARCHAR, initialBid BIGINT, reserve BIGINT, "
            "auction_dateTime TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, "
            "category BIGINT, auction_extra VARCHAR",
            """SELECT auction, bidder, price, channel, url, B.`dateTime`, B.extra,
                      itemName, description, initialBid, reserve, A.`dateTime`, expires, seller,
                      category, A.extra
               FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id
               WHERE A.category = 10"""),
    "q21": ("auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, channel_id VARCHAR",
            """SELECT auction, bidder, price, channel,
                      CASE
                          WHEN lower(channel) = 'apple' THEN '0'
                          WHEN lower(channel) = 'google' THEN '1'
                          WHEN lower(channel) = 'facebook' THEN '2'
                          WHEN lower(channel) = 'baidu' THEN '3'
                          ELSE REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)
                      END AS channel_id
               FROM bid
               WHERE REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2) IS NOT NULL
                     OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')"""),
    "q22": ("auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, dir1 VARCHAR, "
            "dir2 VARCHAR, dir3 VARCHAR",
            """SELECT auction, bidder, price, channel,
                      SPLIT_INDEX(url, '/', 3) AS dir1,
                      SPLIT_INDEX(url, '/', 4) AS dir2,
                      SPLIT_INDEX(url, '/', 5) AS dir3
               FROM bid"""),
}

# Queries whose result is a changelog, with the number of leading columns that make the key.
UPDATING = {"q4": 1, "q9": 1, "q15": 1, "q16": 2, "q17": 2, "q18": 2}

# Window aggregations over the bid view that are not Nexmark queries (q5 and q7 join theirs
# with another aggregation): the window operators alone, for bench/sql_windows.py.
WINDOW_QUERIES = {
    "tumble": ("auction BIGINT, num BIGINT, max_price BIGINT, starttime TIMESTAMP(3)",
               """SELECT auction, count(*) AS num, max(price) AS max_price,
                         window_start AS starttime
                  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '10' SECOND))
                  GROUP BY auction, window_start, window_end"""),
    "hop": ("auction BIGINT, num BIGINT, starttime TIMESTAMP(3)",
            """SELECT auction, count(*) AS num, window_start AS starttime
               FROM TABLE(HOP(TABLE bid, DESCRIPTOR(`dateTime`), INTERVAL '2' SECOND,
                              INTERVAL '10' SECOND))
               GROUP BY auction, window_start, window_end"""),
}
