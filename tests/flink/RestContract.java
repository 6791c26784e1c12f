import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;

import org.apache.flink.runtime.rest.HttpMethodWrapper;
import org.apache.flink.runtime.rest.messages.EmptyRequestBody;
import org.apache.flink.runtime.rest.messages.ErrorResponseBody;
import org.apache.flink.runtime.rest.messages.MessageHeaders;
import org.apache.flink.runtime.rest.util.RestMapperUtils;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JavaType;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/**
 * Checks Eddy's REST answers against Flink's own REST message classes, the definitions Flink's
 * REST API reference and OpenAPI document are generated from.
 *
 * <p>Every GET endpoint Flink defines (each {@code MessageHeaders} class in Flink's jars) is
 * requested from Eddy with the ids of a running job. An endpoint Eddy does not serve answers
 * {@code page not found} and is listed as such. Each one it serves must answer with the status
 * Flink's headers declare, must parse into the response class with the mapper Flink's REST
 * client uses, and, serialized back by Flink, every field Flink would send must be in Eddy's
 * answer with the same JSON type. Error answers must parse as Flink's {@code ErrorResponseBody}.
 *
 * <p>Usage: {@code java RestContract http://host:port DIR} against a cluster running a
 * checkpointed streaming job (a savepoint of it is written under DIR). Prints one line per
 * endpoint and a summary {@code checked N of M}; exits 1 if any served endpoint differs.
 */
public class RestContract {
    private static final ObjectMapper MAPPER = RestMapperUtils.getFlexibleObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static String base;
    private static int failures = 0;

    public static void main(String[] args) throws Exception {
        base = args[0];
        JsonNode jobs = get("/jobs/overview").get("jobs");
        String job = null;
        for (JsonNode j : jobs) {
            if ("RUNNING".equals(j.get("state").asText())) {
                job = j.get("jid").asText();
            }
        }
        if (job == null) {
            throw new IllegalStateException("no running job at " + base);
        }
        JsonNode details = get("/jobs/" + job);
        String vertex = details.get("vertices").get(0).get("id").asText();
        String tm = get("/taskmanagers").get("taskmanagers").get(0).get("id").asText();
        // One operation of each kind, for the endpoints that report them.
        String savepoint = post("/jobs/" + job + "/savepoints",
                "{\"target-directory\": \"" + args[1] + "\", \"cancel-job\": false}")
                .get("request-id").asText();
        String location = completed("/jobs/" + job + "/savepoints/" + savepoint, "location");
        String checkpointTrigger = post("/jobs/" + job + "/checkpoints", "{}")
                .get("request-id").asText();
        String disposal = post("/savepoint-disposal",
                "{\"savepoint-path\": \"" + location + "\"}").get("request-id").asText();
        completed("/savepoint-disposal/" + disposal, null);
        completed("/jobs/" + job + "/checkpoints/" + checkpointTrigger, "checkpointId");
        Map<String, String> triggers = new TreeMap<>();
        triggers.put("/savepoints/:triggerid", savepoint);
        triggers.put("/checkpoints/:triggerid", checkpointTrigger);
        triggers.put("/savepoint-disposal/:triggerid", disposal);
        Map<String, String> ids = new TreeMap<>();
        ids.put(":jobid", job);
        ids.put(":applicationid", job);
        ids.put(":vertexid", vertex);
        ids.put(":taskmanagerid", tm);
        ids.put(":subtaskindex", "0");
        ids.put(":attempt", "0");

        List<String> notServed = new ArrayList<>();
        List<String> skipped = new ArrayList<>();
        int checked = 0;
        List<MessageHeaders<?, ?, ?>> all = flinkGetEndpoints();
        for (MessageHeaders<?, ?, ?> headers : all) {
            String path = headers.getTargetRestEndpointURL();
            for (Map.Entry<String, String> t : triggers.entrySet()) {
                path = path.replace(t.getKey(), t.getKey().replace(":triggerid", t.getValue()));
            }
            if (path.contains(":checkpointid")) {
                // The JobManager keeps statistics of recent checkpoints only: take the latest.
                JsonNode latest = get("/jobs/" + job + "/checkpoints").get("latest").get("completed");
                path = path.replace(":checkpointid", latest.get("id").asText());
            }
            for (Map.Entry<String, String> id : ids.entrySet()) {
                path = path.replace(id.getKey(), id.getValue());
            }
            String name = headers.getClass().getSimpleName();
            if (path.contains(":")) {
                skipped.add(name + " " + headers.getTargetRestEndpointURL());
                continue;
            }
            HttpResponse<String> r = fetch("/v1" + path);
            if (r.statusCode() == 404 && r.body().contains("page not found")) {
                notServed.add(headers.getTargetRestEndpointURL());
                continue;
            }
            checked++;
            check(headers, "/v1" + path, r);
        }
        // Query parameters the dashboard and the CLI send.
        String m = "org.apache.flink.runtime.rest.messages.";
        String[][] queries = {
            {m + "job.metrics.JobManagerMetricsHeaders", "?get=Status.JVM.Memory.Heap.Used"},
            {m + "JobExceptionsHeaders", "?maxExceptions=10"},
            {m + "job.metrics.JobVertexMetricsHeaders", "?get=0.numRecordsIn"},
            {
                m + "job.metrics.AggregatedSubtaskMetricsHeaders",
                "?get=numRecordsIn,busyTimeMsPerSecond&agg=min,max,avg,sum,skew"
            },
            {m + "job.metrics.SubtaskMetricsHeaders", "?get=numRecordsIn"},
            {m + "job.metrics.TaskManagerMetricsHeaders", "?get=Status.JVM.Memory.Heap.Used"},
        };
        for (String[] q : queries) {
            MessageHeaders<?, ?, ?> headers = instance(Class.forName(q[0]));
            String path = headers.getTargetRestEndpointURL();
            for (Map.Entry<String, String> id : ids.entrySet()) {
                path = path.replace(id.getKey(), id.getValue());
            }
            checked++;
            check(headers, "/v1" + path + q[1], fetch("/v1" + path + q[1]));
        }
        checkError("/v1/jobs/00000000000000000000000000000000", 404);
        checkError("/v1/jobs/" + job + "/vertices/nope", 404);
        checkError("/v1/jobs/" + job + "/checkpoints/details/999999", 404);
        for (String s : skipped) {
            System.out.println("skip " + s + " (no id for its parameters)");
        }
        for (String s : notServed) {
            System.out.println("not served: GET " + s);
        }
        System.out.println("checked " + checked + " answers of " + all.size()
                + " GET endpoints Flink defines; " + notServed.size() + " not served");
        if (failures > 0) {
            System.out.println(failures + " endpoint(s) differ from Flink's REST API");
            System.exit(1);
        }
        System.out.println("every endpoint Eddy serves matches Flink's REST API");
    }

