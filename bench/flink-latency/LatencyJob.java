// The latency benchmark's pipelines on Apache Flink, the same shapes and the same measurement as
// crates/eddy-benchmarks/src/bin/latency_bench.rs: a rate-limited generator stamps each event
// with the time it was due, and the sink records how long after that each one arrived.
//
//   java -cp "<pyflink>/lib/*:<classes>" LatencyJob CASE RATE BUFFER_TIMEOUT_MS SECONDS WARMUP
//       PARALLELISM OUT_DIR
//
// Sources leave source-<subtask>.json (events, seconds) and sinks sink-<subtask>.txt (lines
// "latency_us count") in OUT_DIR; bench/latency.py merges them.

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.Arrays;
import java.util.concurrent.locks.LockSupport;

import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.connector.datagen.source.GeneratorFunction;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

public class LatencyJob {
    static final long KEYS = 1_000;
    static final long WINDOW_MS = 100;

    static long nowUs() {
        Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000L + now.getNano() / 1_000;
    }

    /** An event: its key, its per-subtask sequence number and when it was due (µs). */
    public static class Event {
        public long key;
        public long seq;
        public long dueUs;

        public Event() {}

        Event(long key, long seq, long dueUs) {
            this.key = key;
            this.seq = seq;
            this.dueUs = dueUs;
        }
    }

    /** A window's count, stamped with the window's end (µs). */
    public static class WindowCount {
        public long key;
        public long count;
        public long dueUs;

        public WindowCount() {}
    }