    /** Every GET endpoint without a request body in Flink's jars, one per URL. */
    private static List<MessageHeaders<?, ?, ?>> flinkGetEndpoints() throws Exception {
        Map<String, MessageHeaders<?, ?, ?>> byUrl = new TreeMap<>();
        String jar = MessageHeaders.class.getProtectionDomain().getCodeSource().getLocation().getPath();
        try (JarFile file = new JarFile(jar)) {
            for (JarEntry e : Collections.list(file.entries())) {
                String n = e.getName();
                if (!n.startsWith("org/apache/flink/runtime/") || !n.endsWith("Headers.class")
                        && !n.endsWith("Header.class")) {
                    continue;
                }
                Class<?> c = Class.forName(n.replace('/', '.').replace(".class", ""), false,
                        RestContract.class.getClassLoader());
                if (!MessageHeaders.class.isAssignableFrom(c) || c.isInterface()
                        || Modifier.isAbstract(c.getModifiers())) {
                    continue;
                }
                MessageHeaders<?, ?, ?> h = instance(c);
                if (h == null || h.getHttpMethod() != HttpMethodWrapper.GET
                        || h.getRequestClass() != EmptyRequestBody.class) {
                    continue;
                }
                byUrl.putIfAbsent(h.getTargetRestEndpointURL(), h);
            }
        }
        return new ArrayList<>(byUrl.values());
    }

    /** The singleton of a headers class, or null if it has none. */
    private static MessageHeaders<?, ?, ?> instance(Class<?> c) throws Exception {
        try {
            Method get = c.getMethod("getInstance");
            return (MessageHeaders<?, ?, ?>) get.invoke(null);
        } catch (NoSuchMethodException e) {
            try {
                Field f = c.getField("INSTANCE");
                return (MessageHeaders<?, ?, ?>) f.get(null);
            } catch (NoSuchFieldException none) {
                return null;
            }
        }
    }

    private static HttpResponse<String> fetch(String path) throws Exception {
        HttpRequest r = HttpRequest.newBuilder(URI.create(base + path)).GET().build();
        return HTTP.send(r, HttpResponse.BodyHandlers.ofString());
    }

    private static JsonNode post(String path, String body) throws Exception {
        HttpRequest r = HttpRequest.newBuilder(URI.create(base + path))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build();
        HttpResponse<String> answer = HTTP.send(r, HttpResponse.BodyHandlers.ofString());
        if (answer.statusCode() != 202 && answer.statusCode() != 200) {
            throw new IllegalStateException(path + ": " + answer.statusCode() + " " + answer.body());
        }
        return MAPPER.readTree(answer.body());
    }

    /**
     * Polls the operation status at {@code path} until it is completed, and returns the result's
     * {@code field} (or null when {@code field} is null); throws if the operation failed.
     */
    private static String completed(String path, String field) throws Exception {
        for (int i = 0; i < 600; i++) {
            JsonNode status = get(path);
            if ("COMPLETED".equals(status.get("status").get("id").asText())) {
                JsonNode op = status.get("operation");
                boolean failed = op.has("failure-cause") || op.has("failureCause");
                if (failed || field != null && !op.has(field)) {
                    throw new IllegalStateException(path + " failed: " + status);
                }
                return field == null ? null : op.get(field).asText();
            }
            Thread.sleep(100);
        }
        throw new IllegalStateException(path + " did not complete");
    }

    private static JsonNode get(String path) throws Exception {
        HttpResponse<String> r = fetch(path);
        if (r.statusCode() != 200) {
            throw new IllegalStateException(path + ": " + r.statusCode() + " " + r.body());
        }
        return MAPPER.readTree(r.body());
    }

    private static void check(MessageHeaders<?, ?, ?> headers, String path, HttpResponse<String> r) {
        String name = headers.getClass().getSimpleName();
        try {
            int want = headers.getResponseStatusCode().code();
            if (r.statusCode() != want) {
                fail(name, path, "status " + r.statusCode() + ", Flink answers " + want + ": " + r.body());
                return;
            }
            JavaType type = responseType(headers);
            Object parsed = MAPPER.readValue(r.body(), type);
            JsonNode flink = MAPPER.valueToTree(parsed);
            JsonNode eddy = MAPPER.readTree(r.body());
            List<String> diffs = new ArrayList<>();
            compare("$", flink, eddy, diffs);
            if (!diffs.isEmpty()) {
                fail(name, path, String.join("; ", diffs));
                return;
            }
            System.out.println("ok   " + name + " GET " + path);
        } catch (Exception ex) {
            fail(name, path, ex.toString());
        }
    }

    private static JavaType responseType(MessageHeaders<?, ?, ?> headers) {
        Collection<Class<?>> params = headers.getResponseTypeParameters();
        if (params.isEmpty()) {
            return MAPPER.constructType(headers.getResponseClass());
        }
        return MAPPER.getTypeFactory()
                .constructParametricType(headers.getResponseClass(), params.toArray(new Class<?>[0]));
    }

    /** Every field of Flink's serialization must be in Eddy's answer, with the same JSON type. */
    private static void compare(String at, JsonNode flink, JsonNode eddy, List<String> diffs) {
        if (eddy == null || eddy.isMissingNode()) {
            diffs.add(at + " missing");
            return;
        }
        if (flink.isNull() || flink.isPojo()) {
            // Null: Flink would omit or accept it; a POJO: raw JSON Flink passes through.
            return;
        }
        if (flink.getNodeType() != eddy.getNodeType()) {
            diffs.add(at + " is " + eddy.getNodeType() + ", Flink sends " + flink.getNodeType());
            return;
        }
        if (flink.isObject()) {
            Iterator<Map.Entry<String, JsonNode>> fields = flink.fields();
            while (fields.hasNext()) {
                Map.Entry<String, JsonNode> f = fields.next();
                compare(at + "." + f.getKey(), f.getValue(), eddy.get(f.getKey()), diffs);
            }
        } else if (flink.isArray()) {
            for (int i = 0; i < flink.size(); i++) {
                compare(at + "[" + i + "]", flink.get(i), eddy.get(i), diffs);
            }
        }
    }

    private static void checkError(String path, int status) {
        try {
            HttpResponse<String> r = fetch(path);
            ErrorResponseBody body = MAPPER.readValue(r.body(), ErrorResponseBody.class);
            if (r.statusCode() != status || body.errors == null || body.errors.isEmpty()) {
                fail("ErrorResponseBody", path, "status " + r.statusCode() + ": " + r.body());
                return;
            }
            System.out.println("ok   ErrorResponseBody GET " + path + " " + status);
        } catch (Exception ex) {
            fail("ErrorResponseBody", path, ex.toString());
        }
    }

    private static void fail(String name, String path, String why) {
        failures++;
        System.out.println("FAIL " + name + " GET " + path + ": " + why);
    }
}