    static long mix(long i) {
        long z = i + 0x9e3779b97f4a7c15L;
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    /**
     * Events on the schedule of `rate` per second per subtask, stamped with when they were due.
     * The function paces itself, as Eddy's source reader does: Flink's RateLimiterStrategy,
     * which sleeps for every record, falls behind at these rates.
     */
    static class Timed implements GeneratorFunction<Long, Event> {
        final double rate;
        final String outDir;
        int subtask;
        long first = -1;
        long originUs;
        long startNs;
        long lastNs;
        long emitted;

        Timed(double rate, String outDir) {
            this.rate = rate;
            this.outDir = outDir;
        }

        @Override
        public void open(SourceReaderContext ctx) {
            subtask = ctx.getIndexOfSubtask();
        }

        @Override
        public Event map(Long index) {
            if (first < 0) {
                first = index;
                originUs = nowUs();
                startNs = System.nanoTime();
            }
            long seq = index - first;
            long due = originUs + (long) (seq * 1e6 / rate);
            // Never early: sleep until the event is due, as Eddy's reader does.
            for (long wait = due - nowUs(); wait > 0; wait = due - nowUs()) {
                LockSupport.parkNanos(wait * 1000);
            }
            emitted++;
            lastNs = System.nanoTime();
            return new Event(Long.remainderUnsigned(mix(((long) subtask << 40) + seq), KEYS), seq, due);
        }

        @Override
        public void close() throws IOException {
            double seconds = (lastNs - startNs) / 1e9;
            Files.writeString(
                    Path.of(outDir, "source-" + subtask + ".json"),
                    "{\"events\": " + emitted + ", \"seconds\": " + seconds + "}");
        }
    }

    /** Records each record's latency after the warm-up; writes them when the input ends. */
    static class LatencySink<T> implements Sink<T> {
        final long warmupUs;
        final String outDir;
        final java.util.function.ToLongFunction<T> due;

        LatencySink(long warmupUs, String outDir, SerializableDue<T> due) {
            this.warmupUs = warmupUs;
            this.outDir = outDir;
            this.due = due;
        }

        @Override
        public SinkWriter<T> createWriter(WriterInitContext ctx) {
            int subtask = ctx.getTaskInfo().getIndexOfThisSubtask();
            return new SinkWriter<T>() {
                long[] values = new long[1 << 16];
                int n;
                long firstDue = Long.MIN_VALUE;
                boolean written;

                @Override
                public void write(T value, Context context) {
                    long d = due.applyAsLong(value);
                    long now = nowUs();
                    if (firstDue == Long.MIN_VALUE) {
                        firstDue = d;
                    }
                    // Windows the end of the input fires before their time are not measured.
                    if (d >= firstDue + warmupUs && d <= now) {
                        if (n == values.length) {
                            values = Arrays.copyOf(values, n * 2);
                        }
                        values[n++] = Math.max(1, now - d);
                    }
                }

                @Override
                public void flush(boolean endOfInput) throws IOException {
                    if (endOfInput && !written) {
                        written = true;
                        long[] v = Arrays.copyOf(values, n);
                        Arrays.sort(v);
                        StringBuilder out = new StringBuilder();
                        for (int i = 0; i < v.length; ) {
                            int j = i;
                            while (j < v.length && v[j] == v[i]) {
                                j++;
                            }
                            out.append(v[i]).append(' ').append(j - i).append('\n');
                            i = j;
                        }
                        Files.write(
                                Path.of(outDir, "sink-" + subtask + ".txt"),
                                out.toString().getBytes(StandardCharsets.UTF_8));
                    }
                }

                @Override
                public void close() {}
            };
        }
    }

    interface SerializableDue<T> extends java.util.function.ToLongFunction<T>, java.io.Serializable {}

    /** Watermarks that follow every millisecond of event time. */
    static class EveryMillisecond implements WatermarkGenerator<Event> {
        long max = Long.MIN_VALUE;

        @Override
        public void onEvent(Event e, long ts, WatermarkOutput out) {
            if (ts > max) {
                max = ts;
                out.emitWatermark(new Watermark(ts - 1));
            }
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput out) {}
    }

    static class Count implements AggregateFunction<Event, Long, Long> {
        public Long createAccumulator() {
            return 0L;
        }

        public Long add(Event e, Long acc) {
            return acc + 1;
        }

        public Long getResult(Long acc) {
            return acc;
        }

        public Long merge(Long a, Long b) {
            return a + b;
        }
    }

    static class StampWindowEnd extends ProcessWindowFunction<Long, WindowCount, Long, TimeWindow> {
        @Override
        public void process(Long key, Context ctx, Iterable<Long> counts, Collector<WindowCount> out) {
            for (Long c : counts) {
                WindowCount w = new WindowCount();
                w.key = key;
                w.count = c;
                w.dueUs = ctx.window().getEnd() * 1000;
                out.collect(w);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        String kase = args[0];
        long rate = Long.parseLong(args[1]);
        long bufferTimeoutMs = Long.parseLong(args[2]);
        long seconds = Long.parseLong(args[3]);
        long warmupUs = Long.parseLong(args[4]) * 1_000_000L;
        int parallelism = Integer.parseInt(args[5]);
        String outDir = args[6];

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(parallelism);
        env.setBufferTimeout(bufferTimeoutMs);
        env.getConfig().enableObjectReuse();
        double perSubtask = rate / (double) parallelism;
        long total = (long) (perSubtask * seconds) * parallelism;
        DataGeneratorSource<Event> source = new DataGeneratorSource<>(
                new Timed(perSubtask, outDir), total, TypeInformation.of(Event.class));
        DataStream<Event> events = env.fromSource(source, WatermarkStrategy.noWatermarks(), "events");
        switch (kase) {
            case "passthrough":
                events.sinkTo(new LatencySink<Event>(warmupUs, outDir, e -> e.dueUs)).name("latency");
                break;
            case "keyed-map":
                events.keyBy(e -> e.key)
                        .map(e -> {
                            e.key = e.key + 1;
                            return e;
                        })
                        .sinkTo(new LatencySink<Event>(warmupUs, outDir, e -> e.dueUs))
                        .name("latency");
                break;
            case "window":
                events.assignTimestampsAndWatermarks(
                                WatermarkStrategy.<Event>forGenerator(ctx -> new EveryMillisecond())
                                        .withTimestampAssigner((e, ts) -> e.dueUs / 1000))
                        .keyBy(e -> e.key)
                        .window(TumblingEventTimeWindows.of(Duration.ofMillis(WINDOW_MS)))
                        .aggregate(new Count(), new StampWindowEnd())
                        .sinkTo(new LatencySink<WindowCount>(warmupUs, outDir, w -> w.dueUs))
                        .name("latency");
                break;
            default:
                throw new IllegalArgumentException("unknown case " + kase);
        }
        env.execute("latency " + kase);
    }
}
